// The IPAM config of a network config file on disk, for the operator commands (`underlay ipam
// --config`, `underlay reconcile --config`), which read it as a runtime would hand it to the plugin.
import { readFileSync } from 'node:fs';
import { decodeConfig } from '../../lib/cni/config.ts';
import { requireSupported } from '../../lib/cni/version.ts';
import { loadIpamConfig, type IpamConfig } from './load.ts';

/** The IPAM config of a .conf or .conflist file: its `ipam`, or that of the first plugin that has one. */
export function ipamConfigFromFile(path: string): IpamConfig {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  const plugins = Array.isArray(raw.plugins) ? (raw.plugins as Array<Record<string, unknown>>) : [raw];
  const plugin = plugins.find((p) => p.ipam !== undefined) ?? raw;
  const { conf, raw: decoded } = decodeConfig(JSON.stringify({ ...plugin, cniVersion: raw.cniVersion ?? plugin.cniVersion, name: raw.name ?? plugin.name }));
  const env = { command: 'STATUS' as const, containerId: '', netns: '', ifName: '', args: '', path: [] };
  return loadIpamConfig({ raw: decoded, conf, env, cniVersion: requireSupported(conf.cniVersion) });
}
