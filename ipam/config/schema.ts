// The IPAM section's fields, whereabouts-compatible: every field whereabouts reads (and the etcd fields
// it once read, plus etcd_endpoints and etcd_prefix), and what they resolve into.
import * as z from 'zod/mini';
import { DnsSchema, RouteSchema, type Dns, type Route } from '../../lib/cni/result.ts';
import type { Addr } from '../alloc/addr.ts';
import type { IpRange } from '../alloc/ranges.ts';
import type { StaticAddress } from './static.ts';

export const RangeEntrySchema = z.looseObject({
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
  etcd_prefix: text(),
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
  /** Where the IPAM's keys live (default /underlay/ipam/). */
  prefix?: string | undefined;
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
  /** whereabouts' kubernetes.k8s_api_root: the API server, when not the kubeconfig's. */
  k8sApiRoot?: string;
  etcd: EtcdSettings;
  /** The flat file merged in, if one was found. */
  flatFile?: string;
}

