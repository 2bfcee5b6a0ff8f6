// The IPAM verbs in-process, on each store (test/helpers/stores.ts): the acceptance scenarios
// (seed example, IPv6 upper half, dual-stack, exhaustion and STATUS), idempotency, CHECK, GC, with the
// records read back through the store interface. Then what only the file store has (its directories and
// files, a lock held inside its critical section), and failures that need no store at all.
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { type InvocationSpec, failure, invocation } from '../helpers/ipam-invocation.ts';
import { createReservation, poolNames, readPool, reservationNames } from '../helpers/store.ts';
import { scratchDir, useStores } from '../helpers/stores.ts';
import { strictStderr, takeStderr } from '../helpers/fixture.ts';

strictStderr();

type Ipam = Record<string, unknown>;

const add = async (ipam: Ipam, spec: Partial<InvocationSpec> = {}) => ipamPlugin.add(invocation({ ipam, ...spec }));
const addresses = async (ipam: Ipam, spec: Partial<InvocationSpec> = {}) => (await add(ipam, spec)).ips!.map((ip) => ip.address);
const del = (ipam: Ipam, spec: Partial<InvocationSpec> = {}) => ipamPlugin.del(invocation({ ipam, verb: 'DEL', ...spec }));
const status = (ipam: Ipam) => ipamPlugin.status(invocation({ ipam, verb: 'STATUS' }));

const stores = useStores();

