// A pool cut into shards (alloc/shards.ts names the records). The write order follows lease/single.ts
// and adds the claim:
//   ADD: reservation (overlapping ranges; an address another pod reserved is skipped within the same
//        attempt) -> claim (create-if-absent, or handed over by compare-and-swap) -> the owning shard by
//        compare-and-swap; one commit where the store can.
//   DEL: releases only a lease whose current container ID is the DEL's, found through the pod's claim
//        when it names that container, else by scanning the shards (a DEL without the pod's CNI_ARGS, a
//        claim that names another container); every removal goes through lease/remove.ts.
// Why no address is ever handed out twice, whatever crashes (kill -9 between any two writes):
//  1. Offset X is granted only by a compare-and-swap of the ONE record that owns it, shard X>>10 (the
//     index is written before any shard, and a pool that existed as one record before is never cut:
//     lease/pool.ts). Two ADDs that both read X free race on the same record version: one loses and
//     retries.
//  2. Every record write is atomic (the store's contract), so a crash leaves each record old or new.
//  3. Claims and the index are hints, never consulted to decide that X is free. A crash can leave a claim
//     without a lease (the pod's next ADD or GC drops it), a lease whose claim is gone (a second lease
//     for that pod: a leak GC repairs), or a hint too low (extra reads) or too high (a free address
//     skipped until GC resets the hints): each costs reads or an address, never uniqueness.
//  4. Overlapping ranges keep the reservation-before-lease order of lease/single.ts.
import { escaped, log } from '../../lib/log.ts';
import { applyChange, lowestFree, newAllocation, planAssign, sameInstance, withAllocatable, type Claimant } from '../alloc/allocator.ts';
import { addressAt } from '../alloc/ranges.ts';
import { claimName, clip, indexName, nextShard, raiseHint, scanOrder, shardName, shardOf, startShard } from '../alloc/shards.ts';
import type { IpamStore, Reservation, Versioned, Write } from '../store/types.ts';
import { ensureIndex } from './index.ts';
import { commitAdd, commitOne, createWrite, fitsOneCommit, poolWrite, readForWrite, replaceWrite, type Snapshot } from './records.ts';
import { claimedOffset, judgeReservation, reservationFor, stillOurs } from './reservations.ts';
import { CONFLICT, withRetries } from './retry.ts';
import { removeFromShard } from './shard-records.ts';
import { SHARDED_READS } from './shard-reads.ts';
import type { PoolOps } from './pool.ts';
import { exhausted, isSent, reservationOf, type Lease, type PodGone, type PoolTarget, type Sent } from './target.ts';

/** Removes the lease at `offset` if the container `id` still holds it (rollback, withdrawal). */
const removeOwn = (store: IpamStore, target: PoolTarget, offset: bigint, id: string, deadline: number) =>
  removeFromShard(store, target, shardOf(offset), deadline, (pool) => (pool.allocations[offset.toString()]?.id === id ? [offset.toString()] : []));

/** reuse found the claim stale or its address taken: allocate afresh within the same attempt. */
const FRESH = Symbol('fresh');

/** What an ADD's attempts share: the lease the last one wrote (see Sent). */
interface Progress {
  sent?: Sent | undefined;
}

