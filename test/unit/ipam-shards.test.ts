// The pure side of sharding: record names, the span each shard owns, and the index hints.
import { describe, expect, it } from 'vitest';
import { lowestFree } from '../../ipam/alloc/allocator.ts';
import { resolveRange } from '../../ipam/alloc/ranges.ts';
import {
  byShard, claimName, clip, emptyIndex, fingerprint, indexName, isClaimName, isSharded, lowerHints, nextShard, raiseHint, roleOf, scanOrder, shardName, startShard,
} from '../../ipam/alloc/shards.ts';

describe('shard layout', () => {
  it('keeps pools of up to 1024 addresses in one record and cuts bigger ones', () => {
    expect(isSharded(resolveRange({ range: '10.0.0.0/22' }, 'ipam'))).toBe(false);
    expect(isSharded(resolveRange({ range: '10.0.0.0/21' }, 'ipam'))).toBe(true);
    expect(isSharded(resolveRange({ range: 'fd00::/118' }, 'ipam'))).toBe(false);
    expect(isSharded(resolveRange({ range: 'fd00::/64' }, 'ipam'))).toBe(true);
  });

  it('names shard 0 like the whereabouts pool and the others so they parse back', () => {
    expect(shardName('10.64.0.0-16', 0n)).toBe('10.64.0.0-16');
    expect(shardName('blue-10.64.0.0-16', 63n)).toBe('blue-10.64.0.0-16-s63');
    expect(roleOf('blue-10.64.0.0-16-s63')).toEqual({ kind: 'shard', pool: 'blue-10.64.0.0-16', shard: 63n });
    expect(roleOf('10.64.0.0-16')).toEqual({ kind: 'shard', pool: '10.64.0.0-16', shard: 0n });
    expect(roleOf(indexName('fd00---64'))).toEqual({ kind: 'index', pool: 'fd00---64' });
    const claim = claimName('10.64.0.0-16', 'ns/pod', 'net1');
    expect(claim).toMatch(/^10\.64\.0\.0-16\.claim\.[0-9a-f]{32}$/);
    expect(claim).not.toBe(claimName('10.64.0.0-16', 'ns/pod', 'net2'));
    expect(isClaimName(claim)).toBe(true);
    // Kubernetes object names (DNS-1123 subdomain) for every record of a pool.
    for (const name of [shardName('10.64.0.0-16', 5n), indexName('10.64.0.0-16'), claim]) expect(name).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
  });

  it('clips the allocatable segments to a shard and skips shards with none', () => {
    const range = resolveRange({ range: '10.0.0.0/16', exclude: ['10.0.4.0/22', '10.0.8.0/21'] }, 'ipam', { family: 4, value: 0x0a000001n });
    expect(clip(range, 0n).segments.map((s) => [s.start, s.end])).toEqual([[2n, 1023n]]);
    expect(nextShard(range, 1n)).toBe(4n); // shard 1 is 10.0.4.0/22, shards 2 and 3 are 10.0.8.0/21: excluded
    expect(nextShard(range, 4n)).toBe(4n);
    expect(clip(range, 63n).segments.map((s) => [s.start, s.end])).toEqual([[64512n, 65534n]]); // no broadcast
    expect(nextShard(range, 64n)).toBeUndefined();
    expect(lowestFree({ range: range.cidr, allocations: {} }, clip(range, 1n))).toBeUndefined();
    expect(byShard({ range: range.cidr, allocations: { 5: { id: 'a', podref: 'a' }, 2000: { id: 'b', podref: 'b' } } })).toEqual(new Map([[0n, ['5']], [1n, ['2000']]]));
  });

  it('keeps one hint per config, raised by ADD and lowered for all by DEL', () => {
    const whole = resolveRange({ range: '10.0.0.0/16' }, 'ipam');
    const upper = resolveRange({ range: '10.0.0.0/16', range_start: '10.0.128.0' }, 'ipam');
    expect(fingerprint(whole)).not.toBe(fingerprint(upper));
    let index = emptyIndex(whole);
    expect(startShard(index, whole)).toBe(0n);
    expect(startShard(index, upper)).toBe(32n); // never before the range's first shard
    index = raiseHint(raiseHint(index, whole, 40n), upper, 50n);
    expect([startShard(index, whole), startShard(index, upper)]).toEqual([40n, 50n]);
    index = lowerHints(index, 45n);
    expect([startShard(index, whole), startShard(index, upper)]).toEqual([40n, 45n]);
  });
});

describe('scanOrder', () => {
  const range = resolveRange({ range: '10.0.0.0/16' }, 'ipam');
  const all = (first: bigint, contended: boolean, node?: string) => [...scanOrder(range, first, { contended, node })];

  it('reads every shard from the first with room once, lowest first when uncontended', () => {
    expect(all(3n, false)).toEqual(Array.from({ length: 61 }, (_, i) => BigInt(i + 3)));
  });

  it('after a lost race starts at one of the next 16 shards and still reads every shard once', () => {
    const starts = new Set<bigint>();
    for (let i = 0; i < 200; i++) {
      const order = all(3n, true);
      expect([...order].sort((a, b) => (a < b ? -1 : 1))).toEqual(all(3n, false));
      expect(order[0]! - 3n).toBeLessThan(16n);
      starts.add(order[0]!);
    }
    expect(starts.size).toBeGreaterThan(8); // spread over many records, not one
  });

  it('starts each node at a shard of its own among the next 16, the same on every ADD', () => {
    const starts = new Set<bigint>();
    for (let n = 0; n < 40; n++) {
      const order = all(3n, false, `node-${n}`);
      expect(order).toEqual(all(3n, false, `node-${n}`));
      expect([...order].sort((a, b) => (a < b ? -1 : 1))).toEqual(all(3n, false));
      expect(order[0]! - 3n).toBeLessThan(16n);
      starts.add(order[0]!);
    }
    expect(starts.size).toBeGreaterThan(8);
  });

  it('spreads only over the shards there are, and yields none past the end', () => {
    const small = resolveRange({ range: '10.0.0.0/21' }, 'ipam');
    for (let i = 0; i < 50; i++) expect([...scanOrder(small, 1n, { contended: true })].sort()).toEqual([1n]);
    expect([...scanOrder(range, undefined, { contended: true })]).toEqual([]);
  });
});
