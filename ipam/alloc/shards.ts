// How a big pool is cut into records, as pure functions (names, spans, hints); ipam/lease/sharded.ts does the
// I/O. A pool whose CIDR holds at most SHARD_SPAN addresses (an IPv4 /22 or smaller) is ONE record,
// exactly whereabouts' IPPool. A bigger CIDR is cut by offset into fixed spans of SHARD_SPAN:
//   <pool>                   shard 0 (offsets 0..1023): whereabouts' IPPool name and shape
//   <pool>-s<k>              shard k (offsets k*1024 .. k*1024+1023), same shape {range, allocations}
//   <pool>-index             {range, allocations: {}, hints: {<fingerprint>: "<k>"}}: per config, the
//                            lowest shard that may have room (a hint, see below)
//   <pool>.claim.<hash>      a reservation-kind record per (pool, podref, ifname): {podref, ifname,
//                            containerid, offset}, so a pod's lease is found without reading shards
// Pool names end in "-<prefix length>", so neither suffix can collide with another pool's name, and all
// are valid Kubernetes object names (for a DNS-1123 network_name). Offsets stay global (decimal offset
// from the network address) in every shard, so shard 0 of a sharded pool reads as a whereabouts pool.
// The shard that owns an offset depends on the offset alone, never on a config: configs that share a
// pool with different range_start/exclude agree on where each address lives.
import { sizeOf } from './addr.ts';
import type { IpRange, Segment } from './ranges.ts';
import type { PoolRecord } from '../store/types.ts';

export const SHARD_BITS = 10n;
/** 1024 addresses: a full shard is ~170 KB of JSON and parses in well under a millisecond. */
export const SHARD_SPAN = 1n << SHARD_BITS;
/** A config's hint is dropped beyond this many configs per pool: a missing hint only costs reads. */
const MAX_HINTS = 32;

export const isSharded = (range: Pick<IpRange, 'family' | 'prefix'>): boolean => sizeOf(range.family, range.prefix) > SHARD_SPAN;

export const shardOf = (offset: bigint): bigint => offset >> SHARD_BITS;

export const shardName = (pool: string, shard: bigint): string => (shard === 0n ? pool : `${pool}-s${shard}`);

export const indexName = (pool: string): string => `${pool}-index`;

/** node:crypto is loaded only here, when a pool is sharded: loading it costs every ADD ~6 ms. */
const sha256 = (text: string): string => process.getBuiltinModule('node:crypto').createHash('sha256').update(text).digest('hex');

/** The claim of (podref, ifname) in `pool`: hashed, since podrefs hold "/" and may be long. */
export function claimName(pool: string, podref: string, ifname: string): string {
  const hash = sha256(`${podref}\u0000${ifname}`).slice(0, 32);
  return `${pool}.claim.${hash}`;
}

export const isClaimOf = (pool: string, reservation: string): boolean => reservation.startsWith(`${pool}.claim.`);

/** A claim is never an address reservation: names with ".claim." are not addresses. */
export const isClaimName = (reservation: string): boolean => reservation.includes('.claim.');

export type RecordRole = { kind: 'shard'; pool: string; shard: bigint } | { kind: 'index'; pool: string };

/** What a record name is: a shard (shard 0 is the pool's own name) or the index of `pool`. */
export function roleOf(name: string): RecordRole {
  const shard = /^(.+-\d+)-s(\d+)$/.exec(name);
  if (shard) return { kind: 'shard', pool: shard[1]!, shard: BigInt(shard[2]!) };
  const index = /^(.+-\d+)-index$/.exec(name);
  if (index) return { kind: 'index', pool: index[1]! };
  return { kind: 'shard', pool: name, shard: 0n };
}

/** The range seen through one shard: its segments clipped to the shard's span. */
export function clip(range: IpRange, shard: bigint): IpRange {
  const lo = shard << SHARD_BITS;
  const hi = lo + SHARD_SPAN - 1n;
  const segments: Segment[] = [];
  for (const s of range.segments) {
    if (s.end < lo || s.start > hi) continue;
    segments.push({ start: s.start < lo ? lo : s.start, end: s.end > hi ? hi : s.end, before: 0n });
  }
  return { ...range, segments };
}

/** The first shard at or after `from` holding an allocatable offset of `range`; undefined past the end. */
export function nextShard(range: IpRange, from: bigint): bigint | undefined {
  for (const s of range.segments) {
    if (shardOf(s.end) < from) continue;
    const first = shardOf(s.start);
    return first > from ? first : from;
  }
  return undefined;
}

