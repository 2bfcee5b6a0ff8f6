// npm run bench -- etcd [--pods N] [--rounds R] [--members 1|3] [--scale N] [--nodes N] [--no-processes] [--no-scale]
// Cluster IPAM throughput on a real etcd, measured side by side in one run (these machines are shared
// and noisy: compare the rows, not the absolute figures).
//  1. Processes, as nodes run them: 1, 4 and 10 allocator processes of the BUILT executable side by side,
//     ADD after ADD (each process its own NODENAME), filling a pool of exactly `pods` addresses (IPs =
//     pods) and one of 4x as many (spare IPs). Beside them the same 10-process fill on the file store,
//     and 10 processes of a bare Node 24 SEA that prints one line (the ceiling of one process per ADD).
//     Per row: allocations/s, p50/p99 of one ADD process, and etcd requests, conflicts and retries per
//     allocation (UNDERLAY_IPAM_STATS); then DEL of the 10-process fill. Each row's ADDs go in `rounds`
//     slices, the rows taking turns, so that all meet the same drift of the machine's load (a slice
//     starts and ends with fewer processes running: a little less contention than a steady fill).
//     Targets: the etcd fill at least as fast as the file store's; p99 <= 300 ms.
//  2. The store alone: `nodes` simulated nodes allocating concurrently inside this process (the IPAM as
//     a library, ipamPlugin.add) against a 3-member cluster: `scale` allocations on a /16, then a pool
//     of exactly 1,024 addresses filled exactly. Targets: >= 500 allocations/s, p99 <= 200 ms.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { retryStats } from '../../ipam/lease/retry.ts';
import { CniError } from '../../lib/cni/errors.ts';
import { startEtcd, type EtcdCluster } from '../../test/helpers/etcd.ts';
import { requireBuild } from '../../test/helpers/exec.ts';
import { invocation } from '../../test/helpers/ipam-invocation.ts';
import { bare, duplicates, fleet, killAll, parseStats, poolsOf, type IpamStats, type Outcome } from '../../test/stress/etcd-allocators.ts';
import { percentile, table } from './measure.ts';
import { bareSea } from './startup.ts';

const P99_PROCESS_MS = 300;

/**
 * etcd as an operator should run it under this load (README, "Leases in etcd"): every txn goes through
 * the raft log whole, a lost compare-and-swap included, so with records of up to ~170 KB the WAL grows
 * by gigabytes per 10,000 allocations unless snapshots let old WAL files go; and old revisions stay in
 * the database until compacted.
 */
const ETCD_FLAGS = ['--snapshot-count', '10000', '--auto-compaction-mode', 'periodic', '--auto-compaction-retention', '5m'];
const SCALE_RATE = 500;
const P99_SCALE_MS = 200;

// --- IPv4 pools of an exact size --------------------------------------------------------------------

const ip4 = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');

/** A range of exactly `size` allocatable addresses from 10.<second>.0.1: the smallest CIDR, range_end to cut it. */
function exactRange(second: number, size: number): { range: string; range_end?: string; pool: string } {
  let prefix = 30;
  while (2 ** (32 - prefix) - 2 < size) prefix--;
  const network = (10 << 24) + (second << 16);
  const range = `${ip4(network)}/${prefix}`;
  const pool = range.replace('/', '-');
  return 2 ** (32 - prefix) - 2 === size ? { range, pool } : { range, range_end: ip4(network + size), pool };
}

// --- part 1: processes ------------------------------------------------------------------------------

interface Row {
  label: string;
  procs: number;
  pool: string;
  seconds: number;
  outcomes: Outcome[];
  /**
   * Store-bound rows only: the stats lines of the calls (their requests are per call; their conflicts
   * and outages count for the whole process, so those come from retryStats before and after instead).
   */
  stats?: IpamStats[];
  conflicts?: number;
  outages?: number;
  /** Store-bound rows only: CPU this process spent, in ms. */
  cpuMs?: number;
  verdict?: string;
}

const rate = (row: Row): number => row.outcomes.length / row.seconds;
const times = (row: Row): number[] => row.outcomes.map((o) => o.ms);
const sumOf = (row: Row, key: keyof IpamStats): number | undefined => {
  const stats = row.stats ?? row.outcomes.map((o) => o.stats).filter((s) => s !== undefined);
  if (stats.length === 0 || stats.some((s) => s[key] === null)) return undefined;
  return stats.reduce((sum, s) => sum + (s[key] ?? 0), 0);
};
const perAlloc = (row: Row, value: number | undefined): string => (value === undefined ? '-' : (value / row.outcomes.length).toFixed(2));
const failed = (row: Row): Outcome[] => row.outcomes.filter((o) => o.code !== 0);