for (const store of stores) {
  describe(`on the ${store.kind} store`, () => {
    store.startBeforeAll();

    it('is the store the fixture names, fresh for each test', async () => {
      const first = { type: 'whereabouts', range: '10.19.0.0/24', ...store.fresh() };
      await add(first);
      const records = await store.open(first);
      expect(records.description).toMatch({ file: /^file store \//, etcd: /^etcd at http:\/\/127\.0\.0\.1:/, kubernetes: /^Kubernetes API at https:\/\/127\.0\.0\.1:.*\(namespace t\d+-/ }[store.kind]);
      expect(await poolNames(records)).toEqual(['10.19.0.0-24']);
      expect(await poolNames(await store.open({ type: 'whereabouts', range: '10.19.0.0/24', ...store.fresh() }))).toEqual([]);
    });

    describe('seed example: range 192.168.91.100-192.168.91.110/24', () => {
      it('hands out .100-.104 in order, reuses a released .102, and names the range when exhausted', async () => {
        const ipam = { type: 'whereabouts', range: '192.168.91.100-192.168.91.110/24', ...store.fresh() };
        const got: string[] = [];
        for (let i = 1; i <= 5; i++) got.push(...(await addresses(ipam, { containerId: `c${i}`, pod: `default/pod-${i}` })));
        expect(got).toEqual(['192.168.91.100/24', '192.168.91.101/24', '192.168.91.102/24', '192.168.91.103/24', '192.168.91.104/24']);

        await del(ipam, { containerId: 'c3', pod: 'default/pod-3' });
        expect(await addresses(ipam, { containerId: 'c6', pod: 'default/pod-6' })).toEqual(['192.168.91.102/24']);

        for (let i = 7; i <= 12; i++) await add(ipam, { containerId: `c${i}`, pod: `default/pod-${i}` }); // .105-.110
        const err = await failure(add(ipam, { containerId: 'c13', pod: 'default/pod-13' }));
        expect(err.message).toContain('pool exhausted');
        expect(err.message).toContain('192.168.91.100-192.168.91.110/24');
        expect(err.code).toBe(100);
      });
    });

    describe('IPv6', () => {
      // One node alone: a node whose name is known starts a big pool at a shard of its own.
      const node = process.env.NODENAME;
      beforeEach(() => {
        delete process.env.NODENAME;
      });
      afterEach(() => {
        process.env.NODENAME = node;
      });

      it('takes addresses from the upper half of fd00::/64 when range_start is fd00::8000:0:0:0', async () => {
        const ipam = { type: 'whereabouts', range: 'fd00::/64', range_start: 'fd00::8000:0:0:0', ...store.fresh() };
        expect(await addresses(ipam, { containerId: 'a' })).toEqual(['fd00::8000:0:0:0/64']);
        expect(await addresses(ipam, { containerId: 'b' })).toEqual(['fd00::8000:0:0:1/64']);
      });

      it('reaches the very end of a /64 (whereabouts could use only the first /65)', async () => {
        const ipam = { type: 'whereabouts', range: 'fd00::/64', range_start: 'fd00::ffff:ffff:ffff:fffe', ...store.fresh() };
        expect(await addresses(ipam, { containerId: 'a' })).toEqual(['fd00::ffff:ffff:ffff:fffe/64']);
        expect(await addresses(ipam, { containerId: 'b' })).toEqual(['fd00::ffff:ffff:ffff:ffff/64']);
        expect((await failure(add(ipam, { containerId: 'c' }))).message).toContain('pool exhausted');
      });

      it('gives one IPv4 and one IPv6 address per ADD with dual-stack ipRanges', async () => {
        const ipam = { type: 'whereabouts', ipRanges: [{ range: '10.10.0.0/24' }, { range: 'fd10::/64' }], ...store.fresh() };
        expect(await addresses(ipam, { containerId: 'a' })).toEqual(['10.10.0.1/24', 'fd10::1/64']);
        expect(await addresses(ipam, { containerId: 'b' })).toEqual(['10.10.0.2/24', 'fd10::2/64']);
      });
    });

    describe('ADD', () => {
      it('returns the gateway on addresses of its family, routes and dns', async () => {
        const ipam = {
          type: 'whereabouts', ...store.fresh(), gateway: '10.1.0.1',
          ipRanges: [{ range: '10.1.0.0/29' }, { range: 'fd01::/120' }],
          routes: [{ dst: '0.0.0.0/0' }], dns: { nameservers: ['10.1.0.53'] },
        };
        const result = await add(ipam);
        expect(result.ips).toEqual([{ address: '10.1.0.2/29', gateway: '10.1.0.1' }, { address: 'fd01::1/120' }]);
        expect(result.routes).toEqual([{ dst: '0.0.0.0/0' }]);
        expect(result.dns).toEqual({ nameservers: ['10.1.0.53'] });
      });

      it('is idempotent on (pod, interface): a new sandbox gets the same address, recorded under its container ID', async () => {
        const ipam = { type: 'whereabouts', range: '10.2.0.0/24', ...store.fresh() };
        const records = await store.open(ipam);
        expect(await addresses(ipam, { containerId: 'old', pod: 'ns/web-0' })).toEqual(['10.2.0.1/24']);
        expect(await addresses(ipam, { containerId: 'new', pod: 'ns/web-0' })).toEqual(['10.2.0.1/24']);
        const pool = (await readPool(records, '10.2.0.0-24'))!.value;
        expect(pool.allocations['1']).toMatchObject({ id: 'new', podref: 'ns/web-0', ifname: 'net1' });
        // The late DEL of the replaced sandbox must not free the live one's address.
        await del(ipam, { containerId: 'old', pod: 'ns/web-0' });
        expect((await readPool(records, '10.2.0.0-24'))!.value.allocations['1']?.id).toBe('new');
        // Another interface of the same pod is another lease.
        expect(await addresses(ipam, { containerId: 'new', pod: 'ns/web-0', ifName: 'net2' })).toEqual(['10.2.0.2/24']);
      });

      it('without a pod in CNI_ARGS uses the container ID as identity', async () => {
        const ipam = { type: 'whereabouts', range: '10.3.0.0/24', ...store.fresh() };
        expect(await addresses(ipam, { containerId: 'x' })).toEqual(['10.3.0.1/24']);
        expect(await addresses(ipam, { containerId: 'x' })).toEqual(['10.3.0.1/24']);
        expect(await addresses(ipam, { containerId: 'y' })).toEqual(['10.3.0.2/24']);
      });

      it('returns the leases of earlier ranges when a later range is exhausted', async () => {
        const ipam = { type: 'whereabouts', ipRanges: [{ range: '10.4.0.0/24' }, { range: '10.5.0.0/30' }], ...store.fresh() };
        await add(ipam, { containerId: 'a' });
        await add(ipam, { containerId: 'b' });
        await failure(add(ipam, { containerId: 'c' }));
        const pool = (await readPool(await store.open(ipam), '10.4.0.0-24'))!.value;
        expect(Object.values(pool.allocations).map((a) => a.id).sort()).toEqual(['a', 'b']);
      });

      it('keeps same-CIDR pools apart by network_name and overlapping pools apart by reservations', async () => {
        const at = store.fresh();
        const blue = { type: 'whereabouts', range: '10.6.0.0/24', network_name: 'blue', ...at };
        const green = { type: 'whereabouts', range: '10.6.0.0/24', network_name: 'green', ...at };
        expect(await addresses(blue, { containerId: 'a' })).toEqual(['10.6.0.1/24']);
        expect(await addresses(green, { containerId: 'b' })).toEqual(['10.6.0.1/24']);
        const wide = { type: 'whereabouts', range: '10.7.0.0/24', ...at };
        const narrow = { type: 'whereabouts', range: '10.7.0.0/28', ...at };
        expect(await addresses(wide, { containerId: 'c' })).toEqual(['10.7.0.1/24']);
        expect(await addresses(narrow, { containerId: 'd' })).toEqual(['10.7.0.2/28']);
        expect((await reservationNames(await store.open(at))).sort()).toEqual(['10.7.0.1', '10.7.0.2', 'blue-10.6.0.1', 'green-10.6.0.1']);
      });
    });

    describe('DEL', () => {
      it('succeeds when there is nothing to release, twice, and for a config that could never lease', async () => {
        const at = store.kind === 'file' ? { file_store_dir: join(scratchDir(), 'never-created') } : store.fresh();
        const ipam = { type: 'whereabouts', range: '10.9.0.0/24', ...at };
        await del(ipam);
        await del(ipam);
        await del({ type: 'whereabouts', range: 'not-a-range', ...at });
        expect(takeStderr()).toEqual([expect.stringMatching(/\[warning\] .*DEL: nothing to release: invalid network config: ipam\.range = "not-a-range" is not a CIDR/)]);
        // A DEL creates no store (file), and no record in any store.
        if (store.kind === 'file') expect(existsSync(at.file_store_dir as string)).toBe(false);
        const records = await store.open(ipam);
        expect(await poolNames(records)).toEqual([]);
        expect(await reservationNames(records)).toEqual([]);
      });

      it('releases only on the exact (container ID, interface): another container ID of the pod releases nothing', async () => {
        const ipam = { type: 'whereabouts', range: '10.11.0.0/24', ...store.fresh() };
        const records = await store.open(ipam);
        await add(ipam, { containerId: 'first', pod: 'ns/p' });
        await del(ipam, { containerId: 'unknown', pod: 'ns/p' });
        expect(Object.values((await readPool(records, '10.11.0.0-24'))!.value.allocations).map((a) => a.id)).toEqual(['first']);
        await del(ipam, { containerId: 'first', pod: 'ns/p' });
        expect((await readPool(records, '10.11.0.0-24'))!.value.allocations).toEqual({});
        expect(await reservationNames(records)).toEqual([]);
      });
    });

    describe('STATUS', () => {
      it('is 50 when the pool is exhausted and fine again after a DEL', async () => {
        const ipam = { type: 'whereabouts', range: '10.12.0.0/30', ...store.fresh() };
        await status(ipam);
        await add(ipam, { containerId: 'a' });
        await add(ipam, { containerId: 'b' });
        const err = await failure(status(ipam));
        expect(err.code).toBe(50);
        expect(err.message).toContain('pool exhausted');
        await del(ipam, { containerId: 'a' });
        await status(ipam);
      });
    });

    describe('CHECK', () => {
      it('passes when the lease is in prevResult and fails when it is not or there is no lease', async () => {
        const ipam = { type: 'whereabouts', range: '10.14.0.0/24', ...store.fresh() };
        const result = await add(ipam, { containerId: 'k' });
        await ipamPlugin.check(invocation({ ipam, verb: 'CHECK', containerId: 'k', extra: { prevResult: { cniVersion: '1.1.0', ips: result.ips } } }));
        const wrong = { cniVersion: '1.1.0', ips: [{ address: '10.14.0.99/24' }] };
        expect((await failure(ipamPlugin.check(invocation({ ipam, verb: 'CHECK', containerId: 'k', extra: { prevResult: wrong } })))).message).toContain('not among prevResult.ips');
        const none = await failure(ipamPlugin.check(invocation({ ipam, verb: 'CHECK', containerId: 'other', extra: { prevResult: wrong } })));
        expect(none.code).toBe(3);
      });
    });

    describe('GC', () => {
      it('keeps exactly the valid attachments of this network and spares another network sharing the pool', async () => {
        const ipam = { type: 'whereabouts', range: '10.15.0.0/24', ...store.fresh() };
        for (const id of ['a', 'b', 'c']) await add(ipam, { containerId: id });
        await add(ipam, { containerId: 'other', name: 'othernet' });
        const valid = [{ containerID: 'b', ifname: 'net1' }];
        await ipamPlugin.gc(invocation({ ipam, verb: 'GC', extra: { 'cni.dev/valid-attachments': valid } }));
        const records = await store.open(ipam);
        const pool = (await readPool(records, '10.15.0.0-24'))!.value;
        expect(Object.values(pool.allocations).map((a) => a.id).sort()).toEqual(['b', 'other']);
        expect((await reservationNames(records)).sort()).toEqual(['10.15.0.2', '10.15.0.4']);
      });

      it('refuses to run without cni.dev/valid-attachments', async () => {
        const ipam = { type: 'whereabouts', range: '10.16.0.0/24', ...store.fresh() };
        expect((await failure(ipamPlugin.gc(invocation({ ipam, verb: 'GC' })))).code).toBe(7);
      });

      it('removes an old reservation that no pool leases (an ADD killed before its pool write)', async () => {
        const ipam = { type: 'whereabouts', range: '10.17.0.0/24', ...store.fresh() };
        const records = await store.open(ipam);
        await createReservation(records, '10.17.0.9', { podref: 'ns/dead', since: '2020-01-01T00:00:00.000Z' });
        await createReservation(records, '10.17.0.8', { podref: 'ns/young', since: new Date().toISOString() });
        await ipamPlugin.gc(invocation({ ipam, verb: 'GC', extra: { 'cni.dev/valid-attachments': [] } }));
        expect((await reservationNames(records)).sort()).toEqual(['10.17.0.8']);
      });
    });
  });
}

describe('the file store only: its own directories, files and locks', () => {
  it('creates the store private: directories 0700, files 0600', async () => {
    const dir = join(scratchDir(), 'store');
    await add({ type: 'whereabouts', range: '10.8.0.0/24', file_store_dir: dir });
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'pools')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'pools', '10.8.0.0-24.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'reservations', '10.8.0.1.json')).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(join(dir, 'pools', '10.8.0.0-24.json'), 'utf8'))).toMatchObject({ range: '10.8.0.0/24', allocations: { 1: { id: 'c0' } } });
  });

  it('fails an ADD with code 11 naming the pool once the deadline passes, while a writer holds the pool lock', async () => {
    const dir = scratchDir();
    const ipam = { type: 'whereabouts', range: '10.18.0.0/24', file_store_dir: dir };
    await add(ipam, { containerId: 'first' });
    const holder = new DatabaseSync(join(dir, 'pools', '10.18.0.0-24.lock'));
    holder.exec('BEGIN IMMEDIATE'); // what a writer stuck inside its critical section looks like
    process.env.UNDERLAY_IPAM_DEADLINE_MS = '1000';
    const started = Date.now();
    try {
      const err = await failure(add(ipam, { containerId: 'second' }));
      expect(err.code).toBe(11);
      expect(err.message).toContain('pool 10.18.0.0-24');
      expect(err.message).toContain('try again later');
      expect(Date.now() - started).toBeLessThan(8000);
    } finally {
      delete process.env.UNDERLAY_IPAM_DEADLINE_MS;
      holder.exec('ROLLBACK');
      holder.close();
    }
    expect(await addresses(ipam, { containerId: 'second' })).toEqual(['10.18.0.2/24']);
  });
});

describe('without a usable store', () => {
  it('DEL succeeds for a datastore "etcd" that names no endpoint: nothing was leased there', async () => {
    await del({ type: 'whereabouts', range: '10.9.0.0/24', datastore: 'etcd' });
    expect(takeStderr()).toEqual([expect.stringMatching(/\[warning\] .*DEL: nothing to release: .*needs ipam\.etcd_host or ipam\.etcd_endpoints/)]);
  });

  it('DEL fails with code 11 within its deadline when the store cannot be reached, so the runtime retries it', async () => {
    process.env.UNDERLAY_IPAM_DEADLINE_MS = '1500';
    const started = Date.now();
    try {
      const err = await failure(del({ type: 'whereabouts', range: '10.9.0.0/24', etcd_host: '127.0.0.1:1' }));
      expect(err.code).toBe(11);
      expect(err.message).toMatch(/127\.0\.0\.1:1.*ECONNREFUSED/);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      delete process.env.UNDERLAY_IPAM_DEADLINE_MS;
    }
  });

  it('STATUS is 50 when the store is unusable or not in this build', async () => {
    const file = join(scratchDir(), 'a-file');
    writeFileSync(file, '');
    const unusable = await failure(status({ type: 'whereabouts', range: '10.13.0.0/24', file_store_dir: join(file, 'store') }));
    expect(unusable.code).toBe(50);
    expect(unusable.message).toContain('ENOTDIR');
    const missing = await failure(status({ type: 'whereabouts', range: '10.13.0.0/24', kubernetes: { kubeconfig: join(scratchDir(), 'no.kubeconfig') } }));
    expect(missing.code).toBe(50);
    expect(missing.message).toMatch(/no\.kubeconfig/);
  });
});
