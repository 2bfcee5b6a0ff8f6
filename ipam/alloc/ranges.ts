// One configured range, resolved into offsets from its network address: the span [first, last] that
// may be handed out, minus the blocked offsets (exclusions and the gateway). Whereabouts' own quirks are
// kept where configs depend on them (host bits in `range` are dropped; a range_start outside the range
// is ignored) but each ignored mistake is logged, where whereabouts stays silent.
import { Code, CniError, showValue } from '../../lib/cni/errors.ts';
import { log } from '../../lib/log.ts';
import { bitsOf, formatAddr, formatCidr, parseAddr, parseCidr, sizeOf, type Addr, type Family } from './addr.ts';

export interface RangeInput {
  range: string;
  range_start?: string | undefined;
  range_end?: string | undefined;
  exclude?: ReadonlyArray<string> | undefined;
}

/** A run of allocatable offsets; `before` counts the allocatable offsets in earlier segments. */
export interface Segment {
  start: bigint;
  end: bigint;
  before: bigint;
}

export interface IpRange {
  /** Where it came from in the config, for messages: "ipam" or "ipam.ipRanges[1]". */
  field: string;
  /** The `range` string as configured. */
  source: string;
  family: Family;
  prefix: number;
  network: bigint;
  /** The network CIDR, canonical: the pool's `range` and the root of its name. */
  cidr: string;
  first: bigint;
  last: bigint;
  /** [first, last] minus exclusions and the gateway, ascending. */
  segments: Segment[];
  /** How many offsets may be handed out. */
  size: bigint;
}

const configError = (message: string): CniError => new CniError(Code.InvalidConfig, `invalid network config: ${message}`);

function parseBound(text: string | undefined, family: Family, field: string): Addr | undefined {
  if (text === undefined || text === '') return undefined;
  const addr = parseAddr(text);
  if (!addr) throw configError(`${field} = ${showValue(text)} is not an IP address`);
  if (addr.family !== family) {
    log.warn(`${field} = ${showValue(text)} is not an IPv${family} address like its range; ignored`);
    return undefined;
  }
  return addr;
}

interface Interval {
  start: bigint;
  end: bigint;
}

function mergeIntervals(list: Interval[]): Interval[] {
  const sorted = [...list].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const merged: Interval[] = [];
  for (const next of sorted) {
    const top = merged[merged.length - 1];
    if (top && next.start <= top.end + 1n) {
      if (next.end > top.end) top.end = next.end;
    } else {
      merged.push({ ...next });
    }
  }
  return merged;
}

