// Reservations (one per address, shared by every pool of a network_name scope: whereabouts'
// OverlappingRangeIPReservation) and claims (one per pod and interface of a sharded pool: where its lease
// is). Both are reservation records; both are judged here, once: whose they are, what an ADD writes to
// make one its own, and the one way to drop one.
import { sameInstance, type Claimant } from '../alloc/allocator.ts';
import type { Allocation, IpamStore, Reservation, Versioned, Write } from '../store/types.ts';
import { commitOne, createWrite, deleteWrite, replaceWrite } from './records.ts';
import { CONFLICT, withRetries } from './retry.ts';
import { ownerOf } from './target.ts';

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

/** The record `who` writes: a claim when `offset` is given, else an address reservation of `scope`. */
export function reservationFor(who: Claimant, now: string, offset?: string, scope?: string): Reservation {
  const mine: Reservation = { containerid: who.id, podref: who.podref, ifname: who.ifname, since: now };
  if (who.uid !== undefined) mine.poduid = who.uid;
  if (offset !== undefined) mine.offset = offset;
  if (scope !== undefined) mine.networkname = scope;
  return mine;
}

/** A reservation of ours older than this is renewed when reused, so GC cannot take it for an orphan. */
const RENEW_AFTER_MS = 60_000;

/**
 * What an ADD does about the address reservation `found` (undefined: none): 'taken' by another pod;
 * 'current' (this container's, fresh: nothing to write); or the write that makes it this container's:
 * a create, or a compare-and-swap over one of this pod instance (or of the lease `previous` the ADD
 * takes over). Rewriting it means a concurrent DEL of the earlier container sees it is no longer its
 * own, and a GC that judged the old version an orphan cannot delete the new one.
 */
export function judgeReservation(
  found: Versioned<Reservation> | undefined, name: string, who: Claimant, now: string, scope: string, previous?: Allocation,
): 'taken' | 'current' | Write {
  const mine = reservationFor(who, now, undefined, scope);
  if (!found) return createWrite(name, mine);
  if (!sameInstance(found.value, who) && !(previous && belongsTo(found.value, previous))) return 'taken';
  const age = Date.parse(now) - Date.parse(found.value.since ?? '');
  const fresh = Number.isFinite(age) && age <= RENEW_AFTER_MS;
  if (found.value.containerid === who.id && found.value.poduid === mine.poduid && found.value.networkname === scope && fresh) return 'current';
  return replaceWrite(name, found.version, mine);
}

/** The offset a claim names, if it is a well-formed claim of `podref`. */
export function claimedOffset(found: Versioned<Reservation> | undefined, podref: string): bigint | undefined {
  const offset = found?.value.offset;
  return offset !== undefined && /^\d+$/.test(offset) && found!.value.podref === podref ? BigInt(offset) : undefined;
}

/**
 * The delete that drops `found` if it still belongs to the lease `owner` (for a claim, `offset`: it
 * must still name that lease); undefined when it is gone or someone else's now, which is then kept.
 */
export function dropWrite(found: Versioned<Reservation> | undefined, name: string, owner: Allocation, offset?: bigint): Write | undefined {
  if (!found || !belongsTo(found.value, owner)) return undefined;
  if (offset !== undefined && claimedOffset(found, owner.podref) !== offset) return undefined;
  return deleteWrite(found, name);
}

/** Drops the reservation or claim `name` while it belongs to `owner` (see dropWrite), retrying conflicts. */
export async function dropIfOwned(store: IpamStore, name: string, owner: Allocation, deadline: number, offset?: bigint): Promise<void> {
  await withRetries(`ipam: reservation ${name}`, deadline, async () => {
    const write = dropWrite(await store.readReservation(name, deadline), name, owner, offset);
    if (!write) return undefined;
    return (await commitOne(store, write, deadline)) === false ? CONFLICT : undefined;
  });
}

/**
 * After a pool write that was not in one commit with the reservation: is the reservation still this
 * pod's? A GC working from a stale view may have removed it meanwhile; then it is re-created, and if
 * another pod took it first the caller withdraws its lease.
 */
export async function stillOurs(store: IpamStore, name: string, who: Claimant, now: string, scope: string, deadline: number): Promise<boolean> {
  for (let i = 0; i < 4; i++) {
    const found = await store.readReservation(name, deadline);
    if (found) return belongsTo(found.value, ownerOf(who));
    if ((await commitOne(store, createWrite(name, reservationFor(who, now, undefined, scope)), deadline)) !== false) return true;
  }
  return false;
}
