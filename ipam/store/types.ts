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
  /**
   * Ours: the node whose runtime made the attachment (NODENAME, or what `underlay install` wrote). On a
   * store the nodes share, CNI GC judges only its own node's leases: a runtime's valid-attachments list
   * names the attachments of its node alone.
   */
  node: z.optional(z.string()),
});
export type Allocation = z.infer<typeof AllocationSchema>;

export const PoolRecordSchema = z.looseObject({
  /** The network CIDR, e.g. "192.168.2.0/24". */
  range: z.string(),
  /** Keyed by the decimal offset of the address from the network address. */
  allocations: z.record(z.string(), AllocationSchema),
  /**
   * Ours: how many addresses the config that last took a lease here may hand out (a decimal count;
   * its range_start, range_end and exclusions narrow the CIDR), so `underlay ipam ls` counts what is
   * really free. Missing (a pool of whereabouts): the whole CIDR is counted.
   */
  allocatable: z.optional(z.string()),
});
export type PoolRecord = z.infer<typeof PoolRecordSchema>;

export const ReservationSchema = z.looseObject({
  containerid: z.optional(z.string()),
  podref: z.string(),
  ifname: z.optional(z.string()),
  /** Ours: when it was created; GC leaves younger orphans alone, they may belong to an ADD in flight. */
  since: z.optional(z.string()),
  /** Ours, claims only (ipam/alloc/shards.ts): the decimal offset of the lease a (pool, podref, ifname) holds. */
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

export interface Named<T> extends Versioned<T> {
  name: string;
  /**
   * When the record was created, where the store keeps that apart from the record (Kubernetes'
   * creationTimestamp; listings of reservations only). GC reads a reservation's age from it when the
   * record carries no `since` (whereabouts wrote it, or whereabouts' CRD dropped ours).
   */
  created?: string;
}

/**
 * One change of a commit. `expected` is the version the writer read: the write applies only while the
 * record still has it. `expected: undefined` means the record must not exist (create-if-absent). A
 * delete (`value: null`) needs the record to exist at `expected`; a record already gone is a conflict,
 * so the writer re-reads and sees it gone.
 */
export type Write =
  | { kind: 'pool'; name: string; expected: string | undefined; value: PoolRecord }
  | { kind: 'reservation'; name: string; expected: string | undefined; value: Reservation }
  | { kind: 'reservation'; name: string; expected: string; value: null };

/**
 * Every store. Records are read with a version and changed only by commit(), by compare-and-swap on
 * that version; stores never retry a conflict (the IPAM does, with back-off inside a deadline,
 * ipam/lease/retry.ts). Every call takes the IPAM's deadline (epoch ms): no call outlives it.
 *
 * A call throws StoreUnavailable for a failure that may pass (a timeout, a refused connection, a lock
 * held too long): the IPAM retries it until its deadline, then answers "try again later" (code 11). Any
 * other error is final and names what is wrong (a CniError).
 *
 * Nothing above ipam/store/ knows which store it talks to; openStore (ipam/store/open.ts) picks one.
 */
export interface IpamStore {
  /** For messages: "file store /var/lib/cni/underlay/ipam", "etcd at https://10.0.0.1:2379". */
  readonly description: string;
  /**
   * How many writes one commit() applies all-or-nothing: 1 for the file and Kubernetes stores, more
   * for etcd (one txn). The IPAM puts an ADD's reservation, claim and pool change in one commit when
   * they fit, and otherwise writes them one by one in the order that keeps addresses unique.
   */
  readonly atomicWrites: number;
  /** Whether other nodes keep their leases here too (etcd, Kubernetes), or only this node (the file store). */
  readonly sharedByNodes: boolean;
  readPool(name: string, deadline: number): Promise<Versioned<PoolRecord> | undefined>;
  readReservation(name: string, deadline: number): Promise<Versioned<Reservation> | undefined>;
  /** Every pool whose name starts with `prefix` ("" for all), with its version, in name order. */
  listPools(prefix: string, deadline: number): Promise<Array<Named<PoolRecord>>>;
  /** Every reservation (claims included) whose name starts with `prefix`, with its version, in name order. */
  listReservations(prefix: string, deadline: number): Promise<Array<Named<Reservation>>>;
  /**
   * Applies every write if every expectation holds, else none (then it returns undefined: a conflict).
   * On success, the new version of each write in order (undefined for a delete). At most atomicWrites
   * writes per call.
   *
   * Behind a network a reply can be lost: a commit that threw StoreUnavailable, or that reported a
   * conflict after a retry on another endpoint, may have applied. Callers re-read and must recognise
   * their own write (the IPAM does: the same pod instance finds its lease and its reservation again).
   */
  commit(writes: ReadonlyArray<Write>, deadline: number): Promise<Array<string | undefined> | undefined>;
  /** Throws unless the store can be read and written now (STATUS). */
  ping(deadline: number): Promise<void>;
  /**
   * The store's own housekeeping, run by GC: what dead writers leave (the file store's temp files
   * older than `olderThanMs`). Returns how many things it removed.
   */
  tidy(olderThanMs: number, deadline: number): Promise<number>;
  /** Releases connections and handles: after it the process can exit at once. */
  close(): Promise<void>;
  /** Requests sent to the store's server so far (network stores), for the benchmarks. */
  readonly requests?: number;
}


/** A failure that may pass: retried by the IPAM until its deadline, then "try again later". */
export class StoreUnavailable extends Error {
  override readonly name = 'StoreUnavailable';
}
