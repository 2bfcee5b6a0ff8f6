// sriov refusing bad input, with the BUILT executable on the SR-IOV rig: each refusal is a CNI error
// naming the field and the value, and nothing is changed (VF table, netdevs, leases, state on disk).
// Then ADDs that fail halfway: the VF is put back and the lease released.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { leasesIn } from '../helpers/leases.ts';
import { linksIn, sh } from '../helpers/netns.ts';
import { sriov, useRig } from '../helpers/sriov-rig/fixture.ts';

const rig = useRig({ subnet: '10.152.0' });
const ipam = { type: 'whereabouts', range: `${rig.subnet}.0/24`, range_start: `${rig.subnet}.10`, file_store_dir: rig.leaseDir };
const conf = (extra: Record<string, unknown>) => ({ cniVersion: '1.1.0', name: 'badnet', type: 'sriov', ipam, ...extra });
const vf = rig.vfs[0]!;

let n = 0;
async function add(config: unknown, args = 'IgnoreUnknown=1;K8S_POD_NAMESPACE=bad;K8S_POD_NAME=p') {
  const id = `bad${n++}`;
  const netns = rig.pod(id);
  return { netns, id, out: await sriov(rig, { command: 'ADD', config, containerId: id, netns, ifName: 'net1', args }) };
}

/** What a runtime does after a failed ADD: DEL it (which must succeed), whatever the ADD left. */
async function delAfterFailure(id: string, netns: string, config: unknown): Promise<void> {
  const del = await sriov(rig, { command: 'DEL', config, containerId: id, netns, ifName: 'net1' });
  expect(del.exitCode, del.stdout).toBe(0);
}

/** Records, markers and temp files: the lock files (and what SQLite keeps beside them) are not state. */
const stateFiles = () => {
  const list = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? list(join(dir, e.name)) : [join(dir, e.name)]));
  return list(rig.stateDir).filter((f) => !f.includes('/vf_lock/'));
};

/** Nothing changed: the VF table as the rig made it, every netdev home, no lease, no record, no marker. */
function expectUntouched(netns: string): void {
  for (const row of rig.vfTable()) expect(row).toMatchObject({ address: '00:00:00:00:00:00', vlan_list: [{}], rate: { max_tx: 0, min_tx: 0 }, spoofchk: true, trust: false, link_state: 'auto' });
  for (const v of rig.vfs) expect(rig.hostNetdev(v)).toMatchObject({ ifname: v.name, address: v.mac, mtu: v.mtu });
  expect(linksIn(netns)).toEqual(['lo']);
  expect(leasesIn(rig.leaseDir)).toEqual([]);
  expect(stateFiles()).toEqual([]);
}

