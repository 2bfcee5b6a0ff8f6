// sriov: an SR-IOV virtual function given to the pod, as sriov-cni does it (its config, its state on
// disk), with a DEL that puts the VF back whatever happened to the pod, a real CHECK, GC and STATUS.
// The story of each verb, on top of lib/cni (protocol, IPAM), lib/sysfs (which VF) and lib/net.
import { delegateIpam, wantsIpam } from '../../lib/cni/delegate.ts';
import { asCniError, Code, CniError, showValue } from '../../lib/cni/errors.ts';
import { parseResult, type Result } from '../../lib/cni/result.ts';
import type { Invocation, Plugin } from '../../lib/cni/skel.ts';
import { atLeast } from '../../lib/cni/version.ts';
import { escaped, log } from '../../lib/log.ts';
import { assertBatchSafe } from '../../lib/net/ip.ts';
import { netnsAlive } from '../../lib/net/netns.ts';
import { pciOfNetdev } from '../../lib/sysfs/pci.ts';
import { vfByPciAddress } from '../../lib/sysfs/vf.ts';
import { Undo } from '../../lib/undo.ts';
import { finishInPod, handOver, recordAttachment } from './attach.ts';
import { checkAttachment } from './check.ts';
import { claimVf } from './claim.ts';
import { deviceIdOf, loadRequest, parseFields } from './config.ts';
import { giveBack } from './restore.ts';
import { allAttachments, dropRecordTemps, forget, holdsVf, loadAttachment, lockVf, type Attachment } from './state.ts';

async function add(inv: Invocation): Promise<Result> {
  const req = loadRequest(inv);
  const { netns, ifName } = inv.env;
  if (!netnsAlive(netns)) throw new CniError(Code.InvalidNetns, `CNI_NETNS ${netns} is not a network namespace`);
  assertBatchSafe(netns, ifName); // before anything is touched, not halfway through
  if (!atLeast(inv.cniVersion, '0.3.0') && !wantsIpam(inv)) {
    throw new CniError(Code.IncompatibleVersion, `cniVersion ${inv.cniVersion} results need an IP address; an sriov interface without ipam needs cniVersion 0.3.0 or later`);
  }
  const prev: Result = inv.conf.prevResult === undefined ? {} : parseResult(inv.conf.prevResult, inv.cniVersion, 'prevResult');
  const ourIndex = prev.interfaces?.length ?? 0;

  const { vf, lock } = await claimVf(req.choice);
  try {
    const recorded = recordAttachment(inv, req, vf);
    const { att } = recorded;
    const undo = new Undo();
    return await undo.guard(async () => {
      // The IPAM allocates while the kernel moves the VF. The record stays when the VF cannot be put
      // back: the DEL that follows a failed ADD retries.
      const handing = handOver(recorded);
      handing.catch(() => undefined); // awaited below, or by the undo
      undo.push(`VF ${vf.pci}`, async () => {
        await handing.catch(() => undefined);
        await giveBack(att);
        forget(att);
      });
      let ipam: Result = {};
      if (wantsIpam(inv)) {
        ipam = (await delegateIpam('ADD', inv)) ?? {};
        undo.push('the IPAM lease', () => delegateIpam('DEL', inv));
        if (!ipam.ips?.length) throw new CniError(Code.Internal, `IPAM plugin ${inv.conf.ipam?.type} returned missing IP config`);
      }
      await handing;
      const ips = (ipam.ips ?? []).map((ip) => ({ ...ip, interface: ourIndex }));
      const iface = await finishInPod(recorded, req.mac, ips, ipam.routes ?? []);
      iface.pciID = vf.pci; // a 1.1 field: lib/cni/result.ts leaves it out of older results
      const dns = inv.conf.dns && Object.keys(inv.conf.dns).length > 0 ? inv.conf.dns : ipam.dns;
      return {
        interfaces: [...(prev.interfaces ?? []), iface],
        ips: [...(prev.ips ?? []), ...ips],
        routes: [...(prev.routes ?? []), ...(ipam.routes ?? [])],
        dns: dns ?? prev.dns,
      };
    });
  } finally {
    lock.release();
  }
}

