// Taking a VF for a pod: lock it, then believe its allocation marker. A marker whose netns still exists
// means another pod holds the VF ("already allocated": its DEL has not run yet, sriov-cni #219). A
// marker whose netns is gone belongs to a pod that died without DEL: its VF is put back from that pod's
// record (what it shows now is the dead pod's settings, not the original) and then reused.
import { rmSync } from 'node:fs';
import { Code, CniError, showValue } from '../../lib/cni/errors.ts';
import type { FileLock } from '../../lib/lock.ts';
import { escaped, log } from '../../lib/log.ts';
import { netnsAlive } from '../../lib/net/netns.ts';
import { refresh, vfByIndex, vfByPciAddress, vfsOfPf, type VfDevice } from '../../lib/sysfs/vf.ts';
import type { VfChoice } from './config.ts';
import { giveBack } from './restore.ts';
import { allAttachments, dropMarkerTemps, forget, lockVf, markerOf, markerPath, tryLockVf } from './state.ts';

export interface ClaimedVf {
  vf: VfDevice;
  lock: FileLock;
}

/** Under the VF's lock: puts back a VF whose holder died, so it can be taken. False when a live pod holds it. */
async function reclaimIfFree(vf: VfDevice): Promise<boolean> {
  dropMarkerTemps(vf.pci);
  const holder = markerOf(vf.pci);
  if (holder !== undefined && netnsAlive(holder)) return false;
  if (holder !== undefined) {
    for (const att of allAttachments().filter((a) => a.vf.pci === vf.pci && a.netns === holder)) {
      log.info(escaped`VF ${vf.pci}: its pod (netns ${holder}) is gone without DEL; restoring it from ${att.containerId}/${att.ifName}'s record`);
      await giveBack(att);
      forget(att);
    }
    rmSync(markerPath(vf.pci), { force: true });
  }
  return true;
}

/** A VF with neither a netdev here nor a userspace driver cannot be given to anyone. */
function usable(vf: VfDevice): boolean {
  return vf.userspace || vf.netdev !== undefined;
}

async function claimOne(vf: VfDevice, field: string, value: string): Promise<ClaimedVf> {
  const lock = await lockVf(vf.pci);
  try {
    if (!(await reclaimIfFree(vf))) {
      throw new CniError(Code.TryAgainLater, `${field} = ${showValue(value)}: VF ${vf.pci} is already allocated (to the pod with netns ${markerOf(vf.pci)})`);
    }
    const now = refresh(vf);
    if (!usable(now)) {
      throw new CniError(Code.InvalidConfig, `invalid network config: ${field} = ${showValue(value)}: VF ${vf.pci} has no network interface in this namespace and no userspace (DPDK) driver (driver: ${now.driver ?? 'none'})`);
    }
    return { vf: now, lock };
  } catch (err) {
    lock.release();
    throw err;
  }
}

/** The first VF of `pf` that nobody holds, trying each without waiting for a lock another ADD holds. */
async function claimFree(pf: string): Promise<ClaimedVf> {
  const { vfs } = vfsOfPf(pf);
  let busy = 0;
  for (const index of [...vfs.keys()].sort((a, b) => a - b)) {
    const vf = vfByIndex(pf, index, 'master');
    const lock = tryLockVf(vf.pci);
    if (!lock) {
      busy++;
      continue;
    }
    try {
      const now = (await reclaimIfFree(vf)) ? refresh(vf) : undefined;
      if (now?.netdev !== undefined) return { vf: now, lock };
    } catch (err) {
      lock.release();
      throw err;
    }
    lock.release();
  }
  const why = busy > 0 ? `${busy} being set up or torn down right now, the others allocated` : 'all allocated';
  throw new CniError(Code.TryAgainLater, `master = ${showValue(pf)}: no free VF (${vfs.size} VFs, ${why})`);
}

/** Locks the VF the config asks for, free for this pod; the caller releases the lock at the end. */
export function claimVf(choice: VfChoice): Promise<ClaimedVf> {
  if ('deviceID' in choice) return claimOne(vfByPciAddress(choice.deviceID), 'deviceID', choice.deviceID);
  if (choice.index !== undefined) return claimOne(vfByIndex(choice.master, choice.index, choice.field), choice.field, String(choice.index));
  return claimFree(choice.master);
}
