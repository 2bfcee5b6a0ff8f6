// The one way a lease leaves a pool (DEL, GC, a failed ADD's rollback, a withdrawal), for one-record
// and sharded pools alike. Order, where the store cannot do it in one commit:
//   1. a sharded pool's index: any hint above this shard comes down first, so a crash after the
//      release cannot leave a hint that skips the freed address;
//   2. the record, by compare-and-swap (the lease is free from here on);
//   3. the index again, always, so its version changes: an ADD that read it before and saw this shard
//      full cannot then raise its hint over the freed address;
//   4. the lease's reservation and claim, each only while it still belongs to that lease: an ADD of the
//      pod's new sandbox that ran in between has made them its own, and keeps them.
// A crash between 2 and 4 leaves a reservation without a lease: it blocks the address until GC, never
// duplicates it (the reverse order could). Where the store commits atomically, all of it is one commit,
// and the index is in it only when a hint must come down: written by every DEL it would make all DELs of
// a pool race for one record. Then an ADD that saw the shard full just before may still raise its hint
// over the freed address; the next DEL below the hint, or GC, brings it back (an address skipped a
// while, never one handed out twice).
import { applyChange } from '../alloc/allocator.ts';
import { lowerHints } from '../alloc/shards.ts';
import type { Allocation, IpamStore, PoolRecord, Write } from '../store/types.ts';
import { commitOne, fitsOneCommit, poolWrite, type Snapshot } from './records.ts';
import { dropIfOwned, dropWrite } from './reservations.ts';
import { CONFLICT, withRetries } from './retry.ts';
import type { Released } from './target.ts';

/** A reservation or claim that goes with a released lease, if it still belongs to it. */
export interface Drop {
  name: string;
  owner: Allocation;
  /** For a claim: the offset it must still name. */
  offset?: bigint;
}

export interface Removal {
  record: string;
  snapshot: Snapshot;
  keys: ReadonlyArray<string>;
  drops: (released: ReadonlyArray<Released>) => Drop[];
  /** A sharded pool: its index and the shard the keys are in. */
  index?: { name: string; shard: bigint };
}

/** Does some config's hint point past `shard` (so freeing an address there must lower it)? */
function hintsAbove(record: PoolRecord, shard: bigint): boolean {
  const hints = (record as { hints?: Record<string, string> }).hints ?? {};
  return Object.values(hints).some((hint) => /^\d+$/.test(hint) && BigInt(hint) > shard);
}

/** Lowers the index's hints to `shard`; with `always`, writes even when none is above (a new version). */
async function touchIndex(store: IpamStore, index: { name: string; shard: bigint }, deadline: number, always: boolean): Promise<void> {
  await withRetries(`ipam: index ${index.name}`, deadline, async () => {
    const found = await store.readPool(index.name, deadline);
    if (!found) return undefined;
    if (!always && !hintsAbove(found.value, index.shard)) return undefined;
    return (await commitOne(store, poolWrite(index.name, lowerHints(found.value, index.shard), found.version), deadline)) === false ? CONFLICT : undefined;
  });
}

/**
 * Removes what `choose` picks from one record, re-read and re-chosen on every attempt, with the steps
 * above; retried on conflicts and outages inside the deadline. A commit that failed with an outage may
 * still have applied (a lost reply): when the next attempt finds those leases gone, their reservations
 * and claims are dropped all the same (each only while it still belongs to that lease), so a lost
 * reply does not leave them to block the address until GC.
 */
export async function removeWithRetries(
  store: IpamStore, what: string, deadline: number, choose: () => Promise<Removal>,
): Promise<Released[]> {
  let attempted: { removal: Removal; released: Released[] } | undefined;
  return withRetries(what, deadline, async () => {
    const removal = await choose();
    if (attempted) {
      const gone = attempted.released.filter(([offset, lease]) => removal.snapshot.pool.allocations[offset.toString()]?.id !== lease.id);
      for (const drop of attempted.removal.drops(gone)) await dropIfOwned(store, drop.name, drop.owner, deadline, drop.offset);
      attempted = undefined;
    }
    const released = removal.keys.map((key): Released => [BigInt(key), removal.snapshot.pool.allocations[key]!]);
    attempted = { removal, released };
    const outcome = await removeLeases(store, removal, deadline);
    attempted = undefined; // answered: applied, or a conflict that applied nothing
    return outcome;
  });
}

/**
 * Removes `keys` from the record as read in `snapshot`, with the steps above. CONFLICT when the record
 * changed since it was read (the caller re-reads and chooses again); otherwise the released leases.
 */
async function removeLeases(store: IpamStore, removal: Removal, deadline: number): Promise<Released[] | typeof CONFLICT> {
  const { record, snapshot, keys, index } = removal;
  if (keys.length === 0 || snapshot.version === undefined) return [];
  const released = keys.map((key): Released => [BigInt(key), snapshot.pool.allocations[key]!]);
  const drops = removal.drops(released);
  const write = poolWrite(record, applyChange(snapshot.pool, { set: [], remove: [...keys] }), snapshot.version);
  if (fitsOneCommit(store, 2 + drops.length)) {
    const writes: Write[] = [write];
    const found = index && (await store.readPool(index.name, deadline));
    if (index && found && hintsAbove(found.value, index.shard)) writes.push(poolWrite(index.name, lowerHints(found.value, index.shard), found.version));
    for (const drop of drops) {
      const dropping = dropWrite(await store.readReservation(drop.name, deadline), drop.name, drop.owner, drop.offset);
      if (dropping) writes.push(dropping);
    }
    return (await store.commit(writes, deadline)) === undefined ? CONFLICT : released;
  }
  if (index) await touchIndex(store, index, deadline, false);
  if ((await commitOne(store, write, deadline)) === false) return CONFLICT;
  if (index) await touchIndex(store, index, deadline, true);
  for (const drop of drops) await dropIfOwned(store, drop.name, drop.owner, deadline, drop.offset);
  return released;
}
