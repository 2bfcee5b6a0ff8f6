// Taking over a live whereabouts installation: its IPPools and OverlappingRangeIPReservations, in
// whereabouts' exact format, read back through the Kubernetes store as the records the IPAM expects;
// and what the store writes stays readable by whereabouts (id, podref and ifname for every address,
// keys as decimal offsets) once whereabouts' own pruning CRDs are in force again.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { formatAddr, parseCidr } from '../../ipam/alloc/addr.ts';
import { poolName, reservationName } from '../../ipam/alloc/names.ts';
import type { Allocation, PoolRecord, Reservation } from '../../ipam/store/types.ts';
import { crdFiles, KubeApiServer, UNDERLAY_CRDS, WHEREABOUTS_CRDS } from '../helpers/kube-apiserver.ts';
import { loadCrd, validate } from '../helpers/kube-schema.ts';
import { storeOn } from '../helpers/kube-store.ts';

interface Item<S> { metadata: { name: string; namespace: string }; spec: S }
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'whereabouts');
const fixture = <S>(file: string): Array<Item<S>> => (JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')) as { items: Array<Item<S>> }).items;
const pools = fixture<PoolRecord>('ippools.json');
const reservations = fixture<Reservation>('overlappingrangeipreservations.json');
const soon = (): number => Date.now() + 5000;

const IPPOOLS = 'ippools.whereabouts.cni.cncf.io';
const ORIPS = 'overlappingrangeipreservations.whereabouts.cni.cncf.io';
const whereaboutsSchema = (plural: string) => crdFiles(WHEREABOUTS_CRDS).map(loadCrd).find((c) => c.plural === plural)!.schema;

/** The network_name a fixture pool name carries ("blue-192.168.2.0-24" → "blue"). */
const networkOf = (pool: Item<PoolRecord>): string => pool.metadata.name.slice(0, pool.metadata.name.length - poolName('', pool.spec.range).length).replace(/-$/, '');

/** What whereabouts needs of a stored IPPool to count its addresses as taken. */
function expectWhereaboutsReadable(object: Record<string, unknown> | undefined, leases: Record<string, Partial<Allocation>>): void {
  expect(object).toBeDefined();
  expect(validate(object!, whereaboutsSchema('ippools'))).toEqual([]);
  const allocations = (object!.spec as PoolRecord).allocations;
  for (const [key, lease] of Object.entries(leases)) {
    expect(key).toMatch(/^(0|[1-9]\d*)$/);
    const stored = allocations[key]!;
    expect(Object.keys(stored).sort()).toEqual(['id', 'ifname', 'podref'].filter((f) => f in lease).sort());
    expect(stored).toEqual({ id: lease.id, podref: lease.podref, ...(lease.ifname !== undefined && { ifname: lease.ifname }) });
  }
}

describe('whereabouts fixtures', () => {
  it('are named as whereabouts names them, and every leased address has its reservation', () => {
    const names = new Set(reservations.map((r) => r.metadata.name));
    for (const pool of pools) {
      const network = networkOf(pool);
      expect(pool.metadata.name).toBe(poolName(network, pool.spec.range));
      const cidr = parseCidr(pool.spec.range)!;
      for (const [offset, lease] of Object.entries(pool.spec.allocations)) {
        const name = reservationName(network, cidr.family, cidr.network + BigInt(offset));
        expect(names, `${formatAddr(cidr.family, cidr.network + BigInt(offset))} of ${pool.metadata.name}`).toContain(name);
        expect(reservations.find((r) => r.metadata.name === name)!.spec.podref).toBe(lease.podref);
      }
    }
  });
});

describe('taking over a whereabouts installation', () => {
  let server: KubeApiServer;
  beforeAll(async () => {
    // whereabouts installed its CRDs and wrote its objects; then the operator applies Underlay's CRDs.
    server = await KubeApiServer.start({ crds: crdFiles(WHEREABOUTS_CRDS) });
    const as = (i: Item<unknown>) => ({ metadata: { name: i.metadata.name, namespace: i.metadata.namespace }, spec: i.spec });
    for (const p of pools) server.seed(IPPOOLS, as(p));
    for (const r of reservations) server.seed(ORIPS, as(r));
    server.loadCrds(crdFiles(UNDERLAY_CRDS));
  });
  afterAll(() => server.close());

  it("reads whereabouts' IPPools and reservations as they are, field for field", async () => {
    const store = storeOn(server);
    for (const p of pools) expect((await store.readPool(p.metadata.name, soon()))?.value).toEqual(p.spec);
    for (const r of reservations) expect((await store.readReservation(r.metadata.name, soon()))?.value).toEqual(r.spec);
    expect((await store.listPools('', soon())).map((p) => p.name)).toEqual(pools.map((p) => p.metadata.name).sort());
    expect((await store.listPools('blue-', soon())).map((p) => p.value)).toEqual([pools[1]!.spec]);
    expect((await store.listReservations('fd00-', soon())).map((r) => r.name)).toEqual(['fd00--1-0', 'fd00--5']);
    const big = await store.readPool('10.10.0.0-20', soon());
    expect(Object.keys(big!.value.allocations).sort()).toEqual(['1', '1500', '4094']);
    await store.close();
  });

  it("what the store writes keeps our fields under Underlay's CRDs and reads as whereabouts' format under whereabouts' CRDs", async () => {
    const store = storeOn(server);
    const current = await store.readPool('192.168.2.0-24', soon());
    const mine: Allocation = { id: 'c'.repeat(64), podref: 'default/web-2', ifname: 'net1', since: '2025-06-01T10:00:00Z', network: 'macvlan-conf', poduid: '7f0c3a52-0d5e-4f8e-9a39-7f6c1c1c2a11' };
    const next: PoolRecord = { ...current!.value, allocations: { ...current!.value.allocations, 3: mine } };
    expect(await store.commit([{ kind: 'pool', name: '192.168.2.0-24', expected: current!.version, value: next }], soon())).toHaveLength(1);
    const reservation: Reservation = { containerid: mine.id, podref: mine.podref, ifname: 'net1', since: mine.since, poduid: mine.poduid, networkname: '' };
    await store.commit([{ kind: 'reservation', name: '192.168.2.3', expected: undefined, value: reservation }], soon());
    expect((await store.readPool('192.168.2.0-24', soon()))!.value).toEqual(next);
    expect((await store.readReservation('192.168.2.3', soon()))!.value).toEqual(reservation);

    // Back to whereabouts' CRDs (a whereabouts upgrade re-applies them): what whereabouts reads.
    server.loadCrds(crdFiles(WHEREABOUTS_CRDS));
    try {
      expectWhereaboutsReadable(server.object(IPPOOLS, 'kube-system', '192.168.2.0-24'), next.allocations);
      const orip = server.object(ORIPS, 'kube-system', '192.168.2.3');
      expect(validate(orip!, whereaboutsSchema('overlappingrangeipreservations'))).toEqual([]);
      expect(orip!.spec).toEqual({ containerid: mine.id, podref: 'default/web-2', ifname: 'net1' });
      // And a lease written while whereabouts' CRDs are in force.
      const again = await store.readPool('192.168.2.0-24', soon());
      const more = { ...again!.value, allocations: { ...again!.value.allocations, 4: { ...mine, id: 'd'.repeat(64), podref: 'default/web-3' } } };
      const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
      try {
        await store.commit([{ kind: 'pool', name: '192.168.2.0-24', expected: again!.version, value: more }], soon());
        expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toMatch(/drops Underlay's lease fields/);
      } finally {
        stderr.mockRestore();
      }
      expectWhereaboutsReadable(server.object(IPPOOLS, 'kube-system', '192.168.2.0-24'), more.allocations);
    } finally {
      server.loadCrds(crdFiles(UNDERLAY_CRDS));
    }
    await store.close();
  });
});
