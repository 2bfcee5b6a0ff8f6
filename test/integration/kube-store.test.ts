// The Kubernetes store's own contract, against the simulated API server: create-if-absent, compare-and-
// swap, delete at a version, listings, no lost update between store instances, deadlines, final
// errors, names Kubernetes refuses; and how it behaves when only whereabouts' CRDs are installed.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CniError } from '../../lib/cni/errors.ts';
import { parseAddr } from '../../ipam/alloc/addr.ts';
import { poolName, reservationName } from '../../ipam/alloc/names.ts';
import { claimName, indexName, shardName } from '../../ipam/alloc/shards.ts';
import { StoreUnavailable, type Allocation, type PoolRecord } from '../../ipam/store/types.ts';
import { crdFiles, KubeApiServer, WHEREABOUTS_CRDS } from '../helpers/kube-apiserver.ts';
import { storeOn } from '../helpers/kube-store.ts';

const soon = (): number => Date.now() + 5000;
const lease = (id: string, extra: Partial<Allocation> = {}): Allocation => ({ id, podref: `default/${id}`, ifname: 'net1', since: '2025-01-01T00:00:00Z', network: 'macvlan-conf', poduid: `uid-${id}`, ...extra });
const pool = (allocations: Record<string, Allocation> = {}, range = '10.0.0.0/24'): PoolRecord => ({ range, allocations });
const addr = (text: string): bigint => parseAddr(text)!.value;

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(() => undefined, (e: unknown) => e);
}

