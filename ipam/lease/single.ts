// Taking and giving back one lease in one pool, against a store, with retries. The order of the writes
// is what keeps two pools that share addresses (overlapping ranges, same network_name) from handing out
// the same one:
//   ADD: reservation first (create-if-absent), then the pool by compare-and-swap. A lost swap deletes
//        the reservation again. A reservation without a lease (a crash in between) only blocks an
//        address until GC clears it; a lease never exists without a reservation, and a lease whose
//        reservation turns out to be another pod's after the swap is withdrawn before it is returned.
//   DEL: releases only the leases whose current container ID is the DEL's (never by pod), then the
//        reservation, only if it still belongs to the released lease (its container ID): an ADD of the
//        pod's new sandbox that ran in between has made the reservation its own (claim renews the holder
//        by compare-and-swap), and keeps it. A DEL killed between the two leaves a reservation without a
//        lease: it only blocks the address until GC removes it.
import { Code, CniError } from '../../lib/cni/errors.ts';
import { log } from '../../lib/log.ts';
import { applyChange, emptyPool, isEmptyChange, newAllocation, planAssign, planRelease, sameInstance, type Claimant } from '../alloc/allocator.ts';
import { reservationName } from '../alloc/names.ts';
import { addressAt, spanOf, type IpRange } from '../alloc/ranges.ts';
import { CONFLICT, withRetries } from './retry.ts';
import type { Allocation, LegacyIpamStore, PoolRecord, Reservation } from '../store/types.ts';

/** Plugin-specific CNI error code (the spec leaves 100+ to plugins): no free address in a range. */
export const POOL_EXHAUSTED = 100;

/** One pool as a config sees it: the store's record name, the range rules, the reservation scope. */
export interface PoolTarget {
  name: string;
  range: IpRange;
  networkName: string;
  overlapping: boolean;
}

export interface Lease {
  offset: bigint;
  /** True when the pod already held it (idempotent ADD): a failed ADD must not release it. */
  existing: boolean;
}

/**
 * Does the reservation (or claim) belong to the lease `owner`? Its container ID is the lease's; a record
 * without a container ID (whereabouts may omit it) falls back to the pod (podref, ifname, and UID when
 * both have one).
 */
export function belongsTo(reservation: Reservation, owner: Allocation): boolean {
  if (reservation.podref !== owner.podref) return false;
  if (reservation.ifname && owner.ifname && reservation.ifname !== owner.ifname) return false;
  if (reservation.containerid) return reservation.containerid === owner.id;
  return reservation.poduid === undefined || owner.poduid === undefined || reservation.poduid === owner.poduid;
}

/** The lease `who` is taking, as the owner its reservations are judged against. */
export const ownerOf = (who: Claimant): Allocation => newAllocation(who, '');

export const reservationOf = (target: PoolTarget, offset: bigint): string =>
  reservationName(target.networkName, target.range.family, target.range.network + offset);

async function readPool(store: LegacyIpamStore, target: PoolTarget): Promise<{ pool: PoolRecord; version: string | undefined }> {
  const snapshot = await store.readPool(target.name);
  if (!snapshot) return { pool: emptyPool(target.range), version: undefined };
  if (snapshot.value.range !== target.range.cidr) {
    throw new CniError(Code.IoFailure, `pool ${target.name} in the ${store.description} holds range ${snapshot.value.range}, not ${target.range.cidr}`);
  }
  return { pool: snapshot.value, version: snapshot.version };
}

/** A reservation of ours older than this is renewed when reused, so GC cannot take it for an orphan. */
const RENEW_AFTER_MS = 60_000;

/** The record `who` writes: a claim when `offset` is given, else an address reservation of `scope`. */
export const reservationFor = (who: Claimant, now: string, offset?: string, scope?: string): Reservation => {
  const mine: Reservation = { containerid: who.id, podref: who.podref, ifname: who.ifname, since: now };
  if (who.uid !== undefined) mine.poduid = who.uid;
  if (offset !== undefined) mine.offset = offset;
  if (scope !== undefined) mine.networkname = scope;
  return mine;
};

/**
 * Creates the reservation, or finds it already held by this pod instance ('ours': same podref, ifname
 * and UID when both have one, or the lease `previous` that this ADD takes over) or by another ('taken').
 * A reservation of ours that names another container, or is old, is rewritten to this container by
 * compare-and-swap: a concurrent DEL of the earlier container then sees it is no longer its own, and a
 * GC that judged the old version an orphan cannot delete the new one.
 */
export async function claim(store: LegacyIpamStore, name: string, who: Claimant, now: string, previous?: Allocation, scope?: string): Promise<'created' | 'ours' | 'taken'> {
  const mine = reservationFor(who, now, undefined, scope);
  for (let i = 0; i < 8; i++) {
    const found = await store.readReservation(name);
    if (!found) {
      if (await store.createReservation(name, mine)) return 'created';
      continue; // created by someone else between the two calls: look again
    }
    if (!sameInstance(found.value, who) && !(previous && belongsTo(found.value, previous))) return 'taken';
    const age = Date.parse(now) - Date.parse(found.value.since ?? '');
    const current = found.value.containerid === who.id && found.value.poduid === mine.poduid && found.value.networkname === mine.networkname && Number.isFinite(age) && age <= RENEW_AFTER_MS;
    if (current) return 'ours';
    if (await store.replaceReservation(name, found.version, mine)) return 'ours';
    // Changed or gone meanwhile: look again.
  }
  return 'taken';
}

/** Deletes the reservation if it still belongs to the lease `owner`; leaves any other alone. */
export async function unclaim(store: LegacyIpamStore, name: string, owner: Allocation, deadline: number): Promise<void> {
  await withRetries(`ipam: reservation ${name}`, deadline, async () => {
    const found = await store.readReservation(name);
    if (!found || !belongsTo(found.value, owner)) return undefined;
    return (await store.deleteReservation(name, found.version)) ? undefined : CONFLICT;
  });
}