/** Puts back the VF of `att` if it still holds it (its marker names its pod), then forgets it. */
async function release(att: Attachment): Promise<void> {
  const lock = await lockVf(att.vf.pci);
  try {
    // Read again under the lock: an ADD that reused the VF of a dead pod may have dealt with it.
    const now = loadAttachment(att.containerId, att.ifName, att.netns);
    if (!now) return;
    if (holdsVf(now)) await giveBack(now);
    else log.info(escaped`VF ${now.vf.pci} is no longer held by ${now.containerId}/${now.ifName}: leaving it to its holder`);
    forget(now);
  } finally {
    lock.release();
  }
}

// DEL reads no field of the config: it works from the record ADD left, so a config ADD would refuse now
// must still be deletable, and no record means nothing to do (sriov-cni: kubelet would retry forever).
async function del(inv: Invocation): Promise<void> {
  const { containerId, ifName, netns } = inv.env;
  const att = loadAttachment(containerId, ifName, netns);
  if (!att) dropRecordTemps(containerId, ifName);
  // The VF's way home starts first (its ip steps run in their own process), then the IPAM releases
  // while the kernel moves the netdev. Both always run; an error of either fails the DEL.
  const outcomes = await Promise.allSettled([att ? release(att) : undefined, wantsIpam(inv) ? delegateIpam('DEL', inv) : undefined]);
  for (const outcome of outcomes) if (outcome.status === 'rejected') throw asCniError(outcome.reason);
}

async function check(inv: Invocation): Promise<void> {
  if (inv.conf.prevResult === undefined) throw new CniError(Code.InvalidConfig, 'invalid network config: prevResult = missing: CHECK requires it');
  const prev = parseResult(inv.conf.prevResult, inv.cniVersion, 'prevResult');
  const att = loadAttachment(inv.env.containerId, inv.env.ifName, inv.env.netns);
  if (!att) throw new CniError(Code.Internal, `no record of an sriov ADD for ${inv.env.containerId}/${inv.env.ifName}`);
  if (wantsIpam(inv)) await delegateIpam('CHECK', inv);
  await checkAttachment(att, inv.env, prev);
}

// STATUS: not available (50) when the PF the config names is not on this node, or the VF it names is
// not there with its PF; then the IPAM's answer.
async function status(inv: Invocation): Promise<void> {
  const fields = parseFields(inv);
  const deviceID = deviceIdOf(inv, fields);
  if (fields.master !== undefined && !pciOfNetdev(fields.master)) {
    throw new CniError(Code.NotAvailable, `master ${showValue(fields.master)}: no such PF on this node`);
  }
  if (deviceID !== undefined) {
    try {
      vfByPciAddress(deviceID);
    } catch (err) {
      throw new CniError(Code.NotAvailable, asCniError(err).message.replace(/^invalid network config: /, ''));
    }
  }
  if (wantsIpam(inv)) await delegateIpam('STATUS', inv);
}

// GC: the IPAM frees leases of attachments the runtime no longer has; the VFs those attachments still
// hold (their DEL never came) are put back here. Keeps going on errors and reports them all.
async function gc(inv: Invocation): Promise<void> {
  const valid = new Set((inv.conf['cni.dev/valid-attachments'] ?? []).map((a) => `${a.containerID}/${a.ifname}`));
  const errors: string[] = [];
  for (const att of allAttachments().filter((a) => a.network === inv.conf.name && !valid.has(`${a.containerId}/${a.ifName}`))) {
    await release(att).catch((err: unknown) => errors.push(asCniError(err).message));
  }
  if (wantsIpam(inv)) await delegateIpam('GC', inv).catch((err: unknown) => errors.push(asCniError(err).message));
  if (errors.length > 0) throw new CniError(Code.Internal, `GC: ${errors.join('; ')}`);
}

export const sriovPlugin: Plugin = {
  about: 'Underlay sriov: an SR-IOV virtual function for pods on the physical network (sriov-cni\'s config)',
  add,
  del,
  check,
  status,
  gc,
};
