// npm run bench -- ipam [--leases N[,N...]] [--rounds R]
// CPU time of one allocation and one release in a big pool (a /16 holding 60,000 leases by default),
// through the whole path an ADD takes (index, claim, reservation, read and parse one shard, plan,
// serialize, write, fsync) and for the pure allocator alone over that shard, plus the largest record
// and the whole store's size. The target is under 5 ms of CPU per allocation; smaller pools are measured
// alongside to show how the cost grows. A /22 (one record, the path every small pool takes) is measured
// too, as the attach path must not get slower for the common small pool.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { applyChange, planAssign, planRelease, type Claimant } from '../../ipam/alloc/allocator.ts';
import { opsFor } from '../../ipam/lease/pool.ts';
import type { PoolTarget } from '../../ipam/lease/target.ts';
import { byShard, claimName, emptyIndex, indexName, isSharded, shardName } from '../../ipam/alloc/shards.ts';
import { poolName } from '../../ipam/alloc/names.ts';
import { resolveRange } from '../../ipam/alloc/ranges.ts';
import { FileStore } from '../../ipam/store/file/store.ts';
import type { IpamStore, PoolRecord } from '../../ipam/store/types.ts';
import { collectGarbage } from '../../ipam/gc/collect.ts';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { invocation } from '../../test/helpers/ipam-invocation.ts';
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

/** A pool with `leases` leases at the lowest offsets, less one in every 1,000 (churn leaves holes). */
function filledPool(range: ReturnType<typeof resolveRange>, leases: number): PoolRecord {
  const allocations: PoolRecord['allocations'] = {};
  const since = new Date().toISOString();
  for (let offset = 1, n = 0; n < leases && offset <= Number(range.last); offset++) {
    if (offset % 1000 === 500) continue;
    const who = claimant(n++);
    allocations[String(offset)] = { id: who.id, podref: who.podref, ifname: who.ifname, since, network: who.network };
  }
  return { range: range.cidr, allocations };
}

interface Row {
  label: string;
  leases: number;
  largestKiB: number;
  storeKiB: number;
  allocMs: number[];
  releaseMs: number[];
  pureAllocMs: number[];
  pureReleaseMs: number[];
}

/**
 * Writes the filled pool as the IPAM keeps it: shards, the index and one claim per lease. The claims
 * of the fill are written without fsync, straight in the file store's format: 60,000 durable creates
 * would take minutes of disk time and no measured operation reads them (they count in the store size).
 */
async function seed(store: IpamStore, dir: string, target: PoolTarget, pool: PoolRecord): Promise<void> {
  const create = (name: string, value: PoolRecord) => store.commit([{ kind: 'pool', name, expected: undefined, value }], Date.now() + 60_000);
  if (!isSharded(target.range)) {
    await create(target.name, pool);
    return;
  }
  for (const [shard, keys] of byShard(pool)) {
    const allocations = Object.fromEntries(keys.map((key) => [key, pool.allocations[key]!]));
    await create(shardName(target.name, shard), { range: pool.range, allocations });
  }
  await create(indexName(target.name), emptyIndex(target.range));
  mkdirSync(join(dir, 'reservations'), { recursive: true, mode: 0o700 });
  for (const [key, a] of Object.entries(pool.allocations)) {
    const claim = { version: randomBytes(8).toString('hex'), containerid: a.id, podref: a.podref, ifname: a.ifname, since: a.since, offset: key };
    writeFileSync(join(dir, 'reservations', `${claimName(target.name, a.podref, a.ifname ?? '')}.json`), `${JSON.stringify(claim)}\n`, { mode: 0o600 });
  }
}

function sizes(dir: string): { largestKiB: number; storeKiB: number } {
  let largest = 0;
  let total = 0;
  for (const sub of ['pools', 'reservations']) {
    let entries: string[];
    try {
      entries = readdirSync(join(dir, sub));
    } catch {
      continue;
    }
    for (const entry of entries) {
      const size = statSync(join(dir, sub, entry)).size;
      total += size;
      if (sub === 'pools') largest = Math.max(largest, size);
    }
  }
  return { largestKiB: largest / 1024, storeKiB: total / 1024 };
}

