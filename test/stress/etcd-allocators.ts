// Allocator processes for the etcd stress tests and the etcd benchmark: the BUILT executable run the way
// a runtime runs it on a node (CNI_* in the environment, the config on stdin, NODENAME naming the node,
// one process per verb), timed from spawn to exit, with what it printed and, when UNDERLAY_IPAM_STATS is
// set, what the verb cost. Every child is tracked so a failed test can kill what is still running.
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BIN } from '../helpers/exec.ts';

const run = promisify(execFile);

export const WHEREABOUTS = join(BIN, 'whereabouts');
export const UNDERLAY = join(BIN, 'underlay');

/** What one verb cost, as the IPAM prints it with UNDERLAY_IPAM_STATS=1 (requests = HTTP requests to etcd). */
export interface IpamStats {
  ms: number;
  requests: number | null;
  conflicts: number;
  outages: number;
}

export interface Call {
  verb: 'ADD' | 'DEL' | 'CHECK' | 'GC';
  config: object;
  containerId: string;
  /** The node the process runs on: NODENAME, whereabouts' variable. */
  node: string;
  /** K8S_POD_NAME (namespace "stress"); defaults to "pod-<containerId>". */
  pod?: string;
  ifName?: string;
  env?: Record<string, string>;
  /** Another executable (the bare SEA of the benchmark), run with the same environment. */
  file?: string;
}

export interface Outcome {
  call: Call;
  /** Exit code; null when a signal ended the process. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  ms: number;
  /** The first address of a successful ADD's result, e.g. "10.70.0.7/22". */
  address?: string;
  /** The CNI error code of a failed verb, when it printed one. */
  errorCode?: number;
  stats?: IpamStats;
}

export interface Running {
  call: Call;
  kill(): void;
  done: Promise<Outcome>;
}

const live = new Set<ChildProcess>();

/** SIGKILL every allocator still running (afterEach/afterAll of a test that failed half-way). */
export async function killAll(): Promise<void> {
  const waits = [...live].map((child) => new Promise<void>((resolve) => {
    child.once('close', () => resolve());
    child.kill('SIGKILL');
  }));
  await Promise.all(waits);
}

export const liveCount = (): number => live.size;

export function parseStats(stderr: string): IpamStats | undefined {
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{"ipamStats"')) continue;
    try {
      return (JSON.parse(line) as { ipamStats: IpamStats }).ipamStats;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

export function start(call: Call): Running {
  const env: Record<string, string> = {
    CNI_COMMAND: call.verb,
    CNI_CONTAINERID: call.containerId,
    CNI_NETNS: '/var/run/netns/underlay-etcd-stress',
    CNI_IFNAME: call.ifName ?? 'net1',
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=stress;K8S_POD_NAME=${call.pod ?? `pod-${call.containerId}`}`,
    CNI_PATH: BIN,
    NODENAME: call.node,
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    ...call.env,
  };
  const started = process.hrtime.bigint();
  const child = spawn(call.file ?? WHEREABOUTS, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.on('error', () => {}); // a killed child closes its stdin early
  child.stdin.end(JSON.stringify(call.config));
  const done = new Promise<Outcome>((resolve) => child.on('close', (code, signal) => {
    live.delete(child);
    const outcome: Outcome = { call, code, signal, stdout, stderr, ms: Number(process.hrtime.bigint() - started) / 1e6 };
    try {
      const json = JSON.parse(stdout) as { ips?: Array<{ address: string }>; code?: number };
      if (code === 0 && json.ips?.[0]) outcome.address = json.ips[0].address;
      if (code !== 0 && typeof json.code === 'number') outcome.errorCode = json.code;
    } catch {
      // not JSON: killed, or a GC/DEL that prints nothing
    }
    const stats = parseStats(stderr);
    if (stats) outcome.stats = stats;
    resolve(outcome);
  }));
  return { call, kill: () => child.kill('SIGKILL'), done };
}

/**
 * `workers` allocators side by side, each running calls one after another (as `workers` nodes each
 * attaching pods), until `calls(k)` has given `total` calls in all. Returns the outcomes in call order.
 */
export async function fleet(workers: number, total: number, calls: (k: number, worker: number) => Call): Promise<Outcome[]> {
  const outcomes: Outcome[] = new Array<Outcome>(total);
  let next = 0;
  await Promise.all(Array.from({ length: workers }, async (_, w) => {
    for (let k = next++; k < total; k = next++) outcomes[k] = await start(calls(k, w)).done;
  }));
  return outcomes;
}

export interface LeaseRow {
  address: string;
  pod: string;
  containerID: string;
  ifName: string;
}

/** The leases of `pool` as an operator sees them: `underlay ipam show POOL --json --etcd ENDPOINTS`. */
export async function leasesOf(endpoints: ReadonlyArray<string>, pool: string): Promise<LeaseRow[]> {
  const args = ['ipam', 'show', pool, '--json', '--etcd', endpoints.join(',')];
  const { stdout } = await run(UNDERLAY, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  return (JSON.parse(stdout) as { leases: LeaseRow[] }).leases;
}

/** `underlay ipam ls --json --etcd ENDPOINTS`: each pool's used and free counts. */
export async function poolsOf(endpoints: ReadonlyArray<string>): Promise<Array<{ name: string; range: string; used: number; free: number }>> {
  const { stdout } = await run(UNDERLAY, ['ipam', 'ls', '--json', '--etcd', endpoints.join(',')], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return (JSON.parse(stdout) as { pools: Array<{ name: string; range: string; used: number; free: number }> }).pools;
}

/** "10.70.1.4/22" -> "10.70.1.4". */
export const bare = (address: string): string => address.split('/')[0]!;

/** Values that occur more than once. */
export function duplicates<T>(values: ReadonlyArray<T>): T[] {
  const seen = new Set<T>();
  const twice = new Set<T>();
  for (const v of values) (seen.has(v) ? twice : seen).add(v);
  return [...twice];
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
