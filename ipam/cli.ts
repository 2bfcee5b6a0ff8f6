// `underlay ipam ls` and `underlay ipam show POOL`: what the file store holds, for operators (a table)
// and scripts (--json). A big pool kept in shards (ipam/alloc/shards.ts) is shown as the one pool it is, under
// its whereabouts name: counts and leases over all its shards. Free counts are of the whole CIDR: a config's range_start, range_end and
// exclusions, which the store does not know, may narrow it.
import { formatAddr, parseCidr, sizeOf } from './alloc/addr.ts';
import { DEFAULT_FILE_STORE_DIR, FileStore } from './store/file/store.ts';
import { isClaimName, roleOf } from './alloc/shards.ts';
import type { LegacyIpamStore, PoolRecord, Versioned } from './store/types.ts';

const USAGE = `usage: underlay ipam ls [--json] [--dir DIR]
       underlay ipam show POOL [--json] [--dir DIR]
DIR defaults to $UNDERLAY_IPAM_DIR, else ${DEFAULT_FILE_STORE_DIR} (the IPAM's file_store_dir).
`;

interface Options {
  json: boolean;
  dir: string;
  positional: string[];
}

function parseOptions(args: ReadonlyArray<string>): Options | string {
  const options: Options = { json: false, dir: process.env.UNDERLAY_IPAM_DIR || DEFAULT_FILE_STORE_DIR, positional: [] };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--json') options.json = true;
    else if (arg === '--dir') {
      const dir = args[++i];
      if (!dir) return '--dir needs a directory';
      options.dir = dir;
    } else if (arg.startsWith('--dir=')) options.dir = arg.slice('--dir='.length);
    else if (arg.startsWith('-')) return `unknown option ${JSON.stringify(arg)}`;
    else options.positional.push(arg);
  }
  return options;
}

/** A count as JSON: a number while it is exact, else a decimal string (an IPv6 /64 has 2^64). */
const jsonCount = (n: bigint): number | string => (n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n.toString());

function capacityOf(pool: PoolRecord): bigint {
  const cidr = parseCidr(pool.range);
  if (!cidr) return 0n;
  const size = sizeOf(cidr.family, cidr.prefix);
  return cidr.family === 4 ? size - 2n : size - 1n;
}

function table(rows: ReadonlyArray<ReadonlyArray<string>>): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/** The stored pools, each with its shard records (one record for a pool that is not sharded). */
async function readPools(store: LegacyIpamStore): Promise<Map<string, Array<Versioned<PoolRecord>>>> {
  const pools = new Map<string, Array<Versioned<PoolRecord>>>();
  for (const name of (await store.listPools()).sort()) {
    const role = roleOf(name);
    if (role.kind !== 'shard') continue;
    const snapshot = await store.readPool(name);
    if (!snapshot) continue;
    const records = pools.get(role.pool) ?? [];
    // Shard 0 (the pool's own name) first: its version is the one shown.
    if (role.shard === 0n) records.unshift(snapshot);
    else records.push(snapshot);
    pools.set(role.pool, records);
  }
  return pools;
}

async function list(options: Options): Promise<number> {
  const store = new FileStore(options.dir);
  const pools = [];
  for (const [name, records] of [...(await readPools(store))].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const first = records[0]!;
    const used = BigInt(records.reduce((sum, r) => sum + Object.keys(r.value.allocations).length, 0));
    const capacity = capacityOf(first.value);
    pools.push({ name, range: first.value.range, used, free: capacity > used ? capacity - used : 0n, version: first.version });
  }
  const all = await store.listReservations();
  const reservations = all.filter((n) => !isClaimName(n)).length;
  if (options.json) {
    const out = { dir: options.dir, pools: pools.map((p) => ({ ...p, used: jsonCount(p.used), free: jsonCount(p.free) })), reservations };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return 0;
  }
  if (pools.length === 0) {
    process.stdout.write(`no pools in ${options.dir}\n`);
    return 0;
  }
  process.stdout.write(table([['POOL', 'RANGE', 'USED', 'FREE'], ...pools.map((p) => [p.name, p.range, String(p.used), String(p.free)])]));
  process.stdout.write(`${reservations} overlapping-range reservations; store ${options.dir}\n`);
  return 0;
}

async function show(options: Options): Promise<number> {
  const name = options.positional[0];
  if (!name || options.positional.length > 1) {
    process.stderr.write(USAGE);
    return 2;
  }
  const store = new FileStore(options.dir);
  const records = (await readPools(store)).get(name);
  const snapshot = records?.[0];
  if (!records || !snapshot) {
    process.stderr.write(`underlay ipam: no pool ${JSON.stringify(name)} in ${options.dir} ("underlay ipam ls" lists them)\n`);
    return 1;
  }
  const cidr = parseCidr(snapshot.value.range);
  const leases = records
    .flatMap((r) => Object.entries(r.value.allocations))
    .map(([key, a]) => ({ offset: BigInt(key), a }))
    .sort((x, y) => (x.offset < y.offset ? -1 : x.offset > y.offset ? 1 : 0))
    .map(({ offset, a }) => ({
      address: cidr ? formatAddr(cidr.family, cidr.network + offset) : `+${offset}`,
      pod: a.podref === a.id ? '' : a.podref,
      containerID: a.id,
      ifName: a.ifname ?? '',
      since: a.since ?? '',
      network: a.network ?? '',
    }));
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ pool: name, range: snapshot.value.range, version: snapshot.version, leases }, null, 2)}\n`);
    return 0;
  }
  const capacity = capacityOf(snapshot.value);
  process.stdout.write(`pool ${name}: range ${snapshot.value.range}, ${leases.length} leased, ${capacity - BigInt(leases.length)} free\n`);
  if (leases.length === 0) return 0;
  const rows = leases.map((l) => [l.address, l.pod || '-', l.containerID.slice(0, 12), l.ifName || '-', l.since || '-', l.network || '-']);
  process.stdout.write(table([['ADDRESS', 'POD', 'CONTAINER', 'IFNAME', 'SINCE', 'NETWORK'], ...rows]));
  return 0;
}

/** `underlay ipam ...`; argv is what follows "ipam". Returns the exit code. */
export async function runIpamCli(argv: string[]): Promise<number> {
  const [command, ...rest] = argv[0] === 'ipam' ? argv.slice(1) : argv;
  const options = parseOptions(rest);
  if (typeof options === 'string') {
    process.stderr.write(`underlay ipam: ${options}\n${USAGE}`);
    return 2;
  }
  try {
    if (command === 'ls' || command === 'list') return await list(options);
    if (command === 'show') return await show(options);
  } catch (err) {
    process.stderr.write(`underlay ipam: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  process.stderr.write(`underlay ipam: unknown command ${JSON.stringify(command)}\n${USAGE}`);
  return 2;
}
