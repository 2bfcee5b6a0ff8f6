// Regressions found by review, each reproduced first: a repeated or late DEL of an earlier pod of the
// same name must not free the live pod's lease, reservation or claim (single record and shards); an
// address another pool reserved costs a sharded ADD a read, not a retry; a store outage is code 11; DEL
// and GC succeed for configs ADD refuses; GC changes the index version. All on each store
// (test/helpers/stores.ts), records read through the store interface; then what only the file store
// has: file versions that never turn NaN, a lock held by another process, its temp files.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Claimant } from '../../ipam/alloc/allocator.ts';
import { opsFor } from '../../ipam/lease/pool.ts';
import { fitsOneCommit } from '../../ipam/lease/records.ts';
import { judgeReservation } from '../../ipam/lease/reservations.ts';
import type { PoolTarget } from '../../ipam/lease/target.ts';
import { poolName } from '../../ipam/alloc/names.ts';
import { emptyIndex, indexName } from '../../ipam/alloc/shards.ts';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { resolveRange } from '../../ipam/alloc/ranges.ts';
import { collectGarbage } from '../../ipam/gc/collect.ts';
import { FileStore } from '../../ipam/store/file/store.ts';
import type { Allocation, IpamStore, Write } from '../../ipam/store/types.ts';
import { type InvocationSpec, failure, invocation } from '../helpers/ipam-invocation.ts';
import { createReservation, deleteReservation, poolNames, readPool, readReservation, replaceReservation, reservationNames, soon, writePool } from '../helpers/store.ts';
import { describeEachStore, scratchDir } from '../helpers/stores.ts';
import { counting, flaky, pausing } from '../store/faults.ts';
import { strictStderr, takeStderr } from '../helpers/fixture.ts';

strictStderr();

type Ipam = Record<string, unknown>;
const addresses = async (ipam: Ipam, spec: Partial<InvocationSpec> = {}) => (await ipamPlugin.add(invocation({ ipam, ...spec }))).ips!.map((ip) => ip.address);
const del = (ipam: Ipam, spec: Partial<InvocationSpec> = {}) => ipamPlugin.del(invocation({ ipam, verb: 'DEL', ...spec }));


function target(cidr: string, networkName = 'blue', overlapping = true): PoolTarget {
  const range = resolveRange({ range: cidr }, 'ipam');
  return { name: poolName(networkName, range.cidr), range, networkName, overlapping };
}
const take = async (t: PoolTarget, store: IpamStore, who: Claimant) => (await opsFor(store, t, soon())).acquire(store, t, who, soon());
const give = async (t: PoolTarget, store: IpamStore, who: Claimant) => (await opsFor(store, t, soon())).release(store, t, who, soon());
const isLeaseWrite = (w: Write) => w.kind === 'pool' && !w.name.endsWith('-index');
const isIndexWrite = (w: Write | undefined) => w?.kind === 'pool' && w.name.endsWith('-index');

