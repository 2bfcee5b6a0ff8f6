// `underlay doctor`: the node's SR-IOV state as an operator needs it when a pod will not start or a VF
// misbehaves. Each PF (driver, link, VF count), each VF (PCI address, netdev, driver, admin MAC, VLAN,
// trust, spoof check, RDMA device, the pod holding it), and what needs a hand: a VF left dirty (its
// settings differ from the original its record keeps, and no pod holds it), a VF netdev lost from the
// host with no pod holding it (sriov-cni #349), an allocation marker or record whose pod is gone.
import * as z from 'zod/mini';
import { ipJson } from '../../lib/net/ip.ts';
import { netnsAlive } from '../../lib/net/netns.ts';
import { PfLinkSchema, vfDifferences, vfTable, type VfSettings } from '../../lib/net/vf.ts';
import { driverOf, listPfs, netdevsOf, rdmaDevicesOf, sriovCounts, USERSPACE_DRIVERS, virtfnsOf } from '../../lib/sysfs/pci.ts';
import { restoreChange } from './restore.ts';
import { allAttachments, markerOf, stateDir, type Attachment } from './state.ts';

interface VfReport {
  index: number;
  pci: string;
  /** The netdev's name, and where it is: "host", "pod" (from the record), or undefined when unknown. */
  netdev?: string;
  netdevIn?: 'host' | 'pod';
  driver?: string;
  adminMac?: string;
  vlan?: { id: number; qos: number; proto: string };
  trust?: boolean;
  spoofchk?: boolean;
  rdma?: string;
  pod?: { netns: string; alive: boolean; name?: string; containerID?: string; ifName?: string };
  issues: string[];
}

interface PfReport {
  name: string;
  pci: string;
  driver?: string;
  link?: string;
  numvfs: number;
  totalvfs: number;
  vfs: VfReport[];
}

const HostLinksSchema = z.array(PfLinkSchema);

function holderOf(pci: string, records: ReadonlyArray<Attachment>): { netns?: string; alive: boolean; record?: Attachment } {
  const netns = markerOf(pci);
  const record = records.find((a) => a.vf.pci === pci && (netns === undefined || a.netns === netns));
  return { netns, alive: netns !== undefined && netnsAlive(netns), record };
}

function dirtiness(att: Attachment, now: VfSettings | undefined, netdev: string | undefined): string[] {
  const out = now ? vfDifferences(now, restoreChange(att), 'original') : [];
  if (!att.dpdk && netdev !== undefined && netdev !== att.original.hostName) out.push(`netdev named ${netdev} (original ${att.original.hostName})`);
  return out;
}

function reportVf(index: number, pci: string, table: Map<number, VfSettings>, records: ReadonlyArray<Attachment>): VfReport {
  const driver = driverOf(pci);
  const settings = table.get(index);
  const hostNetdev = netdevsOf(pci)[0];
  const holder = holderOf(pci, records);
  const report: VfReport = { index, pci, driver, rdma: rdmaDevicesOf(pci)[0] ?? holder.record?.rdma?.device, issues: [] };
  if (settings) {
    Object.assign(report, { adminMac: settings.mac, trust: settings.trust, spoofchk: settings.spoofchk });
    if (settings.vlan) report.vlan = { id: settings.vlan, qos: settings.qos, proto: settings.proto };
  }
  if (hostNetdev) Object.assign(report, { netdev: hostNetdev, netdevIn: 'host' });
  else if (holder.alive && holder.record && !holder.record.dpdk) Object.assign(report, { netdev: holder.record.ifName, netdevIn: 'pod' });
  if (holder.netns !== undefined) {
    report.pod = { netns: holder.netns, alive: holder.alive, name: holder.record?.pod, containerID: holder.record?.containerId, ifName: holder.record?.ifName };
  }
  if (holder.netns !== undefined && !holder.alive) report.issues.push(`allocation marker names ${holder.netns}, which is gone (the pod died without DEL)`);
  for (const att of records.filter((a) => a.vf.pci === pci && !(holder.alive && a === holder.record))) {
    const dirty = holder.alive ? [] : dirtiness(att, settings, hostNetdev);
    report.issues.push(dirty.length > 0
      ? `left dirty by ${att.containerId}/${att.ifName} with no pod holding it: ${dirty.join(', ')}`
      : `record of ${att.containerId}/${att.ifName} remains, but its pod does not hold the VF`);
  }
  if (holder.alive) return report;
  const userspace = driver !== undefined && USERSPACE_DRIVERS.includes(driver);
  if (!userspace && driver !== undefined && !hostNetdev) report.issues.push('its netdev is not in the host and no pod holds it (lost)');
  return report;
}

