// Timing helpers for the benchmarks: these machines are shared and noisy, so candidates are measured
// interleaved in one run and reported side by side as medians, p95 and ratios.
import { spawnSync } from 'node:child_process';

export interface Sample {
  name: string;
  wallMs: number[];
}

export function percentile(values: ReadonlyArray<number>, p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export const median = (values: ReadonlyArray<number>): number => percentile(values, 50);

/** Wall time of one process run, in milliseconds. Throws if it fails: a failed run is not a sample. */
export function timeRun(file: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv, input = ''): number {
  const started = process.hrtime.bigint();
  const out = spawnSync(file, args, { env, input, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (out.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${out.status}: ${out.stdout}${out.stderr}`);
  return ms;
}

/** Runs each candidate `rounds` times, interleaved, after one warm-up run of each. */
export function interleave(candidates: ReadonlyArray<{ name: string; run: () => number }>, rounds: number): Sample[] {
  const samples = candidates.map((c) => ({ name: c.name, wallMs: [] as number[] }));
  for (const c of candidates) c.run();
  for (let i = 0; i < rounds; i++) candidates.forEach((c, j) => samples[j]!.wallMs.push(c.run()));
  return samples;
}

export function table(rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const text = rows.map((row) => row.map((cell) => (typeof cell === 'number' ? cell.toFixed(2) : cell)));
  const widths = text[0]!.map((_, i) => Math.max(...text.map((row) => row[i]!.length)));
  return text.map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')).join('\n');
}
