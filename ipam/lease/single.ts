// A pool kept as one record, exactly whereabouts' IPPool (every pool of up to 1024 addresses). The order
// of the writes is what keeps two pools that share addresses (overlapping ranges, same network_name)
// from handing out the same one:
//   ADD: the address's reservation (create-if-absent, or made this container's by compare-and-swap),
//        then the pool by compare-and-swap; one commit where the store can. A lost swap deletes the
//        reservation it created. A reservation without a lease (a crash in between) only blocks an
//        address until GC clears it; a lease never exists without its reservation, and one whose
//        reservation turns out to be another pod's after the swap is withdrawn before it is returned.
//   DEL: releases only the leases whose current container ID is the DEL's (never by pod), then their
//        reservations while they still belong to them (lease/remove.ts).
import { escaped, log } from '../../lib/log.ts';
import { applyChange, findByContainer, findPredecessor, isEmptyChange, lowestFree, planAssign, planRelease, planRemove, withAllocatable, type Claimant } from '../alloc/allocator.ts';
import { addressAt } from '../alloc/ranges.ts';
import type { IpamStore, PoolRecord, Write } from '../store/types.ts';
import type { PoolOps } from './pool.ts';
import { commitAdd, fitsOneCommit, poolWrite, readForRead, readForWrite } from './records.ts';
import { removeWithRetries, type Drop } from './remove.ts';
import { judgeReservation, stillOurs } from './reservations.ts';
import { CONFLICT, withRetries } from './retry.ts';
import { exhausted, isSent, reservationOf, type Lease, type PodGone, type PoolTarget, type Released, type Sent } from './target.ts';

const reservationDrops = (target: PoolTarget) => (released: ReadonlyArray<Released>): Drop[] =>
  target.overlapping ? released.map(([offset, owner]) => ({ name: reservationOf(target, offset), owner })) : [];

/** Removes the leases `pick` chooses on the record's current content, re-chosen on every attempt. */
function removeWhere(store: IpamStore, target: PoolTarget, deadline: number, pick: (pool: PoolRecord) => string[]): Promise<Released[]> {
  return removeWithRetries(store, `ipam: pool ${target.name}`, deadline, async () => {
    const snapshot = await readForRead(store, target, target.name, deadline);
    return { record: target.name, snapshot, keys: pick(snapshot.pool), drops: reservationDrops(target) };
  });
}

/** Removes the lease at `offset` if the container `id` still holds it. */
const removeOwn = (store: IpamStore, target: PoolTarget, offset: bigint, id: string, deadline: number) =>
  removeWhere(store, target, deadline, (pool) => (pool.allocations[offset.toString()]?.id === id ? [offset.toString()] : []));

async function acquire(store: IpamStore, target: PoolTarget, who: Claimant, deadline: number, podGone?: PodGone): Promise<Lease> {
  const skip = new Set<string>();
  let sent: Sent | undefined;
  return withRetries(`ipam: pool ${target.name}`, deadline, async () => {
    const now = new Date().toISOString();
    const stored = await readForWrite(store, target, target.name, deadline);
    let pool = stored.pool;
    // Where the cluster can be asked, a lease of this pod's name that names no UID (whereabouts wrote
    // it, or its CRD dropped ours) is not taken for this pod instance's without asking.
    const careful = podGone !== undefined;
    let plan = planAssign(pool, target.range, who, now, skip, { careful });
    const predecessor = plan.kind === 'new' && podGone ? findPredecessor(pool, who) : undefined;
    if (predecessor !== undefined && (await podGone!(who.podref, pool.allocations[predecessor]!.poduid, who.uid!, deadline))) {
      plan = planAssign(pool, target.range, who, now, skip, { takeover: predecessor });
    }
    const writes: Write[] = [];
    for (;;) {
      if (plan.kind === 'exhausted') throw exhausted(target, skip.size);
      if (!target.overlapping) break;
      const key = plan.offset.toString();
      const name = reservationOf(target, plan.offset);
      const previous = plan.kind === 'existing' ? pool.allocations[key] : undefined;
      const judged = judgeReservation(await store.readReservation(name, deadline), name, who, now, target.networkName, previous);
      if (judged !== 'taken') {
        if (judged !== 'current') writes.push(judged);
        break;
      }
      if (plan.kind === 'existing') {
        // Our lease, another pod's reservation: the address is in use twice. Give ours up for a new one.
        log.warn(escaped`pool ${target.name}: ${addressAt(target.range, plan.offset)} of ${who.podref} is reserved by another pod; allocating a new address`);
        pool = applyChange(pool, { set: [], remove: [key] });
      }
      skip.add(key);
      plan = planAssign(pool, target.range, who, now, skip, { careful });
    }
    if (pool !== stored.pool || !isEmptyChange(plan.change)) writes.push(poolWrite(target.name, withAllocatable(applyChange(pool, plan.change), target.range), stored.version));
    // An earlier attempt's lease whose reply was lost: granted by this ADD all the same.
    const granted = plan.kind === 'new' || (sent?.fresh === true && isSent(sent, plan.offset, stored.pool.allocations[plan.offset.toString()], who.id));
    if (plan.kind === 'new') sent = { offset: plan.offset, since: now, fresh: true };
    if (!(await commitAdd(store, writes, deadline))) return CONFLICT;
    // The reservation and the lease went in separate commits: check the reservation is still ours.
    if (target.overlapping && granted && !fitsOneCommit(store, plan.kind === 'new' ? writes.length : 2)) {
      if (!(await stillOurs(store, reservationOf(target, plan.offset), who, now, target.networkName, deadline))) {
        // GC took our reservation for an orphan and another pool claimed the address meanwhile: withdraw.
        await removeOwn(store, target, plan.offset, who.id, deadline);
        skip.add(plan.offset.toString());
        return CONFLICT;
      }
    }
    return { offset: plan.offset, existing: !granted };
  });
}

export const SINGLE_RECORD: PoolOps = {
  acquire,

  async rollback(store, target, lease, who, deadline) {
    if (!lease.existing) await removeOwn(store, target, lease.offset, who.id, deadline);
  },

  release: (store, target, who, deadline) => removeWhere(store, target, deadline, (pool) => planRelease(pool, who).remove),

  async find(store, target, who, deadline) {
    const key = findByContainer((await readForRead(store, target, target.name, deadline)).pool, who.id, who.ifname);
    return key === undefined ? undefined : BigInt(key);
  },

  async lowestFree(store, target, deadline) {
    return lowestFree((await readForWrite(store, target, target.name, deadline)).pool, target.range);
  },

  async collect(store, target, doomed, deadline) {
    return { released: await removeWhere(store, target, deadline, (pool) => planRemove(pool, doomed).remove), repaired: 0 };
  },
};
