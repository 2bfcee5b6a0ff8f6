// The IPAM section of a network config, whereabouts-compatible: every field whereabouts reads (and the
// etcd fields it once read), merged with its flat file, resolved into ranges and static addresses.
// A config whereabouts accepts keeps working; where whereabouts silently ignores a mistake, we warn.
import { readFileSync } from 'node:fs';
import * as z from 'zod/mini';
import { parseWith } from '../../lib/cni/config.ts';
import { Code, CniError, showValue } from '../../lib/cni/errors.ts';
import { DnsSchema, RouteSchema, type Dns, type Route } from '../../lib/cni/result.ts';
import type { Invocation } from '../../lib/cni/skel.ts';
import { isLogLevel, log } from '../../lib/log.ts';
import { parseAddr, type Addr } from '../alloc/addr.ts';
import { checkNetworkName, poolName, reservationName, SAFE_NAME } from '../alloc/names.ts';
import { resolveRange, spanOf, type IpRange } from '../alloc/ranges.ts';
import { claimName, indexName, isSharded, shardName, shardOf } from '../alloc/shards.ts';
import { staticAddresses, type StaticAddress } from './static.ts';
import { DEFAULT_FILE_STORE_DIR } from '../store/file/store.ts';

/** Where whereabouts looks for its flat file, after `configuration_path`. */
export const FLAT_FILE_PATHS: ReadonlyArray<string> = [
  '/etc/kubernetes/cni/net.d/whereabouts.d/whereabouts.conf',
  '/etc/cni/net.d/whereabouts.d/whereabouts.conf',
  '/host/etc/cni/net.d/whereabouts.d/whereabouts.conf',
];

const RangeEntrySchema = z.looseObject({
  range: z.string().check(z.minLength(1, 'must not be empty')),
  range_start: z.optional(z.string()),
  range_end: z.optional(z.string()),
  exclude: z.optional(z.array(z.string())),
});

export const DATASTORES = ['file', 'etcd', 'kubernetes'] as const;
export type Datastore = (typeof DATASTORES)[number];

const text = () => z.optional(z.string());
const number = () => z.optional(z.number());

export const IpamConfSchema = z.looseObject({
  type: text(),
  range: text(),
  range_start: text(),
  range_end: text(),
  exclude: z.optional(z.array(z.string())),
  ipRanges: z.optional(z.array(RangeEntrySchema)),
  gateway: text(),
  routes: z.optional(z.array(RouteSchema)),
  dns: z.optional(DnsSchema),
  addresses: z.optional(z.array(z.looseObject({ address: z.string(), gateway: text() }))),
  network_name: text(),
  enable_overlapping_ranges: z.optional(z.boolean()),
  node_slice_size: text(),
  kubernetes: z.optional(z.looseObject({ kubeconfig: text(), k8s_api_root: text() })),
  configuration_path: text(),
  log_file: text(),
  log_level: text(),
  datastore: z.optional(z.enum(DATASTORES)),
  file_store_dir: text(),
  etcd_host: text(),
  etcd_endpoints: z.optional(z.array(z.string())),
  etcd_username: text(),
  // Checked by hand below: a schema error would print the value, and this one is a secret.
  etcd_password: z.optional(z.unknown()),
  etcd_key_file: text(),
  etcd_cert_file: text(),
  etcd_ca_cert_file: text(),
  leader_lease_duration: number(),
  leader_renew_deadline: number(),
  leader_retry_period: number(),
  sleep_for_race: number(),
  reconciler_cron_expression: text(),
});
export type IpamConf = z.infer<typeof IpamConfSchema>;

export interface EtcdSettings {
  endpoints: string[];
  username?: string | undefined;
  /** Never logged, never in an error message. */
  password?: string | undefined;
  keyFile?: string | undefined;
  certFile?: string | undefined;
  caCertFile?: string | undefined;
}

export interface IpamConfig {
  /** The CNI network (config `name`): recorded on each lease, it scopes GC. */
  network: string;
  /** whereabouts' network_name: scopes pool and reservation names ("" when unset). */
  networkName: string;
  ranges: IpRange[];
  gateway?: Addr & { text: string };
  routes: Route[];
  dns?: Dns;
  addresses: StaticAddress[];
  overlapping: boolean;
  datastore: Datastore;
  /** Why the datastore was chosen when the config does not say: for the "not available" message. */
  datastoreReason: string;
  fileStoreDir: string;
  kubeconfig?: string;
  etcd: EtcdSettings;
  /** The flat file merged in, if one was found. */
  flatFile?: string;
}

