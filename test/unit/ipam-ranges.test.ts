// Addresses, names and ranges: the arithmetic every pool rests on.
import { thrown } from '../helpers/ipam-invocation.ts';
import { describe, expect, it } from 'vitest';
import { strictStderr, takeStderr } from '../helpers/fixture.ts';

strictStderr();
import { formatAddr, parseAddr, parseCidr } from '../../ipam/alloc/addr.ts';
import { normalizeForName, poolName, reservationAddress, reservationName } from '../../ipam/alloc/names.ts';
import { addressAt, resolveRange, spanOf } from '../../ipam/alloc/ranges.ts';

const canon = (text: string) => {
  const a = parseAddr(text)!;
  return formatAddr(a.family, a.value);
};

describe('addresses', () => {
  it.each([
    ['10.0.0.1', '10.0.0.1'],
    ['fd00:0:0:0:0:0:0:1', 'fd00::1'],
    ['FD00::8000:0:0:0', 'fd00::8000:0:0:0'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // the first of two equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
    ['::', '::'],
    ['fd00::', 'fd00::'],
  ])('%s is written %s, as Go writes it', (input, output) => expect(canon(input)).toBe(output));

  it.each(['10.0.0', '10.0.0.256', '010.0.0.1', '1::2::3', 'fd00:::1', 'g::1', '1:2:3:4:5:6:7:8:9', 'fe80::1%eth0', ''])('refuses %j', (bad) => {
    expect(parseAddr(bad)).toBeUndefined();
  });

  it('parses CIDRs with host bits, keeping both', () => {
    expect(parseCidr('192.168.2.225/28')).toMatchObject({ family: 4, prefix: 28, network: parseAddr('192.168.2.224')!.value });
    expect(parseCidr('10.0.0.0/33')).toBeUndefined();
  });
});

describe('names, as whereabouts derives them', () => {
  it('normalizes ranges and addresses', () => {
    expect(poolName('', '192.168.2.0/24')).toBe('192.168.2.0-24');
    expect(poolName('', 'caa5::/64')).toBe('caa5---64');
    expect(poolName('blue', '10.0.0.0/16')).toBe('blue-10.0.0.0-16');
    expect(normalizeForName('fd00::')).toBe('fd00--0');
    expect(reservationName('', 6, parseAddr('fd00::5')!.value)).toBe('fd00--5');
    expect(reservationName('net-a', 4, parseAddr('10.0.0.5')!.value)).toBe('net-a-10.0.0.5');
  });

  it('reads a reservation name back into its address, only within its network scope', () => {
    expect(reservationAddress('', 'fd00--5')).toEqual(parseAddr('fd00::5'));
    expect(reservationAddress('net-a', 'net-a-10.0.0.5')).toEqual(parseAddr('10.0.0.5'));
    expect(reservationAddress('', 'net-a-10.0.0.5')).toBeUndefined();
    expect(reservationAddress('net-b', 'net-a-10.0.0.5')).toBeUndefined();
  });
});

const failure = thrown;

describe('ranges', () => {
  it('normalizes the range to its network and excludes network and broadcast', () => {
    const r = resolveRange({ range: '192.168.2.225/28' }, 'ipam');
    expect(r.cidr).toBe('192.168.2.224/28');
    expect(spanOf(r)).toBe('192.168.2.225-192.168.2.238');
    expect(r.size).toBe(14n);
  });

  it('reads the "start-end/prefix" form', () => {
    const r = resolveRange({ range: '192.168.91.100-192.168.91.110/24' }, 'ipam');
    expect(r.cidr).toBe('192.168.91.0/24');
    expect(spanOf(r)).toBe('192.168.91.100-192.168.91.110');
    expect(r.size).toBe(11n);
  });

  it('ignores, with a warning, a range_start outside the range (whereabouts ignores it silently)', () => {
    const r = resolveRange({ range: '10.0.0.0/24', range_start: '10.0.1.5', range_end: '10.0.0.20' }, 'ipam');
    expect(spanOf(r)).toBe('10.0.0.1-10.0.0.20');
    expect(takeStderr()).toEqual([expect.stringMatching(/\[warning\] ipam\.range_start = "10\.0\.1\.5" is outside the usable addresses 10\.0\.0\.1-10\.0\.0\.254 of 10\.0\.0\.0\/24; ignored/)]);
  });

  it.each(['10.0.0.0/31', '10.0.0.0/32', 'fd00::/127', 'fd00::/128'])('refuses %s, naming it', (range) => {
    const err = failure(() => resolveRange({ range }, 'ipam.ipRanges[0]'));
    expect(err.code).toBe(7);
    expect(err.message).toContain(`ipam.ipRanges[0].range = "${range}"`);
    expect(err.message).toContain('no usable addresses');
  });

  it.each([
    [{ range: '10.0.0/24' }, 'ipam.range = "10.0.0/24"'],
    [{ range: '10.0.0.0/24', range_start: 'ten' }, 'ipam.range_start = "ten"'],
    [{ range: '10.0.0.0/24', exclude: ['10.0.0.0/24', 'x'] }, 'ipam.exclude[1] = "x"'],
    [{ range: '10.0.0.0/24', range_start: '10.0.0.50', range_end: '10.0.0.10' }, 'is after range end'],
    [{ range: '10.0.0.5-10.0.1.5/24' }, 'outside the usable addresses'],
  ])('refuses %j with a message naming the field', (input, fragment) => {
    expect(failure(() => resolveRange(input, 'ipam')).message).toContain(fragment);
  });

  it('blocks exclusions (CIDRs and bare IPs) and the gateway', () => {
    const gateway = parseAddr('10.0.0.1')!;
    const r = resolveRange({ range: '10.0.0.0/28', exclude: ['10.0.0.4/30', '10.0.0.10', 'fd00::1'] }, 'ipam', gateway);
    const allowed: string[] = [];
    for (const s of r.segments) for (let o = s.start; o <= s.end; o++) allowed.push(addressAt(r, o));
    expect(allowed).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.8', '10.0.0.9', '10.0.0.11', '10.0.0.12', '10.0.0.13', '10.0.0.14']);
    expect(r.size).toBe(8n);
  });

  it('spans a whole IPv6 /64 with bigint offsets', () => {
    const r = resolveRange({ range: 'fd00::/64' }, 'ipam');
    expect(r.size).toBe(2n ** 64n - 1n);
    expect(addressAt(r, r.last)).toBe('fd00::ffff:ffff:ffff:ffff');
    const upper = resolveRange({ range: 'fd00::/64', range_start: 'fd00::8000:0:0:0' }, 'ipam');
    expect(upper.first).toBe(2n ** 63n);
  });
});
