// ADD, DEL, rollback and lookups for a pool cut into shards (ipam/alloc/shards.ts names the records). The
// write order follows ipam/lease/single.ts and adds the claim:
//   ADD: reservation (overlapping ranges; an address another pod reserved is skipped within the same
//        attempt, as in lease.ts) -> claim (create-if-absent) -> the owning shard by CAS.
//   DEL: releases only a lease whose current container ID is the DEL's, found through the pod's claim
//        when it names that container, else by scanning the shards (a DEL without the pod's CNI_ARGS,
//        or a claim that names another container): index hints lowered -> shard by CAS -> index touched
//        again -> reservation -> claim; the last two only if they still belong to the released lease
//        (its container ID), so an ADD of the pod's new sandbox that ran in between keeps its own. A DEL
//        retried after one that stopped after the shard write finds the claim still naming its
//        container and removes the reservation and claim it left behind.
// Every removal of a lease from a shard (DEL, rollback, withdrawal, GC) goes through removeFromShard,
// which changes the index version after it: an ADD that saw the shard full before cannot then raise
// its hint over the freed address.
//
// Why no address is ever handed out twice, whatever crashes (kill -9 between any two writes):
//  1. Offset X is granted only by a compare-and-swap of the ONE record that owns it, shard X>>10 (after
//     migration, ipam/lease/migrate.ts, no other record holds X: allocation waits for the index, which is
//     created only once shard 0 holds no other shard's offsets; migration copies merge and never
//     overwrite). Two ADDs that both read X free race on the same record version: one loses and retries.
//  2. Every record write is atomic (the store's contract), so a crash leaves each record old or new.
//  3. Claims and the index are hints, never consulted to decide that X is free. A crash can leave a claim
//     without a lease (the pod's next ADD or GC drops it), a lease whose claim is gone (a second lease
//     for that pod: a leak GC repairs), or a hint too low (extra reads) or too high (a free address
//     skipped until GC resets the hints): each costs reads or an address, never uniqueness.
//  4. Overlapping ranges keep lease.ts's reservation-before-lease order unchanged.
// On etcd each step is one key (claims and shards as keys, a txn on mod_revision per CAS; the claim,
// reservation and shard of an ADD could even share one txn); on Kubernetes shards are IPPool objects
// (resourceVersion), claims and reservations small objects created with POST (409 = exists).
import { log } from '../../lib/log.ts';
import { applyChange, emptyPool, ifnameMatches, lowestFree, planAssign, planCollect, planRelease, sameInstance, type Claimant } from '../alloc/allocator.ts';
import { belongsTo, claim, exhausted, ownerOf, reservationFor, reservationOf, stillOurs, unclaim, type Lease, type PoolTarget } from './single.ts';
import { ensureIndex, readShard, type ShardSnapshot } from './migrate.ts';
import { addressAt } from '../alloc/ranges.ts';
import { CONFLICT, withRetries } from './retry.ts';
import { claimName, clip, hintsOf, indexName, lowerHints, nextShard, raiseHint, roleOf, shardName, shardOf, startShard } from '../alloc/shards.ts';
import type { Allocation, LegacyIpamStore, PoolRecord, Reservation, Versioned } from '../store/types.ts';

/** The offset a claim names, if it is a well-formed claim of `podref`. */
function claimedOffset(found: Versioned<Reservation>, podref: string): bigint | undefined {
  const { offset } = found.value;
  return offset !== undefined && /^\d+$/.test(offset) && found.value.podref === podref ? BigInt(offset) : undefined;
}

/** Deletes the claim of the lease `owner` if it still names `offset` and still belongs to that lease. */
export async function dropClaim(store: LegacyIpamStore, pool: string, owner: Allocation, offset: bigint, deadline: number): Promise<void> {
  const name = claimName(pool, owner.podref, owner.ifname ?? '');
  await withRetries(`ipam: claim ${name}`, deadline, async () => {
    const found = await store.readReservation(name);
    if (!found || claimedOffset(found, owner.podref) !== offset || !belongsTo(found.value, owner)) return undefined;
    return (await store.deleteReservation(name, found.version)) ? undefined : CONFLICT;
  });
}

