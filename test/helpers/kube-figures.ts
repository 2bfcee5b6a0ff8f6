// Figures for the Kubernetes store, printed, never asserted (these machines are shared and noisy):
//   node test/helpers/kube-figures.ts [--sea]
// - what js-yaml costs when bundled as build.mjs bundles (import, first load of a kubeconfig) and what
//   lib/kube plus the store add to the bundle; with --sea, the same inside a Node 24 SEA;
// - requests per store call, and latency against the simulated API server (which runs in this same
//   process, so its own work is in the figures);
// - TLS setup: the first request of a new store (TCP + TLS handshake) against the next ones on the
//   kept-alive connection, with a bearer token and with a client certificate.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { KubernetesStore } from '../../ipam/store/kubernetes/store.ts';
import type { PoolRecord } from '../../ipam/store/types.ts';
import { makeSea, NODE24 } from '../../scripts/sea.mjs';
import { KubeApiServer } from './kube-apiserver.ts';
import { storeOn } from './kube-store.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const SCRATCH = join(ROOT, '.scratch', 'kube-figures');

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;
const ms = (x: number): string => `${x.toFixed(2)} ms`;

async function bundle(entry: string, out: string): Promise<number> {
  await build({ entryPoints: [entry], outfile: out, bundle: true, platform: 'node', format: 'cjs', target: 'node24', minify: true, legalComments: 'none', define: { UNDERLAY_VERSION: '"figures"' }, logLevel: 'error' });
  return statSync(out).size;
}

async function bundleFigures(sea: boolean): Promise<void> {
  mkdirSync(SCRATCH, { recursive: true });
  const base = await bundle(join(ROOT, 'lib', 'main.ts'), join(SCRATCH, 'base.cjs'));
  const withStoreEntry = join(SCRATCH, 'with-store.ts');
  writeFileSync(withStoreEntry, `import '../../lib/main.ts';\nimport { openKubernetesStore } from '../../ipam/store/kubernetes/store.ts';\n(globalThis as Record<string, unknown>).keep = openKubernetesStore;\n`);
  const withStore = await bundle(withStoreEntry, join(SCRATCH, 'with-store.cjs'));
  console.log(`bundle: lib/main ${(base / 1024).toFixed(0)} KiB; with the Kubernetes store and js-yaml +${((withStore - base) / 1024).toFixed(0)} KiB`);

  const kubeconfig = join(SCRATCH, 'kubeconfig');
  writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://10.0.0.1:6443\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: abc\ncontexts:\n- name: c\n  context: {cluster: k, user: u, namespace: kube-system}\n');
  const probe = join(SCRATCH, 'probe.ts');
  writeFileSync(probe, [
    "import '../../lib/cni/config.ts';",
    "import '../../lib/log.ts';",
    "import '../../ipam/store/types.ts';",
    'async function main(): Promise<void> {',
    '  const s0 = performance.now();',
    "  const { loadKubeconfig } = await import('../../ipam/store/kubernetes/store.ts').then(() => import('../../lib/kube/kubeconfig.ts'));",
    '  const t0 = performance.now();',
    "  const yaml = await import('js-yaml');",
    '  const t1 = performance.now();',
    "  yaml.load('a: 1', { schema: yaml.CORE_SCHEMA });",
    '  const t2 = performance.now();',
    `  await loadKubeconfig(${JSON.stringify(kubeconfig)});`,
    '  const t3 = performance.now();',
    '  console.log(JSON.stringify({ storeMs: t0 - s0, importMs: t1 - t0, firstLoadMs: t2 - t1, kubeconfigMs: t3 - t2 }));',
    '}',
    'void main();',
  ].join('\n'));
  await bundle(probe, join(SCRATCH, 'probe.cjs'));
  const runs = (cmd: string, args: string[]): Array<{ storeMs: number; importMs: number; firstLoadMs: number; kubeconfigMs: number }> =>
    Array.from({ length: 15 }, () => JSON.parse(spawnSync(cmd, args, { encoding: 'utf8' }).stdout) as { storeMs: number; importMs: number; firstLoadMs: number; kubeconfigMs: number });
  const show = (label: string, r: ReturnType<typeof runs>): void =>
    console.log(`${label}: import of the store and lib/kube (js-yaml not yet) ${ms(median(r.map((x) => x.storeMs)))}, import('js-yaml') ${ms(median(r.map((x) => x.importMs)))}, first yaml.load ${ms(median(r.map((x) => x.firstLoadMs)))}, loadKubeconfig ${ms(median(r.map((x) => x.kubeconfigMs)))} (medians of 15 processes)`);
  show('bundled, node 24', runs(NODE24, [join(SCRATCH, 'probe.cjs')]));
  if (sea) {
    const exe = join(SCRATCH, 'probe-sea');
    makeSea(join(SCRATCH, 'probe.cjs'), exe);
    show('bundled, in a SEA with code cache', runs(exe, []));
  }
}

