// npm run bench -- macvlan [rounds]: pod attach cost. ADD, CHECK and DEL of our macvlan with our IPAM
// (file store; and etcd, started for the run) against Debian's Go macvlan with host-local on the same
// master, interleaved in one run; our VERSION and a bare Node 24 SEA that prints one line give the
// start-up floor. Then where our time goes (UNDERLAY_TRACE), and each target, met or missed.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEtcd, type EtcdCluster } from '../../test/helpers/etcd.ts';
import { breakdown, measuredRun, record, samples, summary, verdict, type Samples } from './attach.ts';
import { median, table } from './measure.ts';
import { bareSea } from './startup.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'dist', 'bin');
const VERBS = ['ADD', 'CHECK', 'DEL'] as const;
type Verb = (typeof VERBS)[number];

interface Candidate {
  name: string;
  plugin: string;
  config: Record<string, unknown>;
  times: Record<Verb, Samples>;
}

const sh = (cmd: string) => execFileSync('sh', ['-c', cmd], { encoding: 'utf8' });

function cniEnv(command: string, id: string, netns: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: 'net1', CNI_PATH: `${BIN}:/usr/lib/cni`, CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=${id}`, ...extra };
}

/** ADD, CHECK (with the ADD's result) and DEL of one pod; the runs' stderr when traced. */
function cycle(c: Candidate, id: string, netns: string, extra: NodeJS.ProcessEnv = {}): Record<Verb, string> {
  const add = record(c.times.ADD, measuredRun(c.plugin, cniEnv('ADD', id, netns, extra), JSON.stringify(c.config)));
  const withPrev = JSON.stringify({ ...c.config, prevResult: JSON.parse(add.stdout) as unknown });
  const check = record(c.times.CHECK, measuredRun(c.plugin, cniEnv('CHECK', id, netns, extra), withPrev));
  const del = record(c.times.DEL, measuredRun(c.plugin, cniEnv('DEL', id, netns, extra), withPrev));
  return { ADD: add.stderr, CHECK: check.stderr, DEL: del.stderr };
}

const fresh = (): Record<Verb, Samples> => ({ ADD: samples(), CHECK: samples(), DEL: samples() });

export async function main(args: ReadonlyArray<string>): Promise<void> {
  const rounds = Number(args[0] ?? 30);
  const tag = `ub${process.pid % 10000}`;
  const dir = mkdtempSync(join(tmpdir(), 'underlay-bench-'));
  const master = `${tag}m`;
  const netns = `/run/netns/${tag}`;
  let etcd: EtcdCluster | undefined;
  sh(`ip link add ${master} type veth peer name ${tag}p && ip link set ${master} up && ip link set ${tag}p up && ip netns add ${tag}`);
  try {
    etcd = await startEtcd();
    const base = { cniVersion: '1.0.0', name: 'bench', type: 'macvlan', master };
    const candidates: Candidate[] = [
      { name: 'underlay macvlan + IPAM (file store)', plugin: join(BIN, 'macvlan'), config: { ...base, ipam: { type: 'whereabouts', range: '10.90.0.0/24', file_store_dir: join(dir, 'leases') } }, times: fresh() },
      { name: 'underlay macvlan + IPAM (etcd)', plugin: join(BIN, 'macvlan'), config: { ...base, ipam: { type: 'whereabouts', range: '10.92.0.0/24', etcd_endpoints: etcd.endpoints } }, times: fresh() },
      { name: 'Debian Go macvlan + host-local', plugin: '/usr/lib/cni/macvlan', config: { ...base, ipam: { type: 'host-local', subnet: '10.91.0.0/24', dataDir: join(dir, 'host-local') } }, times: fresh() },
    ];
    const hello = bareSea();
    const version = samples();
    const bare = samples();
    for (const c of candidates) cycle(c, `${c.name.length}-warm`, netns);
    for (const c of candidates) c.times = fresh();
    for (let round = 0; round < rounds; round++) {
      for (const [i, c] of candidates.entries()) cycle(c, `c${i}-${round}`, netns);
      record(version, measuredRun(join(BIN, 'macvlan'), { CNI_COMMAND: 'VERSION' }));
      record(bare, measuredRun(hello, {}));
    }
    const traced: Record<Verb, string[]> = { ADD: [], CHECK: [], DEL: [] };
    const ours = candidates[0]!;
    const keep = ours.times;
    ours.times = fresh();
    for (let i = 0; i < Math.min(15, rounds); i++) {
      const stderr = cycle(ours, `traced-${i}`, netns, { UNDERLAY_TRACE: '1' });
      for (const verb of VERBS) traced[verb].push(stderr[verb]);
    }
    ours.times = keep;
    report(candidates, version, bare, traced, rounds);
  } finally {
    sh(`ip netns del ${tag}; ip link del ${master}`);
    await etcd?.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

function report(candidates: Candidate[], version: Samples, bare: Samples, traced: Record<Verb, string[]>, rounds: number): void {
  const [ours, etcd, reference] = candidates as [Candidate, Candidate, Candidate];
  console.log(`macvlan: ${rounds} interleaved ADD/CHECK/DEL cycles each; wall ms p50/p95, CPU ms p50, peak RSS MiB p50`);
  const rows: Array<Array<string | number>> = [['', 'wall p50', 'wall p95', 'CPU p50', 'RSS MiB']];
  for (const c of candidates) for (const verb of VERBS) rows.push(summary(`${c.name}: ${verb}`, c.times[verb]));
  rows.push(summary('underlay VERSION (start-up alone)', version), summary('bare Node 24 SEA printing one line', bare));
  console.log(table(rows));
  const startup = median(version.wall);
  const limits: Record<Verb, number> = { ADD: 2, CHECK: 2, DEL: 1.3 };
  for (const c of [ours, etcd]) {
    console.log(`\n${c.name}:`);
    for (const verb of VERBS) {
      const work = median(c.times[verb].wall) - startup;
      const ref = median(reference.times[verb].wall);
      console.log(`  ${verb}: ${median(c.times[verb].wall).toFixed(1)} ms = start-up ${startup.toFixed(1)} + work ${work.toFixed(1)}; reference ${ref.toFixed(1)}`);
      console.log(`  ${verdict(`${verb} work / reference ${verb}`, work / ref, limits[verb])}`);
    }
    console.log(`  ${verdict('peak RSS per ADD', median(c.times.ADD.rss), 60, ' MiB')}`);
    console.log(`  ${verdict('CPU per ADD / bare SEA CPU', median(c.times.ADD.cpu) / median(bare.cpu), 1.6)}`);
  }
  console.log(`\n${verdict('start-up: our VERSION / bare SEA (wall)', startup / median(bare.wall), 1.15)}`);
  for (const verb of VERBS) {
    console.log(`\nwhere the time of our ${verb} goes (file store, ${traced[verb].length} traced runs):`);
    console.log(breakdown(traced[verb]));
  }
}

if (import.meta.main) await main(process.argv.slice(2));
