// npm run bench -- kubernetes [--workers W] [--adds N] [--size S]
// The Kubernetes store under contention: W concurrent callers x N ADDs of the BUILT executable (each
// ADD its own process, as the kubelet runs it) fill a pool of exactly W*N addresses (one IPPool while
// it fits in 1,024 addresses) on the in-test API server (test/helpers/kube-apiserver.ts, run in this
// process). Printed: allocations per second over the whole fill, the latency of one ADD (process wall
// time, and the time inside the IPAM), and requests and conflicts per allocation, from the
// {"ipamStats":...} line every IPAM process prints on stderr with UNDERLAY_IPAM_STATS=1.
// Targets, against this server: >= 29 allocations/s (5x whereabouts v0.8.1's 5.8/s on a real
// kube-apiserver, where its cluster-wide leader lease serializes every ADD) and p99 < 2 s.
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { KubeApiServer } from '../../test/helpers/kube-apiserver.ts';
import { requireBuild } from '../../test/helpers/exec.ts';
import { fillPool } from '../../test/helpers/kube-fill.ts';
import { kubeconfigFile } from '../../test/helpers/kube-pods.ts';
import { median, percentile, table } from './measure.ts';

const TARGET_RATE = 29;
const TARGET_P99_MS = 2000;

function option(args: ReadonlyArray<string>, name: string, fallback: number): number {
  const i = args.indexOf(name);
  const value = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(value) || value <= 0) throw new Error(`bench kubernetes: ${name} needs a positive integer`);
  return value;
}

/** CPU ms of the children this process has waited for (Linux: cutime + cstime of /proc/self/stat). */
function childrenCpuMs(): number | undefined {
  try {
    const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[13]) + Number(fields[14])) * 1000) / 100; // clock ticks; USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/** The range fields of a pool of exactly `size` addresses, starting at 10.90.0.1. */
function rangeOf(size: number): Record<string, unknown> {
  let prefix = 30;
  while (2 ** (32 - prefix) - 2 < size) prefix--;
  const last = size; // offsets 1..size
  const end = `10.90.${Math.floor(last / 256) % 256}.${last % 256}`;
  return { range: `10.90.0.0/${prefix}`, range_end: end };
}

export async function main(args: ReadonlyArray<string>): Promise<void> {
  requireBuild();
  const workers = option(args, '--workers', 10);
  const adds = option(args, '--adds', 100);
  const size = option(args, '--size', workers * adds);
  const server = await KubeApiServer.start();
  const file = kubeconfigFile(server, 'kube-system');
  try {
    const range = rangeOf(size);
    console.log(`\nKubernetes store: ${workers} callers x ${adds} ADDs (one process each) on a pool of ${size} addresses (${String(range.range)}), in-test API server; ${cpus().length} CPUs, load ${loadavg()[0]!.toFixed(2)}`);
    const cpu0 = process.cpuUsage();
    const children0 = childrenCpuMs();
    const { runs, wallMs } = await fillPool({ kubeconfig: file.path, workers, perWorker: adds, range });
    const cpu = process.cpuUsage(cpu0);
    const children1 = childrenCpuMs();
    const ok = runs.filter((r) => r.code === 0);
    const failed = runs.length - ok.length;
    const distinct = new Set(ok.map((r) => r.address)).size;
    const wall = runs.map((r) => r.wallMs);
    const inIpam = runs.flatMap((r) => (r.stats ? [r.stats.ms] : []));
    const sum = (pick: (s: NonNullable<(typeof runs)[number]['stats']>) => number): number => runs.reduce((n, r) => n + (r.stats ? pick(r.stats) : 0), 0);
    const rate = ok.length / (wallMs / 1000);
    const p99 = percentile(wall, 99);
    console.log(table([
      ['', 'p50 ms', 'p99 ms', 'max ms'],
      ['ADD, process wall time', median(wall), p99, Math.max(...wall)],
      ['ADD, inside the IPAM', median(inIpam), percentile(inIpam, 99), Math.max(...inIpam)],
    ]));
    console.log(`${ok.length} allocations (${distinct} distinct, ${failed} failed) in ${(wallMs / 1000).toFixed(1)} s: ${rate.toFixed(1)} allocations/s`);
    console.log(`per allocation: ${(sum((s) => s.requests ?? 0) / runs.length).toFixed(2)} requests, ${(sum((s) => s.conflicts) / runs.length).toFixed(2)} conflicts, ${(sum((s) => s.outages) / runs.length).toFixed(2)} outages`);
    const serverMs = (cpu.user + cpu.system) / 1000 / runs.length;
    const childMs = children0 !== undefined && children1 !== undefined ? `, the IPAM processes ${((children1 - children0) / runs.length).toFixed(1)} ms` : '';
    console.log(`CPU per allocation: the in-test API server (this process) ${serverMs.toFixed(1)} ms${childMs}`);
    console.log(`target: >= ${TARGET_RATE} allocations/s: ${rate >= TARGET_RATE && failed === 0 ? 'met' : 'missed'} (${rate.toFixed(1)}/s)`);
    console.log(`target: p99 < ${TARGET_P99_MS} ms: ${p99 < TARGET_P99_MS ? 'met' : 'missed'} (${p99.toFixed(0)} ms)`);
    if (failed > 0 || distinct !== ok.length) console.log(`FAILED: ${failed} ADDs failed, ${ok.length - distinct} addresses handed out twice`);
  } finally {
    file.cleanup();
    await server.close();
  }
}
