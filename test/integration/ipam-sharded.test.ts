// A pool bigger than one shard (ipam/alloc/shards.ts), through the plugin's verbs on a real file store: the
// lowest free address across shard boundaries, idempotency and release through claims, GC, CHECK,
// STATUS, the CLI's one-pool view, and the migration of a whole-range record written before sharding.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runIpamCli } from '../../ipam/cli.ts';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { FileStore } from '../../ipam/store/file/store.ts';
import { type InvocationSpec, failure, invocation, tempStoreDir } from '../helpers/ipam-invocation.ts';
import { readPool, writePool } from '../helpers/store.ts';

type Ipam = Record<string, unknown>;
const addresses = async (ipam: Ipam, spec: Partial<InvocationSpec> = {}) => (await ipamPlugin.add(invocation({ ipam, ...spec }))).ips!.map((ip) => ip.address);
const del = (ipam: Ipam, spec: Partial<InvocationSpec> = {}) => ipamPlugin.del(invocation({ ipam, verb: 'DEL', ...spec }));
const pools = (dir: string) => readdirSync(join(dir, 'pools')).filter((f) => f.endsWith('.json')).sort();
const files = (dir: string, sub: string) => readdirSync(join(dir, sub)).filter((f) => f.endsWith('.json'));


async function cli(argv: string[]): Promise<string> {
  let out = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((out += String(chunk)), true));
  await runIpamCli(argv);
  vi.restoreAllMocks();
  return out;
}

afterEach(() => vi.restoreAllMocks());

describe('a pool in shards', () => {
  it('hands out the lowest free address across a shard boundary, never the gateway or exclusions', async () => {
    const dir = tempStoreDir();
    // 10.30.0.0/21: shard 0 is 10.30.0.0-10.30.3.255, shard 1 10.30.4.0-10.30.7.255.
    const ipam = { type: 'whereabouts', range: '10.30.0.0/21', range_start: '10.30.3.253', gateway: '10.30.3.254', exclude: ['10.30.4.0/31'], file_store_dir: dir };
    const got: string[] = [];
    for (let i = 0; i < 4; i++) got.push(...(await addresses(ipam, { containerId: `c${i}`, pod: `ns/p${i}` })));
    expect(got).toEqual(['10.30.3.253/21', '10.30.3.255/21', '10.30.4.2/21', '10.30.4.3/21']);
    expect(pools(dir)).toEqual(['10.30.0.0-21-index.json', '10.30.0.0-21-s1.json', '10.30.0.0-21.json']);
    // A freed address in an earlier shard is the next one handed out (the hint comes down).
    await del(ipam, { containerId: 'c1', pod: 'ns/p1' });
    expect(await addresses(ipam, { containerId: 'c9', pod: 'ns/p9' })).toEqual(['10.30.3.255/21']);
    expect(await addresses(ipam, { containerId: 'c10', pod: 'ns/p10' })).toEqual(['10.30.4.4/21']);
  });

  it('is idempotent on (pod, interface), ignores a late DEL of a replaced sandbox, releases on the exact container', async () => {
    const dir = tempStoreDir();
    const ipam = { type: 'whereabouts', range: '10.31.0.0/21', range_start: '10.31.4.10', file_store_dir: dir };
    expect(await addresses(ipam, { containerId: 'old', pod: 'ns/web-0' })).toEqual(['10.31.4.10/21']);
    expect(await addresses(ipam, { containerId: 'new', pod: 'ns/web-0' })).toEqual(['10.31.4.10/21']);
    const shard = (await readPool(new FileStore(dir), '10.31.0.0-21-s1'))!.value;
    expect(shard.allocations['1034']).toMatchObject({ id: 'new', podref: 'ns/web-0' });
    await del(ipam, { containerId: 'old', pod: 'ns/web-0' });
    expect((await readPool(new FileStore(dir), '10.31.0.0-21-s1'))!.value.allocations['1034']?.id).toBe('new');
    expect(await addresses(ipam, { containerId: 'new', pod: 'ns/web-0', ifName: 'net2' })).toEqual(['10.31.4.11/21']);
    await ipamPlugin.check(invocation({ ipam, verb: 'CHECK', containerId: 'new', pod: 'ns/web-0', extra: { prevResult: { cniVersion: '1.1.0', ips: [{ address: '10.31.4.10/21' }] } } }));
    await del(ipam, { containerId: 'unknown', pod: 'ns/web-0' }); // another container ID: releases nothing
    expect((await readPool(new FileStore(dir), '10.31.0.0-21-s1'))!.value.allocations['1034']?.id).toBe('new');
    await del(ipam, { containerId: 'new', pod: 'ns/web-0' });
    await del(ipam, { containerId: 'new', pod: 'ns/web-0', ifName: 'net2' });
    expect((await readPool(new FileStore(dir), '10.31.0.0-21-s1'))!.value.allocations).toEqual({});
    expect(files(dir, 'reservations')).toEqual([]); // reservations and claims gone
    expect((await failure(ipamPlugin.check(invocation({ ipam, verb: 'CHECK', containerId: 'new', pod: 'ns/web-0', extra: { prevResult: { cniVersion: '1.1.0', ips: [] } } })))).code).toBe(3);
  });

  it('reports exhaustion (ADD code 100, STATUS 50) and recovers after a DEL', async () => {
    const ipam = { type: 'whereabouts', range: '10.32.3.254-10.32.4.1/21', file_store_dir: tempStoreDir() };
    for (const id of ['a', 'b', 'c', 'd']) await addresses(ipam, { containerId: id });
    expect((await failure(addresses(ipam, { containerId: 'e' }))).code).toBe(100);
    expect((await failure(ipamPlugin.status(invocation({ ipam, verb: 'STATUS' })))).code).toBe(50);
    await del(ipam, { containerId: 'b' });
    await ipamPlugin.status(invocation({ ipam, verb: 'STATUS' }));
    expect(await addresses(ipam, { containerId: 'e' })).toEqual(['10.32.3.255/21']);
  });

  it('GC keeps exactly the valid attachments across shards and drops the claims of the rest', async () => {
    const dir = tempStoreDir();
    const ipam = { type: 'whereabouts', range: '10.33.3.254-10.33.4.3/21', file_store_dir: dir };
    for (const id of ['a', 'b', 'c', 'd']) await addresses(ipam, { containerId: id });
    await ipamPlugin.gc(invocation({ ipam, verb: 'GC', extra: { 'cni.dev/valid-attachments': [{ containerID: 'b', ifname: 'net1' }, { containerID: 'd', ifname: 'net1' }] } }));
    const store = new FileStore(dir);
    const held = [...Object.values((await readPool(store, '10.33.0.0-21'))!.value.allocations), ...Object.values((await readPool(store, '10.33.0.0-21-s1'))!.value.allocations)];
    expect(held.map((a) => a.id).sort()).toEqual(['b', 'd']);
    expect(files(dir, 'reservations').filter((f) => !f.includes('.claim.')).sort()).toEqual(['10.33.3.255.json', '10.33.4.1.json']);
    expect(files(dir, 'reservations').filter((f) => f.includes('.claim.'))).toHaveLength(2);
  });

  it('shows a sharded pool as one pool in `underlay ipam ls/show`', async () => {
    const dir = tempStoreDir();
    const ipam = { type: 'whereabouts', range: '10.34.3.254-10.34.4.1/21', file_store_dir: dir };
    for (const id of ['a', 'b', 'c']) await addresses(ipam, { containerId: id, pod: `ns/${id}` });
    const ls = JSON.parse(await cli(['ls', '--json', '--dir', dir])) as { pools: unknown; reservations: number };
    // free counts the 4 addresses the config can hand out (10.34.3.254-10.34.4.1), not the whole /21
    expect(ls.pools).toMatchObject([{ name: '10.34.0.0-21', range: '10.34.0.0/21', used: 3, free: 1 }]);
    expect(ls.reservations).toBe(3);
    const show = JSON.parse(await cli(['show', '10.34.0.0-21', '--json', '--dir', dir])) as { leases: Array<{ address: string; pod: string }> };
    expect(show.leases.map((l: { address: string; pod: string }) => [l.address, l.pod])).toEqual([['10.34.3.254', 'ns/a'], ['10.34.3.255', 'ns/b'], ['10.34.4.0', 'ns/c']]);
  });
});

