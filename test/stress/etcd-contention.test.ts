// Ten nodes filling one pool in one real etcd: 10 allocator processes of the BUILT executable side by
// side (each its own NODENAME), 1,000 ADDs on a pool of exactly 1,000 addresses (10.70.0.0/22 up to
// range_end 10.70.3.232). Every ADD succeeds with its own address, the pool then holds exactly those
// 1,000 leases with their 1,000 reservations, and one more ADD finds the pool exhausted (code 100).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireBuild } from '../helpers/exec.ts';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.ts';
import { storeOf } from '../helpers/store.ts';
import { bare, duplicates, fleet, killAll, leasesOf, poolsOf, start } from './etcd-allocators.ts';

const NODES = 10;
const POOL_SIZE = 1000;
const POOL = '10.70.0.0-22';

let etcd: EtcdCluster;
beforeAll(async () => {
  requireBuild();
  etcd = await startEtcd();
});
afterEach(killAll);
afterAll(async () => {
  await killAll();
  await etcd?.destroy();
});

describe('10 allocator processes on one etcd', () => {
  it('fill a pool of exactly 1,000 addresses with 1,000 ADDs: all succeed, all distinct, 1,000 leases', async () => {
    const ipam = { type: 'whereabouts', range: '10.70.0.0/22', range_end: '10.70.3.232', etcd_endpoints: etcd.endpoints };
    const config = { cniVersion: '1.1.0', name: 'contention', type: 'whereabouts', ipam };
    const started = Date.now();
    const adds = await fleet(NODES, POOL_SIZE, (k, w) => ({ verb: 'ADD', config, containerId: `c${k}`, node: `node-${w}`, env: { UNDERLAY_IPAM_STATS: '1' } }));
    const seconds = (Date.now() - started) / 1000;

    expect(adds.filter((a) => a.code !== 0).map((a) => `${a.call.containerId}: ${a.code} ${a.stdout}`)).toEqual([]);
    const answered = adds.map((a) => bare(a.address!));
    expect(duplicates(answered)).toEqual([]);
    expect(new Set(answered).size).toBe(POOL_SIZE);

    // The pool as an operator sees it: exactly the 1,000 answers, each held by the container it went to.
    expect(await poolsOf(etcd.endpoints)).toEqual([expect.objectContaining({ name: POOL, range: '10.70.0.0/22', used: POOL_SIZE, free: 0 })]);
    const leases = await leasesOf(etcd.endpoints, POOL);
    expect(leases).toHaveLength(POOL_SIZE);
    const holder = new Map(leases.map((l) => [l.address, l.containerID]));
    expect(adds.filter((a) => holder.get(bare(a.address!)) !== a.call.containerId).map((a) => a.call.containerId)).toEqual([]);

    // Each lease has its reservation, held by the same pod, and there is no other reservation.
    const store = await storeOf({ etcd_endpoints: etcd.endpoints });
    try {
      const reservations = await store.listReservations('', Date.now() + 10_000);
      expect(reservations.map((r) => r.name).sort()).toEqual([...answered].sort());
      const podOf = new Map(reservations.map((r) => [r.name, r.value.podref]));
      expect(adds.filter((a) => podOf.get(bare(a.address!)) !== `stress/pod-${a.call.containerId}`).map((a) => a.call.containerId)).toEqual([]);
    } finally {
      await store.close();
    }

    // Full means full: the next ADD is refused as exhausted, and takes nothing.
    const extra = await start({ verb: 'ADD', config, containerId: 'one-too-many', node: 'node-0' }).done;
    expect([extra.code, extra.errorCode]).toEqual([1, 100]);
    expect(await leasesOf(etcd.endpoints, POOL)).toHaveLength(POOL_SIZE);

    const conflicts = adds.reduce((sum, a) => sum + (a.stats?.conflicts ?? 0), 0);
    const requests = adds.reduce((sum, a) => sum + (a.stats?.requests ?? 0), 0);
    const slowest = Math.max(...adds.map((a) => a.ms));
    console.log(`1,000 ADDs by ${NODES} processes in ${seconds.toFixed(1)} s (${(POOL_SIZE / seconds).toFixed(1)}/s): ${(conflicts / POOL_SIZE).toFixed(2)} conflicts and ${(requests / POOL_SIZE).toFixed(2)} etcd requests per ADD, slowest ADD ${slowest.toFixed(0)} ms`);
  }, 600_000);
});
