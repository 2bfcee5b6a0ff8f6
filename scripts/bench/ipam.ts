// npm run bench -- ipam [--leases N[,N...]] [--rounds R]
// CPU time of one allocation and one release in a big pool (a /16 holding 60,000 leases by default),
// through the whole path an ADD takes (read and parse the pool file, plan, reservation, serialize,
// write, fsync) and for the pure allocator alone, plus the pool file's size. The target is under 5 ms
// of CPU per allocation; smaller pools are measured alongside to show how the cost grows.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { applyChange, planAssign, planRelease, type Claimant } from '../../ipam/allocator.ts';
import { acquire, release, type PoolTarget } from '../../ipam/lease.ts';
import { poolName } from '../../ipam/names.ts';
import { resolveRange } from '../../ipam/ranges.ts';
import { FileStore } from '../../ipam/store/file.ts';
import type { PoolRecord } from '../../ipam/store/types.ts';
import { median, percentile, table } from './measure.ts';

const cpuMs = (fn: () => unknown): number => {
  const start = process.cpuUsage();
  fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
};

async function cpuMsAsync(fn: () => Promise<unknown>): Promise<number> {
  const start = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

const claimant = (i: number): Claimant => ({ id: randomBytes(32).toString('hex'), podref: `bench/pod-${i}`, ifname: 'net1', network: 'bench' });

/** A /16 pool with `leases` leases at the lowest offsets, less one in every 1,000 (churn leaves holes). */
function filledPool(range: ReturnType<typeof resolveRange>, leases: number): PoolRecord {
  const allocations: PoolRecord['allocations'] = {};
  const since = new Date().toISOString();
  for (let offset = 1, n = 0; n < leases; offset++) {
    if (offset % 1000 === 500) continue;
    const who = claimant(n++);
    allocations[String(offset)] = { id: who.id, podref: who.podref, ifname: who.ifname, since, network: who.network };
  }
  return { range: range.cidr, allocations };
}

interface Row {
  leases: number;
  fileKiB: number;
  allocMs: number[];
  releaseMs: number[];
  pureAllocMs: number[];
  pureReleaseMs: number[];
}

async function measure(leases: number, rounds: number): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'underlay-bench-ipam-'));
  try {
    const range = resolveRange({ range: '10.64.0.0/16' }, 'ipam');
    const target: PoolTarget = { name: poolName('', range.cidr), range, networkName: '', overlapping: true };
    const store = new FileStore(dir);
    const pool = filledPool(range, leases);
    await store.writePool(target.name, pool, undefined);
    const fileKiB = statSync(join(dir, 'pools', `${target.name}.json`)).size / 1024;
    const deadline = Date.now() + 600_000;
    const row: Row = { leases, fileKiB, allocMs: [], releaseMs: [], pureAllocMs: [], pureReleaseMs: [] };
    for (let i = 0; i < rounds; i++) {
      const who = claimant(leases + i);
      row.pureAllocMs.push(cpuMs(() => applyChange(pool, (planAssign(pool, range, who, '') as { change: Parameters<typeof applyChange>[1] }).change)));
      row.pureReleaseMs.push(cpuMs(() => applyChange(pool, planRelease(pool, { id: pool.allocations['1']!.id, podref: 'x', ifname: 'net1' }))));
      row.allocMs.push(await cpuMsAsync(() => acquire(store, target, who, deadline)));
      row.releaseMs.push(await cpuMsAsync(() => release(store, target, who, deadline)));
    }
    return row;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function main(args: ReadonlyArray<string>): Promise<void> {
  const option = (name: string, fallback: string): string => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] ? args[i + 1]! : fallback;
  };
  const sizes = option('--leases', '1000,10000,60000').split(',').map(Number);
  const rounds = Number(option('--rounds', '15'));
  const rows: Row[] = [];
  for (const size of sizes) rows.push(await measure(size, rounds));
  const fmt = (values: number[]) => `${median(values).toFixed(2)} / ${percentile(values, 95).toFixed(2)}`;
  console.log(`\nIPAM file store, /16 pool, ${rounds} rounds each: CPU ms per operation, median / p95`);
  console.log(
    table([
      ['leases', 'pool file KiB', 'ADD: full path', 'DEL: full path', 'ADD: allocator only', 'DEL: allocator only'],
      ...rows.map((r) => [String(r.leases), r.fileKiB.toFixed(0), fmt(r.allocMs), fmt(r.releaseMs), fmt(r.pureAllocMs), fmt(r.pureReleaseMs)]),
    ]),
  );
  const biggest = rows[rows.length - 1]!;
  const verdict = median(biggest.allocMs) < 5 ? 'meets' : 'misses';
  console.log(`target: under 5 ms CPU per allocation with ${biggest.leases} leases: ${verdict} it (${median(biggest.allocMs).toFixed(2)} ms median)`);
  console.log('full path = read + JSON.parse of the pool file, plan, reservation file, serialize, write, fsync, rename');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main(process.argv.slice(2));