async function timed<T>(run: () => Promise<T>): Promise<number> {
  const t0 = performance.now();
  await run();
  return performance.now() - t0;
}

async function storeFigures(): Promise<void> {
  const server = await KubeApiServer.start();
  const soon = (): number => Date.now() + 10_000;
  const lease = (i: number) => ({ id: `${'c'.repeat(56)}${String(i).padStart(8, '0')}`, podref: `default/pod-${i}`, ifname: 'net1', since: '2025-01-01T00:00:00Z', network: 'n', poduid: 'u' });
  const full: PoolRecord = { range: '10.0.0.0/22', allocations: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [String(i + 1), lease(i)])) };
  const store = storeOn(server);
  await store.commit([{ kind: 'pool', name: 'big-22', expected: undefined, value: full }], soon());
  await store.commit([{ kind: 'pool', name: 'small-24', expected: undefined, value: { range: '10.1.0.0/24', allocations: {} } }], soon());

  const perCall: Array<[string, () => Promise<unknown>]> = [
    ['readPool', () => store.readPool('small-24', soon())],
    ['readReservation (absent)', () => store.readReservation('10.1.0.9', soon())],
    ['listPools', () => store.listPools('', soon())],
    ['listReservations', () => store.listReservations('', soon())],
    ['commit (one write)', async () => {
      const p = await store.readPool('small-24', soon());
      const before = store.requests;
      await store.commit([{ kind: 'pool', name: 'small-24', expected: p!.version, value: p!.value }], soon());
      return store.requests - before;
    }],
    ['ping', () => store.ping(soon())],
  ];
  const counts: string[] = [];
  for (const [label, run] of perCall) {
    const before = store.requests;
    const out = await run();
    counts.push(`${label} ${typeof out === 'number' ? out : store.requests - before}`);
  }
  console.log(`requests per call: ${counts.join(', ')}`);

  for (const [label, name] of [['small pool (empty /24)', 'small-24'], ['full pool (1000 leases, ~170 KB)', 'big-22']] as const) {
    const reads: number[] = [];
    const writes: number[] = [];
    for (let i = 0; i < 200; i++) {
      let snapshot: Awaited<ReturnType<KubernetesStore['readPool']>>;
      reads.push(await timed(async () => (snapshot = await store.readPool(name, soon()))));
      writes.push(await timed(() => store.commit([{ kind: 'pool', name, expected: snapshot!.version, value: snapshot!.value }], soon())));
    }
    console.log(`${label}: readPool p50 ${ms(pct(reads, 50))} p99 ${ms(pct(reads, 99))}; commit (PUT) p50 ${ms(pct(writes, 50))} p99 ${ms(pct(writes, 99))} (200 each)`);
  }
  await store.close();

  const client = server.pki.client('system:node:n1');
  for (const [label, open] of [
    ['bearer token', () => storeOn(server)],
    ['client certificate', () => new KubernetesStore({ server: server.url, namespace: 'kube-system', tls: { ca: server.pki.ca.cert, cert: client.cert, key: client.key }, token: () => undefined, source: 'figures' })],
  ] as const) {
    const first: number[] = [];
    const next: number[] = [];
    for (let i = 0; i < 30; i++) {
      const s = open();
      first.push(await timed(() => s.readPool('small-24', soon())));
      next.push(await timed(() => s.readPool('small-24', soon())));
      await s.close();
    }
    console.log(`TLS (${label}): first request of a new store ${ms(median(first))}, next request on the kept-alive connection ${ms(median(next))}: setup ~${ms(median(first) - median(next))} (medians of 30)`);
  }
  await server.close();
}

try {
  await bundleFigures(process.argv.includes('--sea'));
  await storeFigures();
} finally {
  rmSync(SCRATCH, { recursive: true, force: true });
}
