// Measures the etcd store on a real local etcd; a measurement, not a test (figures, no assertions):
//   node test/store/etcd-measure.ts
// Prints requests per call, in-process latency of a range and a txn (plain, TLS with ECDSA P-256 and
// RSA 2048 certificates), the cost of a new connection (TCP + TLS handshake, by curve), authentication,
// the import of node:http/node:https, and what a fresh process pays for one read and one commit, the
// store bundled with esbuild as the SEA bundles it. The machines are shared: figures are side by side
// from one run, medians of many.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import type { EtcdSettings } from '../../ipam/config/schema.ts';
import { EtcdStore } from '../../ipam/store/etcd/store.ts';
import type { PoolRecord } from '../../ipam/store/types.ts';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p99 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))]!;
const ms = (x: number): string => `${x.toFixed(2)} ms`;
const soon = () => Date.now() + 10_000;
const pool: PoolRecord = { range: '10.8.0.0/24', allocations: { '1': { id: 'c1', podref: 'ns/a', ifname: 'net1' } } };

function settingsOf(cluster: EtcdCluster, auth = false): EtcdSettings {
  const tls = cluster.tls;
  return {
    endpoints: cluster.endpoints,
    ...(tls && { caCertFile: tls.caFile, certFile: tls.client.certFile, keyFile: tls.client.keyFile }),
    ...(auth && { username: cluster.user!.name, password: cluster.user!.password }),
  };
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

async function latency(label: string, settings: EtcdSettings): Promise<void> {
  const store = new EtcdStore(settings);
  const name = `measure-${Math.random().toString(36).slice(2)}`;
  let [version] = (await store.commit([{ kind: 'pool', name, expected: undefined, value: pool }], soon()))!;
  const reads: number[] = [];
  const txns: number[] = [];
  const txns3: number[] = [];
  for (let i = 0; i < 300; i++) {
    reads.push(await time(() => store.readPool(name, soon())));
    txns.push(await time(async () => {
      [version] = (await store.commit([{ kind: 'pool', name, expected: version, value: pool }], soon()))!;
    }));
    txns3.push(await time(async () => {
      const done = (await store.commit([
        { kind: 'pool', name, expected: version, value: pool },
        { kind: 'reservation', name: `${name}-${i}`, expected: undefined, value: { podref: 'ns/a' } },
        { kind: 'reservation', name: `${name}-c${i}`, expected: undefined, value: { podref: 'ns/a', offset: '1' } },
      ], soon()))!;
      version = done[0];
    }));
  }
  const before = store.requests;
  await store.readPool(name, soon());
  const perRead = store.requests - before;
  await store.commit([{ kind: 'pool', name, expected: version, value: pool }], soon());
  const perCommit = store.requests - before - perRead;
  await store.close();
  console.log(`${label.padEnd(22)} range p50 ${ms(median(reads))} p99 ${ms(p99(reads))} | txn(1) p50 ${ms(median(txns))} p99 ${ms(p99(txns))} | txn(3) p50 ${ms(median(txns3))} | requests: read ${perRead}, commit ${perCommit}`);
}

/** A new store per round: its first request opens the connection (and does the TLS handshake). */
async function firstRequest(label: string, settings: EtcdSettings, warm: number): Promise<void> {
  const firsts: number[] = [];
  let requests = 0;
  for (let i = 0; i < 40; i++) {
    const store = new EtcdStore(settings);
    firsts.push(await time(() => store.ping(soon())));
    requests = store.requests;
    await store.close();
  }
  console.log(`${label.padEnd(22)} first call on a new store p50 ${ms(median(firsts))} (${requests} requests), over a warm connection ${ms(warm)}: setup ${ms(median(firsts) - warm)}`);
}

async function warmPing(settings: EtcdSettings): Promise<number> {
  const store = new EtcdStore(settings);
  await store.ping(soon());
  const xs: number[] = [];
  for (let i = 0; i < 100; i++) xs.push(await time(() => store.ping(soon())));
  await store.close();
  return median(xs);
}

/** The handshake alone, by key-exchange curve, with node:https directly (lib/http has no curve option). */
async function handshakes(cluster: EtcdCluster, label: string): Promise<void> {
  const tls = cluster.tls!;
  const ca = readFileSync(tls.caFile);
  const cert = readFileSync(tls.client.certFile);
  const key = readFileSync(tls.client.keyFile);
  const parts: string[] = [];
  for (const curve of ['X25519', 'prime256v1']) {
    const xs: number[] = [];
    let negotiated = '';
    for (let i = 0; i < 40; i++) {
      const agent = new HttpsAgent({ keepAlive: false, ca, cert, key, ecdhCurve: curve });
      xs.push(await time(() => new Promise<void>((resolve, reject) => {
        const req = httpsRequest(`${cluster.endpoints[0]}/health`, { agent }, (res) => {
          const socket = res.socket as import('node:tls').TLSSocket;
          negotiated = `${socket.getProtocol() ?? '?'} ${socket.getCipher().name} ${(socket.getEphemeralKeyInfo() as { name?: string } | null)?.name ?? ''}`;
          res.resume();
          res.on('end', resolve);
        });
        req.on('error', reject);
        req.end();
      })));
      agent.destroy();
    }
    parts.push(`${curve} ${ms(median(xs))} (${negotiated})`);
  }
  console.log(`${label.padEnd(22)} GET /health on a new connection: ${parts.join(', ')}`);
}

/** Fresh processes: node started, the store bundled and loaded, then one read and one commit. */
async function processes(targets: Array<[string, EtcdSettings]>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'underlay-etcd-measure-'));
  try {
    // What the IPAM loads anyway (zod, for its config), so that the store's own share shows.
    const base = join(dir, 'base.ts');
    writeFileSync(base, `
      import * as z from 'zod/mini';
      import ${JSON.stringify(join(ROOT, 'lib/schema.ts'))};
      z.object({ a: z.string() }).parse({ a: '' });
    `);
    const entry = join(dir, 'entry.ts');
    writeFileSync(entry, `
      import { EtcdStore } from ${JSON.stringify(join(ROOT, 'ipam/store/etcd/store.ts'))};
      const t0 = performance.now();
      const settings = process.env.SETTINGS ? JSON.parse(process.env.SETTINGS) : undefined;
      if (settings) {
        const store = new EtcdStore(settings);
        const name = 'proc-' + process.pid;
        await store.readPool(name, Date.now() + 10000);
        await store.commit([{ kind: 'pool', name, expected: undefined, value: { range: '10.9.0.0/24', allocations: {} } }], Date.now() + 10000);
        await store.close();
      }
      process.stdout.write(String(performance.now() - t0));
    `);
    const bundles = { base: join(dir, 'base.mjs'), store: join(dir, 'store.mjs') };
    await build({ entryPoints: [base], bundle: true, platform: 'node', format: 'esm', target: 'node24', minify: true, outfile: bundles.base, logLevel: 'error', nodePaths: [join(ROOT, 'node_modules')] });
    await build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', target: 'node24', minify: true, outfile: bundles.store, logLevel: 'error' });
    const node = process.execPath;
    const run = (args: string[], env: Record<string, string> = {}) => {
      const started = performance.now();
      const out = execFileSync(node, args, { env: { ...process.env, ...env }, encoding: 'utf8' });
      return { wall: performance.now() - started, inside: Number(out) };
    };
    const rounds = 15;
    const wall = (args: string[], env?: Record<string, string>) => median(Array.from({ length: rounds }, () => run(args, env).wall));
    const bare = wall(['-e', '0']);
    const zod = wall([bundles.base]);
    const loaded = wall([bundles.store]);
    console.log(`${'node -e 0'.padEnd(22)} wall p50 ${ms(bare)}`);
    console.log(`${'zod + lib/schema'.padEnd(22)} wall p50 ${ms(zod)} (+${ms(zod - bare)})`);
    console.log(`${'the store loaded'.padEnd(22)} wall p50 ${ms(loaded)} (+${ms(loaded - zod)} over zod)`);
    for (const [label, settings] of targets) {
      const runs = Array.from({ length: rounds }, () => run([bundles.store], { SETTINGS: JSON.stringify(settings) }));
      const w = median(runs.map((r) => r.wall));
      console.log(`${label.padEnd(22)} wall p50 ${ms(w)} (+${ms(w - loaded)} over loading the store); open+read+commit+close inside ${ms(median(runs.map((r) => r.inside)))}`);
    }
    for (const mod of ['node:http', 'node:https', 'node:tls']) {
      const xs = Array.from({ length: rounds }, () => Number(execFileSync(node, ['-e', `const t=performance.now();process.getBuiltinModule(${JSON.stringify(mod)});process.stdout.write(String(performance.now()-t))`], { encoding: 'utf8' })));
      console.log(`${`load ${mod}`.padEnd(22)} p50 ${ms(median(xs))} in a fresh process`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const plain = await startEtcd();
const ec = await startEtcd({ tls: true, clientCertAuth: true });
const rsa = await startEtcd({ tls: true, clientCertAuth: true, keyType: 'rsa' });
const auth = await startEtcd({ tls: true, clientCertAuth: true, auth: true });
try {
  console.log(`etcd ${execFileSync('etcd', ['--version'], { encoding: 'utf8' }).split('\n')[0]}, node ${process.version}, 1 member on loopback`);
  console.log('\n# in-process, over a kept-alive connection (300 of each)');
  await latency('http', settingsOf(plain));
  await latency('https ECDSA P-256', settingsOf(ec));
  await latency('https RSA 2048', settingsOf(rsa));
  await latency('https P-256 + auth', settingsOf(auth, true));
  console.log('\n# a new connection per store (what each CNI process pays once)');
  await firstRequest('http', settingsOf(plain), await warmPing(settingsOf(plain)));
  await firstRequest('https ECDSA P-256', settingsOf(ec), await warmPing(settingsOf(ec)));
  await firstRequest('https RSA 2048', settingsOf(rsa), await warmPing(settingsOf(rsa)));
  await firstRequest('https P-256 + auth', settingsOf(auth, true), await warmPing(settingsOf(auth, true)));
  await handshakes(ec, 'handshake P-256 certs');
  await handshakes(rsa, 'handshake RSA certs');
  console.log('\n# fresh processes (15 each): node 24, the store bundled by esbuild');
  await processes([
    ['http', settingsOf(plain)],
    ['https ECDSA P-256', settingsOf(ec)],
    ['https RSA 2048', settingsOf(rsa)],
    ['https P-256 + auth', settingsOf(auth, true)],
  ]);
} finally {
  await Promise.all([plain, ec, rsa, auth].map((c) => c.destroy()));
}