describe('KubernetesStore under Underlay\'s CRDs', () => {
  let server: KubeApiServer;
  beforeAll(async () => {
    server = await KubeApiServer.start({ identities: [{ user: 'admin', token: 'admin-token' }, { user: 'reader', token: 'reader-token' }], rules: [{ who: 'admin', verbs: ['*'], resources: ['*'] }, { who: 'reader', verbs: ['get', 'list'], resources: ['*'] }] });
  });
  afterAll(() => server.close());

  it('create-if-absent: the first create wins, the second is a conflict; a read gives the record and its version', async () => {
    const store = storeOn(server);
    const [version] = (await store.commit([{ kind: 'pool', name: '10.0.0.0-24', expected: undefined, value: pool({ 5: lease('a') }) }], soon()))!;
    expect(version).toMatch(/^\d+$/);
    expect(await store.commit([{ kind: 'pool', name: '10.0.0.0-24', expected: undefined, value: pool() }], soon())).toBeUndefined();
    expect(await store.readPool('10.0.0.0-24', soon())).toEqual({ value: pool({ 5: lease('a') }), version });
    expect(await store.readPool('10.9.9.0-24', soon())).toBeUndefined();
    await store.close();
  });

  it('replace by compare-and-swap: a stale version changes nothing; the current one gives a new version', async () => {
    const a = storeOn(server);
    const b = storeOn(server);
    const [v1] = (await a.commit([{ kind: 'pool', name: '10.0.1.0-24', expected: undefined, value: pool({}, '10.0.1.0/24') }], soon()))!;
    const [v2] = (await b.commit([{ kind: 'pool', name: '10.0.1.0-24', expected: v1, value: pool({ 1: lease('b') }, '10.0.1.0/24') }], soon()))!;
    expect(v2).not.toBe(v1);
    expect(await a.commit([{ kind: 'pool', name: '10.0.1.0-24', expected: v1, value: pool({ 1: lease('a') }, '10.0.1.0/24') }], soon())).toBeUndefined();
    expect((await a.readPool('10.0.1.0-24', soon()))!.value.allocations[1]!.id).toBe('b');
    expect(await a.commit([{ kind: 'pool', name: '10.0.77.0-24', expected: v1, value: pool() }], soon())).toBeUndefined();
    await a.close();
    await b.close();
  });

  it('a write that lands between a read and the commit makes the commit a conflict', async () => {
    const store = storeOn(server);
    const [v1] = (await store.commit([{ kind: 'reservation', name: '10.0.0.66', expected: undefined, value: { podref: 'default/a' } }], soon()))!;
    const orips = server.resource('overlappingrangeipreservations.whereabouts.cni.cncf.io');
    const rival = { apiVersion: 'whereabouts.cni.cncf.io/v1alpha1', kind: 'OverlappingRangeIPReservation', metadata: { name: '10.0.0.66', resourceVersion: v1 }, spec: { podref: 'default/rival' } };
    server.inject({ method: 'PUT', before: () => void server.store.replace(orips, 'kube-system', '10.0.0.66', rival) });
    expect(await store.commit([{ kind: 'reservation', name: '10.0.0.66', expected: v1!, value: { podref: 'default/b' } }], soon())).toBeUndefined();
    expect((await store.readReservation('10.0.0.66', soon()))!.value.podref).toBe('default/rival');
    await store.close();
  });

  it('delete needs the record present at the expected version', async () => {
    const store = storeOn(server);
    const name = reservationName('', 4, addr('10.0.0.5'));
    const [v1] = (await store.commit([{ kind: 'reservation', name, expected: undefined, value: { containerid: 'c', podref: 'default/a', ifname: 'net1' } }], soon()))!;
    const [v2] = (await store.commit([{ kind: 'reservation', name, expected: v1!, value: { containerid: 'd', podref: 'default/a', ifname: 'net1' } }], soon()))!;
    expect(await store.commit([{ kind: 'reservation', name, expected: v1!, value: null }], soon())).toBeUndefined();
    expect(await store.commit([{ kind: 'reservation', name, expected: v2!, value: null }], soon())).toEqual([undefined]);
    expect(await store.readReservation(name, soon())).toBeUndefined();
    expect(await store.commit([{ kind: 'reservation', name, expected: v2!, value: null }], soon())).toBeUndefined();
    await store.close();
  });

  it('each record goes to its kind and round-trips whole: shards, index with hints, reservations, claims with offsets', async () => {
    const store = storeOn(server, { namespace: 'default' });
    const big = poolName('', '10.8.0.0/16');
    const claim = claimName(big, 'default/web-0', 'net1');
    const records = [
      { kind: 'pool', name: shardName(big, 0n), value: pool({ 7: lease('s0', { future: 'kept' }) }, '10.8.0.0/16') },
      { kind: 'pool', name: shardName(big, 3n), value: pool({ 3100: lease('s3') }, '10.8.0.0/16') },
      { kind: 'pool', name: indexName(big), value: { range: '10.8.0.0/16', allocations: {}, hints: { '0123456789ab': '3' } } },
      { kind: 'reservation', name: reservationName('blue', 4, addr('10.8.12.28')), value: { containerid: 'c', podref: 'default/web-0', ifname: 'net1', since: 'now', poduid: 'u', networkname: 'blue' } },
      { kind: 'reservation', name: claim, value: { containerid: 'c', podref: 'default/web-0', ifname: 'net1', offset: '3100', since: 'now', poduid: 'u' } },
    ] as const;
    for (const r of records) expect(await store.commit([{ ...r, expected: undefined }], soon())).toHaveLength(1);
    expect(server.object('ippools.whereabouts.cni.cncf.io', 'default', '10.8.0.0-16-s3')).toBeDefined();
    expect(server.object('ippoolindexes.ipam.underlay.io', 'default', '10.8.0.0-16-index')?.spec).toEqual(records[2].value);
    expect(server.object('ipleaseclaims.ipam.underlay.io', 'default', claim)?.spec).toEqual(records[4].value);
    expect(server.object('overlappingrangeipreservations.whereabouts.cni.cncf.io', 'default', 'blue-10.8.12.28')).toBeDefined();
    for (const r of records) {
      const read = r.kind === 'pool' ? await store.readPool(r.name, soon()) : await store.readReservation(r.name, soon());
      expect(read?.value).toEqual(r.value);
    }
    await store.close();
  });

  it('listings: one LIST per kind, by name prefix, in name order, with the versions reads give', async () => {
    const store = storeOn(server, { namespace: 'default' });
    const before = store.requests;
    const pools = await store.listPools('10.8.0.0-16', soon());
    expect(store.requests - before).toBe(2);
    expect(pools.map((p) => p.name)).toEqual(['10.8.0.0-16', '10.8.0.0-16-index', '10.8.0.0-16-s3']);
    for (const p of pools) expect(p.version).toBe((await store.readPool(p.name, soon()))!.version);
    expect(store.requests - before).toBe(5);
    const all = await store.listReservations('', soon());
    expect(all.map((r) => r.name)).toEqual([claimName('10.8.0.0-16', 'default/web-0', 'net1'), 'blue-10.8.12.28'].sort());
    expect((await store.listReservations('10.8.0.0-16.claim.', soon())).map((r) => r.value.offset)).toEqual(['3100']);
    expect(await store.listReservations('red-', soon())).toEqual([]);
    await store.close();
  });

  it('no lost update: four store instances adding leases to one pool at once', async () => {
    server.latencyMs = 3;
    const stores = Array.from({ length: 4 }, () => storeOn(server));
    let conflicts = 0;
    const name = '10.0.2.0-24';
    await Promise.all(stores.map(async (store, s) => {
      for (let i = 0; i < 8; i++) {
        for (;;) {
          const current = await store.readPool(name, soon());
          const next = pool({ ...current?.value.allocations, [String(s * 10 + i + 1)]: lease(`p${s}-${i}`) }, '10.0.2.0/24');
          if (await store.commit([{ kind: 'pool', name, expected: current?.version, value: next }], soon())) break;
          conflicts++;
        }
      }
    }));
    server.latencyMs = 0;
    const final = await stores[0]!.readPool(name, soon());
    expect(Object.keys(final!.value.allocations)).toHaveLength(32);
    expect(conflicts).toBeGreaterThan(0);
    await Promise.all(stores.map((s) => s.close()));
  });

  it('failures that may pass are StoreUnavailable, within the deadline', async () => {
    const store = storeOn(server);
    server.inject({ hang: true });
    const started = Date.now();
    expect(await failure(store.readPool('10.0.0.0-24', Date.now() + 300))).toBeInstanceOf(StoreUnavailable);
    expect(Date.now() - started).toBeLessThan(1500);
    server.inject({ status: 503 });
    expect(await failure(store.commit([{ kind: 'pool', name: '10.3.0.0-24', expected: undefined, value: pool() }], soon()))).toBeInstanceOf(StoreUnavailable);
    server.inject({ drop: true });
    expect(await failure(store.listPools('', soon()))).toBeInstanceOf(StoreUnavailable);
    expect(await failure(store.ping(Date.now() - 1))).toBeInstanceOf(StoreUnavailable);
    await store.close();
    const gone = storeOn({ ...server, url: 'https://127.0.0.1:1' } as KubeApiServer);
    expect(await failure(gone.readReservation('10.0.0.5', soon()))).toBeInstanceOf(StoreUnavailable);
    await gone.close();
  });

  it('401 and 403 are final errors, without the token', async () => {
    const wrong = storeOn(server, { token: 'expired-token-77' });
    const unauthorized = await failure(wrong.readPool('10.0.0.0-24', soon()));
    expect(unauthorized).toBeInstanceOf(CniError);
    expect(unauthorized).not.toBeInstanceOf(StoreUnavailable);
    expect((unauthorized as Error).message).not.toContain('expired-token-77');
    await wrong.close();
    const reader = storeOn(server, { token: 'reader-token' });
    const denied = await failure(reader.commit([{ kind: 'pool', name: '10.4.0.0-24', expected: undefined, value: pool() }], soon()));
    expect((denied as CniError).message).toMatch(/User "reader" cannot create resource "ippools"/);
    expect(await failure(reader.ping(soon()))).toBeInstanceOf(CniError);
    await reader.close();
  });

  it('names Kubernetes would refuse are refused with code 7 before any request, naming what made them', async () => {
    const store = storeOn(server);
    const cases = [poolName('Blue', '10.0.0.0/24'), reservationName('blue_net', 4, addr('10.0.0.5')), poolName('x'.repeat(250), '10.0.0.0/24')];
    for (const name of cases) {
      for (const run of [() => store.readPool(name, soon()), () => store.commit([{ kind: 'reservation', name, expected: undefined, value: { podref: 'a/b' } }], soon())]) {
        const err = await failure(run());
        expect(err).toBeInstanceOf(CniError);
        expect((err as CniError).code).toBe(7);
        expect((err as CniError).message).toContain(name);
        expect((err as CniError).message).toContain('network_name');
      }
    }
    expect((await failure(store.readPool(cases[0]!, soon())) as Error).message).toMatch(/uppercase letters \(B\)/);
    expect((await failure(store.readReservation(cases[1]!, soon())) as Error).message).toMatch(/"_"/);
    expect(store.requests).toBe(0);
    await store.close();
  });

  it('a pool too large for etcd is a final error naming the pool and its size', async () => {
    const store = storeOn(server);
    const allocations = Object.fromEntries(Array.from({ length: 12_000 }, (_, i) => [String(i), lease(`${'f'.repeat(60)}${i}`)]));
    const err = await failure(store.commit([{ kind: 'pool', name: '10.5.0.0-16', expected: undefined, value: pool(allocations, '10.5.0.0/16') }], soon()));
    expect(err).toBeInstanceOf(CniError);
    expect(err).not.toBeInstanceOf(StoreUnavailable);
    expect((err as CniError).message).toMatch(/IPPool "10\.5\.0\.0-16" with 12000 allocations is \d+ KiB of JSON, too large/);
    await store.close();
  });

  it('a replace keeps the labels, annotations and finalizers others put on the object', async () => {
    server.seed('ippools.whereabouts.cni.cncf.io', { metadata: { name: '10.6.0.0-24', namespace: 'kube-system', labels: { team: 'net' }, annotations: { note: 'x' }, finalizers: ['example.com/keep'] }, spec: pool({}, '10.6.0.0/24') });
    const store = storeOn(server);
    const read = await store.readPool('10.6.0.0-24', soon());
    await store.commit([{ kind: 'pool', name: '10.6.0.0-24', expected: read!.version, value: pool({ 2: lease('k') }, '10.6.0.0/24') }], soon());
    expect(server.object('ippools.whereabouts.cni.cncf.io', 'kube-system', '10.6.0.0-24')?.metadata).toMatchObject({ labels: { team: 'net' }, annotations: { note: 'x' }, finalizers: ['example.com/keep'] });
    await store.close();
  });

  it('ping dry-runs a create: it stores nothing; commit takes at most one write', async () => {
    const store = storeOn(server);
    await store.ping(soon());
    expect(server.object('ippools.whereabouts.cni.cncf.io', 'kube-system', 'underlay-ping')).toBeUndefined();
    expect(store.atomicWrites).toBe(1);
    const two = [{ kind: 'pool', name: 'a-24', expected: undefined, value: pool() }, { kind: 'pool', name: 'b-24', expected: undefined, value: pool() }] as const;
    expect(await failure(store.commit(two, soon()))).toBeInstanceOf(CniError);
    expect(await store.commit([], soon())).toEqual([]);
    expect(await store.tidy(0, soon())).toBe(0);
    await store.close();
  });
});

