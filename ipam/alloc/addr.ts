// IP addresses as bigints. Offsets inside a range are bigint so that a whole IPv6 /64 (2^64 addresses)
// is addressable: whereabouts kept offsets in a uint64 that went negative past the first /65 (#83).
// Formatting follows Go's net.IP.String() (RFC 5952), because pool and reservation names are derived
// from these strings and must match the names whereabouts gives the same range.

export type Family = 4 | 6;

export interface Addr {
  family: Family;
  value: bigint;
}

export const bitsOf = (family: Family): number => (family === 4 ? 32 : 128);

function parseV4(text: string): bigint | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    // Leading zeros are refused (as Go does): "010" could mean octal to some readers.
    if (!/^(0|[1-9]\d{0,2})$/.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = (value << 8n) | BigInt(octet);
  }
  return value;
}

function parseV6(text: string): bigint | undefined {
  if (text.includes('%')) return undefined; // zones have no meaning in a pool
  let head = text;
  let tail = '';
  const doubleColon = text.indexOf('::');
  if (doubleColon >= 0) {
    if (text.indexOf('::', doubleColon + 1) >= 0) return undefined;
    head = text.slice(0, doubleColon);
    tail = text.slice(doubleColon + 2);
  }
  const groups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    const pieces = part.split(':');
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (i === pieces.length - 1 && piece.includes('.')) {
        const v4 = parseV4(piece); // an embedded IPv4 tail such as ::ffff:10.0.0.1
        if (v4 === undefined) return undefined;
        out.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(piece)) return undefined;
      out.push(parseInt(piece, 16));
    }
    return out;
  };
  const left = groups(head);
  const right = groups(tail);
  if (!left || !right) return undefined;
  const missing = 8 - left.length - right.length;
  if (doubleColon >= 0 ? missing < 1 : missing !== 0) return undefined;
  const all = [...left, ...new Array<number>(doubleColon >= 0 ? missing : 0).fill(0), ...right];
  return all.reduce((acc, group) => (acc << 16n) | BigInt(group), 0n);
}

/** Parses a bare IPv4 or IPv6 address; undefined when it is not one. */
export function parseAddr(text: string): Addr | undefined {
  if (text.includes(':')) {
    const value = parseV6(text);
    return value === undefined ? undefined : { family: 6, value };
  }
  const value = parseV4(text);
  return value === undefined ? undefined : { family: 4, value };
}

export function formatAddr(family: Family, value: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
  }
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((value >> shift) & 0xffffn));
  // The longest run of two or more zero groups becomes "::" (the first one on a tie).
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (list: number[]): string => list.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

export interface Cidr {
  family: Family;
  /** The address as written, host bits included. */
  addr: bigint;
  prefix: number;
  /** The network address: `addr` with the host bits cleared. */
  network: bigint;
}

/** Parses "a.b.c.d/nn" or "x::y/nn"; undefined when it is not a CIDR. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const addr = parseAddr(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (!addr || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > bitsOf(addr.family)) return undefined;
  return { family: addr.family, addr: addr.value, prefix, network: networkOf(addr.family, addr.value, prefix) };
}

export function hostBits(family: Family, prefix: number): bigint {
  return BigInt(bitsOf(family) - prefix);
}

export function networkOf(family: Family, value: bigint, prefix: number): bigint {
  const host = hostBits(family, prefix);
  return (value >> host) << host;
}

/** Number of addresses in a prefix: 2^(bits - prefix). */
export const sizeOf = (family: Family, prefix: number): bigint => 1n << hostBits(family, prefix);

export const formatCidr = (family: Family, value: bigint, prefix: number): string => `${formatAddr(family, value)}/${prefix}`;
