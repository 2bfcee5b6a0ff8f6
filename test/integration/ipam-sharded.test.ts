// A pool bigger than one shard (ipam/alloc/shards.ts), through the plugin's verbs on each store
// (test/helpers/stores.ts): the lowest free address across shard boundaries, idempotency and release
// through claims, GC, CHECK, STATUS, the CLI's one-pool view, and the migration of a whole-range record
// written before sharding. Records are read through the store interface.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isClaimName } from '../../ipam/alloc/shards.ts';
import { runIpamCli } from '../../ipam/cli.ts';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { type InvocationSpec, failure, invocation } from '../helpers/ipam-invocation.ts';
import { poolNames, readPool, reservationNames, writePool } from '../helpers/store.ts';
import { useStores } from '../helpers/stores.ts';

type Ipam = Record<string, unknown>;
const addresses = async (ipam: Ipam, spec: Partial<InvocationSpec> = {}) => (await ipamPlugin.add(invocation({ ipam, ...spec }))).ips!.map((ip) => ip.address);
const del = (ipam: Ipam, spec: Partial<InvocationSpec> = {}) => ipamPlugin.del(invocation({ ipam, verb: 'DEL', ...spec }));
const sorted = async (names: Promise<string[]>) => (await names).sort();

async function cli(argv: string[]): Promise<string> {
  let out = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((out += String(chunk)), true));
  await runIpamCli(argv);
  vi.restoreAllMocks();
  return out;
}

afterEach(() => vi.restoreAllMocks());

const stores = useStores();

