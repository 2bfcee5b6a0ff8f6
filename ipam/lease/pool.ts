// How one pool is worked, chosen once per pool and verb: as one whereabouts IPPool record
// (lease/single.ts), or cut into shards (lease/sharded.ts). ADD, DEL, CHECK, STATUS, GC and the
// reconciler all go through these operations; none of them asks which kind of pool it has.
//
// A pool of up to 1,024 addresses is one record. A bigger one is sharded only when Underlay creates it
// (the index record marks it, written before any shard). A big pool that already exists as one record
// without an index (whereabouts made it, or an Underlay before shards) stays one record, exactly as
// whereabouts keeps it: a whereabouts still running on other nodes during a move then keeps seeing
// every address as taken, and nothing has to be moved (or granted to the reconciler) to take it over.
import type { Claimant } from '../alloc/allocator.ts';
import { indexName, isSharded } from '../alloc/shards.ts';
import type { Allocation, IpamStore } from '../store/types.ts';
import { SHARDED } from './sharded.ts';
import { SINGLE_RECORD } from './single.ts';
import type { Lease, PodGone, PoolTarget, Released } from './target.ts';

export interface PoolOps {
  /**
   * ADD: the pod's existing lease (or its gone predecessor's, when `podGone` says so: a StatefulSet pod
   * keeps its address), or the lowest free address.
   */
  acquire(store: IpamStore, target: PoolTarget, who: Claimant, deadline: number, podGone?: PodGone): Promise<Lease>;
  /** Undoes a new lease of a failed ADD; an existing lease (the pod had it before) stays. */
  rollback(store: IpamStore, target: PoolTarget, lease: Lease, who: Claimant, deadline: number): Promise<void>;
  /** DEL: the leases of exactly (container ID, ifname); none is not an error. */
  release(store: IpamStore, target: PoolTarget, who: Claimant, deadline: number): Promise<Released[]>;
  /** CHECK: the offset (container ID, ifname) holds, if any. Never writes. */
  find(store: IpamStore, target: PoolTarget, who: Claimant, deadline: number): Promise<bigint | undefined>;
  /** STATUS: the lowest free offset, if any. Never writes. */
  lowestFree(store: IpamStore, target: PoolTarget, deadline: number): Promise<bigint | undefined>;
  /**
   * GC and the reconciler: releases every lease `doomed` picks, and repairs what crashes left that is
   * older than `graceMs` (younger may be an ADD in flight). `repaired` counts the records removed.
   */
  collect(
    store: IpamStore, target: PoolTarget, doomed: (allocation: Allocation) => boolean, deadline: number, graceMs: number,
  ): Promise<{ released: Released[]; repaired: number }>;
}

export async function opsFor(store: IpamStore, target: PoolTarget, deadline: number): Promise<PoolOps> {
  if (!isSharded(target.range)) return SINGLE_RECORD;
  const index = indexName(target.name);
  if (await store.readPool(index, deadline)) return SHARDED;
  if (!(await store.readPool(target.name, deadline))) return SHARDED;
  // A record of the pool's name and no index: a one-record pool, or the first shard of a pool an ADD
  // began sharding after the index was read. The index is written before any shard, so reading it
  // again, now that the record has been seen, tells them apart (a one-record pool costs one more read).
  return (await store.readPool(index, deadline)) ? SHARDED : SINGLE_RECORD;
}