describeEachStore((store) => {
  describe('a DEL of an earlier pod of the same name (finding 1)', () => {
    for (const range of ['10.40.0.0/24', '10.40.0.0/21']) {
      it(`repeated after the pod was re-created frees nothing (${range}), with and without pod UIDs`, async () => {
        for (const uids of [true, false]) {
          const ipam = { type: 'whereabouts', range, ...store.fresh() };
          const pod = (id: string, uid: string) => ({ containerId: id, pod: 'ns/sts-0', args: uids ? `K8S_POD_UID=${uid}` : '' });
          expect(await addresses(ipam, pod('O', 'u1'))).toEqual([range.replace('0.0/', '0.1/')]);
          await del(ipam, pod('O', 'u1'));
          const live = await addresses(ipam, pod('N', 'u2'));
          await del(ipam, pod('O', 'u1')); // the runtime repeats the old sandbox's DEL
          const other = await addresses(ipam, { containerId: 'Q', pod: 'ns/other' });
          expect(other).not.toEqual(live);
          expect(await addresses(ipam, pod('N', 'u2'))).toEqual(live); // N still holds its lease
        }
      });
    }

    it('records the pod UID and releases only on the exact container ID, whatever the UID', async () => {
      const ipam = { type: 'whereabouts', range: '10.41.0.0/24', ...store.fresh() };
      await addresses(ipam, { containerId: 'a', pod: 'ns/p', args: 'K8S_POD_UID=u1' });
      const records = await store.open(ipam);
      expect((await readPool(records, '10.41.0.0-24'))!.value.allocations['1']).toMatchObject({ id: 'a', poduid: 'u1' });
      await del(ipam, { containerId: 'x', pod: 'ns/p', args: 'K8S_POD_UID=u0' }); // another pod of that name
      await del(ipam, { containerId: 'y', pod: 'ns/p' }); // no UID
      await del(ipam, { containerId: 'z', pod: 'ns/p', args: 'K8S_POD_UID=u1' }); // same pod, another container
      expect((await readPool(records, '10.41.0.0-24'))!.value.allocations['1']?.id).toBe('a');
      await del(ipam, { containerId: 'a', pod: 'ns/p', args: 'K8S_POD_UID=u1' });
      expect((await readPool(records, '10.41.0.0-24'))!.value.allocations).toEqual({});
    });
  });

  describe('a DEL of an old sandbox concurrent with the ADD of a new pod (findings 2, 8)', () => {
    for (const sharded of [false, true]) {
      it(`keeps the new pod's reservation${sharded ? ' and claim' : ''}: no third pod gets its address`, async () => {
        const records = await store.open(store.fresh());
        const A = target(sharded ? '10.0.0.0/21' : '10.0.0.0/24');
        const B = target('10.0.0.0/25'); // overlaps A
        const O: Claimant = { id: 'O', podref: 'ns/sts-0', ifname: 'net1', network: 'n' };
        const N: Claimant = { ...O, id: 'N' };
        const Q: Claimant = { id: 'Q', podref: 'ns/other', ifname: 'net1', network: 'n2' };
        expect((await take(A, records, O)).offset).toBe(1n);
        // DEL O stops where its pool write and its reservation (and claim) drops are apart: right after
        // the pool write, before it looks at reservations and claims, on a store that writes one record
        // per commit; just before the one commit that does both on a store that commits them together.
        let poolWritten = false;
        const together = fitsOneCommit(records, sharded ? 4 : 2);
        const paused = pausing(records, (call) => {
          if (together) return call.method === 'commit' && call.writes!.some(isLeaseWrite);
          if (call.method === 'commit' && isLeaseWrite(call.writes![0]!)) poolWritten = true;
          return call.method === 'readReservation' && poolWritten;
        });
        const delO = give(A, paused, O);
        await paused.reached;
        const n = (await take(A, records, N)).offset;
        paused.resume();
        await delO;
        expect((await take(B, records, Q)).offset).not.toBe(n);
        expect(await give(A, records, N)).toHaveLength(1); // N's lease is found and released
        expect(await reservationNames(records)).toEqual(['blue-10.0.0.2']); // Q's; N's and its claim are gone
      });
    }

    it('a reservation is "current" only for the same pod instance, and handed over by compare-and-swap', async () => {
      const records = await store.open(store.fresh());
      const now = new Date().toISOString();
      const O: Claimant = { id: 'O', podref: 'ns/p', ifname: 'net1', network: 'n', uid: 'u1' };
      const judge = async (who: Claimant) => judgeReservation(await readReservation(records, 'r'), 'r', who, now, '');
      const create = await judge(O);
      expect(create).toMatchObject({ kind: 'reservation', expected: undefined });
      expect(await records.commit([create as Write], soon())).toBeDefined();
      expect(await judge(O)).toBe('current');
      expect(await judge({ ...O, id: 'N', uid: 'u2' })).toBe('taken'); // re-created pod
      const handover = await judge({ ...O, id: 'S' }); // new sandbox, same pod
      expect(handover).toMatchObject({ kind: 'reservation', expected: (await readReservation(records, 'r'))!.version });
      expect(await records.commit([handover as Write], soon())).toBeDefined();
      expect((await readReservation(records, 'r'))!.value).toMatchObject({ containerid: 'S', poduid: 'u1' });
    });
  });

  describe('replacing a reservation', () => {
    it('replaces only the version it read, and never re-creates a deleted one', async () => {
      const records = await store.open(store.fresh());
      await createReservation(records, 'r', { podref: 'a' });
      const first = (await readReservation(records, 'r'))!;
      expect(await replaceReservation(records, 'r', first.version, { podref: 'b' })).toBe(true);
      expect(await replaceReservation(records, 'r', first.version, { podref: 'c' })).toBe(false);
      const second = (await readReservation(records, 'r'))!;
      expect(second.value.podref).toBe('b');
      expect(second.version).not.toBe(first.version);
      await deleteReservation(records, 'r', second.version);
      expect(await replaceReservation(records, 'r', second.version, { podref: 'd' })).toBe(false);
      expect(await readReservation(records, 'r')).toBeUndefined();
    });
  });

  describe('a sharded ADD next to a full overlapping pool (finding 3)', () => {
    it('skips the reserved addresses within one attempt, without back-off', async () => {
      const records = await store.open(store.fresh());
      for (let i = 1; i <= 254; i++) await createReservation(records, `blue-10.50.0.${i}`, { containerid: `b${i}`, podref: `ns/b${i}`, ifname: 'net1', since: new Date().toISOString() });
      const A = target('10.50.0.0/21');
      const calls = counting(records);
      const started = Date.now();
      for (const id of ['a1', 'a2']) {
        const lease = await take(A, calls, { id, podref: `ns/${id}`, ifname: 'net1', network: 'na' });
        expect(lease.offset).toBe(id === 'a1' ? 255n : 256n);
      }
      expect(Date.now() - started).toBeLessThan(3_000);
      // One attempt each: choosing how the pool is worked reads the index once, the attempt once more;
      // a retry would read it a third time.
      expect(calls.calls.filter((c) => c.method === 'readPool' && c.name === indexName(A.name))).toHaveLength(4);
    });
  });

  describe('a store outage (finding 4)', () => {
    it('during a DEL of a legacy big pool is retried, then succeeds', async () => {
      const records = await store.open(store.fresh());
      const A = target('10.60.0.0/21', '', false);
      await writePool(records, A.name, { range: A.range.cidr, allocations: { 1030: { id: 'c1', podref: 'ns/p1', ifname: 'net1' } } }, undefined);
      // Fails twice, as a lock held too long does: retried inside the deadline.
      const shaky = flaky(records, (call) => call.method === 'commit' && (call.writes ?? []).some(isLeaseWrite), 2);
      expect(await give(A, shaky, { id: 'c1', podref: 'ns/p1', ifname: 'net1', network: 'n' })).toHaveLength(1);
      expect(shaky.failed).toBe(2);
    });
  });

  describe('configs ADD refuses (finding 5)', () => {
    it('fail ADD with code 7 and let DEL and GC succeed: nothing can be leased under them', async () => {
      const at = store.fresh();
      const twoInOnePool = { type: 'whereabouts', ipRanges: [{ range: '10.70.0.0/24' }, { range: '10.70.0.0/24', range_start: '10.70.0.100' }], ...at };
      const longName = { type: 'whereabouts', range: '10.71.0.0/21', network_name: `n${'x'.repeat(180)}`, ...at };
      for (const ipam of [twoInOnePool, longName]) {
        expect((await failure(addresses(ipam))).code).toBe(7);
        await del(ipam);
        await ipamPlugin.gc(invocation({ ipam, verb: 'GC', extra: { 'cni.dev/valid-attachments': [] } }));
        expect(takeStderr()).toEqual([expect.stringMatching(/\[warning\] .*DEL: nothing to release: invalid network config: ipam\./), expect.stringMatching(/\[warning\] .*GC: nothing to release: invalid network config: ipam\./)]);
      }
    });
  });

  describe('GC next to an ADD in flight (finding 6)', () => {
    it('changes the index version, so the ADD cannot raise its hint over an address GC freed', async () => {
      const records = await store.open(store.fresh());
      const A = target('10.0.0.0/21', '', false);
      const allocations: Record<string, Allocation> = {};
      const valid: Array<{ containerID: string; ifname: string }> = [];
      for (let i = 1; i <= 1023; i++) {
        allocations[i] = { id: `c${i}`, podref: `ns/p${i}`, ifname: 'net1', network: 'n', node: 'n1' };
        if (i !== 7) valid.push({ containerID: `c${i}`, ifname: 'net1' });
      }
      await writePool(records, indexName(A.name), emptyIndex(A.range), undefined); // a pool Underlay keeps in shards
      await writePool(records, A.name, { range: A.range.cidr, allocations }, undefined);
      const who = (id: string): Claimant => ({ id, podref: `ns/${id}`, ifname: 'net1', network: 'n', node: 'n1' });
      valid.push({ containerID: 'X', ifname: 'net1' });
      // X has read the index and seen shard 0 full; it stops just before raising its hint.
      const paused = pausing(records, (call) => call.method === 'commit' && isIndexWrite(call.writes?.[0]) && call.writes?.[0]?.expected !== undefined);
      const x = take(A, paused, who('X'));
      await paused.reached;
      expect((await collectGarbage(records, [A], 'n', valid, soon(), 'n1')).released).toBe(1);
      paused.resume();
      await x;
      expect((await take(A, records, who('Y'))).offset).toBe(7n);
    });
  });

  describe('a DEL whose pool write applied but whose answer was lost', () => {
    for (const cidr of ['10.82.0.0/24', '10.82.0.0/21']) {
      it(`drops the reservation (and claim) all the same on its retry (${cidr})`, async () => {
        const ipam = { type: 'whereabouts', range: cidr, ...store.fresh() };
        const records = await store.open(ipam);
        const A = target(cidr, '');
        const who: Claimant = { id: 'c1', podref: 'ns/p', ifname: 'net1', network: 'n' };
        await take(A, records, who);
        // The first commit that frees the lease takes effect, then its reply is lost (StoreUnavailable).
        const lossy = flaky(records, (call) => call.method === 'commit' && (call.writes ?? []).some((w) => isLeaseWrite(w)), 1, 'after');
        expect(await give(A, lossy, who)).toEqual([]); // the retry finds nothing left to release...
        expect(lossy.failed).toBe(1);
        expect(await reservationNames(records)).toEqual([]); // ...and still drops what went with it
      });
    }
  });

  describe('a pool of 1024 addresses (finding 9)', () => {
    it('is kept in one whereabouts IPPool record', async () => {
      const ipam = { type: 'whereabouts', range: '10.80.0.0/22', ...store.fresh() };
      expect(await addresses(ipam, { containerId: 'a', pod: 'ns/a' })).toEqual(['10.80.0.1/22']);
      expect(await poolNames(await store.open(ipam))).toEqual(['10.80.0.0-22']);
    });
  });
});

