// The records of a sharded pool (alloc/shards.ts names them), read and released: listing a pool's
// shards, removing leases from one shard with its index kept right (lease/remove.ts), and what a
// released lease takes with it (its reservation and its claim).
import { claimName, indexName, roleOf, shardName } from '../alloc/shards.ts';
import type { IpamStore, PoolRecord } from '../store/types.ts';
import { isOwnRecord, readForRead, type Snapshot } from './records.ts';
import { removeWithRetries, type Drop } from './remove.ts';
import { reservationOf, type PoolTarget, type Released } from './target.ts';

export interface ShardSnapshot {
  shard: bigint;
  snapshot: Snapshot;
}

/** The shards of the pool that exist (shard 0 is the pool's own name), in order, from one listing. */
export async function listShards(store: IpamStore, target: PoolTarget, deadline: number): Promise<ShardSnapshot[]> {
  const out: ShardSnapshot[] = [];
  for (const record of await store.listPools(target.name, deadline)) {
    const role = roleOf(record.name);
    if (role.kind !== 'shard' || role.pool !== target.name || !isOwnRecord(record.value, target)) continue;
    out.push({ shard: role.shard, snapshot: { pool: record.value, version: record.version } });
  }
  return out.sort((x, y) => (x.shard < y.shard ? -1 : x.shard > y.shard ? 1 : 0));
}

export const readShard = (store: IpamStore, target: PoolTarget, shard: bigint, deadline: number): Promise<Snapshot> =>
  readForRead(store, target, shardName(target.name, shard), deadline);

/** What a lease of a sharded pool takes with it: its reservation (overlapping ranges) and its claim. */
export const shardDrops = (target: PoolTarget) => (released: ReadonlyArray<Released>): Drop[] =>
  released.flatMap(([offset, owner]) => [
    ...(target.overlapping ? [{ name: reservationOf(target, offset), owner }] : []),
    { name: claimName(target.name, owner.podref, owner.ifname ?? ''), owner, offset },
  ]);

/**
 * Removes from one shard the keys `pick` chooses on its current content (re-chosen on every attempt;
 * `first` saves the first read when the caller just listed the shard). Returns the removed leases.
 */
export function removeFromShard(
  store: IpamStore, target: PoolTarget, shard: bigint, deadline: number, pick: (pool: PoolRecord) => string[], first?: Snapshot,
): Promise<Released[]> {
  let known = first;
  return removeWithRetries(store, `ipam: pool ${shardName(target.name, shard)}`, deadline, async () => {
    const snapshot = known ?? (await readShard(store, target, shard, deadline));
    known = undefined;
    return { record: shardName(target.name, shard), snapshot, keys: pick(snapshot.pool), drops: shardDrops(target), index: { name: indexName(target.name), shard } };
  });
}