function collect(): PfReport[] {
  const links = ipJson(HostLinksSchema, ['link', 'show']);
  const records = allAttachments();
  return listPfs().map(({ name, pci }) => {
    const link = links.find((l) => l.ifname === name);
    const table = link ? vfTable(link) : new Map<number, VfSettings>();
    const counts = sriovCounts(pci) ?? { numvfs: 0, totalvfs: 0 };
    const vfs = [...virtfnsOf(pci)].sort(([a], [b]) => a - b).map(([index, vfPci]) => reportVf(index, vfPci, table, records));
    return { name, pci, driver: driverOf(pci), link: link?.operstate, ...counts, vfs };
  });
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => `  ${r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')}`.trimEnd()).join('\n');
}

const onOff = (value: boolean | undefined): string => (value === undefined ? '-' : value ? 'on' : 'off');

function render(pfs: ReadonlyArray<PfReport>): string {
  if (pfs.length === 0) return 'No SR-IOV PF on this node (no network interface whose device has sriov_totalvfs).\n';
  const out: string[] = [];
  for (const pf of pfs) {
    out.push(`PF ${pf.name} (${pf.pci})  driver ${pf.driver ?? '-'}  link ${pf.link ?? '-'}  VFs ${pf.numvfs} of ${pf.totalvfs}`);
    const rows = [['VF', 'PCI', 'NETDEV', 'DRIVER', 'ADMIN MAC', 'VLAN', 'TRUST', 'SPOOFCHK', 'RDMA', 'POD']];
    for (const vf of pf.vfs) {
      const vlan = vf.vlan ? `${vf.vlan.id}${vf.vlan.qos ? ` qos ${vf.vlan.qos}` : ''}${vf.vlan.proto === '802.1ad' ? ' 802.1ad' : ''}` : '-';
      const netdev = vf.netdev ? `${vf.netdev}${vf.netdevIn === 'pod' ? ' (in pod)' : ''}` : '-';
      const pod = vf.pod ? `${vf.pod.name ?? vf.pod.containerID ?? '?'} ${vf.pod.netns}${vf.pod.alive ? '' : ' (gone)'}` : '-';
      rows.push([String(vf.index), vf.pci, netdev, vf.driver ?? '-', vf.adminMac ?? '-', vlan, onOff(vf.trust), onOff(vf.spoofchk), vf.rdma ?? '-', pod]);
    }
    out.push(table(rows));
    for (const vf of pf.vfs) for (const issue of vf.issues) out.push(`  ! VF ${vf.index} (${vf.pci}): ${issue}`);
  }
  const issues = pfs.reduce((n, pf) => n + pf.vfs.reduce((m, vf) => m + vf.issues.length, 0), 0);
  out.push(issues === 0 ? 'No VF needs attention.' : `${issues} thing(s) need attention: a DEL (or CNI GC) of the attachment puts a VF back; a stale marker clears on the next ADD of its VF.`);
  return `${out.join('\n')}\n`;
}

const DOCTOR_HELP = `underlay doctor [--json] [--state-dir DIR]
  Shows each SR-IOV PF and VF of this node, which pod holds each VF, and flags VFs left dirty or lost.
  Exits 1 when something is flagged. State is read from /var/lib/cni/sriov (or DIR, or $UNDERLAY_SRIOV_STATE_DIR).
`;

export function runDoctor(argv: ReadonlyArray<string>): number {
  const args = [...argv];
  const json = args.includes('--json');
  const dirAt = args.indexOf('--state-dir');
  if (dirAt >= 0) {
    const dir = args[dirAt + 1];
    if (!dir) {
      process.stderr.write('underlay doctor: --state-dir needs a directory\n');
      return 2;
    }
    process.env.UNDERLAY_SRIOV_STATE_DIR = dir;
  }
  const unknown = args.filter((a, i) => a !== '--json' && !(i === dirAt || i === dirAt + 1));
  if (unknown.length > 0) {
    process.stderr.write(`underlay doctor: unknown argument "${unknown[0]}"\n${DOCTOR_HELP}`);
    return 2;
  }
  const pfs = collect();
  process.stdout.write(json ? `${JSON.stringify({ stateDir: stateDir(), pfs }, null, 2)}\n` : render(pfs));
  return pfs.some((pf) => pf.vfs.some((vf) => vf.issues.length > 0)) ? 1 : 0;
}
