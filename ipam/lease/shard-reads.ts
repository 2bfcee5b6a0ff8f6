// A sharded pool's DEL, CHECK, STATUS and GC: finding a pod's lease through its claim or by scanning the
// shards, the lowest free address from the hint on, and collecting leases. None of them creates the
// index: a pool without one has no shards (lease/pool.ts).
import { ifnameMatches, lowestFree, planRelease, planRemove, type Claimant } from '../alloc/allocator.ts';
import { claimName, clip, indexName, isClaimOf, nextShard, shardName, shardOf, startShard } from '../alloc/shards.ts';
import type { Allocation, IpamStore } from '../store/types.ts';
import type { PoolOps } from './pool.ts';
import { commitOne, deleteWrite, poolWrite, readForWrite } from './records.ts';
import { claimedOffset, dropIfOwned } from './reservations.ts';
import { CONFLICT, withRetries } from './retry.ts';
import { listShards, readShard, removeFromShard } from './shard-records.ts';
import { ownerOf, reservationOf, type PoolTarget, type Released } from './target.ts';

/** Is `held` the lease of exactly (container ID, ifname)? The only thing a DEL releases. */
const heldBy = (held: Allocation | undefined, who: Pick<Claimant, 'id' | 'ifname'>): boolean => held !== undefined && held.id === who.id && ifnameMatches(held, who.ifname);

/**
 * Orphaned claims older than `grace` whose lease is gone: an ADD killed between its claim and its shard
 * write, or a lease released by whereabouts. The hints are reset too (a hint left too high by a crashed
 * DEL skips free addresses; none at all costs an ADD a few reads), and the index is always written, so
 * its version changes: an ADD that read it before cannot raise a hint over an address GC freed.
 */
async function repairIndexAndClaims(store: IpamStore, target: PoolTarget, grace: number, deadline: number): Promise<number> {
  await withRetries(`ipam: index ${indexName(target.name)}`, deadline, async () => {
    const index = await store.readPool(indexName(target.name), deadline);
    if (!index) return undefined;
    return (await commitOne(store, poolWrite(indexName(target.name), { ...index.value, hints: {} }, index.version), deadline)) === false ? CONFLICT : undefined;
  });
  // One listing of the shards and one of the claims: a claim is judged against what was listed.
  const leases = new Map<string, Allocation>();
  for (const { snapshot } of await listShards(store, target, deadline)) {
    for (const [key, allocation] of Object.entries(snapshot.pool.allocations)) leases.set(key, allocation);
  }
  let removed = 0;
  const now = Date.now();
  for (const found of await store.listReservations(`${target.name}.claim.`, deadline)) {
    if (!isClaimOf(target.name, found.name)) continue;
    const since = found.value.since ? Date.parse(found.value.since) : Number.NaN;
    if (Number.isFinite(since) && now - since < grace) continue;
    const offset = claimedOffset(found, found.value.podref);
    if (offset !== undefined && leases.get(offset.toString())?.podref === found.value.podref) continue;
    if ((await commitOne(store, deleteWrite(found, found.name), deadline)) !== false) removed++;
  }
  return removed;
}

export const SHARDED_READS: Pick<PoolOps, 'release' | 'find' | 'lowestFree' | 'collect'> = {
  /** DEL: through the pod's claim when it names this container, else by scanning the shards. */
  async release(store, target, who, deadline) {
    const claim = await store.readReservation(claimName(target.name, who.podref, who.ifname), deadline);
    const offset = claim?.value.containerid === who.id ? claimedOffset(claim, who.podref) : undefined;
    const released: Released[] = [];
    if (offset !== undefined) {
      const key = offset.toString();
      released.push(...(await removeFromShard(store, target, shardOf(offset), deadline, (pool) => (heldBy(pool.allocations[key], who) ? [key] : []))));
    }
    if (released.length === 0) {
      for (const { shard, snapshot } of await listShards(store, target, deadline)) {
        released.push(...(await removeFromShard(store, target, shard, deadline, (pool) => planRelease(pool, who).remove, snapshot)));
      }
    }
    if (offset !== undefined && !released.some(([at]) => at === offset)) {
      // The claim names this container, but its address holds no lease of it: an earlier DEL of this
      // container released it and stopped before its cleanup (killed, or out of time). Finish it; both
      // records go only while they still name this container (a new sandbox's are kept).
      const owner = ownerOf(who);
      if (target.overlapping) await dropIfOwned(store, reservationOf(target, offset), owner, deadline);
      await dropIfOwned(store, claimName(target.name, who.podref, who.ifname), owner, deadline, offset);
    }
    return released;
  },

  /** CHECK: the offset (container ID, ifname) holds, through the pod's claim, else by scanning. */
  async find(store, target, who, deadline) {
    const claim = await store.readReservation(claimName(target.name, who.podref, who.ifname), deadline);
    const offset = claimedOffset(claim, who.podref);
    if (offset !== undefined && heldBy((await readShard(store, target, shardOf(offset), deadline)).pool.allocations[offset.toString()], who)) return offset;
    for (const { snapshot } of await listShards(store, target, deadline)) {
      const key = planRelease(snapshot.pool, who).remove[0];
      if (key !== undefined) return BigInt(key);
    }
    return undefined;
  },

  /** STATUS: the lowest free offset from the hint on (one shard read while hints are right). */
  async lowestFree(store, target, deadline) {
    const index = await store.readPool(indexName(target.name), deadline);
    for (let shard = nextShard(target.range, startShard(index?.value, target.range)); shard !== undefined; shard = nextShard(target.range, shard + 1n)) {
      const offset = lowestFree((await readForWrite(store, target, shardName(target.name, shard), deadline)).pool, clip(target.range, shard));
      if (offset !== undefined) return offset;
    }
    return undefined;
  },

  async collect(store, target, doomed, deadline, grace) {
    const released: Released[] = [];
    for (const { shard, snapshot } of await listShards(store, target, deadline)) {
      released.push(...(await removeFromShard(store, target, shard, deadline, (pool) => planRemove(pool, doomed).remove, snapshot)));
    }
    return { released, repaired: await repairIndexAndClaims(store, target, grace, deadline) };
  },
};
