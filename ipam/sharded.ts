// ADD, DEL, rollback and lookups for a pool cut into shards (ipam/shards.ts names the records). The
// write order follows ipam/lease.ts and adds the claim:
//   ADD: claim (create-if-absent) -> reservation (overlapping ranges) -> the owning shard by CAS.
//   DEL: index hints lowered -> shard by CAS -> index touched again -> reservation -> claim.
//
// Why no address is ever handed out twice, whatever crashes (kill -9 between any two writes):
//  1. Offset X is granted only by a compare-and-swap of the ONE record that owns it, shard X>>10 (after
//     migration, ipam/migrate.ts, no other record holds X: allocation waits for the index, which is
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
import { log } from '../lib/log.ts';
import { applyChange, emptyPool, ifnameMatches, lowestFree, planAssign, planRelease, type Claimant } from './allocator.ts';
import { claim, exhausted, reservationOf, stillOurs, unclaim, type Lease, type PoolTarget } from './lease.ts';
import { ensureIndex, readShard } from './migrate.ts';
import { addressAt } from './ranges.ts';
import { CONFLICT, withRetries } from './retry.ts';
import { claimName, clip, hintsOf, indexName, lowerHints, nextShard, raiseHint, shardName, shardOf, startShard } from './shards.ts';
import type { Allocation, IpamStore, Reservation, Versioned } from './store/types.ts';

type Holder = Pick<Claimant, 'podref' | 'ifname'>;

/** The offset a claim names, if it is a well-formed claim of `who`. */
function claimedOffset(found: Versioned<Reservation>, who: Holder): bigint | undefined {
  const { offset, podref } = found.value;
  return offset !== undefined && /^\d+$/.test(offset) && podref === who.podref ? BigInt(offset) : undefined;
}

/** Deletes the claim of `who` if it still names `offset`: a claim moves only by delete and create. */
export async function dropClaim(store: IpamStore, pool: string, who: Holder, offset: bigint, deadline: number): Promise<void> {
  const name = claimName(pool, who.podref, who.ifname);
  await withRetries(`ipam: claim ${name}`, deadline, async () => {
    const found = await store.readReservation(name);
    if (!found || claimedOffset(found, who) !== offset) return undefined;
    return (await store.deleteReservation(name, found.version)) ? undefined : CONFLICT;
  });
}

/**
 * Lowers every hint to `shard` (an address there is being freed). Before the release it writes only
 * when a hint is above `shard` (so a crash after the release cannot leave one too high); after it,
 * always, so the index version changes: an ADD that read the old version and saw the shard full
 * cannot then raise its hint over the freed address.
 */
async function touchIndex(store: IpamStore, pool: string, shard: bigint, deadline: number, always = true): Promise<void> {
  await withRetries(`ipam: index ${indexName(pool)}`, deadline, async () => {
    const found = await store.readPool(indexName(pool));
    if (!found) return undefined;
    if (!always && Object.values(hintsOf(found.value)).every((hint) => BigInt(hint) <= shard)) return undefined;
    return (await store.writePool(indexName(pool), lowerHints(found.value, shard), found.version)) ? undefined : CONFLICT;
  });
}

/** Removes `keys` of one shard if `who`'s container still holds them (rollback, withdrawal). */
async function removeKeys(store: IpamStore, target: PoolTarget, offset: bigint, who: Claimant, deadline: number): Promise<void> {
  const shard = shardOf(offset);
  const key = offset.toString();
  const removed = await withRetries(`ipam: pool ${shardName(target.name, shard)}`, deadline, async () => {
    const found = await readShard(store, target, shard);
    if (found.pool.allocations[key]?.id !== who.id) return false;
    await touchIndex(store, target.name, shard, deadline, false);
    return (await store.writePool(shardName(target.name, shard), applyChange(found.pool, { set: [], remove: [key] }), found.version)) ? true : CONFLICT;
  });
  if (removed) await touchIndex(store, target.name, shard, deadline);
}