/**
 * Lowers every hint to `shard` (an address there is being freed). Before the release it writes only
 * when a hint is above `shard` (so a crash after the release cannot leave one too high); after it,
 * always, so the index version changes: an ADD that read the old version and saw the shard full
 * cannot then raise its hint over the freed address.
 */
async function touchIndex(store: LegacyIpamStore, pool: string, shard: bigint, deadline: number, always = true): Promise<void> {
  await withRetries(`ipam: index ${indexName(pool)}`, deadline, async () => {
    const found = await store.readPool(indexName(pool));
    if (!found) return undefined;
    if (!always && Object.values(hintsOf(found.value)).every((hint) => BigInt(hint) <= shard)) return undefined;
    return (await store.writePool(indexName(pool), lowerHints(found.value, shard), found.version)) ? undefined : CONFLICT;
  });
}

/**
 * Removes from one shard the keys `pick` chooses on its current content (re-chosen on every attempt),
 * with the index touched before and after (touchIndex). Returns the removed leases.
 */
async function removeFromShard(
  store: LegacyIpamStore, target: PoolTarget, shard: bigint, deadline: number, pick: (pool: PoolRecord) => string[],
): Promise<Array<[bigint, Allocation]>> {
  const removed = await withRetries(`ipam: pool ${shardName(target.name, shard)}`, deadline, async () => {
    const found = await readShard(store, target, shard);
    if (found.version === undefined) return [];
    const keys = pick(found.pool);
    if (keys.length === 0) return [];
    await touchIndex(store, target.name, shard, deadline, false);
    if (!(await store.writePool(shardName(target.name, shard), applyChange(found.pool, { set: [], remove: keys }), found.version))) return CONFLICT;
    return keys.map((key): [bigint, Allocation] => [BigInt(key), found.pool.allocations[key]!]);
  });
  if (removed.length > 0) await touchIndex(store, target.name, shard, deadline, true);
  return removed;
}

/** Removes the lease at `offset` if the container `id` still holds it (rollback, withdrawal). */
async function removeKeys(store: LegacyIpamStore, target: PoolTarget, offset: bigint, id: string, deadline: number): Promise<void> {
  const key = offset.toString();
  await removeFromShard(store, target, shardOf(offset), deadline, (pool) => (pool.allocations[key]?.id === id ? [key] : []));
}

/** reuse found the claim stale or its address taken: allocate afresh within the same attempt. */
const FRESH = Symbol('fresh');

/** ADD when a claim exists: the lease it names (with the new container ID), or the claim is stale. */
async function reuse(store: LegacyIpamStore, target: PoolTarget, who: Claimant, found: Versioned<Reservation>, skip: Set<string>, now: string, deadline: number): Promise<Lease | typeof CONFLICT | typeof FRESH> {
  const offset = claimedOffset(found, who.podref);
  const shard = offset === undefined ? undefined : await readShard(store, target, shardOf(offset));
  const key = offset?.toString() ?? '';
  const held = shard?.pool.allocations[key];
  if (offset === undefined || !shard || !held || !sameInstance(held, who)) {
    // A claim without its lease: an ADD died between the two writes (one pod's ADDs are serialized by
    // its runtime, so none is in flight). Drop it (this version only) and allocate afresh.
    const name = claimName(target.name, who.podref, who.ifname);
    await withRetries(`ipam: claim ${name}`, deadline, () => store.deleteReservation(name, found.version));
    return FRESH;
  }
  if (target.overlapping && (await claim(store, reservationOf(target, offset), who, now, held, target.networkName)) === 'taken') {
    log.warn(`pool ${target.name}: ${addressAt(target.range, offset)} of ${who.podref} is reserved by another pod; allocating a new address`);
    skip.add(key);
    await removeFromShard(store, target, shardOf(offset), deadline, (pool) => (pool.allocations[key]?.id === held.id ? [key] : []));
    await dropClaim(store, target.name, held, offset, deadline);
    return FRESH;
  }
  const plan = planAssign({ range: shard.pool.range, allocations: { [key]: held } }, target.range, who, now);
  if (plan.kind === 'existing' && plan.change.set.length > 0) {
    if (!(await store.writePool(shardName(target.name, shardOf(offset)), applyChange(shard.pool, plan.change), shard.version))) return CONFLICT;
  }
  // The lease first, then the claim: DEL trusts a claim only when it names the DEL's container, and
  // scans the shards otherwise, so a claim behind (or lost) costs reads, never a release.
  if (found.value.containerid !== who.id || found.value.poduid !== who.uid) await pointClaim(store, target.name, who, now, key);
  return { offset, existing: true };
}

