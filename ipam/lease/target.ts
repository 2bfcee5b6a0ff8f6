// What the lease protocols work on: one pool as a config sees it, a lease taken in it, a lease released.
import { CniError } from '../../lib/cni/errors.ts';
import { newAllocation, type Claimant } from '../alloc/allocator.ts';
import { reservationName } from '../alloc/names.ts';
import { spanOf, type IpRange } from '../alloc/ranges.ts';
import type { Allocation } from '../store/types.ts';

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
 * Asks the cluster whether the earlier pod `podref` whose lease `successor` (a pod UID) would take over
 * is gone for good (lib/kube/pods.ts): the pod of UID `uid`, or, when the lease names no UID, any pod
 * of that name but the successor. Without a cluster to ask, a pod re-created under its name never takes
 * over its predecessor's address.
 */
export type PodGone = (podref: string, uid: string | undefined, successor: string, deadline: number) => Promise<boolean>;

/**
 * The lease an ADD last wrote, remembered across its retries. A commit can apply and its reply be lost
 * (behind a network), and on a store that applies one write at a time an ADD can lose a race after its
 * lease write applied: the retry then meets that lease and must know it as its own work, so that a
 * lease it granted is not taken for one the pod had before (a failed ADD gives back only new ones).
 */
export interface Sent {
  offset: bigint;
  /** The lease's `since` as written: with the container ID it tells this write from any other. */
  since: string | undefined;
  /** Granted by this ADD, not held by the pod before it. */
  fresh: boolean;
}

/** Is `held`, at `offset`, the lease `sent` wrote for container `id`? */
export const isSent = (sent: Sent | undefined, offset: bigint, held: Allocation | undefined, id: string): sent is Sent =>
  sent !== undefined && sent.offset === offset && held !== undefined && held.id === id && held.since === sent.since;

/** A lease that left its pool: its offset and the allocation it was. */
export type Released = [offset: bigint, allocation: Allocation];

/** The lease `who` is taking, as the owner its reservations are judged against. */
export const ownerOf = (who: Claimant): Allocation => newAllocation(who, '');

/** The overlapping-range reservation of `offset` in `target`'s scope. */
export const reservationOf = (target: PoolTarget, offset: bigint): string =>
  reservationName(target.networkName, target.range.family, target.range.network + offset);

export function exhausted(target: PoolTarget, reservedElsewhere: number): CniError {
  const { range } = target;
  const elsewhere = reservedElsewhere > 0 ? `, ${reservedElsewhere} of them reserved by overlapping ranges` : '';
  return new CniError(
    POOL_EXHAUSTED,
    `pool exhausted: ${range.field}.range = ${JSON.stringify(range.source)} has no free address: all ${range.size} allocatable addresses in ${spanOf(range)} are leased${elsewhere}`,
  );
}
