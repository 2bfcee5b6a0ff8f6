// Pod attach latency on the SR-IOV test rig: ADD and DEL of our sriov (a VF by deviceID with VLAN, MAC
// and trust, our IPAM on the file store) beside our macvlan (a veth master, the same IPAM), measured
// interleaved in one run. Target: sriov's ADD and DEL p50 within 1.5x of macvlan's. Also the spawns
// each verb costs, counted from the plugins' own debug log (each one is ~2 ms), and the CPU time of
// each verb's process tree: on a shared machine wall time also counts the wait for a CPU, which grows
// with the number of processes a verb starts.
// The rig's ip shim (a Perl script in front of the real ip) is part of sriov's figures: a real PF's
// driver does that work in the kernel instead.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SriovRig } from '../../test/helpers/sriov-rig/rig.ts';
import { median, percentile, table } from './measure.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'dist', 'bin');
const TARGET = 1.5;

interface Candidate {
  name: string;
  plugin: string;
  config: Record<string, unknown>;
  env: NodeJS.ProcessEnv;
  add: number[];
  del: number[];
  cpu: { add: number[]; del: number[] };
}

/** CPU time (ms) of our waited-for children and theirs, from /proc/self/stat (cutime + cstime). */
function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) * 10; // clock ticks of 10 ms (CLK_TCK 100)
}

const mean = (values: ReadonlyArray<number>): number => values.reduce((a, b) => a + b, 0) / values.length;

const sh = (cmd: string) => execFileSync('sh', ['-c', cmd], { encoding: 'utf8' });

function call(c: Candidate, command: string, id: string, netns: string, config = c.config): { ms: number; cpu: number } {
  const env = { ...c.env, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: 'net1', CNI_PATH: BIN, CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=${id}` };
  const cpu = childrenCpuMs();
  const started = process.hrtime.bigint();
  execFileSync(c.plugin, [], { env, input: JSON.stringify(config), stdio: ['pipe', 'pipe', 'inherit'] });
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, cpu: childrenCpuMs() - cpu };
}

/** Spawns of one ADD and one DEL, from the plugin's debug log ("ran ..." per spawn). */
function spawnsPerVerb(c: Candidate, netns: string, dir: string): { add: number; del: number } {
  const log = join(dir, `${c.name.split(' ')[0]}.log`);
  const config = { ...c.config, logLevel: 'debug', logFile: log };
  const count = (verb: string) => readFileSync(log, 'utf8').split('\n').filter((l) => l.includes(` ${verb} spawns: ran `)).length;
  call(c, 'ADD', 'spawns', netns, config);
  call(c, 'DEL', 'spawns', netns, config);
  return { add: count('ADD'), del: count('DEL') };
}

export function main(args: ReadonlyArray<string>): void {
  const rounds = Number(args[0] ?? 40);
  const rig = new SriovRig({ subnet: '10.160.0' });
  const dir = mkdtempSync(join(tmpdir(), 'underlay-bench-sriov-'));
  const tag = `ub${process.pid % 10000}s`;
  const netns = rig.pod('bench'); // one pod for both: each ADD is DELeted before the next
  const ipam = (name: string) => ({ type: 'whereabouts', range: '10.160.0.0/24', range_start: '10.160.0.10', file_store_dir: join(dir, name) });
  const candidates: Candidate[] = [
    {
      name: 'sriov (deviceID, vlan, mac, trust) + underlay IPAM', plugin: join(BIN, 'sriov'), env: { ...rig.env() }, add: [], del: [], cpu: { add: [], del: [] },
      config: { cniVersion: '1.1.0', name: 'bench', type: 'sriov', deviceID: rig.vfs[0]!.pci, vlan: 100, mac: '02:00:00:00:be:01', trust: 'on', ipam: ipam('sriov') },
    },
    {
      name: 'macvlan + underlay IPAM', plugin: join(BIN, 'macvlan'), env: { PATH: process.env.PATH }, add: [], del: [], cpu: { add: [], del: [] },
      config: { cniVersion: '1.1.0', name: 'bench', type: 'macvlan', master: `${tag}m`, ipam: ipam('macvlan') },
    },
  ];
  const spawns: Record<string, { add: number; del: number }> = {};
  try {
    sh(`ip link add ${tag}m type veth peer name ${tag}p && ip link set ${tag}m up && ip link set ${tag}p up`);
    for (const c of candidates) {
      call(c, 'ADD', 'warm', netns);
      call(c, 'DEL', 'warm', netns);
      spawns[c.name] = spawnsPerVerb(c, netns, dir);
    }
    for (let round = 0; round < rounds; round++) {
      for (const c of candidates) {
        for (const verb of ['add', 'del'] as const) {
          const { ms, cpu } = call(c, verb.toUpperCase(), `r${round}`, netns);
          c[verb].push(ms);
          c.cpu[verb].push(cpu);
        }
      }
    }
  } finally {
    sh(`ip link del ${tag}m 2>/dev/null; true`);
    rig.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
  const [ours, macvlan] = candidates as [Candidate, Candidate];
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`sriov: ${rounds} interleaved ADD/DEL cycles each on the SR-IOV rig (wall time and mean CPU time, ms; load average ${load})`);
  const rows: Array<Array<string | number>> = [['', 'ADD p50', 'ADD p95', 'DEL p50', 'DEL p95', 'ADD cpu', 'DEL cpu', 'spawns/ADD', 'spawns/DEL']];
  for (const c of candidates) {
    rows.push([c.name, median(c.add), percentile(c.add, 95), median(c.del), percentile(c.del, 95), mean(c.cpu.add), mean(c.cpu.del), String(spawns[c.name]!.add), String(spawns[c.name]!.del)]);
  }
  console.log(table(rows));
  for (const verb of ['add', 'del'] as const) {
    const ratio = median(ours[verb]) / median(macvlan[verb]);
    const verdict = ratio <= TARGET ? 'met' : 'missed';
    const cpu = mean(ours.cpu[verb]) / mean(macvlan.cpu[verb]);
    console.log(`sriov: ${verb.toUpperCase()} p50 ${median(ours[verb]).toFixed(1)} ms vs macvlan ${median(macvlan[verb]).toFixed(1)} ms: ${ratio.toFixed(2)}x (target <= ${TARGET}x): ${verdict}; CPU ${cpu.toFixed(2)}x`);
  }
}

if (import.meta.main) main(process.argv.slice(2));