/** Best effort: the pod's claim names `who`'s container and `key`. A claim is a hint, so failure is fine. */
async function pointClaim(store: LegacyIpamStore, pool: string, who: Claimant, now: string, key: string): Promise<void> {
  const name = claimName(pool, who.podref, who.ifname);
  for (let i = 0; i < 4; i++) {
    const found = await store.readReservation(name);
    const mine = reservationFor(who, now, key);
    if (!found) {
      if (await store.createReservation(name, mine)) return;
    } else if (await store.replaceReservation(name, found.version, mine)) return;
  }
  log.warn(`claim ${name}: could not point it at ${who.id}; a DEL will find the lease by scanning the shards`);
}

/**
 * The lowest free offset of one shard that no overlapping pool has reserved, reserving it (overlapping
 * ranges). Reserved ones join `skip` and the scan goes on: a "taken" address is never a retry.
 */
async function pickInShard(
  store: LegacyIpamStore, target: PoolTarget, snapshot: ShardSnapshot, shard: bigint, who: Claimant, now: string, skip: Set<string>,
): Promise<{ offset: bigint; created: boolean } | undefined> {
  const range = clip(target.range, shard);
  for (let offset = lowestFree(snapshot.pool, range, skip); offset !== undefined; offset = lowestFree(snapshot.pool, range, skip)) {
    if (!target.overlapping) return { offset, created: false };
    const outcome = await claim(store, reservationOf(target, offset), who, now, undefined, target.networkName);
    if (outcome !== 'taken') return { offset, created: outcome === 'created' };
    skip.add(offset.toString());
  }
  return undefined;
}

