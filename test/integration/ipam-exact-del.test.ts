// DEL releases a lease only when its container ID is the lease's current one (exact (containerID,
// ifName)); never by pod. Regressions of the second review, each failing before the change: a GC that
// freed a lease let a late DEL free the pod's next lease (finding 1); bounded memories of former and
// released container IDs ran out under churn (2); a partial sharded DEL was forgotten, and stranded its
// reservation and claim (3); a moved lease kept its old network (4); overlapping ranges in one config
// (5); GC of one network_name deleted another's IPv6 reservation (6); a sharded DEL without the pod's
// CNI_ARGS leaked (7). Every one on each store (test/helpers/stores.ts), records read through the store
// interface.
import { describe, expect, it } from 'vitest';
import type { Claimant } from '../../ipam/alloc/allocator.ts';
import { opsFor } from '../../ipam/lease/pool.ts';
import { fitsOneCommit } from '../../ipam/lease/records.ts';
import type { PoolTarget } from '../../ipam/lease/target.ts';
import { poolName } from '../../ipam/alloc/names.ts';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { resolveRange } from '../../ipam/alloc/ranges.ts';
import type { IpamStore, Write } from '../../ipam/store/types.ts';
import { type InvocationSpec, failure, invocation } from '../helpers/ipam-invocation.ts';
import { createReservation, poolNames, readPool, readReservation, reservationNames, soon } from '../helpers/store.ts';
import { describeEachStore } from '../helpers/stores.ts';
import { strictStderr, takeStderr } from '../helpers/fixture.ts';

strictStderr();

type Ipam = Record<string, unknown>;
const addresses = async (ipam: Ipam, spec: Partial<InvocationSpec> = {}) => (await ipamPlugin.add(invocation({ ipam, ...spec }))).ips!.map((ip) => ip.address);
const del = (ipam: Ipam, spec: Partial<InvocationSpec> = {}) => ipamPlugin.del(invocation({ ipam, verb: 'DEL', ...spec }));
const gc = (ipam: Ipam, valid: Array<{ containerID: string; ifname: string }>, spec: Partial<InvocationSpec> = {}) =>
  ipamPlugin.gc(invocation({ ipam, verb: 'GC', ...spec, extra: { 'cni.dev/valid-attachments': valid } }));
const pod = (id: string, uid?: string): Partial<InvocationSpec> => ({ containerId: id, pod: 'ns/p', args: uid ? `K8S_POD_UID=${uid}` : '' });
const sorted = async (names: Promise<string[]>) => (await names).sort();

/** Every lease of a pool, over its shards: [address offset, container ID]. */
async function leases(store: IpamStore, pool: string): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  for (const name of await poolNames(store)) {
    if (name !== pool && !name.startsWith(`${pool}-s`)) continue;
    for (const [key, a] of Object.entries((await readPool(store, name))!.value.allocations)) out.push([key, a.id]);
  }
  return out.sort();
}

/**
 * The store as a DEL killed right after its pool write sees it: the commit that wrote the pool applies,
 * its caller never learns it (on etcd that commit is the DEL's last call), and every later call fails.
 */
function killedAfterPoolWrite(store: IpamStore): IpamStore {
  let killed = false;
  return new Proxy(store, {
    get(real, prop) {
      const value = (real as unknown as Record<string | symbol, unknown>)[prop];
      if (typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        if (killed) throw new Error('killed');
        const out = await (value as (...a: unknown[]) => Promise<unknown>).apply(real, args);
        const write = (args[0] as Write[] | undefined)?.[0];
        if (prop === 'commit' && write?.kind === 'pool' && !write.name.endsWith('-index') && out !== undefined) {
          killed = true;
          throw new Error('killed');
        }
        return out;
      };
    },
  });
}