/** ADD when the pod's claim exists: the lease it names (now this container's), or FRESH. */
async function reuse(
  store: IpamStore, target: PoolTarget, who: Claimant, claim: Versioned<Reservation>, skip: Set<string>, now: string, deadline: number, takeover: boolean,
  progress: Progress,
): Promise<Lease | typeof CONFLICT | typeof FRESH> {
  const offset = claimedOffset(claim, who.podref);
  if (offset === undefined) return FRESH;
  const key = offset.toString();
  const shard = await readForWrite(store, target, shardName(target.name, shardOf(offset)), deadline);
  const held = shard.pool.allocations[key];
  // A claim without its lease (an ADD died between the two writes; one pod's ADDs are serialized by its
  // runtime, so none is in flight), or naming another pod's lease: the fresh allocation replaces it.
  // Taken over: the lease of the gone predecessor whose claim this is.
  const ours = held !== undefined && (sameInstance(held, who) || (takeover && held.podref === who.podref && held.poduid === claim.value.poduid));
  if (!held || !ours) return FRESH;
  const writes: Write[] = [];
  if (target.overlapping) {
    const name = reservationOf(target, offset);
    const judged = judgeReservation(await store.readReservation(name, deadline), name, who, now, target.networkName, held);
    if (judged === 'taken') {
      log.warn(escaped`pool ${target.name}: ${addressAt(target.range, offset)} of ${who.podref} is reserved by another pod; allocating a new address`);
      skip.add(key);
      await removeOwn(store, target, offset, held.id, deadline);
      return FRESH;
    }
    if (judged !== 'current') writes.push(judged);
  }
  const plan = planAssign({ range: shard.pool.range, allocations: { [key]: held } }, target.range, who, now, undefined, { takeover: key });
  if (plan.kind === 'existing' && plan.change.set.length > 0) {
    writes.push(poolWrite(shardName(target.name, shardOf(offset)), withAllocatable(applyChange(shard.pool, plan.change), target.range), shard.version));
  }
  // The lease first, then the claim: DEL trusts a claim only when it names the DEL's container, and
  // scans the shards otherwise, so a claim behind costs reads, never a release.
  if (claim.value.containerid !== who.id || claim.value.poduid !== who.uid) {
    writes.push(replaceWrite(claimName(target.name, who.podref, who.ifname), claim.version, reservationFor(who, now, key)));
  }
  const granted = progress.sent?.fresh === true && isSent(progress.sent, offset, held, who.id);
  if (!granted) progress.sent = { offset, since: held.since, fresh: false };
  return (await commitAdd(store, writes, deadline)) ? { offset, existing: !granted } : CONFLICT;
}

/**
 * An earlier attempt of reuse moved the lease `sent` to this container, but the claim does not name it:
 * written one by one, the lease went first and the claim swap lost a race (a DEL of the pod's former
 * container dropped the claim it was replacing). The lease is this ADD's, so it gets its claim rather
 * than the pod a second lease; FRESH when the lease is not this container's.
 */
async function finishSent(
  store: IpamStore, target: PoolTarget, who: Claimant, claim: Versioned<Reservation> | undefined, sent: Sent, now: string, deadline: number,
): Promise<Lease | typeof CONFLICT | typeof FRESH> {
  const key = sent.offset.toString();
  const shard = await readForWrite(store, target, shardName(target.name, shardOf(sent.offset)), deadline);
  if (!isSent(sent, sent.offset, shard.pool.allocations[key], who.id)) return FRESH;
  const name = claimName(target.name, who.podref, who.ifname);
  const mine = reservationFor(who, now, key);
  const write = claim ? replaceWrite(name, claim.version, mine) : createWrite(name, mine);
  return (await commitAdd(store, [write], deadline)) ? { offset: sent.offset, existing: !sent.fresh } : CONFLICT;
}

/**
 * The lowest free offset of one shard that no overlapping pool has reserved, with the write that
 * reserves it. Reserved ones join `skip` and the scan goes on: a "taken" address is never a retry.
 */
async function pickInShard(
  store: IpamStore, target: PoolTarget, snapshot: Snapshot, shard: bigint, who: Claimant, now: string, skip: Set<string>, deadline: number,
): Promise<{ offset: bigint; reservation?: Write } | undefined> {
  const range = clip(target.range, shard);
  for (let offset = lowestFree(snapshot.pool, range, skip); offset !== undefined; offset = lowestFree(snapshot.pool, range, skip)) {
    if (!target.overlapping) return { offset };
    const name = reservationOf(target, offset);
    const judged = judgeReservation(await store.readReservation(name, deadline), name, who, now, target.networkName);
    if (judged === 'current') return { offset };
    if (judged !== 'taken') return { offset, reservation: judged };
    skip.add(offset.toString());
  }
  return undefined;
}

/** The claim of an earlier pod of this name (another UID), which may have gone for good. */
const isPredecessorClaim = (claim: Reservation, who: Claimant): boolean =>
  who.uid !== undefined && claim.podref === who.podref && claim.poduid !== undefined && claim.poduid !== who.uid;

