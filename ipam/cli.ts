// `underlay ipam ls` and `underlay ipam show POOL`: what a store holds, for operators (a table) and
// scripts (--json). The store is chosen with the same settings a config gives (--dir, --etcd,
// --kubeconfig, or --config FILE taking a network config). A big pool kept in shards is shown as the one
// pool it is, under its whereabouts name. Free counts are of what the config that last leased in a pool
// may hand out; with --config, exactly its ranges'.
import { neutralize } from '../lib/log.ts';
import { formatAddr, parseCidr, sizeOf } from './alloc/addr.ts';
import { usage } from './alloc/allocator.ts';
import { isClaimName, roleOf } from './alloc/shards.ts';
import type { IpamConfig } from './config/load.ts';
import { ipamConfigFromFile } from './config/network-file.ts';
import { DEFAULT_FILE_STORE_DIR } from './store/file/store.ts';
import { openStore, type StoreChoice } from './store/open.ts';
import type { Allocation, IpamStore, PoolRecord } from './store/types.ts';

const USAGE = `usage: underlay ipam ls [--json] [STORE]
       underlay ipam show POOL [--json] [STORE]
STORE is where the leases are, as an IPAM config would say:
  --dir DIR           the file store (default $UNDERLAY_IPAM_DIR, else ${DEFAULT_FILE_STORE_DIR})
  --etcd ENDPOINTS    etcd, e.g. https://10.0.0.1:2379,https://10.0.0.2:2379
  --kubeconfig FILE   the Kubernetes API (whereabouts' IPPool objects)
  --config FILE       a network config (.conf or .conflist): its IPAM's store and ranges
`;

interface Options {
  json: boolean;
  choice: StoreChoice;
  config?: IpamConfig;
  positional: string[];
}

function parseOptions(args: ReadonlyArray<string>): Options | string {
  const file = (dir: string): StoreChoice => ({ datastore: 'file', datastoreReason: '--dir', fileStoreDir: dir, etcd: { endpoints: [] } });
  const options: Options = { json: false, choice: file(process.env.UNDERLAY_IPAM_DIR || DEFAULT_FILE_STORE_DIR), positional: [] };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.indexOf('=');
    const [flag, inline] = arg.startsWith('--') && eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    const value = (): string | undefined => inline ?? args[++i];
    if (flag === '--json') options.json = true;
    else if (flag === '--dir' || flag === '--etcd' || flag === '--kubeconfig' || flag === '--config') {
      const given = value();
      if (!given) return `${flag} needs a value`;
      if (flag === '--dir') options.choice = file(given);
      else if (flag === '--etcd') options.choice = { ...file(''), datastore: 'etcd', datastoreReason: '--etcd', etcd: { endpoints: given.split(',').filter(Boolean) } };
      else if (flag === '--kubeconfig') options.choice = { ...file(''), datastore: 'kubernetes', datastoreReason: '--kubeconfig', kubeconfig: given };
      else options.choice = options.config = ipamConfigFromFile(given);
    } else if (flag.startsWith('-')) return `unknown option ${JSON.stringify(arg)}`;
    else options.positional.push(arg);
  }
  return options;
}

/** A count as JSON: a number while it is exact, else a decimal string (an IPv6 /64 has 2^64). */
const jsonCount = (n: bigint): number | string => (n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n.toString());

/** Leases keyed by decimal offset; a hand-edited key ("__proto__", "-5") is not a lease. */
const leasesOf = (record: PoolRecord): Array<[bigint, Allocation]> =>
  Object.entries(record.allocations).filter(([key]) => /^\d+$/.test(key)).map(([key, a]) => [BigInt(key), a]);

interface PoolView {
  name: string;
  range: string;
  version: string;
  records: PoolRecord[];
}

