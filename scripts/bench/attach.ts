// What one CNI call costs, measured from outside (wall, CPU and peak memory of the whole process, through
// GNU time) and from inside (UNDERLAY_TRACE: where the time went). Shared by the macvlan and sriov
// benchmarks, which compare a plugin of ours with a reference and print each target as met or missed.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median, percentile, table } from './measure.ts';

export interface Run {
  wallMs: number;
  cpuMs: number;
  maxRssMiB: number;
  stdout: string;
  stderr: string;
}

const scratch = mkdtempSync(join(tmpdir(), 'underlay-bench-time-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

/** One run of `file` under GNU time; throws when it fails (a failed run is no sample). */
export function measuredRun(file: string, env: NodeJS.ProcessEnv, input = ''): Run {
  const out = join(scratch, 'time');
  const started = process.hrtime.bigint();
  const run = spawnSync('/usr/bin/time', ['-o', out, '-f', '%U %S %M', file], { env, input, encoding: 'utf8' });
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (run.status !== 0) throw new Error(`${file} ${env.CNI_COMMAND ?? ''} exited ${run.status}: ${run.stdout}${run.stderr}`);
  const [user, sys, rss] = readFileSync(out, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  return { wallMs, cpuMs: (user! + sys!) * 1000, maxRssMiB: rss! / 1024, stdout: run.stdout, stderr: run.stderr };
}

export interface Samples {
  wall: number[];
  cpu: number[];
  rss: number[];
}

export const samples = (): Samples => ({ wall: [], cpu: [], rss: [] });

export function record(into: Samples, run: Run): Run {
  into.wall.push(run.wallMs);
  into.cpu.push(run.cpuMs);
  into.rss.push(run.maxRssMiB);
  return run;
}

interface TraceStep {
  what: string;
  at: number;
  ms?: number;
}

/** Where the time of traced runs went, by kind of step, as medians over the runs. */
export function breakdown(stderrs: ReadonlyArray<string>): string {
  const rows = new Map<string, number[]>();
  const add = (key: string, ms: number) => rows.set(key, [...(rows.get(key) ?? []), ms]);
  for (const stderr of stderrs) {
    const line = stderr.split('\n').find((l) => l.startsWith('{"trace"'));
    if (!line) continue;
    const steps = (JSON.parse(line) as { trace: TraceStep[] }).trace;
    const at = (what: string) => steps.find((s) => s.what === what)?.at;
    const main = at('main') ?? 0;
    const loaded = at('modules loaded') ?? main;
    const decoded = at('config decoded') ?? loaded;
    const done = at('verb done') ?? at('exit') ?? decoded;
    add('node start-up (to main)', main);
    add('module loading', loaded - main);
    add('stdin and config', decoded - loaded);
    const kinds: Record<string, number> = { spawns: 0, 'store calls': 0, 'fsyncs (in store calls)': 0 };
    const counts: Record<string, number> = { spawns: 0, 'store calls': 0, 'fsyncs (in store calls)': 0 };
    for (const s of steps) {
      const kind = s.what.startsWith('spawn') ? 'spawns' : s.what.startsWith('store') ? 'store calls' : s.what.startsWith('fsync') ? 'fsyncs (in store calls)' : undefined;
      if (kind && s.ms !== undefined) {
        kinds[kind]! += s.ms;
        counts[kind]!++;
      }
    }
    for (const [kind, ms] of Object.entries(kinds)) {
      add(kind, ms);
      add(`${kind}: count`, counts[kind]!);
    }
    add('other work of the verb', done - decoded - kinds.spawns! - kinds['store calls']!);
    add('exit', (at('exit') ?? done) - done);
    add('total', at('exit') ?? done);
  }
  return table([['step', 'median ms (or count)'], ...[...rows].map(([k, v]) => [k, median(v).toFixed(k.endsWith('count') ? 0 : 2)])]);
}

export function summary(name: string, s: Samples): Array<string | number> {
  return [name, median(s.wall), percentile(s.wall, 95), median(s.cpu), median(s.rss)];
}

/** "met" or "missed", with the figures that decided it. */
export const verdict = (what: string, value: number, limit: number, unit = 'x'): string =>
  `target: ${what} <= ${limit}${unit}: ${value <= limit ? 'met' : 'missed'} (${value.toFixed(2)}${unit})`;