describeEachStore((store) => {
  describe('DEL releases only the lease of its exact container ID', () => {
    for (const range of ['10.90.0.0/24', '10.90.0.0/21']) {
      const pool = poolName('', range);
      it(`another container ID of the same pod releases nothing; GC frees the lease (${range})`, async () => {
        const ipam = { type: 'whereabouts', range, ...store.fresh() };
        const records = await store.open(ipam);
        await addresses(ipam, pod('first', 'u1'));
        await del(ipam, pod('unknown', 'u1'));
        expect(await leases(records, pool)).toEqual([['1', 'first']]);
        await gc(ipam, []);
        expect(await leases(records, pool)).toEqual([]);
        expect(await reservationNames(records)).toEqual([]);
      });

      it(`after GC freed a lease, a late DEL of it cannot free the pod's next lease (finding 1, ${range})`, async () => {
        const ipam = { type: 'whereabouts', range, ...store.fresh() };
        const first = await addresses(ipam, pod('c1', 'u1'));
        await gc(ipam, []);
        expect(await addresses(ipam, pod('c2', 'u1'))).toEqual(first);
        await del(ipam, pod('c1', 'u1')); // the runtime's late DEL of the sandbox GC judged dead
        expect(await leases(await store.open(ipam), pool)).toEqual([['1', 'c2']]);
        expect(await addresses(ipam, { containerId: 'q', pod: 'ns/other' })).not.toEqual(first);
      });

      it(`however many times the lease moved, a DEL of an old sandbox releases nothing (finding 2, ${range})`, async () => {
        const ipam = { type: 'whereabouts', range, ...store.fresh() };
        const records = await store.open(ipam);
        for (let i = 0; i <= 6; i++) await addresses(ipam, pod(`c${i}`, 'u1'));
        for (let i = 0; i < 6; i++) await del(ipam, pod(`c${i}`, 'u1'));
        expect(await leases(records, pool)).toEqual([['1', 'c6']]);
        // And churn of other pods does not make a repeated DEL release the pod's next lease either.
        await del(ipam, pod('c6', 'u1'));
        for (let i = 0; i < 40; i++) {
          await addresses(ipam, { containerId: `x${i}`, pod: `ns/x${i}` });
          await del(ipam, { containerId: `x${i}`, pod: `ns/x${i}` });
        }
        await addresses(ipam, pod('c7', 'u1'));
        await del(ipam, pod('c6', 'u1'));
        expect(await leases(records, pool)).toEqual([['1', 'c7']]);
      });

      it(`a pod re-created under the same name (another UID) gets its own address unless the API says the old one is gone (${range})`, async () => {
        const ipam = { type: 'whereabouts', range, ...store.fresh() };
        const records = await store.open(ipam);
        const old = await addresses(ipam, pod('o', 'u1'));
        const renewed = await addresses(ipam, pod('n', 'u2'));
        if (store.kind === 'kubernetes') {
          // This store can ask the API, which has no pod ns/p: the old pod is gone for good, so its
          // successor takes over the address (the StatefulSet rule; ipam-statefulset.test.ts shows
          // the other answer while the old pod still exists).
          expect(renewed).toEqual(old);
          await del(ipam, pod('o', 'u1')); // the old sandbox's DEL: the lease is n's now, nothing to release
          expect(await leases(records, pool)).toEqual([['1', 'n']]);
          await del(ipam, pod('n', 'u2'));
          expect(await leases(records, pool)).toEqual([]);
          expect(await reservationNames(records)).toEqual([]);
          return;
        }
        expect(renewed).not.toEqual(old);
        expect(await addresses(ipam, pod('n2', 'u2'))).toEqual(renewed); // idempotent for the new instance
        await del(ipam, pod('o', 'u1')); // the old pod's DEL finds its own lease, and only it
        expect(await leases(records, pool)).toEqual([['2', 'n2']]);
        await del(ipam, pod('n2', 'u2'));
        expect(await leases(records, pool)).toEqual([]);
        expect(await reservationNames(records)).toEqual([]);
      });
    }
  });

  describe('a sharded DEL without the pod in CNI_ARGS (finding 7)', () => {
    it('finds the lease by its container ID, and removes its reservation and claim', async () => {
      const ipam = { type: 'whereabouts', range: '10.91.0.0/21', ...store.fresh() };
      const records = await store.open(ipam);
      expect(await addresses(ipam, pod('c1', 'u1'))).toEqual(['10.91.0.1/21']);
      expect(await reservationNames(records)).toHaveLength(2); // reservation and claim
      await del(ipam, { containerId: 'c1' });
      expect(await leases(records, '10.91.0.0-21')).toEqual([]);
      expect(await reservationNames(records)).toEqual([]);
      // CHECK finds it the same way.
      await addresses(ipam, pod('c2', 'u1'));
      await ipamPlugin.check(invocation({ ipam, verb: 'CHECK', containerId: 'c2', extra: { prevResult: { cniVersion: '1.1.0', ips: [{ address: '10.91.0.1/21' }] } } }));
    });
  });

  describe('a DEL stopped right after its pool write (finding 3)', () => {
    const who = (id: string): Claimant => ({ id, podref: 'ns/p', ifname: 'net1', network: 'n', uid: 'u1' });
    for (const cidr of ['10.92.0.0/24', '10.92.0.0/21']) {
      const sharded = cidr.endsWith('/21');
      const range = resolveRange({ range: cidr }, 'ipam');
      const target: PoolTarget = { name: poolName('', range.cidr), range, networkName: '', overlapping: true };
      const give = async (s: IpamStore, t: PoolTarget, w: Claimant, deadline: number) => (await opsFor(s, t, deadline)).release(s, t, w, deadline);

      it(`is retried after the pod's next sandbox took the address: the retry frees nothing (${cidr})`, async () => {
        const ipam = { type: 'whereabouts', range: cidr, ...store.fresh() };
        const records = await store.open(ipam);
        await addresses(ipam, pod('c1', 'u1'));
        await expect(give(killedAfterPoolWrite(records), target, who('c1'), soon())).rejects.toThrow('killed');
        expect(await addresses(ipam, pod('c2', 'u1'))).toEqual([cidr.replace('0.0/', '0.1/')]);
        expect(await give(records, target, who('c1'), soon())).toEqual([]); // the retry
        expect(await leases(records, target.name)).toEqual([['1', 'c2']]);
        expect(await addresses(ipam, { containerId: 'q', pod: 'ns/q' })).toEqual([cidr.replace('0.0/', '0.2/')]);
        await del(ipam, pod('c2', 'u1'));
        await del(ipam, { containerId: 'q', pod: 'ns/q' });
        expect(await reservationNames(records)).toEqual([]);
      });

      if (sharded) {
        it('is retried: the retry removes the reservation and claim the first one left behind', async () => {
          const records = await store.open(store.fresh());
          await (await opsFor(records, target, soon())).acquire(records, target, who('c1'), soon());
          await expect(give(killedAfterPoolWrite(records), target, who('c1'), soon())).rejects.toThrow('killed');
          // A store that writes one record per commit is left with the reservation and the claim; one
          // that commits the shard, its index, the reservation and the claim together (etcd) with none.
          expect(await reservationNames(records)).toHaveLength(fitsOneCommit(records, 4) ? 0 : 2);
          expect(await give(records, target, who('c1'), soon())).toEqual([]);
          expect(await reservationNames(records)).toEqual([]);
        });
      }
    }
  });

  describe('a lease moved by an idempotent ADD of another network sharing the pool (finding 4)', () => {
    it('belongs to that network: GC of the first network spares it', async () => {
      const ipam = { type: 'whereabouts', range: '10.93.0.0/24', ...store.fresh() };
      const records = await store.open(ipam);
      await addresses(ipam, { ...pod('c1', 'u1'), name: 'neta' });
      await addresses(ipam, { ...pod('c2', 'u1'), name: 'netb' });
      await gc(ipam, [], { name: 'neta' });
      expect(await leases(records, '10.93.0.0-24')).toEqual([['1', 'c2']]);
      await gc(ipam, [{ containerID: 'c2', ifname: 'net1' }], { name: 'netb' });
      expect(await leases(records, '10.93.0.0-24')).toEqual([['1', 'c2']]);
      await gc(ipam, [], { name: 'netb' });
      expect(await leases(records, '10.93.0.0-24')).toEqual([]);
    });
  });

  describe('ranges of one config that share addresses (finding 5)', () => {
    it('are refused with code 7 naming both; DEL and GC still succeed', async () => {
      const at = store.fresh();
      const ipam = { type: 'whereabouts', range: '10.94.0.0/24', ipRanges: [{ range: '10.94.0.0/25' }], ...at };
      const err = await failure(addresses(ipam));
      expect(err.code).toBe(7);
      expect(err.message).toContain('ipam.ipRanges[0].range');
      expect(err.message).toContain('overlaps ipam.range');
      await del(ipam);
      await gc(ipam, []);
      expect(takeStderr()).toEqual([expect.stringMatching(/\[warning\] .*DEL: nothing to release: .*overlaps ipam\.range/), expect.stringMatching(/\[warning\] .*GC: nothing to release: .*overlaps ipam\.range/)]);
      // Same subnet, disjoint spans: allowed, one address from each.
      const split = { type: 'whereabouts', range: '10.95.0.0/24', range_end: '10.95.0.100', ipRanges: [{ range: '10.95.0.128/25' }], ...at };
      expect(await addresses(split)).toEqual(['10.95.0.1/24', '10.95.0.129/25']);
    });
  });

  describe('GC of one network_name next to another whose reservation names read alike (finding 6)', () => {
    it('judges only reservations of its own scope, and spares ambiguous ones it did not write', async () => {
      process.env.UNDERLAY_IPAM_ORPHAN_GRACE_MS = '0';
      const at = store.fresh();
      const records = await store.open(at);
      const other = { type: 'whereabouts', range: '1::/120', network_name: 'x-fd00', ...at };
      expect(await addresses(other, { containerId: 'c1', pod: 'ns/a' })).toEqual(['1::1/120']);
      expect(await reservationNames(records)).toEqual(['x-fd00-1--1']);
      // "x-fd00-1--1" also reads as fd00:1::1 of network_name "x".
      const mine = { type: 'whereabouts', range: 'fd00:1::/112', network_name: 'x', ...at };
      await createReservation(records, 'x-fd00-1--2', { podref: 'ns/legacy', since: '2020-01-01T00:00:00.000Z' }); // no scope: ambiguous
      await createReservation(records, 'x-fd00-1--3', { podref: 'ns/dead', since: '2020-01-01T00:00:00.000Z', networkname: 'x' });
      await gc(mine, []);
      expect(await sorted(reservationNames(records))).toEqual(['x-fd00-1--1', 'x-fd00-1--2']);
      expect((await readReservation(records, 'x-fd00-1--1'))!.value.networkname).toBe('x-fd00');
      // fd00:1::/120 of "x" even names its pool as 1::/120 of "x-fd00" ("x-fd00-1---120"): GC leaves that alone.
      await gc({ ...mine, range: 'fd00:1::/120' }, []);
      expect(await leases(records, 'x-fd00-1---120')).toEqual([['1', 'c1']]);
      expect(await sorted(reservationNames(records))).toEqual(['x-fd00-1--1', 'x-fd00-1--2']);
    });
  });
});
