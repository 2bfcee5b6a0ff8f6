// The allocation rules, as pure functions over one pool record: no I/O, no clock, no randomness. Each
// returns a Change that applyChange turns into the next record, so the caller decides when and how it is
// written (compare-and-swap in ipam/lease.ts).
//
// Cost: one pass over the pool's allocations, never over the range. The lowest free address is found
// by ranking the used offsets among the allocatable ones: with k leases, one of the first k+1
// allocatable offsets is free, so a bitmap of k+1 entries answers it (pigeonhole), whatever the size of
// the range (a whole IPv6 /64 included) and however the exclusions cut it.
import type { IpRange, Segment } from './ranges.ts';
import type { Allocation, PoolRecord } from './store/types.ts';

/** Who asks: the container and interface, the pod (or the container ID again), and the CNI network. */
export interface Claimant {
  id: string;
  podref: string;
  ifname: string;
  network: string;
}

export interface Change {
  set: Array<[key: string, allocation: Allocation]>;
  remove: string[];
}

export type AssignPlan =
  | { kind: 'existing'; offset: bigint; change: Change }
  | { kind: 'new'; offset: bigint; change: Change }
  | { kind: 'exhausted' };

/** How many former container IDs a lease remembers (see formerids). */
const FORMER_IDS_KEPT = 4;

const ifnameMatches = (allocation: Allocation, ifname: string): boolean =>
  allocation.ifname === undefined || allocation.ifname === '' || allocation.ifname === ifname;

export const emptyPool = (range: IpRange): PoolRecord => ({ range: range.cidr, allocations: {} });

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
 * Marks in `marks` the rank (position among allocatable offsets) of every used offset whose rank is
 * below marks.length. Offsets that fit a double are handled as numbers: BigInt parsing of 60,000 keys
 * alone would cost more than the whole allocation budget.
 */
function markRanks(keys: ReadonlyArray<string>, segments: ReadonlyArray<Segment>, marks: Uint8Array): void {
  const limit = marks.length;
  const last = segments[segments.length - 1];
  if (!last) return;
  if (last.end <= BigInt(Number.MAX_SAFE_INTEGER)) {
    const starts = segments.map((s) => Number(s.start));
    const ends = segments.map((s) => Number(s.end));
    const befores = segments.map((s) => Number(s.before));
    for (const key of keys) {
      if (key.length > 16) continue;
      const offset = Number(key);
      if (!Number.isInteger(offset)) continue;
      const i = segmentIndex(starts, ends, offset);
      if (i < 0) continue;
      const rank = befores[i]! + offset - starts[i]!;
      if (rank < limit) marks[rank] = 1;
    }
    return;
  }
  const starts = segments.map((s) => s.start);
  const ends = segments.map((s) => s.end);
  for (const key of keys) {
    if (!/^\d+$/.test(key)) continue;
    const offset = BigInt(key);
    const i = segmentIndex(starts, ends, offset);
    if (i < 0) continue;
    const rank = segments[i]!.before + offset - starts[i]!;
    if (rank < BigInt(limit)) marks[Number(rank)] = 1;
  }
}

function offsetAtRank(segments: ReadonlyArray<Segment>, rank: bigint): bigint {
  for (const s of segments) {
    if (rank < s.before + (s.end - s.start + 1n)) return s.start + (rank - s.before);
  }
  throw new RangeError(`rank ${rank} is beyond the range`);
}

/** The lowest allocatable offset not leased and not in `skip`; undefined when there is none. */
export function lowestFree(pool: PoolRecord, range: IpRange, skip: ReadonlySet<string> = new Set()): bigint | undefined {
  const keys = Object.keys(pool.allocations);
  const wanted = BigInt(keys.length + skip.size + 1);
  const limit = Number(range.size < wanted ? range.size : wanted);
  const marks = new Uint8Array(limit);
  markRanks(keys, range.segments, marks);
  markRanks([...skip], range.segments, marks);
  const free = marks.indexOf(0);
  return free < 0 ? undefined : offsetAtRank(range.segments, BigInt(free));
}