/** One row of part 1: `procs` processes of `file` (default the whereabouts link) on one config. */
interface Candidate extends Row {
  tag: string;
  config: object | undefined;
  file: string | undefined;
}

const candidate = (label: string, procs: number, pool: string, tag: string, config: object | undefined, file?: string): Candidate =>
  ({ label, procs, pool, seconds: 0, outcomes: [], tag, config, file });

/** `count` more ADDs by the candidate's processes side by side, its containers numbered on from the last round. */
async function round(c: Candidate, count: number): Promise<void> {
  const from = c.outcomes.length;
  const started = process.hrtime.bigint();
  const outcomes = await fleet(c.procs, count, (k, w) => ({
    verb: 'ADD', config: c.config ?? {}, containerId: `${c.tag}-${from + k}`, node: `node-${w}`, env: { UNDERLAY_IPAM_STATS: '1' }, ...(c.file && { file: c.file }),
  }));
  c.seconds += Number(process.hrtime.bigint() - started) / 1e9;
  c.outcomes.push(...outcomes);
}

/** DEL of the containers `tag`-0 .. `tag`-(count-1) by `procs` processes. */
async function dels(label: string, procs: number, count: number, config: object, tag: string): Promise<Row> {
  const started = process.hrtime.bigint();
  const outcomes = await fleet(procs, count, (k, w) => ({ verb: 'DEL', config, containerId: `${tag}-${k}`, node: `node-${w}`, env: { UNDERLAY_IPAM_STATS: '1' } }));
  return { label, procs, pool: '', seconds: Number(process.hrtime.bigint() - started) / 1e9, outcomes };
}

const configOf = (name: string, ipam: Record<string, unknown>) => ({ cniVersion: '1.1.0', name, type: 'whereabouts', ipam: { type: 'whereabouts', ...ipam } });

function printRows(rows: ReadonlyArray<Row>): void {
  console.log(table([
    ['', 'procs', 'pool', 'alloc/s', 'p50 ms', 'p99 ms', 'requests/alloc', 'conflicts/alloc', 'retries/alloc', 'failed'],
    ...rows.map((row) => {
      const conflicts = row.conflicts ?? sumOf(row, 'conflicts');
      const outages = row.outages ?? sumOf(row, 'outages');
      const retries = conflicts === undefined ? undefined : conflicts + (outages ?? 0);
      return [row.label, String(row.procs), row.pool, rate(row), percentile(times(row), 50), percentile(times(row), 99),
        perAlloc(row, sumOf(row, 'requests')), perAlloc(row, conflicts), perAlloc(row, retries), `${failed(row).length}${row.verdict ? ` ${row.verdict}` : ''}`];
    }),
  ]));
}

function describeFailures(row: Row): void {
  const bad = failed(row);
  if (bad.length === 0) return;
  const codes = new Map<string, number>();
  for (const o of bad) codes.set(String(o.errorCode ?? o.signal ?? o.code), (codes.get(String(o.errorCode ?? o.signal ?? o.code)) ?? 0) + 1);
  console.log(`  ${row.label} (${row.procs} procs): ${bad.length} failed, by code: ${[...codes].map(([c, n]) => `${c} x${n}`).join(', ')}; first: ${bad[0]!.stdout.slice(0, 300)}`);
}

