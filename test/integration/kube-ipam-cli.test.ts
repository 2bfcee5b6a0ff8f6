// `underlay ipam ls` and `underlay ipam show --kubeconfig FILE` (the BUILT executable) against the
// in-test API server: whereabouts' own IPPools and a pool Underlay cut into shards, read as the pools
// they are.
import { execa } from 'execa';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { BIN, requireBuild } from '../helpers/exec.ts';
import { KubeApiServer } from '../helpers/kube-apiserver.ts';
import { kubeconfigFile } from '../helpers/kube-pods.ts';
import { invocation } from '../helpers/ipam-invocation.ts';

const underlay = (args: string[]) => execa(join(BIN, 'underlay'), args, { reject: false, env: { PATH: process.env.PATH ?? '' }, extendEnv: false });

describe('underlay ipam --kubeconfig', () => {
  it('lists the pools of the kubeconfig context\'s namespace and shows their leases, a pool in shards as one', async () => {
    requireBuild();
    const server = await KubeApiServer.start();
    const file = kubeconfigFile(server, 'kube-system');
    try {
      server.seed('ippools.whereabouts.cni.cncf.io', {
        metadata: { name: '192.168.2.0-24', namespace: 'kube-system' },
        spec: { range: '192.168.2.0/24', allocations: { 1: { id: 'a'.repeat(64), podref: 'default/web-0', ifname: 'net1' } } },
      });
      // A /21 from 10.40.3.254: its leases fall in shard 0 and shard 1.
      const ipam = { type: 'whereabouts', range: '10.40.0.0/21', range_start: '10.40.3.254', kubernetes: { kubeconfig: file.path } };
      for (const i of [0, 1, 2]) await ipamPlugin.add(invocation({ ipam, containerId: `c${i}`, pod: `default/p-${i}`, name: 'bignet' }));

      const ls = await underlay(['ipam', 'ls', '--json', '--kubeconfig', file.path]);
      expect(ls.exitCode, ls.stderr).toBe(0);
      const listed = JSON.parse(ls.stdout) as { store: string; pools: Array<Record<string, unknown>>; reservations: number };
      expect(listed.store).toBe(`Kubernetes API at ${server.url} (namespace kube-system)`);
      expect(listed.pools.map(({ version: _v, ...p }) => p)).toEqual([
        { name: '10.40.0.0-21', range: '10.40.0.0/21', used: 3, free: 1022 },
        { name: '192.168.2.0-24', range: '192.168.2.0/24', used: 1, free: 253 },
      ]);
      expect(listed.reservations).toBe(3);
      const table = await underlay(['ipam', 'ls', '--kubeconfig', file.path]);
      expect(table.stdout).toMatch(/^10\.40\.0\.0-21\s+10\.40\.0\.0\/21\s+3\s+1022$/m);

      const show = await underlay(['ipam', 'show', '10.40.0.0-21', '--json', '--kubeconfig', file.path]);
      expect(show.exitCode, show.stderr).toBe(0);
      const { leases } = JSON.parse(show.stdout) as { leases: Array<Record<string, string>> };
      expect(leases.map((l) => [l.address, l.pod, l.containerID, l.ifName, l.network])).toEqual([
        ['10.40.3.254', 'default/p-0', 'c0', 'net1', 'bignet'],
        ['10.40.3.255', 'default/p-1', 'c1', 'net1', 'bignet'],
        ['10.40.4.0', 'default/p-2', 'c2', 'net1', 'bignet'],
      ]);
      const whereabouts = await underlay(['ipam', 'show', '192.168.2.0-24', '--kubeconfig', file.path]);
      expect(whereabouts.stdout).toMatch(/^192\.168\.2\.1\s+default\/web-0\s+aaaaaaaaaaaa\s+net1\s+-\s+-\s+-$/m);
      const missing = await underlay(['ipam', 'show', 'nope-24', '--kubeconfig', file.path]);
      expect([missing.exitCode, missing.stderr]).toEqual([1, expect.stringContaining('no pool "nope-24" in the Kubernetes API') as unknown]);
    } finally {
      file.cleanup();
      await server.close();
    }
  });
});