/** The key of the lease held by (podref, ifname), if any: the basis of idempotent ADD. */
export function findByPod(pool: PoolRecord, podref: string, ifname: string): string | undefined {
  for (const key in pool.allocations) {
    const allocation = pool.allocations[key]!;
    if (allocation.podref === podref && ifnameMatches(allocation, ifname)) return key;
  }
  return undefined;
}

export function findByContainer(pool: PoolRecord, id: string, ifname: string): string | undefined {
  for (const key in pool.allocations) {
    const allocation = pool.allocations[key]!;
    if (allocation.id === id && ifnameMatches(allocation, ifname)) return key;
  }
  return undefined;
}

/**
 * ADD. A pod that already holds a lease on this interface gets it back, now recorded under the new
 * container ID (a sandbox re-created after a kubelet restart sends only an ADD); otherwise the lowest
 * free offset. `skip` holds offsets found reserved by an overlapping pool during this attempt.
 */
export function planAssign(pool: PoolRecord, range: IpRange, who: Claimant, now: string, skip?: ReadonlySet<string>): AssignPlan {
  const key = findByPod(pool, who.podref, who.ifname);
  if (key !== undefined) {
    const held = pool.allocations[key]!;
    const change: Change = { set: [], remove: [] };
    if (held.id !== who.id) {
      const formerids = [...(held.formerids ?? []), held.id].slice(-FORMER_IDS_KEPT);
      change.set.push([key, { ...held, id: who.id, ifname: who.ifname, formerids }]);
    }
    return { kind: 'existing', offset: BigInt(key), change };
  }
  const offset = lowestFree(pool, range, skip);
  if (offset === undefined) return { kind: 'exhausted' };
  const allocation: Allocation = { id: who.id, podref: who.podref, ifname: who.ifname, since: now, network: who.network };
  return { kind: 'new', offset, change: { set: [[offset.toString(), allocation]], remove: [] } };
}

/**
 * DEL. Releases the leases of (container ID, ifname); when there is none, those of (podref, ifname), so
 * a DEL that carries a different container ID than the ADD does not leak the address. A container ID
 * the lease has already moved away from is a late DEL of a replaced sandbox: it releases nothing, or it
 * would free the address of the pod's live sandbox.
 */
export function planRelease(pool: PoolRecord, who: Omit<Claimant, 'network'>): Change {
  const byContainer = Object.keys(pool.allocations).filter((key) => {
    const allocation = pool.allocations[key]!;
    return allocation.id === who.id && ifnameMatches(allocation, who.ifname);
  });
  if (byContainer.length > 0 || who.podref === who.id) return { set: [], remove: byContainer };
  const byPod = Object.keys(pool.allocations).filter((key) => {
    const allocation = pool.allocations[key]!;
    return allocation.podref === who.podref && ifnameMatches(allocation, who.ifname) && !(allocation.formerids ?? []).includes(who.id);
  });
  return { set: [], remove: byPod };
}

/**
 * GC. Releases every lease of `network` whose (container ID, ifname) is not among the valid attachments.
 * Leases of other networks sharing the pool (same range, no network_name) and leases that name no
 * network (written by whereabouts) are not this GC's to judge, and are kept.
 */
export function planCollect(pool: PoolRecord, network: string, valid: ReadonlyArray<{ containerID: string; ifname: string }>): Change {
  const keep = new Set(valid.map((a) => `${a.containerID}\u0000${a.ifname}`));
  const remove = Object.keys(pool.allocations).filter((key) => {
    const allocation = pool.allocations[key]!;
    return allocation.network === network && !keep.has(`${allocation.id}\u0000${allocation.ifname ?? ''}`);
  });
  return { set: [], remove };
}

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