for (const store of stores) {
  describe(`on the ${store.kind} store`, () => {
    store.startBeforeAll();

    describe('a pool in shards', () => {
      it('hands out the lowest free address across a shard boundary, never the gateway or exclusions', async () => {
        // 10.30.0.0/21: shard 0 is 10.30.0.0-10.30.3.255, shard 1 10.30.4.0-10.30.7.255.
        const ipam = { type: 'whereabouts', range: '10.30.0.0/21', range_start: '10.30.3.253', gateway: '10.30.3.254', exclude: ['10.30.4.0/31'], ...store.fresh() };
        const got: string[] = [];
        for (let i = 0; i < 4; i++) got.push(...(await addresses(ipam, { containerId: `c${i}`, pod: `ns/p${i}` })));
        expect(got).toEqual(['10.30.3.253/21', '10.30.3.255/21', '10.30.4.2/21', '10.30.4.3/21']);
        expect(await sorted(poolNames(await store.open(ipam)))).toEqual(['10.30.0.0-21', '10.30.0.0-21-index', '10.30.0.0-21-s1']);
        // A freed address in an earlier shard is the next one handed out (the hint comes down).
        await del(ipam, { containerId: 'c1', pod: 'ns/p1' });
        expect(await addresses(ipam, { containerId: 'c9', pod: 'ns/p9' })).toEqual(['10.30.3.255/21']);
        expect(await addresses(ipam, { containerId: 'c10', pod: 'ns/p10' })).toEqual(['10.30.4.4/21']);
      });

      it('is idempotent on (pod, interface), ignores a late DEL of a replaced sandbox, releases on the exact container', async () => {
        const ipam = { type: 'whereabouts', range: '10.31.0.0/21', range_start: '10.31.4.10', ...store.fresh() };
        const records = await store.open(ipam);
        expect(await addresses(ipam, { containerId: 'old', pod: 'ns/web-0' })).toEqual(['10.31.4.10/21']);
        expect(await addresses(ipam, { containerId: 'new', pod: 'ns/web-0' })).toEqual(['10.31.4.10/21']);
        const shard = (await readPool(records, '10.31.0.0-21-s1'))!.value;
        expect(shard.allocations['1034']).toMatchObject({ id: 'new', podref: 'ns/web-0' });
        await del(ipam, { containerId: 'old', pod: 'ns/web-0' });
        expect((await readPool(records, '10.31.0.0-21-s1'))!.value.allocations['1034']?.id).toBe('new');
        expect(await addresses(ipam, { containerId: 'new', pod: 'ns/web-0', ifName: 'net2' })).toEqual(['10.31.4.11/21']);
        await ipamPlugin.check(invocation({ ipam, verb: 'CHECK', containerId: 'new', pod: 'ns/web-0', extra: { prevResult: { cniVersion: '1.1.0', ips: [{ address: '10.31.4.10/21' }] } } }));
        await del(ipam, { containerId: 'unknown', pod: 'ns/web-0' }); // another container ID: releases nothing
        expect((await readPool(records, '10.31.0.0-21-s1'))!.value.allocations['1034']?.id).toBe('new');
        await del(ipam, { containerId: 'new', pod: 'ns/web-0' });
        await del(ipam, { containerId: 'new', pod: 'ns/web-0', ifName: 'net2' });
        expect((await readPool(records, '10.31.0.0-21-s1'))!.value.allocations).toEqual({});
        expect(await reservationNames(records)).toEqual([]); // reservations and claims gone
        expect((await failure(ipamPlugin.check(invocation({ ipam, verb: 'CHECK', containerId: 'new', pod: 'ns/web-0', extra: { prevResult: { cniVersion: '1.1.0', ips: [] } } })))).code).toBe(3);
      });

      it('reports exhaustion (ADD code 100, STATUS 50) and recovers after a DEL', async () => {
        const ipam = { type: 'whereabouts', range: '10.32.3.254-10.32.4.1/21', ...store.fresh() };
        for (const id of ['a', 'b', 'c', 'd']) await addresses(ipam, { containerId: id });
        expect((await failure(addresses(ipam, { containerId: 'e' }))).code).toBe(100);
        expect((await failure(ipamPlugin.status(invocation({ ipam, verb: 'STATUS' })))).code).toBe(50);
        await del(ipam, { containerId: 'b' });
        await ipamPlugin.status(invocation({ ipam, verb: 'STATUS' }));
        expect(await addresses(ipam, { containerId: 'e' })).toEqual(['10.32.3.255/21']);
      });

      it('GC keeps exactly the valid attachments across shards and drops the claims of the rest', async () => {
        const ipam = { type: 'whereabouts', range: '10.33.3.254-10.33.4.3/21', ...store.fresh() };
        for (const id of ['a', 'b', 'c', 'd']) await addresses(ipam, { containerId: id });
        await ipamPlugin.gc(invocation({ ipam, verb: 'GC', extra: { 'cni.dev/valid-attachments': [{ containerID: 'b', ifname: 'net1' }, { containerID: 'd', ifname: 'net1' }] } }));
        const records = await store.open(ipam);
        const held = [...Object.values((await readPool(records, '10.33.0.0-21'))!.value.allocations), ...Object.values((await readPool(records, '10.33.0.0-21-s1'))!.value.allocations)];
        expect(held.map((a) => a.id).sort()).toEqual(['b', 'd']);
        const names = await reservationNames(records);
        expect(names.filter((n) => !isClaimName(n)).sort()).toEqual(['10.33.3.255', '10.33.4.1']);
        expect(names.filter((n) => isClaimName(n))).toHaveLength(2);
      });

      it('shows a sharded pool as one pool in `underlay ipam ls/show`', async () => {
        const ipam = { type: 'whereabouts', range: '10.34.3.254-10.34.4.1/21', ...store.fresh() };
        for (const id of ['a', 'b', 'c']) await addresses(ipam, { containerId: id, pod: `ns/${id}` });
        // What `ls` counts free by without a config: the 4 addresses the config can hand out, on every shard.
        const records = await store.open(ipam);
        for (const name of ['10.34.0.0-21', '10.34.0.0-21-s1']) expect((await readPool(records, name))!.value.allocatable).toBe('4');
        const where = store.cliArgs(ipam);
        const ls = JSON.parse(await cli(['ls', '--json', ...where])) as { pools: unknown; reservations: number };
        // free counts the 4 addresses the config can hand out (10.34.3.254-10.34.4.1), not the whole /21
        expect(ls.pools).toMatchObject([{ name: '10.34.0.0-21', range: '10.34.0.0/21', used: 3, free: 1 }]);
        expect(ls.reservations).toBe(3);
        const show = JSON.parse(await cli(['show', '10.34.0.0-21', '--json', ...where])) as { leases: Array<{ address: string; pod: string }> };
        expect(show.leases.map((l: { address: string; pod: string }) => [l.address, l.pod])).toEqual([['10.34.3.254', 'ns/a'], ['10.34.3.255', 'ns/b'], ['10.34.4.0', 'ns/c']]);
      });
    });

    describe('a whole-range record written before sharding (or by whereabouts)', () => {
      it('stays one record, as whereabouts reads it: leases kept, found by pod, never handed out again', async () => {
        const at = store.fresh();
        const records = await store.open(at);
        const allocations = {
          1: { id: 'x1', podref: 'ns/one', ifname: 'net1' },
          2: { id: 'x2', podref: 'ns/two', ifname: 'net1' },
          1024: { id: 'x3', podref: 'ns/three', ifname: 'net1' },
          2050: { id: 'x4', podref: 'ns/four', ifname: 'net1' },
        };
        await writePool(records, '10.35.0.0-20', { range: '10.35.0.0/20', allocations }, undefined);
        const ipam = { type: 'whereabouts', range: '10.35.0.0/20', range_start: '10.35.4.0', ...at };
        // The existing lease of the pod, found in the one record; a new pod's lease goes there too.
        expect(await addresses(ipam, { containerId: 'y3', pod: 'ns/three' })).toEqual(['10.35.4.0/20']);
        expect(await addresses(ipam, { containerId: 'new', pod: 'ns/new' })).toEqual(['10.35.4.1/20']);
        expect(Object.keys((await readPool(records, '10.35.0.0-20'))!.value.allocations)).toEqual(['1', '2', '1024', '1025', '2050']);
        expect(await poolNames(records)).toEqual(['10.35.0.0-20']); // no shard, no index
        // The pool's whole range: what etcd's `--config` counts leases in (range_start would leave out .1 and .2).
        const whole = { type: 'whereabouts', range: '10.35.0.0/20', ...at };
        const ls = JSON.parse(await cli(['ls', '--json', ...store.cliArgs(whole)])) as { pools: unknown; reservations: number };
        expect(ls.pools).toMatchObject([{ name: '10.35.0.0-20', used: 5 }]);
        await del(ipam, { containerId: 'x4', pod: 'ns/four' });
        expect((await readPool(records, '10.35.0.0-20'))!.value.allocations['2050']).toBeUndefined();
        expect(await addresses(whole, { containerId: 'low', pod: 'ns/low' })).toEqual(['10.35.0.3/20']);
      });
    });
  });
}
