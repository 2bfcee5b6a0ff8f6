// The allocation rules, as pure functions over one pool record: no I/O, no clock, no randomness. Each
// returns a Change that applyChange turns into the next record, so the caller decides when and how it is
// written (compare-and-swap in ipam/lease/single.ts).
//
// Cost: one pass over the pool's allocations, never over the range: finding the pod's lease scans the
// leases, and the lowest free offset is found within k+1 probes for k leases (see lowestFree), whatever
// the size of the range (a whole IPv6 /64 included) and however the exclusions cut it.
import type { IpRange } from './ranges.ts';
import type { Allocation, PoolRecord } from '../store/types.ts';

/** Who asks: the container and interface, the pod (or the container ID again), and the CNI network. */
export interface Claimant {
  id: string;
  podref: string;
  ifname: string;
  network: string;
  /** The pod's UID (CNI_ARGS K8S_POD_UID), when the runtime gives one: tells two pods of one name apart. */
  uid?: string | undefined;
  /** The node asking, when it is known (NODENAME, or what `underlay install` wrote): see scanOrder. */
  node?: string | undefined;
}

/** What a lease, reservation or claim says about its holder. */
export interface HolderRecord {
  podref: string;
  ifname?: string | undefined;
  poduid?: string | undefined;
}

/**
 * The same pod instance on the same interface: same podref and ifname, and the same UID when both know
 * one (a pod re-created under the same name, as a StatefulSet does, has a new UID).
 */
export const sameInstance = (record: HolderRecord, who: Pick<Claimant, 'podref' | 'ifname' | 'uid'>): boolean =>
  record.podref === who.podref &&
  (record.ifname === undefined || record.ifname === '' || record.ifname === who.ifname) &&
  (record.poduid === undefined || who.uid === undefined || record.poduid === who.uid);

export interface Change {
  set: Array<[key: string, allocation: Allocation]>;
  remove: string[];
}

export type AssignPlan =
  | { kind: 'existing'; offset: bigint; change: Change }
  | { kind: 'new'; offset: bigint; change: Change }
  | { kind: 'exhausted' };

export const ifnameMatches = (allocation: Allocation, ifname: string): boolean =>
  allocation.ifname === undefined || allocation.ifname === '' || allocation.ifname === ifname;

export const emptyPool = (range: IpRange): PoolRecord => ({ range: range.cidr, allocations: {} });

/** The record an ADD writes: with its config's allocatable count (for `underlay ipam ls`). */
export const withAllocatable = (pool: PoolRecord, range: IpRange): PoolRecord =>
  pool.allocatable === range.size.toString() ? pool : { ...pool, allocatable: range.size.toString() };

/** The record after `change`; the input record is left as it was. */
export function applyChange(pool: PoolRecord, change: Change): PoolRecord {
  const allocations = { ...pool.allocations };
  for (const key of change.remove) delete allocations[key];
  for (const [key, allocation] of change.set) allocations[key] = allocation;
  return { ...pool, allocations };
}

export const isEmptyChange = (change: Change): boolean => change.set.length === 0 && change.remove.length === 0;

/** Index of the segment holding `offset`, or -1. Segments are few (one per exclusion + 1): binary search. */
function segmentIndex<T extends number | bigint>(starts: ReadonlyArray<T>, ends: ReadonlyArray<T>, offset: T): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (offset < starts[mid]!) hi = mid - 1;
    else if (offset > ends[mid]!) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/**
 * The lowest allocatable offset not leased and not in `skip`; undefined when there is none. It probes
 * offsets upward, segment by segment: with k leases one of the first k+1 allocatable offsets is free
 * (pigeonhole), so it stops within k+1 probes however large the range. Offsets are probed as numbers
 * while they fit a double (an element lookup, no string built); a whole IPv6 /64 takes the bigint path.
 */