/** Resolves one range entry. `gateway` is never handed out when it falls inside the span. */
export function resolveRange(input: RangeInput, field: string, gateway?: Addr): IpRange {
  let { range_start: startText, range_end: endText } = input;
  let cidrText = input.range;
  const dash = input.range.indexOf('-');
  if (dash >= 0) {
    // "a.b.c.d-e.f.g.h/nn": the start and the end of the span in one string; it wins over range_start/end.
    const inlineStart = input.range.slice(0, dash);
    cidrText = input.range.slice(dash + 1);
    const inlineEnd = cidrText.slice(0, Math.max(0, cidrText.indexOf('/')));
    for (const [name, given, inline] of [['range_start', startText, inlineStart], ['range_end', endText, inlineEnd]] as const) {
      if (given !== undefined && given !== inline) log.warn(`${field}.${name} = ${showValue(given)} is overridden by ${field}.range = ${showValue(input.range)}`);
    }
    startText = inlineStart;
    endText = inlineEnd;
  }
  const cidr = parseCidr(cidrText);
  if (!cidr) throw configError(`${field}.range = ${showValue(input.range)} is not a CIDR such as "192.168.1.0/24" or a span such as "192.168.1.10-192.168.1.50/24"`);
  const { family, prefix, network } = cidr;
  const bits = bitsOf(family);
  if (prefix >= bits - 1) {
    throw configError(`${field}.range = ${showValue(input.range)} has no usable addresses: /${bits - 1} and /${bits} ranges are not supported`);
  }
  const size = sizeOf(family, prefix);
  // IPv4 loses the network and broadcast addresses; IPv6 only the subnet-router anycast (offset 0).
  const minUsable = 1n;
  const maxUsable = family === 4 ? size - 2n : size - 1n;
  const cidrString = formatCidr(family, network, prefix);
  const span = `${formatAddr(family, network + minUsable)}-${formatAddr(family, network + maxUsable)}`;

  const boundOffset = (addr: Addr | undefined, name: string, fallback: bigint): bigint => {
    if (!addr) return fallback;
    const offset = addr.value - network;
    if (offset < minUsable || offset > maxUsable) {
      const text = name === 'range_start' ? startText : endText;
      if (dash >= 0) throw configError(`${field}.range = ${showValue(input.range)}: ${showValue(text)} is outside the usable addresses ${span}`);
      log.warn(`${field}.${name} = ${showValue(text)} is outside the usable addresses ${span} of ${cidrString}; ignored, as whereabouts does`);
      return fallback;
    }
    return offset;
  };
  const startField = dash >= 0 ? `${field}.range` : `${field}.range_start`;
  const endField = dash >= 0 ? `${field}.range` : `${field}.range_end`;
  const first = boundOffset(parseBound(startText, family, startField), 'range_start', minUsable);
  const last = boundOffset(parseBound(endText, family, endField), 'range_end', maxUsable);
  if (first > last) {
    throw configError(
      `${field}: range start ${formatAddr(family, network + first)} is after range end ${formatAddr(family, network + last)} in ${showValue(input.range)}`,
    );
  }

  const blocked: Interval[] = [];
  // Each exclusion that excludes nothing is worth a warning, but not thousands of lines on every verb.
  const outside: string[] = [];
  (input.exclude ?? []).forEach((text, i) => {
    const excludeField = `${field}.exclude[${i}]`;
    const asCidr = text.includes('/') ? parseCidr(text) : undefined;
    const asAddr = asCidr ? undefined : parseAddr(text);
    if (!asCidr && !asAddr) throw configError(`${excludeField} = ${showValue(text)} is neither a CIDR nor an IP address`);
    const excludeFamily = asCidr?.family ?? asAddr!.family;
    if (excludeFamily !== family) return; // an exclusion for the other family of a dual-stack config
    const start = (asCidr ? asCidr.network : asAddr!.value) - network;
    const end = asCidr ? start + sizeOf(family, asCidr.prefix) - 1n : start;
    if (end < first || start > last) {
      outside.push(`${excludeField} = ${showValue(text)}`);
      return;
    }
    blocked.push({ start: start < first ? first : start, end: end > last ? last : end });
  });
  if (outside.length > 0) {
    const more = outside.length > 3 ? ` and ${outside.length - 3} more` : '';
    log.warn(`${outside.slice(0, 3).join(', ')}${more} exclude nothing: outside ${formatAddr(family, network + first)}-${formatAddr(family, network + last)}`);
  }
  if (gateway && gateway.family === family) {
    const offset = gateway.value - network;
    if (offset >= first && offset <= last) blocked.push({ start: offset, end: offset });
  }

  const segments: Segment[] = [];
  let cursor = first;
  let before = 0n;
  for (const hole of mergeIntervals(blocked)) {
    if (hole.start > cursor) {
      segments.push({ start: cursor, end: hole.start - 1n, before });
      before += hole.start - cursor;
    }
    if (hole.end + 1n > cursor) cursor = hole.end + 1n;
  }
  if (cursor <= last) {
    segments.push({ start: cursor, end: last, before });
    before += last - cursor + 1n;
  }
  return { field, source: input.range, family, prefix, network, cidr: cidrString, first, last, segments, size: before };
}

export const addressAt = (range: IpRange, offset: bigint): string => formatAddr(range.family, range.network + offset);

/** The address with the range's prefix, as a CNI result carries it: "192.168.1.5/24". */
export const cidrAt = (range: IpRange, offset: bigint): string => `${addressAt(range, offset)}/${range.prefix}`;

/** The offset of `addr` in the range's network, or undefined when it lies outside that network. */
export function offsetOf(range: IpRange, addr: Addr): bigint | undefined {
  if (addr.family !== range.family) return undefined;
  const offset = addr.value - range.network;
  return offset >= 0n && offset < sizeOf(range.family, range.prefix) ? offset : undefined;
}

/** True when `offset` may be handed out: inside [first, last] and not blocked. */
export function isAllocatable(range: IpRange, offset: bigint): boolean {
  return range.segments.some((s) => offset >= s.start && offset <= s.end);
}

/** Describes the span for messages: "192.168.91.100-192.168.91.110". */
export const spanOf = (range: IpRange): string => `${addressAt(range, range.first)}-${addressAt(range, range.last)}`;