async function acquire(store: IpamStore, target: PoolTarget, who: Claimant, deadline: number, podGone?: PodGone): Promise<Lease> {
  const skip = new Set<string>();
  const claim = claimName(target.name, who.podref, who.ifname);
  let attempts = 0;
  const progress: Progress = {};
  return withRetries(`ipam: pool ${target.name}`, deadline, async () => {
    const contended = attempts++ > 0; // an earlier attempt lost a race (or met an outage)
    const now = new Date().toISOString();
    const index = await ensureIndex(store, target, deadline);
    let existing = await store.readReservation(claim, deadline);
    // A fresh lease needs no finishing: its claim is written before it (lease/sharded.ts's order).
    if (progress.sent && !progress.sent.fresh && claimedOffset(existing, who.podref) !== progress.sent.offset) {
      const finished = await finishSent(store, target, who, existing, progress.sent, now, deadline);
      if (finished !== FRESH) return finished;
      progress.sent = undefined;
    }
    // The claim of an earlier pod of the same name (another UID): unless the API says that pod is gone
    // (then its lease is taken over), it may still run (terminating on a lost node), so its lease is not
    // ours. This pod gets its own, and the claim is handed over by compare-and-swap; the earlier pod's
    // DEL finds its lease by scanning, GC or the reconciler frees it otherwise.
    const takeover = existing !== undefined && podGone !== undefined && isPredecessorClaim(existing.value, who) && (await podGone(who.podref, existing.value.poduid, who.uid!, deadline));
    if (existing && (sameInstance(existing.value, who) || takeover)) {
      const reused = await reuse(store, target, who, existing, skip, now, deadline, takeover, progress);
      if (reused !== FRESH) return reused;
      existing = await store.readReservation(claim, deadline);
    }

    const start = nextShard(target.range, startShard(index.value, target.range));
    let found: { offset: bigint; reservation?: Write; snapshot: Snapshot } | undefined;
    const seenFull = new Set<bigint>();
    for (const shard of scanOrder(target.range, start, { node: who.node, contended })) {
      const snapshot = await readForWrite(store, target, shardName(target.name, shard), deadline);
      const picked = await pickInShard(store, target, snapshot, shard, who, now, skip, deadline);
      if (picked) {
        found = { ...picked, snapshot };
        break;
      }
      seenFull.add(shard);
    }
    // Every shard from `start` to `full` was seen full of leases (not of other pools' reservations,
    // which may go without this index hearing of it) since the index was read: raise the hint. A lost
    // swap is fine (a DEL lowered it meanwhile, or another ADD raised it).
    let full = start;
    while (full !== undefined && seenFull.has(full)) full = nextShard(target.range, full + 1n);
    full ??= shardOf(target.range.last) + 1n;
    for (const key of skip) if (shardOf(BigInt(key)) < full) full = shardOf(BigInt(key));
    if (start !== undefined && full > start) {
      await commitOne(store, poolWrite(indexName(target.name), raiseHint(index.value, target.range, full), index.version), deadline);
    }
    if (!found) throw exhausted(target, skip.size);

    const { offset, snapshot } = found;
    const key = offset.toString();
    const mine = reservationFor(who, now, key);
    const writes: Write[] = [
      ...(found.reservation ? [found.reservation] : []),
      existing ? replaceWrite(claim, existing.version, mine) : createWrite(claim, mine),
      poolWrite(shardName(target.name, shardOf(offset)), withAllocatable(applyChange(snapshot.pool, { set: [[key, newAllocation(who, now)]], remove: [] }), target.range), snapshot.version),
    ];
    progress.sent = { offset, since: now, fresh: true };
    if (!(await commitAdd(store, writes, deadline))) return CONFLICT;
    if (target.overlapping && !fitsOneCommit(store, writes.length) && !(await stillOurs(store, reservationOf(target, offset), who, now, target.networkName, deadline))) {
      await removeOwn(store, target, offset, who.id, deadline);
      skip.add(key);
      return CONFLICT;
    }
    return { offset, existing: false };
  });
}

export const SHARDED: PoolOps = {
  acquire,
  async rollback(store, target, lease, who, deadline) {
    if (!lease.existing) await removeOwn(store, target, lease.offset, who.id, deadline);
  },
  ...SHARDED_READS,
};
