// The BUILT IPAM under contention on the in-test API server: 10 concurrent callers x 100 ADDs, each
// ADD its own process, fill a pool of exactly 1,000 addresses (one IPPool, every ADD racing for the
// same object by resourceVersion): all 1,000 succeed with distinct addresses, the IPPool and the
// reservations hold exactly those leases, and the 1,001st ADD finds the pool exhausted.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { requireBuild } from '../helpers/exec.ts';
import { KubeApiServer } from '../helpers/kube-apiserver.ts';
import { fillConfig, fillPool, runIpam } from '../helpers/kube-fill.ts';
import { kubeconfigFile } from '../helpers/kube-pods.ts';
import type { PoolRecord } from '../../ipam/store/types.ts';

// 10.90.0.1-10.90.3.232: offsets 1..1000 of a /22.
const RANGE = { range: '10.90.0.0/22', range_end: '10.90.3.232' };

describe('the Kubernetes store under contention', () => {
  it('10 processes x 100 ADDs fill a 1,000-address pool exactly: all succeed, all distinct', async () => {
    requireBuild();
    const server = await KubeApiServer.start();
    const file = kubeconfigFile(server, 'kube-system');
    try {
      const { runs } = await fillPool({ kubeconfig: file.path, workers: 10, perWorker: 100, range: RANGE });
      expect(runs.filter((r) => r.code !== 0).map((r) => `${r.code}: ${r.stdout}`)).toEqual([]);
      const addresses = runs.map((r) => r.address);
      expect(new Set(addresses).size).toBe(1000);
      const pool = server.object('ippools.whereabouts.cni.cncf.io', 'kube-system', '10.90.0.0-22')!.spec as PoolRecord;
      const held = Object.entries(pool.allocations).map(([offset, a]) => [Number(offset), a.id] as const).sort((x, y) => x[0] - y[0]);
      expect(held.map(([offset]) => offset)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
      const byAddress = new Map(runs.map((r) => [r.address, r.containerId]));
      for (const [offset, id] of held) expect(byAddress.get(`10.90.${Math.floor(offset / 256)}.${offset % 256}/22`)).toBe(id);
      const reservations = server.store.list(server.resource('overlappingrangeipreservations.whereabouts.cni.cncf.io'), 'kube-system', { labelSelector: null, fieldSelector: null, limit: undefined, continueToken: null });
      expect(reservations.items).toHaveLength(1000);

      const extra = await runIpam('ADD', fillConfig({ kubeconfig: file.path, range: RANGE }), 'f'.repeat(64), 'fill/one-too-many', randomUUID());
      expect(extra.code).not.toBe(0);
      expect(JSON.parse(extra.stdout)).toMatchObject({ code: 100, msg: expect.stringContaining('pool exhausted') as unknown });
      const stats = runs.map((r) => r.stats!);
      console.log(`contention: ${(stats.reduce((n, s) => n + (s.requests ?? 0), 0) / 1000).toFixed(2)} requests and ${(stats.reduce((n, s) => n + s.conflicts, 0) / 1000).toFixed(2)} conflicts per allocation`);
    } finally {
      file.cleanup();
      await server.close();
    }
  }, 600_000);
});
