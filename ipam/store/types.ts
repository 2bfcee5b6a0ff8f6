// The records an IPAM store keeps and the one interface every store implements. The records mirror
// whereabouts' CRDs (IPPool.spec, OverlappingRangeIPReservation.spec) field for field, so the Kubernetes
// store can map them 1:1 and a cluster can move between whereabouts and Underlay without re-addressing.
// Fields whereabouts does not know are optional extras; unknown fields written by others survive.
import * as z from 'zod/mini';

export const AllocationSchema = z.looseObject({
  /** The container ID (CNI_CONTAINERID) that holds the lease now. */
  id: z.string(),
  /** "namespace/name" of the pod; the container ID again when the runtime names no pod. */
  podref: z.string(),
  ifname: z.optional(z.string()),
  /** Ours: when the lease was first granted (ISO 8601). */
  since: z.optional(z.string()),
  /** Ours: the CNI network (config `name`) that took the lease, so GC of one network spares another's. */
  network: z.optional(z.string()),
  /**
   * Ours: the pod's UID (CNI_ARGS K8S_POD_UID) when the runtime gave one. A pod re-created under the
   * same name (a StatefulSet) has another UID, so its ADD does not take over the old pod's lease.
   */
  poduid: z.optional(z.string()),
});
export type Allocation = z.infer<typeof AllocationSchema>;

export const PoolRecordSchema = z.looseObject({
  /** The network CIDR, e.g. "192.168.2.0/24". */
  range: z.string(),
  /** Keyed by the decimal offset of the address from the network address. */
  allocations: z.record(z.string(), AllocationSchema),
});
export type PoolRecord = z.infer<typeof PoolRecordSchema>;

export const ReservationSchema = z.looseObject({
  containerid: z.optional(z.string()),
  podref: z.string(),
  ifname: z.optional(z.string()),
  /** Ours: when it was created; GC leaves younger orphans alone, they may belong to an ADD in flight. */
  since: z.optional(z.string()),
  /** Ours, claims only (ipam/shards.ts): the decimal offset of the lease a (pool, podref, ifname) holds. */
  offset: z.optional(z.string()),
  /** Ours: the pod's UID, as on the lease (Allocation.poduid). */
  poduid: z.optional(z.string()),
  /**
   * Ours, address reservations only: the network_name scope that wrote it ("" for none). Names alone are
   * ambiguous ("x-fd00-1--5" is fd00:1::5 of "x" and 1::5 of "x-fd00"), so GC judges only its own scope.
   */
  networkname: z.optional(z.string()),
});
export type Reservation = z.infer<typeof ReservationSchema>;

export interface Versioned<T> {
  value: T;
  /** Opaque: a file sequence number, an etcd mod_revision, a Kubernetes resourceVersion. */
  version: string;
}

/**
 * Every store: pools are read with a version and written back only if that version is still current
 * (compare-and-swap); reservations are created only if absent and deleted only if unchanged. Stores
 * never retry: the IPAM retries conflicts with back-off inside a deadline (ipam/retry.ts).
 *
 * A store throws StoreUnavailable for a failure that may pass (a timeout, a refused connection): the
 * IPAM retries it until its deadline. Any other error is final.
 */
export interface IpamStore {
  /** For messages: "file store /var/lib/cni/underlay/ipam". */
  readonly description: string;
  readPool(name: string): Promise<Versioned<PoolRecord> | undefined>;
  /** Writes `pool` if the stored version is `expected` (undefined: only if no pool exists). False on conflict. */
  writePool(name: string, pool: PoolRecord, expected: string | undefined): Promise<boolean>;
  listPools(): Promise<string[]>;
  readReservation(name: string): Promise<Versioned<Reservation> | undefined>;
  /** Creates the reservation unless one exists. False when one exists. */
  createReservation(name: string, reservation: Reservation): Promise<boolean>;
  /** Deletes the reservation if its version is still `expected`. False on conflict; true if already gone. */
  deleteReservation(name: string, expected: string): Promise<boolean>;
  /**
   * Replaces the reservation with `reservation` if its version is still `expected` (compare-and-swap):
   * a holder is renewed or handed to the pod's new container in one step, never by delete-then-create
   * (in between, another pod could create it). False on conflict, and when it is gone.
   *   file store: read, compare, write-temp and rename, all under the reservations lock;
   *   etcd: one txn, If(mod_revision(key) == expected) Then(put key) Else();
   *   Kubernetes: PUT of the object carrying metadata.resourceVersion = expected (409 Conflict: false).
   */
  replaceReservation(name: string, expected: string, reservation: Reservation): Promise<boolean>;
  listReservations(): Promise<string[]>;
  /** Throws unless the store can be read and written now (STATUS). */
  ping(): Promise<void>;
}

/** A failure that may pass: retried by the IPAM until its deadline, then "try again later". */
export class StoreUnavailable extends Error {
  override readonly name = 'StoreUnavailable';
}