export interface LoadOptions {
  flatFilePaths?: ReadonlyArray<string>;
  env?: NodeJS.ProcessEnv;
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

const absent = (value: unknown): boolean => value === undefined || value === null || value === '';

/** Fills what the NAD leaves unset from the flat file; values in the NAD win (mergo.Merge semantics). */
export function mergeFlat(nad: Record<string, unknown>, flat: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...nad };
  for (const [key, value] of Object.entries(flat)) {
    const mine = merged[key];
    if (absent(mine)) merged[key] = value;
    else if (isPlainObject(mine) && isPlainObject(value)) merged[key] = mergeFlat(mine, value);
  }
  return merged;
}

function readFlatFile(nad: Record<string, unknown>, paths: ReadonlyArray<string>): { path: string; values: Record<string, unknown> } | undefined {
  const first = typeof nad.configuration_path === 'string' && nad.configuration_path !== '' ? [nad.configuration_path] : [];
  for (const path of [...first, ...paths]) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if (err instanceof Error && 'code' in err && (err.code === 'ENOENT' || err.code === 'ENOTDIR')) continue;
      throw new CniError(Code.IoFailure, `ipam: cannot read flat file ${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
    let values: unknown;
    try {
      values = JSON.parse(text);
    } catch {
      // The content is not shown: the flat file usually holds credentials.
      throw new CniError(Code.InvalidConfig, `invalid network config: flat file ${path} (ipam.configuration_path or a whereabouts.d default) is not valid JSON`);
    }
    if (!isPlainObject(values)) throw new CniError(Code.InvalidConfig, `invalid network config: flat file ${path} must hold a JSON object`);
    return { path, values };
  }
  return undefined;
}

function pickDatastore(conf: IpamConf): { datastore: Datastore; reason: string } {
  if (conf.datastore) return { datastore: conf.datastore, reason: `ipam.datastore = "${conf.datastore}"` };
  // A config that points at a cluster store must not fall back silently to a node-local one: two
  // nodes would then hand out the same addresses.
  if (conf.kubernetes?.kubeconfig) return { datastore: 'kubernetes', reason: 'implied by ipam.kubernetes.kubeconfig' };
  if (conf.etcd_host || conf.etcd_endpoints?.length) return { datastore: 'etcd', reason: 'implied by ipam.etcd_host/etcd_endpoints' };
  return { datastore: 'file', reason: 'the default' };
}

function etcdSettings(conf: IpamConf): EtcdSettings {
  if (conf.etcd_password !== undefined && typeof conf.etcd_password !== 'string') {
    throw new CniError(Code.InvalidConfig, 'invalid network config: ipam.etcd_password must be a string (value not shown)');
  }
  const endpoints = [...(conf.etcd_host ? [conf.etcd_host] : []), ...(conf.etcd_endpoints ?? [])];
  return {
    endpoints,
    username: conf.etcd_username,
    password: conf.etcd_password,
    keyFile: conf.etcd_key_file,
    certFile: conf.etcd_cert_file,
    caCertFile: conf.etcd_ca_cert_file,
  };
}

/**
 * What ADD would refuse about the pools, checked when the config is loaded so that DEL and GC, which
 * tolerate a config error (there can be nothing to release), do not fail on it later:
 *  - two ranges of one config in one pool (a pod gets one lease per pool and interface);
 *  - two ranges of one config whose allocatable spans share an address (each is its own pool, and the
 *    pod's reservation of that address would look like its own to the other);
 *  - a record name (pool, shard, index, claim, reservation) the stores cannot hold, as a long
 *    network_name makes.
 */
export function checkPools(networkName: string, ranges: ReadonlyArray<IpRange>): void {
  const byName = new Map<string, string>();
  for (const range of ranges) {
    const name = poolName(networkName, range.cidr);
    const earlier = byName.get(name);
    if (earlier !== undefined) {
      throw new CniError(
        Code.InvalidConfig,
        `invalid network config: ${range.field}.range and ${earlier}.range are both in ${range.cidr}: a pod gets one address per pool and interface; use one range entry, or a network_name per network`,
      );
    }
    byName.set(name, range.field);
    const lo = range.network + range.first;
    const hi = range.network + range.last;
    const sibling = ranges.find((r) => r !== range && ranges.indexOf(r) < ranges.indexOf(range) && r.family === range.family && r.network + r.first <= hi && lo <= r.network + r.last);
    if (sibling !== undefined) {
      // Each range is a pool of its own; an address in both could be leased once in each, to one pod
      // or (the reservation being the pod's own) to two.
      throw new CniError(
        Code.InvalidConfig,
        `invalid network config: ${range.field}.range = ${JSON.stringify(range.source)} (${spanOf(range)}) overlaps ${sibling.field}.range = ${JSON.stringify(sibling.source)} (${spanOf(sibling)}): one config's ranges must not share addresses`,
      );
    }
    const names = [name, reservationName(networkName, range.family, range.network + range.last)];
    if (isSharded(range)) names.push(shardName(name, shardOf(range.last)), indexName(name), claimName(name, '', ''));
    const bad = names.find((n) => !SAFE_NAME.test(n));
    if (bad !== undefined) {
      throw new CniError(
        Code.InvalidConfig,
        `invalid network config: ipam.network_name = ${showValue(networkName)} is too long: the record name ${JSON.stringify(bad.slice(0, 60))}... for ${range.field}.range must be at most 201 characters`,
      );
    }
  }
}

