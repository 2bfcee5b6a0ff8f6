// Reading a pool's records and committing a protocol step's writes, the same way for every store.
//
// One policy for a record that holds another range than the config's: whereabouts-style names can
// collide across network_name scopes ("x" + fd00:1::/120 and "x-fd00" + 1::/120 both name
// "x-fd00-1---120"). Such a record is the other scope's: a reader finds nothing of its own in it, and a
// writer refuses to touch it.
//
// Writes go in one commit where the store applies them all-or-nothing (etcd). Otherwise they go one by
// one in the order the protocol gives (reservations and claims before the pool on ADD, the pool before
// them on DEL), and what an ADD created before a failed step is deleted again at the very version it
// created, so nothing of another writer is touched.
import { Code, CniError } from '../../lib/cni/errors.ts';
import { emptyPool } from '../alloc/allocator.ts';
import type { IpamStore, PoolRecord, Reservation, Versioned, Write } from '../store/types.ts';
import type { PoolTarget } from './target.ts';

export interface Snapshot {
  pool: PoolRecord;
  /** undefined: not written yet (or the other scope's), so a write creates it. */
  version: string | undefined;
}

/** For a reader: the record, or an empty one when it is missing or another scope's. */
export async function readForRead(store: IpamStore, target: PoolTarget, name: string, deadline: number): Promise<Snapshot> {
  const found = await store.readPool(name, deadline);
  if (!found || found.value.range !== target.range.cidr) return { pool: emptyPool(target.range), version: undefined };
  return { pool: found.value, version: found.version };
}

/** For a writer: the record (empty when missing); a record of another scope is an error. */
export async function readForWrite(store: IpamStore, target: PoolTarget, name: string, deadline: number): Promise<Snapshot> {
  const found = await store.readPool(name, deadline);
  if (!found) return { pool: emptyPool(target.range), version: undefined };
  if (found.value.range !== target.range.cidr) throw foreignRecord(store, name, found.value.range, target);
  return { pool: found.value, version: found.version };
}

export const isOwnRecord = (record: PoolRecord, target: PoolTarget): boolean => record.range === target.range.cidr;

export const foreignRecord = (store: IpamStore, name: string, range: string, target: PoolTarget): CniError =>
  new CniError(
    Code.IoFailure,
    `pool ${name} in the ${store.description} holds range ${range}, not ${target.range.cidr} of ${target.range.field}.range: another network_name scope uses that name; give this network another network_name`,
  );

export const poolWrite = (name: string, value: PoolRecord, expected: string | undefined): Write => ({ kind: 'pool', name, expected, value });
export const createWrite = (name: string, value: Reservation): Write => ({ kind: 'reservation', name, expected: undefined, value });
export const replaceWrite = (name: string, expected: string, value: Reservation): Write => ({ kind: 'reservation', name, expected, value });
export const deleteWrite = (found: Versioned<Reservation>, name: string): Write => ({ kind: 'reservation', name, expected: found.version, value: null });

/** Commits one write; its new version (undefined for a delete), or false on a conflict. */
export async function commitOne(store: IpamStore, write: Write, deadline: number): Promise<string | undefined | false> {
  const versions = await store.commit([write], deadline);
  return versions === undefined ? false : versions[0];
}

/**
 * An ADD's writes (reservations and claims first, the pool last): all in one commit where they fit,
 * else one by one, deleting what this call created when a later write conflicts. True when all applied.
 * A store failure (StoreUnavailable) leaves what was created: the write that failed may have applied,
 * and an unneeded reservation only blocks an address until GC, where a missing one could duplicate it.
 */
export async function commitAdd(store: IpamStore, writes: ReadonlyArray<Write>, deadline: number): Promise<boolean> {
  if (writes.length <= store.atomicWrites) return writes.length === 0 || (await store.commit(writes, deadline)) !== undefined;
  const created: Write[] = [];
  for (const write of writes) {
    const version = await commitOne(store, write, deadline);
    if (version === false) {
      for (const made of created.reverse()) await commitOne(store, { kind: 'reservation', name: made.name, expected: made.expected!, value: null }, deadline);
      return false;
    }
    if (write.kind === 'reservation' && write.expected === undefined && version !== undefined) created.push({ ...write, expected: version });
  }
  return true;
}

/** True when `writes` go in one commit (so no later check is needed between them). */
export const fitsOneCommit = (store: IpamStore, count: number): boolean => count <= store.atomicWrites;