async function processes(pods: number, members: number, rounds: number): Promise<void> {
  requireBuild();
  const hello = bareSea();
  const etcd = await startEtcd({ members, extraFlags: ETCD_FLAGS });
  const fileDir = mkdtempSync(join(tmpdir(), 'underlay-bench-etcd-file-'));
  const endpoints = etcd.endpoints;
  const loadBefore = loadavg()[0]!;
  try {
    const etcdVersion = execFileSync('etcd', ['--version'], { encoding: 'utf8' }).split('\n')[0];
    console.log(`\netcd: allocator processes of the built executable, ${pods} ADDs per row in ${rounds} slices, the rows taking turns; each process its own NODENAME`);
    console.log(`${etcdVersion}, ${members === 1 ? 'one member' : `${members} members`} on loopback (${ETCD_FLAGS.join(' ')}); file store in ${tmpdir()}; load average ${loadBefore.toFixed(1)} at the start`);
    // Every row's ADDs go in `rounds` slices, the rows taking turns: the load of a shared machine
    // drifts within minutes, and each row then meets the same mix of it.
    let second = 80;
    const exact = exactRange(second++, pods);
    const ceiling = candidate('bare Node 24 SEA (ceiling)', 10, '-', 'hello', undefined, hello);
    const fileRow = candidate('file store, IPs = pods', 10, String(pods), 'file', configOf('bench-file', { range: exact.range, ...(exact.range_end && { range_end: exact.range_end }), file_store_dir: fileDir }));
    const etcdRows: Array<Candidate & { poolName: string }> = [];
    for (const procs of [10, 4, 1]) {
      for (const spare of [false, true]) {
        const r = exactRange(second++, spare ? 4 * pods : pods);
        const config = configOf(`bench-${procs}-${spare ? 'spare' : 'exact'}`, { range: r.range, ...(r.range_end && { range_end: r.range_end }), etcd_endpoints: endpoints });
        const label = `etcd, ${spare ? `spare IPs (${r.range})` : `IPs = pods (${r.range})`}`;
        etcdRows.push({ ...candidate(label, procs, String(spare ? 4 * pods : pods), `e${procs}${spare ? 's' : 'x'}`, config), poolName: r.pool });
      }
    }
    const candidates: Candidate[] = [ceiling, fileRow, ...etcdRows];
    for (let i = 0; i < rounds; i++) {
      const size = Math.floor((pods * (i + 1)) / rounds) - Math.floor((pods * i) / rounds);
      for (const c of candidates) await round(c, size);
    }
    for (const row of [fileRow, ...etcdRows]) {
      const twice = duplicates(row.outcomes.filter((o) => o.code === 0).map((o) => bare(o.address!)));
      if (twice.length > 0) row.verdict = `DUPLICATES: ${twice.slice(0, 5).join(', ')}`;
    }
    for (const row of etcdRows) {
      const held = (await poolsOf(endpoints)).find((p) => p.name === row.poolName)?.used;
      if (held !== pods - failed(row).length) row.verdict = `${row.verdict ?? ''} store holds ${held} leases`.trim();
    }
    const head = etcdRows[0]!;
    const lone = etcdRows[4]!;
    // DEL of the 10-process fill by 10 processes, and of 50 of the 1-process fill one at a time.
    const delRow = await dels('etcd, DEL of the 10-process fill', 10, pods, head.config!, head.tag);
    delRow.pool = String(pods);
    const left = (await poolsOf(endpoints)).find((p) => p.name === head.poolName)?.used;
    if (left !== 0) delRow.verdict = `store still holds ${left} leases`;
    const loneDel = await dels(`etcd, DEL of ${Math.min(50, pods)} of the 1-process fill`, 1, Math.min(50, pods), lone.config!, lone.tag);
    loneDel.pool = String(pods);
    const rows: Row[] = [ceiling, fileRow, head, delRow, ...etcdRows.slice(1, 5), loneDel, etcdRows[5]!];
    printRows(rows);
    for (const row of rows) describeFailures(row);
    console.log('p50/p99: wall time of one process, spawn to exit; requests: HTTP requests to etcd; retries: conflicts plus calls that found the store unavailable');
    console.log(`load average ${loadavg()[0]!.toFixed(1)} at the end (2 cores)`);

    console.log(`requests per ADD: ${perAlloc(lone, sumOf(lone, 'requests'))} alone, ${perAlloc(head, sumOf(head, 'requests'))} with 10 procs; per DEL: ${perAlloc(loneDel, sumOf(loneDel, 'requests'))} alone, ${perAlloc(delRow, sumOf(delRow, 'requests'))} with 10 procs`);
    const ratio = rate(head) / rate(fileRow);
    console.log(`target: etcd fill rate >= file store fill rate (10 procs, IPs = pods): ${ratio >= 1 ? 'met' : 'missed'} (${rate(head).toFixed(1)} vs ${rate(fileRow).toFixed(1)} allocations/s, ${ratio.toFixed(2)}x${ratio < 1 ? `, ${((1 - ratio) * 100).toFixed(0)}% short` : ''})`);
    for (const row of etcdRows) {
      const p99 = percentile(times(row), 99);
      const over = p99 - P99_PROCESS_MS;
      console.log(`target: p99 <= ${P99_PROCESS_MS} ms, ${row.label}, ${row.procs} procs: ${over <= 0 ? 'met' : 'missed'} (${p99.toFixed(0)} ms${over > 0 ? `, ${over.toFixed(0)} ms over` : ''}; ${perAlloc(row, sumOf(row, 'conflicts'))} conflicts per allocation; bare SEA p99 ${percentile(times(ceiling), 99).toFixed(0)} ms)`);
    }
    console.log(`etcd fill at 10 procs is ${(rate(head) / rate(ceiling)).toFixed(2)}x the ceiling of 10 bare SEA processes (${rate(ceiling).toFixed(1)}/s)`);
  } finally {
    await killAll();
    await etcd.destroy();
    rmSync(fileDir, { recursive: true, force: true });
  }
}