export function lowestFree(pool: PoolRecord, range: IpRange, skip: ReadonlySet<string> = new Set()): bigint | undefined {
  const allocations: Record<string | number, Allocation | undefined> = pool.allocations;
  for (const segment of range.segments) {
    if (segment.end <= BigInt(Number.MAX_SAFE_INTEGER)) {
      for (let offset = Number(segment.start), end = Number(segment.end); offset <= end; offset++) {
        if (allocations[offset] === undefined && (skip.size === 0 || !skip.has(String(offset)))) return BigInt(offset);
      }
    } else {
      for (let offset = segment.start; offset <= segment.end; offset++) {
        const key = offset.toString();
        if (allocations[key] === undefined && !skip.has(key)) return offset;
      }
    }
  }
  return undefined;
}

/**
 * The key of the lease held by this pod instance on this interface, if any: the basis of idempotent ADD.
 * (podref, ifname), and the same pod UID when both know one: a pod re-created under the same name while
 * the old one may still run (terminating on a node that does not answer) must not take over its address.
 */
export const findByPod = (pool: PoolRecord, who: Pick<Claimant, 'podref' | 'ifname' | 'uid'>): string | undefined =>
  findKey(pool, (a) => sameInstance(a, who));

/**
 * A lease of this pod's name that names no UID, held by another container, while the ADD knows its
 * UID: whereabouts wrote it, or whereabouts' CRD dropped ours. It may be an earlier pod's of that name.
 */
const ofUnknownInstance = (a: Allocation, who: Pick<Claimant, 'id' | 'uid'>): boolean => who.uid !== undefined && a.poduid === undefined && a.id !== who.id;

export const findByContainer = (pool: PoolRecord, id: string, ifname: string): string | undefined =>
  findKey(pool, (a) => a.id === id && ifnameMatches(a, ifname));

/** Scans values, not keys: turning 60,000 integer keys into strings costs more than the scan itself. */
function keysWhere(pool: PoolRecord, match: (allocation: Allocation) => boolean, first = false): string[] {
  const values = Object.values(pool.allocations);
  let keys: string[] | undefined;
  const found: string[] = [];
  for (let i = 0; i < values.length; i++) {
    if (!match(values[i]!)) continue;
    keys ??= Object.keys(pool.allocations);
    // Keys are decimal offsets; anything else (a hand edit) is never matched, so never parsed.
    if (!/^\d+$/.test(keys[i]!)) continue;
    found.push(keys[i]!);
    if (first) break;
  }
  return found;
}

const findKey = (pool: PoolRecord, match: (allocation: Allocation) => boolean): string | undefined => keysWhere(pool, match, true)[0];

/**
 * The lease of an earlier pod of the same name on this interface: a StatefulSet pod re-created under its
 * name has another UID. Its ADD may take that lease over, but only once the API says the earlier pod is
 * gone (while its object exists, terminating on a lost node, it may still run): the caller asks, then
 * plans with `takeover`. A force-deleted pod's object is gone at once, whatever its containers do:
 * that is the operator's word that it no longer runs.
 */
export const findPredecessor = (pool: PoolRecord, who: Pick<Claimant, 'id' | 'podref' | 'ifname' | 'uid'>): string | undefined =>
  who.uid === undefined
    ? undefined
    : findKey(pool, (a) => a.podref === who.podref && ifnameMatches(a, who.ifname) && (a.poduid === undefined ? a.id !== who.id : a.poduid !== who.uid));

export interface AssignOptions {
  /** The lease of a gone predecessor to take over (see findPredecessor). */
  takeover?: string | undefined;
  /** A lease of unknown instance (no UID) is not this pod's: the caller asks the cluster (findPredecessor). */
  careful?: boolean;
}

/**
 * ADD. A pod instance that already holds a lease on this interface gets it back, now recorded under
 * the new container ID (a sandbox re-created after a kubelet restart sends only an ADD); so does a pod
 * taking over its gone predecessor's lease (`takeover`, see findPredecessor); otherwise the lowest free
 * offset. `skip` holds offsets found reserved by an overlapping pool during this attempt.
 */