/** How many shards past the hint ADDs start at: up to this many nodes (or racers) write different records. */
const SPREAD = 16;

/** FNV-1a, 32 bits: a node's stable place, without loading node:crypto on every ADD. */
function nodeHash(node: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < node.length; i++) hash = Math.imul(hash ^ node.charCodeAt(i), 0x01000193) >>> 0;
  return hash;
}

/**
 * The order an ADD reads a big pool's shards in: every shard from `first` (the lowest that may have
 * room) to the end, then round to `first`, starting at one of the next SPREAD shards: the node's own
 * when the node is known (its pods fill a slice of their own, as whereabouts' node slices would, and
 * nodes do not race for one record), a random one after a lost race (`contended`), else `first` itself
 * (one node alone, or no node name: the lowest free address). Within a shard, the lowest free address.
 */
export function* scanOrder(range: IpRange, first: bigint | undefined, how: { node?: string | undefined; contended: boolean }): Generator<bigint> {
  if (first === undefined) return;
  const span = shardOf(range.last) - first + 1n;
  const width = span < BigInt(SPREAD) ? Number(span) : SPREAD;
  const step = BigInt(how.contended ? Math.floor(Math.random() * width) : how.node ? nodeHash(how.node) % width : 0);
  const start = nextShard(range, first + step) ?? first;
  for (let shard: bigint | undefined = start; shard !== undefined; shard = nextShard(range, shard + 1n)) yield shard;
  for (let shard: bigint | undefined = first; shard !== undefined && shard < start; shard = nextShard(range, shard + 1n)) yield shard;
}

/** Identifies a config's allocatable offsets: "full" is only meaningful for one set of segments. */
export function fingerprint(range: IpRange): string {
  const text = range.segments.map((s) => `${s.start}-${s.end}`).join(',');
  return sha256(text).slice(0, 12);
}

export interface IndexRecord extends PoolRecord {
  hints: Record<string, string>;
}

export const emptyIndex = (range: IpRange): IndexRecord => ({ range: range.cidr, allocations: {}, hints: {} });

/** The index's hints, tolerating a record written without them (or by hand). */
export function hintsOf(record: PoolRecord): Record<string, string> {
  const hints = (record as { hints?: unknown }).hints;
  const out: Record<string, string> = {};
  if (hints === null || typeof hints !== 'object' || Array.isArray(hints)) return out;
  for (const [key, value] of Object.entries(hints)) if (typeof value === 'string' && /^\d+$/.test(value)) out[key] = value;
  return out;
}

/** Where a config starts looking: its hint, never before the range's first shard. */
export function startShard(record: PoolRecord | undefined, range: IpRange): bigint {
  const first = shardOf(range.first);
  const hint = record ? hintsOf(record)[fingerprint(range)] : undefined;
  return hint !== undefined && BigInt(hint) > first ? BigInt(hint) : first;
}

/** ADD found every shard below `shard` full: the index with this config's hint raised to it. */
export function raiseHint(record: PoolRecord, range: IpRange, shard: bigint): IndexRecord {
  const hints = hintsOf(record);
  delete hints[fingerprint(range)]; // re-added last: the oldest hints go first when there are too many
  const keys = Object.keys(hints);
  for (const key of keys.slice(0, Math.max(0, keys.length - MAX_HINTS + 1))) delete hints[key];
  hints[fingerprint(range)] = shard.toString();
  return { ...record, hints };
}

/** DEL freed an address in `shard`: every config's hint comes down to it at most. */
export function lowerHints(record: PoolRecord, shard: bigint): IndexRecord {
  const hints = hintsOf(record);
  for (const [key, value] of Object.entries(hints)) if (BigInt(value) > shard) hints[key] = shard.toString();
  return { ...record, hints };
}

/** Splits a record's allocations by the shard that owns them (legacy single records hold them all). */
export function byShard(pool: PoolRecord): Map<bigint, string[]> {
  const out = new Map<bigint, string[]>();
  for (const key of Object.keys(pool.allocations)) {
    if (!/^\d+$/.test(key)) continue;
    const shard = shardOf(BigInt(key));
    const list = out.get(shard);
    if (list) list.push(key);
    else out.set(shard, [key]);
  }
  return out;
}