/** The stored pools, each with its shard records (one record for a pool that is not sharded). */
async function readPools(store: IpamStore, deadline: number): Promise<PoolView[]> {
  const pools = new Map<string, PoolView>();
  for (const record of await store.listPools('', deadline)) {
    const role = roleOf(record.name);
    if (role.kind !== 'shard') continue;
    const view = pools.get(role.pool) ?? { name: role.pool, range: record.value.range, version: record.version, records: [] };
    if (role.shard === 0n) Object.assign(view, { range: record.value.range, version: record.version }); // shard 0's version is shown
    view.records.push(record.value);
    pools.set(role.pool, view);
  }
  return [...pools.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Used and free addresses: exactly, for a config's range; else of what the last config could allocate. */
function counts(view: PoolView, config: IpamConfig | undefined): { used: bigint; free: bigint } {
  const range = config?.ranges.find((r) => r.cidr === view.range);
  const leases = view.records.flatMap(leasesOf);
  if (range) {
    const merged: PoolRecord = { range: view.range, allocations: Object.fromEntries(leases.map(([o, a]) => [o.toString(), a])) };
    return usage(merged, range);
  }
  const used = BigInt(leases.length);
  const recorded = view.records.find((r) => r.allocatable !== undefined && /^\d+$/.test(r.allocatable))?.allocatable;
  const cidr = parseCidr(view.range);
  const whole = cidr ? sizeOf(cidr.family, cidr.prefix) - (cidr.family === 4 ? 2n : 1n) : 0n;
  const capacity = recorded !== undefined ? BigInt(recorded) : whole;
  return { used, free: capacity > used ? capacity - used : 0n };
}

/** Cells come from records anyone with write access to the store may have written: no escape reaches the terminal. */
function table(cells: ReadonlyArray<ReadonlyArray<string>>): string {
  const rows = cells.map((row) => row.map(neutralize));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

async function list(store: IpamStore, options: Options, deadline: number): Promise<number> {
  const mine = options.config && new Set(options.config.ranges.map((r) => r.cidr));
  const pools = (await readPools(store, deadline)).filter((p) => !mine || mine.has(p.range)).map((p) => ({ name: p.name, range: p.range, version: p.version, ...counts(p, options.config) }));
  const reservations = (await store.listReservations('', deadline)).filter((r) => !isClaimName(r.name)).length;
  if (options.json) {
    const out = { store: store.description, pools: pools.map((p) => ({ ...p, used: jsonCount(p.used), free: jsonCount(p.free) })), reservations };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return 0;
  }
  if (pools.length === 0) {
    process.stdout.write(`no pools in the ${store.description}\n`);
    return 0;
  }
  process.stdout.write(table([['POOL', 'RANGE', 'USED', 'FREE'], ...pools.map((p) => [p.name, p.range, String(p.used), String(p.free)])]));
  process.stdout.write(`${reservations} overlapping-range reservations; ${store.description}\n`);
  return 0;
}

async function show(store: IpamStore, options: Options, deadline: number): Promise<number> {
  const name = options.positional[0];
  if (!name || options.positional.length > 1) {
    process.stderr.write(USAGE);
    return 2;
  }
  const view = (await readPools(store, deadline)).find((p) => p.name === name);
  if (!view) {
    process.stderr.write(`underlay ipam: no pool ${JSON.stringify(name)} in the ${store.description} ("underlay ipam ls" lists them)\n`);
    return 1;
  }
  const cidr = parseCidr(view.range);
  const leases = view.records
    .flatMap(leasesOf)
    .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
    .map(([offset, a]) => ({
      address: cidr ? formatAddr(cidr.family, cidr.network + offset) : `+${offset}`,
      pod: a.podref === a.id ? '' : a.podref,
      containerID: a.id,
      ifName: a.ifname ?? '',
      since: a.since ?? '',
      network: a.network ?? '',
      node: a.node ?? '',
    }));
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ pool: name, range: view.range, version: view.version, leases }, null, 2)}\n`);
    return 0;
  }
  const { free } = counts(view, options.config);
  process.stdout.write(`pool ${name}: range ${view.range}, ${leases.length} leased, ${free} free\n`);
  if (leases.length === 0) return 0;
  const rows = leases.map((l) => [l.address, l.pod || '-', l.containerID.slice(0, 12), l.ifName || '-', l.since || '-', l.network || '-', l.node || '-']);
  process.stdout.write(table([['ADDRESS', 'POD', 'CONTAINER', 'IFNAME', 'SINCE', 'NETWORK', 'NODE'], ...rows]));
  return 0;
}

/** `underlay ipam ...`; argv is what follows "ipam". Returns the exit code. */
export async function runIpamCli(argv: string[]): Promise<number> {
  const [command, ...rest] = argv[0] === 'ipam' ? argv.slice(1) : argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command !== 'ls' && command !== 'list' && command !== 'show') {
    process.stderr.write(`underlay ipam: unknown command ${JSON.stringify(command)}\n${USAGE}`);
    return 2;
  }
  let store: IpamStore | undefined;
  try {
    const options = parseOptions(rest);
    if (typeof options === 'string') {
      process.stderr.write(`underlay ipam: ${options}\n${USAGE}`);
      return 2;
    }
    store = await openStore(options.choice);
    const deadline = Date.now() + 30_000;
    return command === 'show' ? await show(store, options, deadline) : await list(store, options, deadline);
  } catch (err) {
    process.stderr.write(`underlay ipam: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    await store?.close();
  }
}