export function planAssign(pool: PoolRecord, range: IpRange, who: Claimant, now: string, skip?: ReadonlySet<string>, options: AssignOptions = {}): AssignPlan {
  const key = options.takeover ?? (options.careful ? findKey(pool, (a) => sameInstance(a, who) && !ofUnknownInstance(a, who)) : findByPod(pool, who));
  if (key !== undefined) {
    const held = pool.allocations[key]!;
    const change: Change = { set: [], remove: [] };
    if (held.id !== who.id || held.network !== who.network || (who.uid !== undefined && held.poduid !== who.uid) || held.node !== who.node) {
      // The lease now belongs to this container (a late DEL of the former one releases nothing: DEL
      // matches the current container ID only) and to the network that asked, whose GC judges it.
      const moved: Allocation = { ...held, id: who.id, ifname: who.ifname, network: who.network };
      if (who.uid !== undefined) moved.poduid = who.uid;
      // The node that took it over judges it on GC; a node of unknown name records none, so no other
      // node's GC frees a lease now in use here.
      if (who.node !== undefined) moved.node = who.node;
      else delete moved.node;
      change.set.push([key, moved]);
    }
    return { kind: 'existing', offset: BigInt(key), change };
  }
  const offset = lowestFree(pool, range, skip);
  if (offset === undefined) return { kind: 'exhausted' };
  return { kind: 'new', offset, change: { set: [[offset.toString(), newAllocation(who, now)]], remove: [] } };
}

/** A new lease for `who`. */
export function newAllocation(who: Claimant, now: string): Allocation {
  const allocation: Allocation = { id: who.id, podref: who.podref, ifname: who.ifname, since: now, network: who.network };
  if (who.uid !== undefined) allocation.poduid = who.uid;
  if (who.node !== undefined) allocation.node = who.node;
  return allocation;
}

/**
 * DEL. Releases exactly the leases whose current container ID is `who.id` on this interface. Never by
 * pod: a DEL that carries another container ID (a late DEL of a sandbox whose lease an idempotent ADD
 * moved, a DEL of an earlier pod of the same name, a repeated DEL after a GC) releases nothing, since
 * the lease may be live under its new holder. A lease whose matching DEL never comes is freed by GC.
 */
export function planRelease(pool: PoolRecord, who: Pick<Claimant, 'id' | 'ifname'>): Change {
  return { set: [], remove: keysWhere(pool, (a) => a.id === who.id && ifnameMatches(a, who.ifname)) };
}

/** The leases `doomed` picks: GC and the reconciler choose by predicate, the release is the same. */
export function planRemove(pool: PoolRecord, doomed: (allocation: Allocation) => boolean): Change {
  return { set: [], remove: keysWhere(pool, doomed) };
}

/**
 * GC. Dooms every lease of `network` whose (container ID, ifname) is not among the valid attachments.
 * Leases of other networks sharing the pool (same range, no network_name) and leases that name no
 * network (written by whereabouts) are not this GC's to judge, and are kept. With `onlyNode` (a store the
 * nodes share: the list names one node's attachments), so are the leases of any other node, and those
 * that name no node.
 */
export function notValidIn(
  network: string, valid: ReadonlyArray<{ containerID: string; ifname: string }>, onlyNode?: string,
): (allocation: Allocation) => boolean {
  const keep = new Set(valid.map((a) => `${a.containerID}\u0000${a.ifname}`));
  return (a) => a.network === network && (onlyNode === undefined || a.node === onlyNode) && !keep.has(`${a.id}\u0000${a.ifname ?? ''}`);
}

/** planRemove of what notValidIn dooms. */
export const planCollect = (pool: PoolRecord, network: string, valid: ReadonlyArray<{ containerID: string; ifname: string }>): Change =>
  planRemove(pool, notValidIn(network, valid));

/** Leased and still-free counts of the allocatable span (leases outside it are not counted). */
export function usage(pool: PoolRecord, range: IpRange): { used: bigint; free: bigint } {
  let used = 0;
  const small = (range.segments[range.segments.length - 1]?.end ?? 0n) <= BigInt(Number.MAX_SAFE_INTEGER);
  const starts = range.segments.map((s) => (small ? Number(s.start) : s.start));
  const ends = range.segments.map((s) => (small ? Number(s.end) : s.end));
  for (const key in pool.allocations) {
    if (!/^\d+$/.test(key)) continue;
    if (segmentIndex<number | bigint>(starts, ends, small ? Number(key) : BigInt(key)) >= 0) used++;
  }
  return { used: BigInt(used), free: range.size - BigInt(used) };
}