describe('the file store only: a lock held by another process, file versions, temp files', () => {
  it('a DEL while another process holds the pool lock past the deadline: code 11, not an internal error (finding 4)', async () => {
    const dir = scratchDir();
    const store = new FileStore(dir);
    const ipam = { type: 'whereabouts', range: '10.61.0.0/21', file_store_dir: dir };
    await writePool(store, '10.61.0.0-21', { range: '10.61.0.0/21', allocations: { 1030: { id: 'c2', podref: 'ns/p2', ifname: 'net1' } } }, undefined);
    const lock = join(dir, 'pools', '10.61.0.0-21.lock');
    closeSync(openSync(lock, 'a'));
    const holder = spawn(process.execPath, ['-e', `const db = new (require('node:sqlite').DatabaseSync)(${JSON.stringify(lock)}); db.exec('BEGIN IMMEDIATE'); console.log('held'); setTimeout(() => {}, 8000);`]);
    try {
      await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
      process.env.UNDERLAY_IPAM_DEADLINE_MS = '1500';
      const err = await failure(del(ipam, { containerId: 'c2', pod: 'ns/p2' }));
      expect(err.code).toBe(11);
    } finally {
      holder.kill('SIGKILL');
    }
  }, 30_000);

  it('versions count exactly past 2^53 and refuse a version that is not a decimal counter, naming the file (finding 7)', async () => {
    const dir = scratchDir();
    const store = new FileStore(dir);
    mkdirSync(join(dir, 'pools'), { recursive: true });
    writeFileSync(join(dir, 'pools', 'p.json'), '{"version":"9007199254740993","range":"10.0.0.0/24","allocations":{}}\n');
    expect(await writePool(store, 'p', { range: '10.0.0.0/24', allocations: {} }, '9007199254740993')).toBe(true);
    expect((await readPool(store, 'p'))!.version).toBe('9007199254740994');
    writeFileSync(join(dir, 'pools', 'q.json'), '{"version":"abc","range":"10.0.0.0/24","allocations":{}}\n');
    await expect(writePool(store, 'q', { range: '10.0.0.0/24', allocations: {} }, 'abc')).rejects.toThrow(/q\.json has version "abc", not a decimal counter/);
  });

  it('GC removes old temp files a killed reservation create left behind, and spares young ones (finding 11)', async () => {
    const dir = scratchDir();
    const ipam = { type: 'whereabouts', range: '10.81.0.0/24', file_store_dir: dir };
    await addresses(ipam, { containerId: 'a', pod: 'ns/a' });
    const old = join(dir, 'reservations', '10.81.0.9.json.tmp-1-deadbeef');
    writeFileSync(old, '{"half');
    utimesSync(old, new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000));
    writeFileSync(join(dir, 'reservations', '10.81.0.8.json.tmp-2-1badcafe'), '{"half');
    await ipamPlugin.gc(invocation({ ipam, verb: 'GC', extra: { 'cni.dev/valid-attachments': [{ containerID: 'a', ifname: 'net1' }] } }));
    expect(readdirSync(join(dir, 'reservations')).filter((f) => !f.startsWith('.')).sort()).toEqual(['10.81.0.1.json', '10.81.0.8.json.tmp-2-1badcafe']);
  });
});
