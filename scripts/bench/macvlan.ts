// Pod attach latency: ADD, CHECK and DEL of our macvlan with our IPAM on the file store, against
// Debian's Go macvlan with host-local on the same master, measured interleaved in one run.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median, percentile, table, timeRun } from './measure.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'dist', 'bin');
const VERBS = ['ADD', 'CHECK', 'DEL'] as const;

interface Candidate {
  name: string;
  plugin: string;
  config: Record<string, unknown>;
  times: Record<(typeof VERBS)[number], number[]>;
}

const sh = (cmd: string) => execFileSync('sh', ['-c', cmd], { encoding: 'utf8' });

function cniEnv(command: string, id: string, netns: string): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: 'net1', CNI_PATH: `${BIN}:/usr/lib/cni`, CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=${id}` };
}

function cycle(candidate: Candidate, round: number, netns: string): void {
  const id = `${candidate.name.split(' ')[0]}-${round}`;
  const add = execTimed(candidate, 'ADD', id, netns, candidate.config);
  const withPrev = JSON.stringify({ ...candidate.config, prevResult: JSON.parse(add.stdout) as unknown });
  candidate.times.ADD.push(add.ms);
  candidate.times.CHECK.push(timeRun(candidate.plugin, [], cniEnv('CHECK', id, netns), withPrev));
  candidate.times.DEL.push(timeRun(candidate.plugin, [], cniEnv('DEL', id, netns), withPrev));
}

function execTimed(candidate: Candidate, command: string, id: string, netns: string, config: unknown): { ms: number; stdout: string } {
  const started = process.hrtime.bigint();
  const stdout = execFileSync(candidate.plugin, [], { env: cniEnv(command, id, netns), input: JSON.stringify(config), encoding: 'utf8' });
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, stdout };
}

/** Peak resident memory of one run, through GNU time (Debian package "time"), in MiB. */
function peakRssMiB(file: string, env: NodeJS.ProcessEnv, input: string): string {
  if (!existsSync('/usr/bin/time')) return 'n/a (apt-get install time)';
  const out = spawnSync('/usr/bin/time', ['-f', '%M', file], { env, input, encoding: 'utf8' });
  const kib = Number(out.stderr.trim().split('\n').pop());
  return Number.isFinite(kib) ? `${(kib / 1024).toFixed(1)} MiB` : 'n/a';
}

export function main(args: ReadonlyArray<string>): void {
  const rounds = Number(args[0] ?? 40);
  const tag = `ub${process.pid % 10000}`;
  const dir = mkdtempSync(join(tmpdir(), 'underlay-bench-'));
  const master = `${tag}m`;
  const netns = `/run/netns/${tag}`;
  sh(`ip link add ${master} type veth peer name ${tag}p && ip link set ${master} up && ip link set ${tag}p up && ip netns add ${tag}`);
  const base = { cniVersion: '1.0.0', name: 'bench', type: 'macvlan', master };
  const empty = () => ({ ADD: [], CHECK: [], DEL: [] });
  const candidates: Candidate[] = [
    { name: 'underlay macvlan + underlay IPAM (file store)', plugin: join(BIN, 'macvlan'), config: { ...base, ipam: { type: 'whereabouts', range: '10.90.0.0/16', file_store_dir: join(dir, 'leases') } }, times: empty() },
    { name: 'Debian Go macvlan + host-local', plugin: '/usr/lib/cni/macvlan', config: { ...base, ipam: { type: 'host-local', subnet: '10.91.0.0/16', dataDir: join(dir, 'host-local') } }, times: empty() },
  ];
  const version: number[] = [];
  const memory: string[] = [];
  try {
    for (const c of candidates) {
      memory.push(`${c.name}: ADD peak RSS ${peakRssMiB(c.plugin, cniEnv('ADD', 'mem', netns), JSON.stringify(c.config))}`);
      execFileSync(c.plugin, [], { env: cniEnv('DEL', 'mem', netns), input: JSON.stringify(c.config) });
    }
    for (const c of candidates) cycle(c, -1, netns);
    for (const c of candidates) for (const verb of VERBS) c.times[verb].length = 0;
    for (let round = 0; round < rounds; round++) {
      for (const c of candidates) cycle(c, round, netns);
      version.push(timeRun(join(BIN, 'macvlan'), [], { CNI_COMMAND: 'VERSION' }));
    }
  } finally {
    sh(`ip netns del ${tag}; ip link del ${master}`);
    rmSync(dir, { recursive: true, force: true });
  }
  const [ours, reference] = candidates as [Candidate, Candidate];
  console.log(`macvlan: ${rounds} interleaved ADD/CHECK/DEL cycles each (wall time, ms)`);
  const rows: Array<Array<string | number>> = [['', 'ADD p50', 'ADD p95', 'CHECK p50', 'CHECK p95', 'DEL p50', 'DEL p95']];
  for (const c of candidates) rows.push([c.name, ...VERBS.flatMap((v) => [median(c.times[v]), percentile(c.times[v], 95)])]);
  rows.push(['underlay VERSION (start-up alone)', median(version), percentile(version, 95), '', '', '', '']);
  console.log(table(rows));
  for (const line of memory) console.log(`macvlan: ${line}`);
  const startup = median(version);
  for (const verb of VERBS) {
    const work = median(ours.times[verb]) - startup;
    const ref = median(reference.times[verb]);
    console.log(`macvlan: ${verb}: ours ${median(ours.times[verb]).toFixed(1)} ms = start-up ${startup.toFixed(1)} + work ${work.toFixed(1)}; reference ${ref.toFixed(1)}; ours/reference ${(median(ours.times[verb]) / ref).toFixed(2)}x; work/reference ${(work / ref).toFixed(2)}x${verb === 'CHECK' ? '' : ' (target <= 1.00)'}`);
  }
}

if (import.meta.main) main(process.argv.slice(2));