/** ADD for one sharded range: the pod's existing lease, or the lowest free address from the hint on. */
export async function acquireSharded(store: LegacyIpamStore, target: PoolTarget, who: Claimant, deadline: number): Promise<Lease> {
  const skip = new Set<string>();
  const name = claimName(target.name, who.podref, who.ifname);
  return withRetries(`ipam: pool ${target.name}`, deadline, async () => {
    const now = new Date().toISOString();
    const index = await ensureIndex(store, target, deadline);
    const existing = await store.readReservation(name);
    // The claim of an earlier pod of the same name (another UID): that pod may still run (a force-deleted
    // pod on a lost node), so its lease is not ours. This pod gets its own, and the claim is handed over
    // by compare-and-swap; the earlier pod's DEL finds its lease by scanning, GC frees it otherwise.
    const foreign = existing && !sameInstance(existing.value, who) ? existing.version : undefined;
    if (existing && foreign === undefined) {
      const reused = await reuse(store, target, who, existing, skip, now, deadline);
      if (reused !== FRESH) return reused;
    }

    const start = nextShard(target.range, startShard(index.value, target.range));
    let shard = start;
    let found: { offset: bigint; created: boolean; snapshot: ShardSnapshot } | undefined;
    while (shard !== undefined) {
      const snapshot = await readShard(store, target, shard);
      const picked = await pickInShard(store, target, snapshot, shard, who, now, skip);
      if (picked) {
        found = { ...picked, snapshot };
        break;
      }
      shard = nextShard(target.range, shard + 1n);
    }
    // Every shard before `full` was seen full of leases (not of other pools' reservations, which may go
    // without this index hearing of it) since the index was read: raise the hint. A lost swap is fine
    // (a DEL lowered it meanwhile, or another ADD raised it).
    let full = found ? shardOf(found.offset) : shardOf(target.range.last) + 1n;
    for (const key of skip) if (shardOf(BigInt(key)) < full) full = shardOf(BigInt(key));
    if (start !== undefined && full > start) {
      await store.writePool(indexName(target.name), raiseHint(index.value, target.range, full), index.version);
    }
    if (!found) throw exhausted(target, skip.size);
    const { offset, created, snapshot } = found;
    const key = offset.toString();
    const owner = ownerOf(who);
    const mine = reservationFor(who, now, key);
    if (!(await (foreign === undefined ? store.createReservation(name, mine) : store.replaceReservation(name, foreign, mine)))) {
      // The pod's other ADD made (or changed) the claim meanwhile: look again.
      if (created) await unclaim(store, reservationOf(target, offset), owner, deadline);
      return CONFLICT;
    }
    const allocation: Allocation = { ...owner, since: now };
    const next = applyChange(snapshot.pool, { set: [[key, allocation]], remove: [] });
    if (!(await store.writePool(shardName(target.name, shardOf(offset)), next, snapshot.version))) {
      if (created) await unclaim(store, reservationOf(target, offset), owner, deadline);
      await dropClaim(store, target.name, owner, offset, deadline);
      return CONFLICT;
    }
    if (target.overlapping && !(await stillOurs(store, reservationOf(target, offset), who, now, target.networkName))) {
      await removeKeys(store, target, offset, who.id, deadline);
      await dropClaim(store, target.name, owner, offset, deadline);
      skip.add(key);
      return CONFLICT;
    }
    return { offset, existing: false };
  });
}

/** Undoes a new lease of a failed ADD; an existing lease stays. */
export async function rollbackSharded(store: LegacyIpamStore, target: PoolTarget, lease: Lease, who: Claimant, deadline: number): Promise<void> {
  if (lease.existing) return;
  await removeKeys(store, target, lease.offset, who.id, deadline);
  if (target.overlapping) await unclaim(store, reservationOf(target, lease.offset), ownerOf(who), deadline);
  await dropClaim(store, target.name, ownerOf(who), lease.offset, deadline);
}

/** The index, migrating a legacy pool first; undefined when the pool was never written (DEL, CHECK). */
async function indexIfAny(store: LegacyIpamStore, target: PoolTarget, deadline: number): Promise<Versioned<PoolRecord> | undefined> {
  const index = await store.readPool(indexName(target.name));
  if (index) return index;
  if (!(await store.readPool(target.name))) return undefined;
  return ensureIndex(store, target, deadline);
}

/** The shards of a sharded pool that exist, shard 0 (the pool's own name) included. */
export async function shardsOf(store: LegacyIpamStore, pool: string): Promise<bigint[]> {
  const shards: bigint[] = [];
  for (const name of await store.listPools()) {
    const role = roleOf(name);
    if (role.kind === 'shard' && role.pool === pool) shards.push(role.shard);
  }
  return shards.sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
}

/** Is `held` the lease of exactly (container ID, ifname)? The only thing a DEL releases. */
const heldBy = (held: Allocation | undefined, who: Pick<Claimant, 'id' | 'ifname'>): boolean => held !== undefined && held.id === who.id && ifnameMatches(held, who.ifname);

/**
 * DEL for one sharded range: the leases whose current container ID is `who.id`, found through the pod's
 * claim when it names this container, else by scanning every shard (the rare path: a DEL without the
 * pod's CNI_ARGS, a claim that names another container, a repeated DEL). Returns the released leases.
 */