describe('a whole-range record written before sharding (or by whereabouts)', () => {
  it('is migrated on first use: leases kept, found by pod, and never handed out again', async () => {
    const dir = tempStoreDir();
    const store = new FileStore(dir);
    const allocations = {
      1: { id: 'x1', podref: 'ns/one', ifname: 'net1' },
      2: { id: 'x2', podref: 'ns/two', ifname: 'net1' },
      1024: { id: 'x3', podref: 'ns/three', ifname: 'net1' },
      2050: { id: 'x4', podref: 'ns/four', ifname: 'net1' },
    };
    await writePool(store, '10.35.0.0-20', { range: '10.35.0.0/20', allocations }, undefined);
    const ipam = { type: 'whereabouts', range: '10.35.0.0/20', range_start: '10.35.4.0', file_store_dir: dir };
    // The existing lease of the pod, found through the claim the migration wrote.
    expect(await addresses(ipam, { containerId: 'y3', pod: 'ns/three' })).toEqual(['10.35.4.0/20']);
    expect(await addresses(ipam, { containerId: 'new', pod: 'ns/new' })).toEqual(['10.35.4.1/20']);
    expect(Object.keys((await readPool(store, '10.35.0.0-20'))!.value.allocations)).toEqual(['1', '2']);
    expect((await readPool(store, '10.35.0.0-20-s2'))!.value.allocations['2050']).toMatchObject({ id: 'x4' });
    const ls = JSON.parse(await cli(['ls', '--json', '--dir', dir])) as { pools: unknown; reservations: number };
    expect(ls.pools).toMatchObject([{ name: '10.35.0.0-20', used: 5 }]);
    await del(ipam, { containerId: 'x4', pod: 'ns/four' });
    expect((await readPool(store, '10.35.0.0-20-s2'))!.value.allocations).toEqual({});
    const whole = { type: 'whereabouts', range: '10.35.0.0/20', file_store_dir: dir };
    expect(await addresses(whole, { containerId: 'low', pod: 'ns/low' })).toEqual(['10.35.0.3/20']);
  });
});