describe('refused before anything is touched', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp, string?]> = [
    ['a deviceID that does not exist', { deviceID: '0000:5e:07.0' }, /deviceID = "0000:5e:07\.0": no such PCI device/],
    ['a PCI address that is not a VF (the PF)', { deviceID: rig.pfPci }, /deviceID = "0000:5e:00\.0": not an SR-IOV virtual function/],
    ['a deviceID that is no PCI address', { deviceID: 'eth0' }, /deviceID = "eth0": not a PCI address/],
    ['vlan 4095', { deviceID: vf.pci, vlan: 4095 }, /vlan = 4095: Too big/],
    ['vlanQoS without vlan', { deviceID: vf.pci, vlanQoS: 3 }, /vlanQoS = 3: needs a vlan/],
    ['vlanQoS 8', { deviceID: vf.pci, vlan: 5, vlanQoS: 8 }, /vlanQoS = 8: Too big/],
    ['vlanProto 802.1ad with vlan 0', { deviceID: vf.pci, vlan: 0, vlanProto: '802.1ad' }, /vlanProto = "802\.1ad": needs a non-zero vlan \(vlan = 0\)/],
    ['an unknown vlanProto', { deviceID: vf.pci, vlan: 5, vlanProto: '802.1x' }, /vlanProto = "802\.1x": must be "802\.1q" or "802\.1ad"/],
    ['an unknown link_state', { deviceID: vf.pci, link_state: 'up' }, /link_state = "up"/],
    ['spoofchk neither on nor off', { deviceID: vf.pci, spoofchk: 'yes' }, /spoofchk = "yes"/],
    ['min_tx_rate above max_tx_rate', { deviceID: vf.pci, min_tx_rate: 200, max_tx_rate: 100 }, /min_tx_rate = 200: must not exceed max_tx_rate \(100\)/],
    ['a multicast MAC', { deviceID: vf.pci, mac: '01:00:5e:00:00:01' }, /mac = "01:00:5e:00:00:01": a multicast/],
    ['neither deviceID nor master', {}, /deviceID = missing/],
    ['a master that does not exist', { master: 'nosuch0' }, /master = "nosuch0": no such PCI network interface/],
    ['a VF index the PF does not have', { master: rig.pf }, /CNI_ARGS VF = "9": PF "s[0-9a-f]+f0" has no VF 9/, 'IgnoreUnknown=1;VF=9'],
  ];
  for (const [what, extra, message, args] of cases) {
    it(what, async () => {
      const { netns, id, out } = await add(conf(extra), args);
      expect(out.exitCode).not.toBe(0);
      expect(out.json?.code, out.stdout).toBeOneOf([4, 7]);
      expect(out.json?.msg).toMatch(message);
      expectUntouched(netns);
      await delAfterFailure(id, netns, conf(extra));
    });
  }

  it('a master with no free VF: code 11, naming the master', async () => {
    const held = [];
    for (let i = 0; i < rig.vfs.length; i++) {
      const { netns, out } = await add(conf({ master: rig.pf }));
      expect(out.exitCode, out.stdout).toBe(0);
      held.push({ netns, id: `bad${n - 1}` });
    }
    const { netns, id, out } = await add(conf({ master: rig.pf }));
    await delAfterFailure(id, netns, conf({ master: rig.pf }));
    expect(out.json).toMatchObject({ code: 11 });
    expect(out.json?.msg).toMatch(new RegExp(`master = "${rig.pf}": no free VF \\(4 VFs, all allocated\\)`));
    expect(linksIn(netns)).toEqual(['lo']);
    for (const h of held) {
      const del = await sriov(rig, { command: 'DEL', config: conf({ master: rig.pf }), containerId: h.id, netns: h.netns, ifName: 'net1' });
      expect(del.exitCode, del.stdout).toBe(0);
    }
    expectUntouched(netns);
  });
});

describe('an ADD that fails halfway leaves nothing behind', () => {
  it('the pod already has the interface name: the VF stays home, no lease', async () => {
    const netns = rig.pod('taken');
    sh(`nsenter --net=${netns} ip link add net1 type veth peer name other1`);
    const out = await sriov(rig, { command: 'ADD', config: conf({ deviceID: vf.pci, vlan: 12, trust: 'on' }), containerId: 'taken', netns, ifName: 'net1' });
    expect(out.exitCode).not.toBe(0);
    expect(out.json?.msg).toMatch(/File exists/);
    sh(`nsenter --net=${netns} ip link del net1`);
    expectUntouched(netns);
    await delAfterFailure('taken', netns, conf({ deviceID: vf.pci, vlan: 12, trust: 'on' }));
  });

  it('the IPAM refuses: the VF is put back from the pod', async () => {
    const netns = rig.pod('noip');
    const out = await sriov(rig, { command: 'ADD', config: conf({ deviceID: vf.pci, vlan: 12, ipam: { ...ipam, range: 'not-a-range' } }), containerId: 'noip', netns, ifName: 'net1' });
    expect(out.exitCode).not.toBe(0);
    expect(out.json?.msg).toMatch(/not-a-range/);
    expectUntouched(netns);
    await delAfterFailure('noip', netns, conf({ deviceID: vf.pci, vlan: 12, ipam: { ...ipam, range: 'not-a-range' } }));
  });

  it('a route the pod cannot take: the lease is released and the VF put back', async () => {
    const netns = rig.pod('noroute');
    const badRoute = { ...ipam, routes: [{ dst: '198.51.100.0/24', gw: '192.0.2.1' }] };
    const out = await sriov(rig, { command: 'ADD', config: conf({ deviceID: vf.pci, mac: '02:00:00:00:00:99', ipam: badRoute }), containerId: 'noroute', netns, ifName: 'net1' });
    expect(out.exitCode).not.toBe(0);
    expect(out.json?.msg).toMatch(/198\.51\.100\.0\/24/);
    expectUntouched(netns);
    await delAfterFailure('noroute', netns, conf({ deviceID: vf.pci, mac: '02:00:00:00:00:99', ipam: badRoute }));
  });
});