/** ADD when a claim exists: the lease it names (with the new container ID), or the claim is stale. */
async function reuse(store: IpamStore, target: PoolTarget, who: Claimant, found: Versioned<Reservation>, skip: Set<string>, now: string, deadline: number): Promise<Lease | typeof CONFLICT> {
  const name = claimName(target.name, who.podref, who.ifname);
  const offset = claimedOffset(found, who);
  const shard = offset === undefined ? undefined : await readShard(store, target, shardOf(offset));
  const key = offset?.toString() ?? '';
  const held = shard?.pool.allocations[key];
  if (offset === undefined || !shard || !held || held.podref !== who.podref || !ifnameMatches(held, who.ifname)) {
    // A claim without its lease: an ADD died between the two writes (one pod's ADDs are serialized by
    // its runtime, so none is in flight). Drop it and allocate afresh.
    await store.deleteReservation(name, found.version);
    return CONFLICT;
  }
  if (target.overlapping && (await claim(store, reservationOf(target, offset), who, now)) === 'taken') {
    log.warn(`pool ${target.name}: ${addressAt(target.range, offset)} of ${who.podref} is reserved by another pod; allocating a new address`);
    skip.add(key);
    const next = applyChange(shard.pool, { set: [], remove: [key] });
    if (!(await store.writePool(shardName(target.name, shardOf(offset)), next, shard.version))) return CONFLICT;
    await dropClaim(store, target.name, who, offset, deadline);
    return CONFLICT;
  }
  const plan = planAssign({ range: shard.pool.range, allocations: { [key]: held } }, target.range, who, now);
  if (plan.kind === 'existing' && plan.change.set.length > 0) {
    if (!(await store.writePool(shardName(target.name, shardOf(offset)), applyChange(shard.pool, plan.change), shard.version))) return CONFLICT;
  }
  return { offset, existing: true };
}

/** ADD for one sharded range: the pod's existing lease, or the lowest free address from the hint on. */
export async function acquireSharded(store: IpamStore, target: PoolTarget, who: Claimant, deadline: number): Promise<Lease> {
  const skip = new Set<string>();
  const name = claimName(target.name, who.podref, who.ifname);
  return withRetries(`ipam: pool ${target.name}`, deadline, async () => {
    const now = new Date().toISOString();
    const index = await ensureIndex(store, target, deadline);
    const existing = await store.readReservation(name);
    if (existing) return reuse(store, target, who, existing, skip, now, deadline);

    const start = nextShard(target.range, startShard(index.value, target.range));
    let shard = start;
    let found: { offset: bigint; snapshot: Awaited<ReturnType<typeof readShard>> } | undefined;
    while (shard !== undefined) {
      const snapshot = await readShard(store, target, shard);
      const offset = lowestFree(snapshot.pool, clip(target.range, shard), skip);
      if (offset !== undefined) {
        found = { offset, snapshot };
        break;
      }
      shard = nextShard(target.range, shard + 1n);
    }
    const reached = found ? shardOf(found.offset) : shardOf(target.range.last) + 1n;
    if (skip.size === 0 && start !== undefined && reached > start) {
      // Every shard before `reached` was seen full since the index was read: raise the hint. A lost
      // swap is fine (a DEL lowered it meanwhile, or another ADD raised it).
      await store.writePool(indexName(target.name), raiseHint(index.value, target.range, reached), index.version);
    }
    if (!found) throw exhausted(target, skip.size);
    const { offset, snapshot } = found;
    const key = offset.toString();
    const mine: Reservation = { containerid: who.id, podref: who.podref, ifname: who.ifname, since: now, offset: key };
    if (!(await store.createReservation(name, mine))) return CONFLICT; // the pod's other ADD: look again
    let created = false;
    if (target.overlapping) {
      const outcome = await claim(store, reservationOf(target, offset), who, now);
      if (outcome === 'taken') {
        skip.add(key);
        await dropClaim(store, target.name, who, offset, deadline);
        return CONFLICT;
      }
      created = outcome === 'created';
    }
    const allocation: Allocation = { id: who.id, podref: who.podref, ifname: who.ifname, since: now, network: who.network };
    const next = applyChange(snapshot.pool, { set: [[key, allocation]], remove: [] });
    if (!(await store.writePool(shardName(target.name, shardOf(offset)), next, snapshot.version))) {
      if (created) await unclaim(store, reservationOf(target, offset), who, deadline);
      await dropClaim(store, target.name, who, offset, deadline);
      return CONFLICT;
    }
    if (target.overlapping && !(await stillOurs(store, reservationOf(target, offset), who, now))) {
      await removeKeys(store, target, offset, who, deadline);
      await dropClaim(store, target.name, who, offset, deadline);
      skip.add(key);
      return CONFLICT;
    }
    return { offset, existing: false };
  });
}

