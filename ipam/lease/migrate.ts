// A big pool's first touch by the sharded code: a whole-range record written before sharding (by an
// earlier Underlay, or by whereabouts) holds leases at any offset in the record named like shard 0.
// Migration moves them where the sharded code looks, then creates the index; nothing is allocated in a
// big pool before its index exists, so no ADD can pick an address that a legacy entry still holds.
//   1. Copy every lease owned by shard k > 0 into shard k (CAS, merged: an offset already there is
//      kept, never overwritten).
//   2. Create the claim of every lease (create-if-absent), so idempotent ADD and DEL find it.
//   3. Remove the copied leases from shard 0 (CAS; only those the shard holds with the same container).
//   4. Create the index.
// Every step is idempotent, so a crash anywhere just lets the next operation redo the rest; a lease is
// always in shard 0, its own shard, or both (the same lease), so it is never lost or handed out. Two
// migrators racing with a DEL can at worst copy back a lease that was just released (a leak GC clears).
// The claims make this one-time step cost one small write per legacy lease.
import { applyChange } from '../alloc/allocator.ts';
import { byShard, claimName, emptyIndex, indexName, shardName } from '../alloc/shards.ts';
import type { Allocation, IpamStore, PoolRecord, Reservation, Versioned } from '../store/types.ts';
import { commitOne, createWrite, poolWrite, readForWrite } from './records.ts';
import { CONFLICT, withRetries } from './retry.ts';
import type { PoolTarget } from './target.ts';

/** The pool's index, after migrating a legacy record if there is no index yet. Writes: ADD, DEL, GC only. */
export async function ensureIndex(store: IpamStore, target: PoolTarget, deadline: number): Promise<Versioned<PoolRecord>> {
  const name = indexName(target.name);
  // Retried as a whole: a store outage (a lock held too long) is "try again", never a final error.
  return withRetries(`ipam: index ${name}`, deadline, async () => {
    const found = await store.readPool(name, deadline);
    if (found) return found;
    await migrate(store, target, deadline);
    const version = await commitOne(store, poolWrite(name, emptyIndex(target.range), undefined), deadline);
    if (version !== false && version !== undefined) return { value: emptyIndex(target.range), version };
    return (await store.readPool(name, deadline)) ?? CONFLICT; // made by another migrator, or gone again: look again
  });
}

async function migrate(store: IpamStore, target: PoolTarget, deadline: number): Promise<void> {
  const legacy = (await readForWrite(store, target, target.name, deadline)).pool;
  const groups = byShard(legacy);
  const copied: string[] = [];
  for (const [shard, keys] of groups) {
    if (shard === 0n) continue;
    await withRetries(`ipam: pool ${shardName(target.name, shard)}`, deadline, async () => {
      const current = await readForWrite(store, target, shardName(target.name, shard), deadline);
      const set: Array<[string, Allocation]> = [];
      for (const key of keys) {
        if (current.pool.allocations[key] === undefined) set.push([key, legacy.allocations[key]!]);
      }
      if (set.length > 0 && (await commitOne(store, poolWrite(shardName(target.name, shard), applyChange(current.pool, { set, remove: [] }), current.version), deadline)) === false) {
        return CONFLICT;
      }
      copied.push(...keys);
      return undefined;
    });
  }
  const since = new Date().toISOString();
  for (const [key, a] of Object.entries(legacy.allocations)) {
    if (!/^\d+$/.test(key)) continue;
    const claim: Reservation = { containerid: a.id, podref: a.podref, ifname: a.ifname, since, offset: key };
    if (a.poduid !== undefined) claim.poduid = a.poduid;
    await commitOne(store, createWrite(claimName(target.name, a.podref, a.ifname ?? ''), claim), deadline); // false: it exists
  }
  if (copied.length === 0) return;
  await withRetries(`ipam: pool ${target.name}`, deadline, async () => {
    const current = await readForWrite(store, target, target.name, deadline);
    const remove = copied.filter((key) => current.pool.allocations[key]?.id === legacy.allocations[key]!.id);
    if (remove.length === 0) return undefined;
    return (await commitOne(store, poolWrite(target.name, applyChange(current.pool, { set: [], remove }), current.version), deadline)) === false ? CONFLICT : undefined;
  });
}
