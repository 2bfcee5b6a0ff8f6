// Giving a VF back: the one way DEL, a failed ADD, GC and an ADD that reuses a dead pod's VF put a VF
// back as the host had it, from whatever state it is in. It finds the VF by PCI address, not by name:
// in the host (never moved, or returned by the kernel under the pod's name after the pod's netns died,
// sriov-cni #126), or in the pod under the attachment's name. PF-level settings go first: some drivers
// refuse a netdev change while, say, trust is off.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Code, CniError } from '../../lib/cni/errors.ts';
import { escaped, log } from '../../lib/log.ts';
import { IpError, ipBatch } from '../../lib/net/ip.ts';
import { netnsAlive, ownNetns } from '../../lib/net/netns.ts';
import { moveRdmaDevice } from '../../lib/net/rdma.ts';
import { ipJson, parseIpJson } from '../../lib/net/ip.ts';
import { LinkListSchema } from '../../lib/net/schemas.ts';
import { runIpSteps, type IpStep } from '../../lib/net/steps.ts';
import { afterHome, altnameCommands, altnamesOf, findVfLink, restoreInHost, sendHome, type HostNetdev } from '../../lib/net/vf-netdev.ts';
import { vfCommands, type VfChange } from '../../lib/net/vf.ts';
import { netdevsOf, sysfsRoot } from '../../lib/sysfs/pci.ts';
import type { Attachment } from './state.ts';

/** The original values of what the attachment changed, and the admin MAC whatever it changed (#214). */
export function restoreChange(att: Attachment): VfChange {
  const o = att.original.settings;
  const c = att.change;
  const back: VfChange = { mac: o.mac };
  if (c.vlan !== undefined) Object.assign(back, { vlan: o.vlan, qos: o.qos, proto: o.proto });
  if (c.spoofchk !== undefined && o.spoofchk !== undefined) back.spoofchk = o.spoofchk;
  if (c.trust !== undefined && o.trust !== undefined) back.trust = o.trust;
  if (c.minTxRate !== undefined || c.maxTxRate !== undefined) Object.assign(back, { minTxRate: o.minTxRate, maxTxRate: o.maxTxRate });
  if (c.linkState !== undefined && o.linkState !== undefined) back.linkState = o.linkState;
  return back;
}

const home = (att: Attachment): HostNetdev => ({
  name: att.original.hostName,
  mac: att.original.mac,
  mtu: att.original.mtu,
  up: att.original.up,
});

const pfPresent = (pf: string): boolean => existsSync(join(sysfsRoot(), 'class', 'net', pf));

/** Where the VF netdev is now, and the steps that bring it home (none when it is nowhere we can see). */
function netdevSteps(att: Attachment): IpStep[] {
  const h = home(att);
  const inHost = netdevsOf(att.vf.pci)[0];
  if (inHost !== undefined) return [{ what: `restore ${inHost} as ${h.name}`, commands: restoreInHost(inHost, h) }];
  // In the pod: under its temporary name if ADD stopped before renaming it, else under the pod's name.
  const names = [att.temporaryName, att.ifName].filter((n): n is string => n !== undefined);
  const inPod = netnsAlive(att.netns) ? findVfLink(ipJson(LinkListSchema, ['-d', 'link', 'show'], att.netns), names, att.vf.pci) : undefined;
  if (!inPod) {
    log.warn(escaped`VF ${att.vf.pci}: its netdev is neither in the host nor in ${att.netns || 'a pod'} as ${names.join(' or ')}; only PF settings restored`);
    return [];
  }
  return [
    { what: `send ${inPod.ifname} home as ${h.name}`, netns: att.netns, commands: sendHome(inPod.ifname, h, ownNetns()) },
    { what: `bring ${h.name} up`, commands: afterHome(h) },
  ];
}

/** Puts the VF back: RDMA device, PF settings, netdev (name, MAC, MTU, altnames, up state). */
export async function giveBack(att: Attachment): Promise<void> {
  if (!pfPresent(att.vf.pf)) {
    log.warn(escaped`VF ${att.vf.pci}: its PF ${att.vf.pf} is gone; nothing left to restore`);
    return;
  }
  if (att.rdma?.exclusive && netnsAlive(att.netns)) {
    if (!moveRdmaDevice(att.rdma.device, ownNetns(), att.netns)) log.info(escaped`RDMA device ${att.rdma.device} is not in ${att.netns}; nothing to move back`);
  }
  const pfStep: IpStep = { what: `restore VF ${att.vf.index} of ${att.vf.pf}`, commands: vfCommands(att.vf.pf, att.vf.index, restoreChange(att)), bestEffort: true };
  const steps = att.dpdk ? [] : netdevSteps(att);
  const movesNetdev = steps.length > 0;
  let outcome;
  try {
    outcome = await runIpSteps([pfStep, ...steps], movesNetdev ? { command: ['link', 'show', 'dev', att.original.hostName] } : undefined);
  } catch (err) {
    // A netdev gone from where we just saw it (its pod renamed or deleted it meanwhile) is not ours to
    // chase further: the PF settings were restored first, and the doctor shows the rest.
    if (err instanceof IpError && err.linkMissing) {
      log.warn(escaped`VF ${att.vf.pci}: ${err.message}`);
      return;
    }
    throw err;
  }
  if (movesNetdev) await fixAltnames(att, outcome.read);
  if (outcome.refused.length > 0) {
    throw new CniError(Code.Internal, `VF ${att.vf.pci} is not fully restored: ${outcome.refused.join('; ')}`);
  }
}

async function fixAltnames(att: Attachment, read: string): Promise<void> {
  const link = parseIpJson(LinkListSchema, read.trim() || '[]', ['link', 'show', 'dev', att.original.hostName])[0];
  if (!link) return;
  const commands = altnameCommands(link.ifname, altnamesOf(link), att.original.altnames);
  if (commands.length > 0) await ipBatch(commands);
}
