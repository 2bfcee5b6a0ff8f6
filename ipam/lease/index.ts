// A sharded pool's index: per config, the lowest shard that may have room (alloc/shards.ts). It is
// written before any shard of the pool, and its presence is what marks the pool as sharded
// (lease/pool.ts): a pool Underlay did not create in shards has none, and stays one record.
import { emptyIndex, indexName } from '../alloc/shards.ts';
import type { IpamStore, PoolRecord, Versioned } from '../store/types.ts';
import { commitOne, poolWrite } from './records.ts';
import { CONFLICT, withRetries } from './retry.ts';
import type { PoolTarget } from './target.ts';

/** The pool's index, created empty if there is none yet. Writes: ADD only. */
export async function ensureIndex(store: IpamStore, target: PoolTarget, deadline: number): Promise<Versioned<PoolRecord>> {
  const name = indexName(target.name);
  return withRetries(`ipam: index ${name}`, deadline, async () => {
    const found = await store.readPool(name, deadline);
    if (found) return found;
    const version = await commitOne(store, poolWrite(name, emptyIndex(target.range), undefined), deadline);
    if (version !== false && version !== undefined) return { value: emptyIndex(target.range), version };
    return (await store.readPool(name, deadline)) ?? CONFLICT; // made by another ADD: look again
  });
}