async function measure(cidr: string, leases: number, rounds: number): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'underlay-bench-ipam-'));
  try {
    const range = resolveRange({ range: cidr }, 'ipam');
    const target: PoolTarget = { name: poolName('', range.cidr), range, networkName: '', overlapping: true };
    const sharded = isSharded(range);
    const store = new FileStore(dir);
    const pool = filledPool(range, leases);
    await seed(store, dir, target, pool);
    const deadline = Date.now() + 600_000;
    const ops = await opsFor(store, target, deadline);
    // The allocator alone works on the record an ADD reads: the shard with the lowest free address.
    const shard = sharded ? { range: pool.range, allocations: Object.fromEntries(Object.entries(pool.allocations).filter(([k]) => Number(k) < 1024)) } : pool;
    const row: Row = { label: cidr, leases: Object.keys(pool.allocations).length, largestKiB: 0, storeKiB: 0, allocMs: [], releaseMs: [], pureAllocMs: [], pureReleaseMs: [] };
    for (let i = 0; i < rounds; i++) {
      const who = claimant(leases + i);
      row.pureAllocMs.push(cpuMs(() => applyChange(shard, (planAssign(shard, range, who, '') as { change: Parameters<typeof applyChange>[1] }).change)));
      row.pureReleaseMs.push(cpuMs(() => applyChange(shard, planRelease(shard, { id: shard.allocations['1']!.id, ifname: 'net1' }))));
      row.allocMs.push(await cpuMsAsync(() => ops.acquire(store, target, who, deadline)));
      if (i === rounds - 1) Object.assign(row, sizes(dir)); // measured with one more lease in: a full shard
      row.releaseMs.push(await cpuMsAsync(() => ops.release(store, target, who, deadline)));
    }
    return row;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Milliseconds per item at each size, and whether the largest costs at most 1.5x the smallest per item. */
function linearity(label: string, unit: string, sizes: number[], totalMs: number[]): void {
  const per = totalMs.map((ms, i) => ms / sizes[i]!);
  console.log(table([[label, ...sizes.map(String)], [`CPU ms in all`, ...totalMs.map((ms) => ms.toFixed(1))], [`CPU ms per ${unit}`, ...per.map((ms) => ms.toFixed(4))]]));
  const ratio = per[per.length - 1]! / per[0]!;
  console.log(`target: cost per ${unit} at ${sizes[sizes.length - 1]} within 1.5x of that at ${sizes[0]} (linear): ${ratio <= 1.5 ? 'met' : 'missed'} (${ratio.toFixed(2)}x)`);
}

/** DEL of a config with thousands of ipRanges (nothing leased): config checks and one read per pool. */
async function rangesScaling(): Promise<void> {
  const sizes = [1000, 2000, 4000];
  const totals: number[] = [];
  for (const size of sizes) {
    const dir = mkdtempSync(join(tmpdir(), 'underlay-bench-ipam-'));
    try {
      const ipRanges = Array.from({ length: size }, (_, i) => ({ range: `10.${100 + (i >> 8)}.${i & 255}.0/24` }));
      const inv = invocation({ verb: 'DEL', ipam: { type: 'whereabouts', ipRanges, file_store_dir: dir } });
      totals.push(await cpuMsAsync(() => ipamPlugin.del(inv)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  console.log('\nDEL of a config with N ipRanges (nothing leased)');
  linearity('ipRanges', 'range', sizes, totals);
}

/** GC over a sharded /16 holding L leases, every one still valid: the whole pool is read and judged. */
async function gcScaling(): Promise<void> {
  const sizes = [12_500, 25_000, 50_000];
  const totals: number[] = [];
  for (const leases of sizes) {
    const dir = mkdtempSync(join(tmpdir(), 'underlay-bench-ipam-'));
    try {
      const range = resolveRange({ range: '10.66.0.0/16' }, 'ipam');
      const target: PoolTarget = { name: poolName('', range.cidr), range, networkName: '', overlapping: false };
      const store = new FileStore(dir);
      const pool = filledPool(range, leases);
      await seed(store, dir, target, pool);
      const valid = Object.values(pool.allocations).map((a) => ({ containerID: a.id, ifname: a.ifname ?? '' }));
      totals.push(await cpuMsAsync(() => collectGarbage(store, [target], 'bench', valid, Date.now() + 600_000, undefined)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  console.log('\nGC over a sharded /16 holding L leases (all valid)');
  linearity('leases', 'lease', sizes, totals);
}

export async function main(args: ReadonlyArray<string>): Promise<void> {
  const option = (name: string, fallback: string): string => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] ? args[i + 1]! : fallback;
  };
  const leaseCounts = option('--leases', '1000,10000,60000').split(',').map(Number);
  const rounds = Number(option('--rounds', '15'));
  await measure('10.62.0.0/16', 1000, 5); // warm-up: the first rows would otherwise pay for the JIT
  const rows: Row[] = [await measure('10.63.0.0/22', 1000, rounds)];
  for (const size of leaseCounts) rows.push(await measure('10.64.0.0/16', size, rounds));
  const fmt = (values: number[]) => `${median(values).toFixed(2)} / ${percentile(values, 95).toFixed(2)}`;
  console.log(`\nIPAM file store, ${rounds} rounds each: CPU ms per operation, median / p95`);
  console.log(
    table([
      ['pool', 'leases', 'largest record KiB', 'store KiB', 'ADD: full path', 'DEL: full path', 'ADD: allocator only', 'DEL: allocator only'],
      ...rows.map((r) => [r.label, String(r.leases), r.largestKiB.toFixed(0), r.storeKiB.toFixed(0), fmt(r.allocMs), fmt(r.releaseMs), fmt(r.pureAllocMs), fmt(r.pureReleaseMs)]),
    ]),
  );
  const biggest = rows[rows.length - 1]!;
  const verdict = median(biggest.allocMs) < 5 ? 'meets' : 'misses';
  console.log(`target: under 5 ms CPU per allocation with ${biggest.leases} leases: ${verdict} it (${median(biggest.allocMs).toFixed(2)} ms median)`);
  console.log('full path = index, claim, reservation, read + JSON.parse of one shard (the whole record for a /22), plan, serialize, write, fsync, rename');
  await rangesScaling();
  await gcScaling();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main(process.argv.slice(2));