/** Parses and resolves `inv.raw.ipam`. Throws a CniError naming the field and value at fault. */
export function loadIpamConfig(inv: Pick<Invocation, 'raw' | 'conf' | 'env' | 'cniVersion'>, options: LoadOptions = {}): IpamConfig {
  const rawIpam = inv.raw.ipam;
  if (!isPlainObject(rawIpam)) throw new CniError(Code.InvalidConfig, `invalid network config: ipam = ${showValue(rawIpam ?? 'missing')} must be an object`);
  const flat = readFlatFile(rawIpam, options.flatFilePaths ?? FLAT_FILE_PATHS);
  const conf = parseWith(IpamConfSchema, flat ? mergeFlat(rawIpam, flat.values) : rawIpam, 'ipam');
  const networkName = conf.network_name ?? '';
  checkNetworkName(networkName);
  if (conf.log_level && !isLogLevel(conf.log_level.toLowerCase())) log.warn(`ipam.log_level = ${showValue(conf.log_level)} is not one of debug, verbose, info, warning, error, panic; ignored`);
  if (conf.node_slice_size) log.warn(`ipam.node_slice_size = ${showValue(conf.node_slice_size)} is ignored: pools are updated by compare-and-swap, node slices are not needed`);

  let gateway: IpamConfig['gateway'];
  if (conf.gateway) {
    const addr = parseAddr(conf.gateway);
    if (!addr) throw new CniError(Code.InvalidConfig, `invalid network config: ipam.gateway = ${showValue(conf.gateway)} is not an IP address`);
    gateway = { ...addr, text: conf.gateway };
  }
  // The top-level range is entry 0, ahead of ipRanges, as whereabouts prepends it.
  const entries: Array<{ field: string; input: z.infer<typeof RangeEntrySchema> }> = [];
  if (conf.range) {
    entries.push({ field: 'ipam', input: { range: conf.range, range_start: conf.range_start, range_end: conf.range_end, exclude: conf.exclude } });
  }
  (conf.ipRanges ?? []).forEach((input, i) => entries.push({ field: `ipam.ipRanges[${i}]`, input }));
  const ranges = entries.map(({ field, input }) =>
    resolveRange({ ...input, range_start: input.range_start || undefined, range_end: input.range_end || undefined }, field, gateway),
  );

  checkPools(networkName, ranges);

  const addresses = staticAddresses(inv, conf.addresses ?? [], ranges);
  if (ranges.length === 0 && addresses.length === 0) {
    throw new CniError(Code.InvalidConfig, 'invalid network config: ipam.range is missing and ipam.ipRanges is empty: there is nothing to allocate from');
  }
  for (const family of [4, 6] as const) {
    const count = ranges.filter((r) => r.family === family).length + addresses.filter((a) => a.family === family).length;
    if (count > 1 && (inv.cniVersion === '0.1.0' || inv.cniVersion === '0.2.0')) {
      throw new CniError(Code.IncompatibleVersion, `cniVersion ${inv.cniVersion} allows one IPv${family} address, this config gives ${count}; use 0.3.0 or later`);
    }
  }

  const { datastore, reason } = pickDatastore(conf);
  const env = options.env ?? process.env;
  const config: IpamConfig = {
    network: inv.conf.name,
    networkName,
    ranges,
    routes: conf.routes ?? [],
    addresses,
    overlapping: conf.enable_overlapping_ranges ?? true,
    datastore,
    datastoreReason: reason,
    fileStoreDir: conf.file_store_dir || env.UNDERLAY_IPAM_DIR || DEFAULT_FILE_STORE_DIR,
    etcd: etcdSettings(conf),
  };
  if (gateway) config.gateway = gateway;
  if (conf.dns) config.dns = conf.dns;
  if (conf.kubernetes?.kubeconfig) config.kubeconfig = conf.kubernetes.kubeconfig;
  if (flat) config.flatFile = flat.path;
  return config;
}