export async function releaseSharded(store: LegacyIpamStore, target: PoolTarget, who: Claimant, deadline: number): Promise<Array<[bigint, Allocation]>> {
  const index = await indexIfAny(store, target, deadline);
  if (!index) return [];
  const found = await store.readReservation(claimName(target.name, who.podref, who.ifname));
  const offset = found && found.value.containerid === who.id ? claimedOffset(found, who.podref) : undefined;
  let released: Array<[bigint, Allocation]> = [];
  if (offset !== undefined) {
    const key = offset.toString();
    released = await removeFromShard(store, target, shardOf(offset), deadline, (pool) => (heldBy(pool.allocations[key], who) ? [key] : []));
  }
  if (released.length === 0) {
    for (const shard of await shardsOf(store, target.name)) {
      released.push(...(await removeFromShard(store, target, shard, deadline, (pool) => planRelease(pool, who).remove)));
    }
  }
  await forgetReleased(store, target, released, deadline);
  if (offset !== undefined && !released.some(([at]) => at === offset)) {
    // The claim names this container, but its address holds no lease of it: an earlier DEL of this
    // container released it and stopped before its cleanup (killed, or out of time). Finish that
    // cleanup; both records go only while they still name this container (a new sandbox's are kept).
    const owner = ownerOf(who);
    if (target.overlapping) await unclaim(store, reservationOf(target, offset), owner, deadline);
    await dropClaim(store, target.name, owner, offset, deadline);
  }
  return released;
}

/** GC of one shard: the leases of `network` that no valid attachment holds. */
export async function collectShard(
  store: LegacyIpamStore, target: PoolTarget, shard: bigint, network: string, valid: ReadonlyArray<{ containerID: string; ifname: string }>, deadline: number,
): Promise<Array<[bigint, Allocation]>> {
  return removeFromShard(store, target, shard, deadline, (pool) => planCollect(pool, network, valid).remove);
}

/** After leases left a shard: their reservations (lease.ts) and their claims go too, if still theirs. */
export async function forgetReleased(store: LegacyIpamStore, target: PoolTarget, released: Array<[bigint, Allocation]>, deadline: number): Promise<void> {
  for (const [offset, allocation] of released) {
    if (target.overlapping) await unclaim(store, reservationOf(target, offset), allocation, deadline);
    await dropClaim(store, target.name, allocation, offset, deadline);
  }
}

/** CHECK: the offset (container ID, ifname) holds, through the pod's claim, else by scanning the shards. */
export async function findSharded(store: LegacyIpamStore, target: PoolTarget, who: Claimant): Promise<bigint | undefined> {
  const found = await store.readReservation(claimName(target.name, who.podref, who.ifname));
  const offset = found && claimedOffset(found, who.podref);
  if (offset !== undefined && offset !== null) {
    const snapshot = await store.readPool(shardName(target.name, shardOf(offset)));
    if (heldBy(snapshot?.value.allocations[offset.toString()], who)) return offset;
  }
  for (const shard of await shardsOf(store, target.name)) {
    const snapshot = await store.readPool(shardName(target.name, shard));
    if (!snapshot) continue;
    const key = planRelease(snapshot.value, who).remove[0];
    if (key !== undefined) return BigInt(key);
  }
  return undefined;
}

/** STATUS: the lowest free offset from the hint on (reads one shard while hints are right). */
export async function lowestFreeSharded(store: LegacyIpamStore, target: PoolTarget, deadline: number): Promise<bigint | undefined> {
  const index = await indexIfAny(store, target, deadline);
  for (let shard = nextShard(target.range, startShard(index?.value, target.range)); shard !== undefined; shard = nextShard(target.range, shard + 1n)) {
    const snapshot = await store.readPool(shardName(target.name, shard));
    const offset = lowestFree(snapshot?.value ?? emptyPool(target.range), clip(target.range, shard));
    if (offset !== undefined) return offset;
  }
  return undefined;
}