/** Undoes a new lease of a failed ADD; an existing lease stays. */
export async function rollbackSharded(store: IpamStore, target: PoolTarget, lease: Lease, who: Claimant, deadline: number): Promise<void> {
  if (lease.existing) return;
  await removeKeys(store, target, lease.offset, who, deadline);
  if (target.overlapping) await unclaim(store, reservationOf(target, lease.offset), who, deadline);
  await dropClaim(store, target.name, who, lease.offset, deadline);
}

/** The index, migrating a legacy pool first; undefined when the pool was never written (DEL, CHECK). */
async function indexIfAny(store: IpamStore, target: PoolTarget, deadline: number): Promise<boolean> {
  if (await store.readPool(indexName(target.name))) return true;
  if (!(await store.readPool(target.name))) return false;
  await ensureIndex(store, target, deadline);
  return true;
}

/** DEL for one sharded range, found through the claim. Returns the released leases. */
export async function releaseSharded(store: IpamStore, target: PoolTarget, who: Claimant, deadline: number): Promise<Array<[bigint, Allocation]>> {
  if (!(await indexIfAny(store, target, deadline))) return [];
  const name = claimName(target.name, who.podref, who.ifname);
  let shard = 0n;
  const released = await withRetries(`ipam: pool ${target.name}`, deadline, async () => {
    const found = await store.readReservation(name);
    const offset = found && claimedOffset(found, who);
    if (!found || offset === undefined) return [];
    shard = shardOf(offset);
    const snapshot = await readShard(store, target, shard);
    const held = snapshot.pool.allocations[offset.toString()];
    if (!held || held.podref !== who.podref) {
      await store.deleteReservation(name, found.version); // a claim without its lease
      return [];
    }
    const change = planRelease(snapshot.pool, who);
    if (change.remove.length === 0) return []; // a late DEL of a replaced sandbox
    await touchIndex(store, target.name, shard, deadline, false);
    if (!(await store.writePool(shardName(target.name, shard), applyChange(snapshot.pool, change), snapshot.version))) return CONFLICT;
    return change.remove.map((key): [bigint, Allocation] => [BigInt(key), snapshot.pool.allocations[key]!]);
  });
  if (released.length > 0) await touchIndex(store, target.name, shard, deadline);
  await forgetReleased(store, target, released, deadline);
  return released;
}

/** After leases left a shard: their reservations (lease.ts) and their claims go too. */
export async function forgetReleased(store: IpamStore, target: PoolTarget, released: Array<[bigint, Allocation]>, deadline: number): Promise<void> {
  for (const [offset, allocation] of released) {
    const who = { podref: allocation.podref, ifname: allocation.ifname ?? '' };
    if (target.overlapping) await unclaim(store, reservationOf(target, offset), who, deadline);
    await dropClaim(store, target.name, who, offset, deadline);
  }
}

/** CHECK: the offset (container ID, ifname) holds, through the pod's claim. */
export async function findSharded(store: IpamStore, target: PoolTarget, who: Claimant): Promise<bigint | undefined> {
  const found = await store.readReservation(claimName(target.name, who.podref, who.ifname));
  const offset = found && claimedOffset(found, who);
  if (offset === undefined || offset === null) return undefined;
  const snapshot = await store.readPool(shardName(target.name, shardOf(offset)));
  const held = snapshot?.value.allocations[offset.toString()];
  return held && held.id === who.id && ifnameMatches(held, who.ifname) ? offset : undefined;
}

/** STATUS: the lowest free offset from the hint on (reads one shard while hints are right). */
export async function lowestFreeSharded(store: IpamStore, target: PoolTarget, deadline: number): Promise<bigint | undefined> {
  const index = (await indexIfAny(store, target, deadline)) ? await store.readPool(indexName(target.name)) : undefined;
  for (let shard = nextShard(target.range, startShard(index?.value, target.range)); shard !== undefined; shard = nextShard(target.range, shard + 1n)) {
    const snapshot = await store.readPool(shardName(target.name, shard));
    const offset = lowestFree(snapshot?.value ?? emptyPool(target.range), clip(target.range, shard));
    if (offset !== undefined) return offset;
  }
  return undefined;
}