// --- part 2: the store alone, in one process ----------------------------------------------------------

/** What withStore prints with UNDERLAY_IPAM_STATS set, caught on its way to stderr while `body` runs. */
async function catchingStats<T>(into: IpamStats[], body: () => Promise<T>): Promise<T> {
  const write = process.stderr.write.bind(process.stderr);
  const previous = process.env.UNDERLAY_IPAM_STATS;
  process.env.UNDERLAY_IPAM_STATS = '1';
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]): boolean => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    const stats = text.startsWith('{"ipamStats"') ? parseStats(text) : undefined;
    if (stats) {
      into.push(stats);
      return true;
    }
    return write(chunk, ...rest);
  });
  try {
    return await body();
  } finally {
    process.stderr.write = write;
    if (previous === undefined) delete process.env.UNDERLAY_IPAM_STATS;
    else process.env.UNDERLAY_IPAM_STATS = previous;
  }
}

/** `nodes` simulated nodes, each verb after verb, `total` in all, through ipamPlugin in this process. */
async function simulated(label: string, verb: 'ADD' | 'DEL', nodes: number, total: number, ipam: Record<string, unknown>, tag: string): Promise<Row> {
  const outcomes: Outcome[] = new Array<Outcome>(total);
  const stats: IpamStats[] = [];
  const conflictsBefore = retryStats.conflicts;
  const outagesBefore = retryStats.outages;
  let next = 0;
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  const ownNode = process.env.NODENAME;
  await catchingStats(stats, () => Promise.all(Array.from({ length: nodes }, async (_, n) => {
    for (let k = next++; k < total; k = next++) {
      const call = { verb, config: ipam, containerId: `${tag}-${k}`, node: `sim-${n}` } as const;
      const inv = invocation({ verb, ipam, containerId: call.containerId, pod: `stress/pod-${call.containerId}`, name: 'bench-scale' });
      const t0 = process.hrtime.bigint();
      const outcome: Outcome = { call, code: 0, signal: null, stdout: '', stderr: '', ms: 0 };
      try {
        // add() reads the node's identity before its first await, so each simulated node has its own.
        process.env.NODENAME = call.node;
        if (verb === 'ADD') outcome.address = (await ipamPlugin.add(inv)).ips?.[0]?.address;
        else await ipamPlugin.del(inv);
      } catch (err) {
        outcome.code = 1;
        if (err instanceof CniError) outcome.errorCode = err.code;
        outcome.stdout = err instanceof Error ? err.message : String(err);
      }
      outcome.ms = Number(process.hrtime.bigint() - t0) / 1e6;
      outcomes[k] = outcome;
    }
  }))).finally(() => {
    if (ownNode === undefined) delete process.env.NODENAME;
    else process.env.NODENAME = ownNode;
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const used = process.cpuUsage(cpu);
  const row: Row = { label, procs: nodes, pool: '', seconds, outcomes, stats, conflicts: retryStats.conflicts - conflictsBefore, outages: retryStats.outages - outagesBefore, cpuMs: (used.user + used.system) / 1000 };
  if (verb === 'ADD') {
    const twice = duplicates(outcomes.filter((o) => o.code === 0).map((o) => o.address!));
    row.verdict = twice.length > 0 ? `DUPLICATES: ${twice.length}, e.g. ${twice.slice(0, 5).join(', ')}` : '0 duplicates';
  }
  return row;
}

async function scale(allocations: number, nodes: number): Promise<void> {
  const etcd: EtcdCluster = await startEtcd({ members: 3, extraFlags: ETCD_FLAGS });
  try {
    const endpoints = etcd.endpoints;
    console.log(`\netcd, the store alone: ${nodes} simulated nodes allocating concurrently in one process (ipamPlugin.add), 3-member etcd on loopback (${ETCD_FLAGS.join(' ')}); load average ${loadavg()[0]!.toFixed(1)}`);
    console.log('each ADD opens and closes its own etcd client; each simulated node has its own NODENAME, so its scans start at its own shard');
    // The same /16 work by 1 and by 10 nodes first, each on its own /16: how contention scales.
    const fewer: Row[] = [];
    for (const [n, second] of [[1, 94], [10, 95]] as const) {
      const row = await simulated(`/16, ${Math.min(1000, allocations)} allocations`, 'ADD', n, Math.min(1000, allocations), { range: `10.${second}.0.0/16`, etcd_endpoints: endpoints }, `n${n}`);
      row.pool = '65534';
      fewer.push(row);
    }
    const big = { range: '10.96.0.0/16', etcd_endpoints: endpoints };
    const bigRow = await simulated(`/16, ${allocations} allocations`, 'ADD', nodes, allocations, big, 'big');
    bigRow.pool = '65534';
    const held = (await poolsOf(endpoints)).find((p) => p.name === '10.96.0.0-16')?.used;
    if (held !== allocations - failed(bigRow).length) bigRow.verdict += `; store holds ${held} leases`;

    // 10.97.0.1 .. 10.97.4.0: exactly 1,024 addresses of a /21, across the boundary of its first two shards.
    const exact = exactRange(97, 1024);
    const fullIpam = { range: exact.range, range_end: exact.range_end, etcd_endpoints: endpoints };
    const fullRow = await simulated('/21 of exactly 1,024 (10.97.0.1-10.97.4.0)', 'ADD', nodes, 1024, fullIpam, 'full');
    fullRow.pool = '1024';
    const extra = await failureOf(() => ipamPlugin.add(invocation({ ipam: fullIpam, containerId: 'one-too-many', pod: 'stress/one-too-many', name: 'bench-scale' })));
    const delRow = await simulated('DEL of that pool', 'DEL', nodes, 1024, fullIpam, 'full');
    delRow.pool = '1024';
    const left = (await poolsOf(endpoints)).find((p) => p.name === '10.97.0.0-21')?.used;
    delRow.verdict = `${left} leases left`;
    const all = [...fewer, bigRow, fullRow, delRow];
    printRows(all);
    for (const row of all) describeFailures(row);
    console.log('procs: simulated nodes; p50/p99: one ipamPlugin call; requests: HTTP requests to etcd (UNDERLAY_IPAM_STATS); conflicts: lost compare-and-swaps retried');
    console.log(`CPU of this process per allocation (ms): ${all.map((row) => `${row.procs} nodes ${row.label.split(',')[0]} ${(row.cpuMs! / row.outcomes.length).toFixed(2)}`).join('; ')} (${(100 * bigRow.cpuMs! / (bigRow.seconds * 1000)).toFixed(0)}% of one core during the ${nodes}-node /16 run)`);

    const r = rate(bigRow);
    const p99 = percentile(times(bigRow), 99);
    const conflicts = perAlloc(bigRow, bigRow.conflicts);
    console.log(`target: >= ${SCALE_RATE} allocations/s on the /16 (${nodes} nodes): ${r >= SCALE_RATE ? 'met' : 'missed'} (${r.toFixed(1)}/s${r < SCALE_RATE ? `, ${(SCALE_RATE / r).toFixed(1)}x short` : ''}; ${conflicts} conflicts per allocation; 1 node alone: ${rate(fewer[0]!).toFixed(1)}/s, 10 nodes: ${rate(fewer[1]!).toFixed(1)}/s)`);
    console.log(`target: p99 <= ${P99_SCALE_MS} ms on the /16 (${nodes} nodes): ${p99 <= P99_SCALE_MS ? 'met' : 'missed'} (${p99.toFixed(0)} ms${p99 > P99_SCALE_MS ? `, ${(p99 - P99_SCALE_MS).toFixed(0)} ms over` : ''}; ${conflicts} conflicts per allocation)`);
    const fullOk = failed(fullRow).length === 0 && fullRow.verdict === '0 duplicates';
    console.log(`1,024-address pool filled exactly: ${fullOk ? 'all 1,024 succeeded, distinct' : `${failed(fullRow).length} failed, ${fullRow.verdict}`}; the next ADD: ${extra}`);
    console.log(`requests per ADD: ${perAlloc(bigRow, sumOf(bigRow, 'requests'))} on the /16, ${perAlloc(fullRow, sumOf(fullRow, 'requests'))} on the 1,024 pool; per DEL: ${perAlloc(delRow, sumOf(delRow, 'requests'))}`);
  } finally {
    await etcd.destroy();
  }
}

async function failureOf(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return 'SUCCEEDED (the pool was not full)';
  } catch (err) {
    return err instanceof CniError ? `code ${err.code} (${err.message.slice(0, 80)})` : String(err);
  }
}

export async function main(args: ReadonlyArray<string>): Promise<void> {
  const option = (name: string, fallback: string): string => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] ? args[i + 1]! : fallback;
  };
  const pods = Number(option('--pods', '1000'));
  const members = Number(option('--members', '1'));
  if (!args.includes('--no-processes')) await processes(pods, members, Number(option('--rounds', '5')));
  if (!args.includes('--no-scale')) await scale(Number(option('--scale', '10000')), Number(option('--nodes', '50')));
}

if (import.meta.main) await main(process.argv.slice(2));
