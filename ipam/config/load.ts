// The IPAM section of a network config, whereabouts-compatible, merged with its flat file and resolved
// into ranges and static addresses. A config whereabouts accepts keeps working; where whereabouts
// silently ignores a mistake, we warn.
import type * as z from 'zod/mini';
import { parseWith } from '../../lib/cni/config.ts';
import { Code, CniError, showValue } from '../../lib/cni/errors.ts';
import type { Invocation } from '../../lib/cni/skel.ts';
import { configureLog, isLogLevel, log } from '../../lib/log.ts';
import { parseAddr } from '../alloc/addr.ts';
import { checkNetworkName } from '../alloc/names.ts';
import { resolveRange } from '../alloc/ranges.ts';
import { DEFAULT_FILE_STORE_DIR } from '../store/file/store.ts';
import { FLAT_FILE_PATHS, hidingFlatValues, isPlainObject, mergeFlat, readFlatFile } from './flat.ts';
import { checkPools } from './pools.ts';
import { IpamConfSchema, type Datastore, type EtcdSettings, type IpamConf, type IpamConfig, type RangeEntrySchema } from './schema.ts';
import { staticAddresses } from './static.ts';

export type { EtcdSettings, IpamConfig } from './schema.ts';

export interface LoadOptions {
  flatFilePaths?: ReadonlyArray<string>;
  env?: NodeJS.ProcessEnv;
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
    prefix: conf.etcd_prefix,
  };
}

/** Parses and resolves `inv.raw.ipam`. Throws a CniError naming the field and value at fault. */
export function loadIpamConfig(inv: Pick<Invocation, 'raw' | 'conf' | 'env' | 'cniVersion'>, options: LoadOptions = {}): IpamConfig {
  const rawIpam = inv.raw.ipam;
  if (!isPlainObject(rawIpam)) throw new CniError(Code.InvalidConfig, `invalid network config: ipam = ${showValue(rawIpam ?? 'missing')} must be an object`);
  const flat = readFlatFile(rawIpam, options.flatFilePaths ?? FLAT_FILE_PATHS);
  return hidingFlatValues(rawIpam, flat, () => resolve(inv, rawIpam, flat, options));
}

function resolve(inv: Pick<Invocation, 'raw' | 'conf' | 'env' | 'cniVersion'>, rawIpam: Record<string, unknown>, flat: ReturnType<typeof readFlatFile>, options: LoadOptions): IpamConfig {
  const conf = parseWith(IpamConfSchema, flat ? mergeFlat(rawIpam, flat.values) : rawIpam, 'ipam');
  // The protocol core configured logging from the NAD; a flat file may name the log too.
  if (flat) configureLog([{ log_file: conf.log_file, log_level: conf.log_level }]);
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
  if (conf.kubernetes?.k8s_api_root) config.k8sApiRoot = conf.kubernetes.k8s_api_root;
  if (flat) config.flatFile = flat.path;
  return config;
}