export function exhausted(target: PoolTarget, reservedElsewhere: number): CniError {
  const { range } = target;
  const elsewhere = reservedElsewhere > 0 ? `, ${reservedElsewhere} of them reserved by overlapping ranges` : '';
  return new CniError(
    POOL_EXHAUSTED,
    `pool exhausted: ${range.field}.range = ${JSON.stringify(range.source)} has no free address: all ${range.size} allocatable addresses in ${spanOf(range)} are leased${elsewhere}`,
  );
}

/** ADD for one range: the pod's existing lease or the lowest free address. */
export async function acquire(store: LegacyIpamStore, target: PoolTarget, who: Claimant, deadline: number): Promise<Lease> {
  const skip = new Set<string>();
  return withRetries(`ipam: pool ${target.name}`, deadline, async () => {
    const now = new Date().toISOString();
    const { pool: stored, version } = await readPool(store, target);
    let pool = stored;
    let plan = planAssign(pool, target.range, who, now, skip);
    let created = false;
    for (;;) {
      if (plan.kind === 'exhausted') throw exhausted(target, skip.size);
      if (!target.overlapping) break;
      const key = plan.offset.toString();
      const previous = plan.kind === 'existing' ? pool.allocations[key] : undefined;
      const outcome = await claim(store, reservationOf(target, plan.offset), who, now, previous, target.networkName);
      if (outcome !== 'taken') {
        created = outcome === 'created';
        break;
      }
      if (plan.kind === 'existing') {
        // Our lease, another pod's reservation: the address is in use twice. Give ours up for a new one.
        log.warn(`pool ${target.name}: ${addressAt(target.range, plan.offset)} of ${who.podref} is reserved by another pod; allocating a new address`);
        pool = applyChange(pool, { set: [], remove: [key] });
      }
      skip.add(key);
      plan = planAssign(pool, target.range, who, now, skip);
    }
    const dirty = pool !== stored || !isEmptyChange(plan.change);
    if (dirty && !(await store.writePool(target.name, applyChange(pool, plan.change), version))) {
      if (created) await unclaim(store, reservationOf(target, plan.offset), ownerOf(who), deadline);
      return CONFLICT;
    }
    if (target.overlapping && plan.kind === 'new' && !(await stillOurs(store, reservationOf(target, plan.offset), who, now, target.networkName))) {
      // GC took our reservation for an orphan and another pool claimed the address meanwhile: withdraw.
      await releaseKeys(store, target, [plan.offset.toString()], who, deadline);
      skip.add(plan.offset.toString());
      return CONFLICT;
    }
    return { offset: plan.offset, existing: plan.kind === 'existing' };
  });
}

/** After the swap: is the reservation still this pod's? (Re-created if GC removed it meanwhile.) */
export async function stillOurs(store: LegacyIpamStore, name: string, who: Claimant, now: string, scope: string): Promise<boolean> {
  const found = await store.readReservation(name);
  if (found) return belongsTo(found.value, ownerOf(who));
  return (await claim(store, name, who, now, undefined, scope)) !== 'taken';
}

/** Removes exactly `keys` from the pool if they still belong to `who`'s container (rollback). */
async function releaseKeys(store: LegacyIpamStore, target: PoolTarget, keys: string[], who: Claimant, deadline: number): Promise<void> {
  await withRetries(`ipam: pool ${target.name}`, deadline, async () => {
    const snapshot = await store.readPool(target.name);
    if (!snapshot) return undefined;
    const remove = keys.filter((key) => snapshot.value.allocations[key]?.id === who.id);
    if (remove.length === 0) return undefined;
    return (await store.writePool(target.name, applyChange(snapshot.value, { set: [], remove }), snapshot.version)) ? undefined : CONFLICT;
  });
}

/** Undoes a new lease of a failed ADD; an existing lease (the pod had it before) stays. */
export async function rollback(store: LegacyIpamStore, target: PoolTarget, lease: Lease, who: Claimant, deadline: number): Promise<void> {
  if (lease.existing) return;
  await releaseKeys(store, target, [lease.offset.toString()], who, deadline);
  if (target.overlapping) await unclaim(store, reservationOf(target, lease.offset), ownerOf(who), deadline);
}

/** DEL for one range. Returns the released leases; none is not an error. */
export async function release(store: LegacyIpamStore, target: PoolTarget, who: Claimant, deadline: number): Promise<Array<[bigint, Allocation]>> {
  const released = await withRetries(`ipam: pool ${target.name}`, deadline, async () => {
    const snapshot = await store.readPool(target.name);
    // Another scope's pool under the same name (see collectRecord in gc/collect.ts) holds nothing of ours.
    if (!snapshot || snapshot.value.range !== target.range.cidr) return [];
    const change = planRelease(snapshot.value, who);
    if (change.remove.length === 0) return [];
    const gone = change.remove.map((key): [bigint, Allocation] => [BigInt(key), snapshot.value.allocations[key]!]);
    if (!(await store.writePool(target.name, applyChange(snapshot.value, change), snapshot.version))) return CONFLICT;
    return gone;
  });
  await dropReservations(store, target, released, deadline);
  return released;
}

/** After leases left a pool: their reservations go too, where they still belong to those leases. */
export async function dropReservations(store: LegacyIpamStore, target: PoolTarget, released: Array<[bigint, Allocation]>, deadline: number): Promise<void> {
  if (!target.overlapping) return;
  for (const [offset, allocation] of released) await unclaim(store, reservationOf(target, offset), allocation, deadline);
}
