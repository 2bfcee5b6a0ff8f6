// Start-up cost: our VERSION against a bare Node 24 SEA that prints one line, and Debian's Go macvlan.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeSea } from '../sea.mjs';
import { interleave, median, percentile, table, timeRun } from './measure.ts';

const ROOT = join(import.meta.dirname, '..', '..');

export function bareSea(): string {
  const dir = join(ROOT, 'dist', 'bench');
  mkdirSync(dir, { recursive: true });
  const hello = join(dir, 'hello.cjs');
  writeFileSync(hello, 'process.stdout.write("hello\\n");\n');
  const exe = join(dir, 'hello');
  makeSea(hello, exe);
  return exe;
}

export function main(args: ReadonlyArray<string>): void {
  const rounds = Number(args[0] ?? 60);
  const ours = join(ROOT, 'dist', 'bin', 'macvlan');
  const hello = bareSea();
  const env = { CNI_COMMAND: 'VERSION', PATH: process.env.PATH ?? '' };
  const samples = interleave(
    [
      { name: 'underlay macvlan VERSION', run: () => timeRun(ours, [], env) },
      { name: 'bare Node 24 SEA (prints one line)', run: () => timeRun(hello, [], env) },
      { name: 'Debian Go macvlan VERSION', run: () => timeRun('/usr/lib/cni/macvlan', [], env) },
    ],
    rounds,
  );
  const [oursMs, bareMs] = samples.map((s) => median(s.wallMs));
  console.log(`startup: ${rounds} interleaved runs each (wall time, ms)`);
  console.log(
    table([
      ['', 'median', 'p95', 'vs bare SEA'],
      ...samples.map((s) => [s.name, median(s.wallMs), percentile(s.wallMs, 95), `${(median(s.wallMs) / bareMs!).toFixed(2)}x`]),
    ]),
  );
  console.log(`startup: ours/bare = ${(oursMs! / bareMs!).toFixed(2)} (target <= 1.15)`);
}

if (import.meta.main) main(process.argv.slice(2));