describe("KubernetesStore under whereabouts' own CRDs (Underlay's not applied)", () => {
  let server: KubeApiServer;
  beforeAll(async () => {
    server = await KubeApiServer.start({ crds: crdFiles(WHEREABOUTS_CRDS) });
  });
  afterAll(() => server.close());

  it('leases read back with id, podref and ifname but without our fields; the loss is logged once', async () => {
    const store = storeOn(server);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const [v1] = (await store.commit([{ kind: 'pool', name: '10.0.0.0-24', expected: undefined, value: pool({ 5: lease('a') }) }], soon()))!;
      await store.commit([{ kind: 'pool', name: '10.0.0.0-24', expected: v1, value: pool({ 5: lease('a'), 6: lease('b') }) }], soon());
      const warnings = stderr.mock.calls.map((c) => String(c[0])).filter((l) => l.includes('drops Underlay\'s lease fields'));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain('deploy/crds');
    } finally {
      stderr.mockRestore();
    }
    expect((await store.readPool('10.0.0.0-24', soon()))!.value).toEqual({ range: '10.0.0.0/24', allocations: { 5: { id: 'a', podref: 'default/a', ifname: 'net1' }, 6: { id: 'b', podref: 'default/b', ifname: 'net1' } } });
    await store.commit([{ kind: 'reservation', name: '10.0.0.5', expected: undefined, value: { containerid: 'a', podref: 'default/a', ifname: 'net1', since: 'x', networkname: '' } }], soon());
    expect((await store.readReservation('10.0.0.5', soon()))!.value).toEqual({ containerid: 'a', podref: 'default/a', ifname: 'net1' });
    await store.close();
  });

  it('claims and indexes: none are found; writing one fails saying which CRD to apply', async () => {
    const store = storeOn(server);
    const claim = claimName('10.8.0.0-16', 'default/web-0', 'net1');
    expect(await store.readReservation(claim, soon())).toBeUndefined();
    expect(await store.readPool('10.8.0.0-16-index', soon())).toBeUndefined();
    expect((await store.listReservations('', soon())).map((r) => r.name)).toEqual(['10.0.0.5']);
    const err = await failure(store.commit([{ kind: 'reservation', name: claim, expected: undefined, value: { podref: 'default/web-0', offset: '5' } }], soon()));
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).message).toMatch(/ipleaseclaims\.ipam\.underlay\.io is not served: apply Underlay's CRDs \(deploy\/crds\)/);
    await store.close();
  });
});
