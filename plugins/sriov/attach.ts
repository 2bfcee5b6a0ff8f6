// ADD's work on the VF: record it as it is, set it up for the pod (PF settings, the netdev and, in
// exclusive RDMA mode, the RDMA device moved in), then finish the netdev in the pod with lib/net's
// configurePodInterface, as macvlan does.
import type { Interface, IpConfig, Route } from '../../lib/cni/result.ts';
import type { Invocation } from '../../lib/cni/skel.ts';
import { configurePodInterface, temporaryLinkName } from '../../lib/net/link.ts';
import { rdmaNetnsMode, moveRdmaDevice } from '../../lib/net/rdma.ts';
import { runIpSteps } from '../../lib/net/steps.ts';
import { altnamesOf, moveIntoPod } from '../../lib/net/vf-netdev.ts';
import { readPfAndLinks, vfCommands, vfSettings } from '../../lib/net/vf.ts';
import type { VfDevice } from '../../lib/sysfs/vf.ts';
import type { SriovRequest } from './config.ts';
import { settlePodInterface } from './pod.ts';
import { saveAttachment, type Attachment } from './state.ts';

/** The user's config as sriov-cni records it: without what the runtime added for this one call. */
function recordedConfig(raw: Record<string, unknown>): Record<string, unknown> {
  const { prevResult: _prev, runtimeConfig: _runtime, args: _args, ...config } = raw;
  return config;
}

export interface Recorded {
  att: Attachment;
  /** Altnames the netdev has that would block its rename in the pod (an earlier pod's, #445). */
  stale: string[];
  pfMtu: number;
}

/**
 * Reads the VF's original state (its entry in the PF's VF table and its netdev) in one spawn and
 * records it with the attachment, before anything is changed.
 */
export function recordAttachment(inv: Invocation, req: SriovRequest, vf: VfDevice): Recorded {
  const [pfLink, netdev] = readPfAndLinks(vf.pf, vf.userspace || !vf.netdev ? [] : [vf.netdev]);
  const dpdk = vf.userspace || !netdev;
  const att: Attachment = {
    containerId: inv.env.containerId,
    ifName: inv.env.ifName,
    network: inv.conf.name,
    netns: inv.env.netns,
    vf: { pci: vf.pci, pfPci: vf.pfPci, pf: vf.pf, index: vf.index },
    dpdk,
    change: req.change,
    original: {
      settings: vfSettings(pfLink!, vf.index),
      hostName: netdev?.ifname ?? '',
      mac: netdev?.address?.toLowerCase() ?? '',
      mtu: netdev?.mtu ?? 0,
      up: netdev?.flags.includes('UP') ?? false,
      // An altname equal to the pod's interface name is a leftover of an earlier pod (#445), not the host's.
      altnames: netdev ? altnamesOf(netdev).filter((name) => name !== inv.env.ifName) : [],
    },
    pod: req.pod,
    config: recordedConfig(inv.raw),
  };
  if (!dpdk) att.temporaryName = temporaryLinkName();
  if (!dpdk && vf.rdma) att.rdma = { device: vf.rdma, exclusive: rdmaNetnsMode() === 'exclusive' };
  saveAttachment(att);
  const stale = netdev ? altnamesOf(netdev).filter((name) => name === inv.env.ifName) : [];
  return { att, stale, pfMtu: pfLink!.mtu };
}

/**
 * One host batch: the PF-level settings, then (kernel driver) the netdev into the pod under its
 * temporary name; configurePodInterface renames it to ifName there, so a name the pod already has fails
 * that rename, with the VF still known by a name that is surely ours. It runs in its own process while
 * the caller goes on (to its IPAM); the RDMA device follows once the netdev is there.
 */
export async function handOver({ att, stale }: Recorded): Promise<void> {
  const { pf, index } = att.vf;
  const commands = vfCommands(pf, index, att.change);
  if (!att.dpdk) commands.push(...moveIntoPod(att.original.hostName, stale, att.netns, att.temporaryName!));
  await runIpSteps([{ what: `set up VF ${index} of ${pf} for the pod`, commands }]);
  if (att.rdma?.exclusive) moveRdmaDevice(att.rdma.device, att.netns);
}

/**
 * The pod's side: its name, MAC, addresses, routes, up, announced (kernel driver); for a userspace
 * driver only what the result reports (the addresses are the application's to configure). Returns the
 * result's interface.
 */
export async function finishInPod({ att, pfMtu }: Recorded, mac: string | undefined, ips: IpConfig[], routes: Route[]): Promise<Interface> {
  const iface: Interface = { name: att.ifName };
  if (att.dpdk) {
    const admin = /^(00:){5}00$/.test(att.original.settings.mac) ? undefined : att.original.settings.mac;
    if (mac ?? admin) iface.mac = mac ?? admin;
    iface.mtu = pfMtu;
  } else {
    const temporaryName = att.temporaryName!;
    const link = await settlePodInterface(att, mac, configurePodInterface({
      netns: att.netns, temporaryName, ifName: att.ifName, ips, routes, announce: true,
      prepare: mac ? [['link', 'set', 'dev', temporaryName, 'address', mac]] : [],
    }));
    Object.assign(iface, { mac: link.address, mtu: link.mtu });
  }
  iface.sandbox = att.netns;
  return iface;
}
