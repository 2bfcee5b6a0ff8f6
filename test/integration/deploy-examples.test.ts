// The examples under deploy/examples/ must work as shipped (only the master and the lease directory
// are pointed at the test's own): an operator copies them first. Every NetworkAttachmentDefinition is
// checked for its own shape (no OpenAPI schema covers a CRD's objects), its config is one our plugins
// accept, and those whose store runs here attach a pod for real.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAll } from 'js-yaml';
import { decodeConfig, parseWith } from '../../lib/cni/config.ts';
import type { CmdArgs } from '../../lib/cni/env.ts';
import { SUPPORTED_VERSIONS, type SpecVersion } from '../../lib/cni/version.ts';
import { DEFAULT_KUBECONFIG } from '../../lib/install/options.ts';
import { IPAM_TYPES, PLUGIN_NAMES } from '../../lib/names.ts';
import { loadIpamConfig } from '../../ipam/config/load.ts';
import { SriovFieldsSchema } from '../../plugins/sriov/config.ts';
import { MacvlanConfSchema } from '../../plugins/macvlan/config.ts';
import { labWithMaster } from '../helpers/fixture.ts';
import { chainAdd, chainCheck, chainDel, type ConfList } from '../helpers/chain.ts';
import { cni, ROOT } from '../helpers/exec.ts';

const { lab, dir, master } = labWithMaster('dx', 'deploy');
const EXAMPLES = join(ROOT, 'deploy/examples');
/** Where the plugins, on the host, find the kubeconfig `underlay install` writes under /host. */
const HOST_KUBECONFIG = DEFAULT_KUBECONFIG.replace(/^\/host/, '');

interface Nad {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  spec: { config: string };
}

function nadsIn(file: string): Nad[] {
  return loadAll(readFileSync(file, 'utf8'), null, { filename: file }) as Nad[];
}

const nadFiles = readdirSync(EXAMPLES).filter((name) => name.endsWith('.yaml'));
const nads = nadFiles.flatMap((file) => nadsIn(join(EXAMPLES, file)).map((nad) => ({ file, nad })));
const configOf = (nad: Nad): Record<string, unknown> => JSON.parse(nad.spec.config) as Record<string, unknown>;
const nadNamed = (name: string): Record<string, unknown> => {
  const found = nads.find(({ nad }) => nad.metadata.name === name);
  expect(found, name).toBeDefined();
  return configOf(found!.nad);
};

function localize<T extends Record<string, unknown>>(plugin: T): T {
  const ipam = plugin.ipam as Record<string, unknown>;
  const store = ipam.type === 'host-local' ? { dataDir: join(dir, 'host-local') } : { file_store_dir: join(dir, 'leases') };
  return { ...plugin, master, ipam: { ...ipam, ...store } };
}

async function attach(plugin: Record<string, unknown>, containerId: string, ifName: string) {
  const list: ConfList = { cniVersion: plugin.cniVersion as string, name: plugin.name as string, plugins: [plugin as ConfList['plugins'][number]] };
  // CNI_ARGS as kubelet and Multus send them: the reference plugins refuse unknown keys without IgnoreUnknown.
  const env = { containerId, netns: lab.netns(containerId), ifName, args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${containerId}` };
  const { result, failed } = await chainAdd(list, env);
  expect(failed?.stdout).toBeUndefined();
  return { list, env, result };
}

describe('deploy/examples NetworkAttachmentDefinitions', () => {
  it('are k8s.cni.cncf.io/v1 objects whose spec.config is a JSON network config for one of our plugins', () => {
    expect(nads.map(({ nad }) => nad.metadata.name).sort()).toEqual(['macvlan-cluster', 'macvlan-etcd', 'macvlan-host-local', 'sriov-cluster', 'sriov-pf', 'underlay-macvlan']);
    for (const { file, nad } of nads) {
      expect(nad.apiVersion, file).toBe('k8s.cni.cncf.io/v1');
      expect(nad.kind, file).toBe('NetworkAttachmentDefinition');
      expect(nad.metadata.name, file).toMatch(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
      expect(typeof nad.spec.config, file).toBe('string');
      const config = configOf(nad);
      expect(config.name, file).toBe(nad.metadata.name);
      expect(SUPPORTED_VERSIONS, file).toContain(config.cniVersion);
      expect(PLUGIN_NAMES, file).toContain(config.type);
    }
  });

  it('each config is one the plugins accept: top level, macvlan or sriov fields and our IPAM', () => {
    for (const { file, nad } of nads) {
      const { conf, raw } = decodeConfig(nad.spec.config);
      if (String(conf.type).endsWith('macvlan')) parseWith(MacvlanConfSchema, raw);
      if (String(conf.type).endsWith('sriov')) parseWith(SriovFieldsSchema, raw);
      const ipam = raw.ipam as { type: string };
      if (!IPAM_TYPES.includes(ipam.type)) {
        expect(ipam.type, file).toBe('host-local');
        continue;
      }
      const env: CmdArgs = { command: 'ADD', containerId: 'c', netns: '/run/netns/x', ifName: 'net1', args: '', path: [] };
      const loaded = loadIpamConfig({ raw, conf, env, cniVersion: conf.cniVersion as SpecVersion }, { flatFilePaths: [], env: {} });
      expect(loaded.ranges.length, file).toBeGreaterThan(0);
    }
  });

  it('the built plugins answer VERSION for each, in the config\'s version', async () => {
    for (const { file, nad } of nads) {
      const config = configOf(nad);
      const run = await cni(config.type as string, { command: 'VERSION', config: nad.spec.config });
      expect(run.exitCode, `${file}: ${run.stdout}`).toBe(0);
      expect(run.json?.supportedVersions, file).toContain(config.cniVersion);
    }
  });

  it('the cluster-store examples read the kubeconfig `underlay install` writes on every node', () => {
    for (const name of ['macvlan-cluster', 'sriov-cluster', 'sriov-pf']) {
      const ipam = nadNamed(name).ipam as { kubernetes?: { kubeconfig?: string } };
      expect(ipam.kubernetes?.kubeconfig, name).toBe(HOST_KUBECONFIG);
    }
    const cluster = nadNamed('macvlan-cluster').ipam as Record<string, unknown>;
    expect(cluster).toMatchObject({ range: '192.168.91.100-192.168.91.110/24', gateway: '192.168.91.1' });
    const etcd = nadNamed('macvlan-etcd').ipam as Record<string, unknown>;
    expect(etcd).toMatchObject({ datastore: 'etcd', range: '192.168.91.100-192.168.91.110/24', gateway: '192.168.91.1' });
    expect(etcd.etcd_host).toMatch(/^https:\/\//);
  });

  it('sriov: one leaves deviceID to Multus and names the device plugin resource, the other names a PF', () => {
    const withResource = nads.find(({ nad }) => nad.metadata.name === 'sriov-cluster')!.nad;
    expect(withResource.metadata.annotations?.['k8s.v1.cni.cncf.io/resourceName']).toMatch(/^[^/]+\/[^/]+$/);
    expect(configOf(withResource).deviceID).toBeUndefined();
    const withPf = nads.find(({ nad }) => nad.metadata.name === 'sriov-pf')!.nad;
    expect(withPf.metadata.annotations).toBeUndefined();
    expect(configOf(withPf)).toMatchObject({ master: expect.any(String) as string });
    expect(configOf(withPf).deviceID).toBeUndefined();
  });
});

describe('deploy/examples that run here', () => {
  it('the file-store NetworkAttachmentDefinition config attaches a pod', async () => {
    const { list, env, result } = await attach(localize(nadNamed('underlay-macvlan')), 'nad', 'net1');
    expect(result).toMatchObject({ ips: [{ address: '192.168.91.100/24', gateway: '192.168.91.1' }] });
    expect(await chainDel(list, env, result)).toBeUndefined();
  });

  it('the host-local NetworkAttachmentDefinition attaches a pod through the reference host-local', async () => {
    const { list, env, result } = await attach(localize(nadNamed('macvlan-host-local')), 'hostlocal', 'net1');
    expect(result).toMatchObject({ ips: [{ address: '192.168.91.100/24', gateway: '192.168.91.1' }], routes: [{ dst: '0.0.0.0/0' }] });
    expect(await chainCheck(list, env, result)).toBeUndefined();
    expect(await chainDel(list, env, result)).toBeUndefined();
  });

  it('the conflist attaches a pod', async () => {
    const list = JSON.parse(readFileSync(join(EXAMPLES, 'underlay.conflist'), 'utf8')) as ConfList;
    list.plugins = list.plugins.map(localize);
    const env = { containerId: 'conflist', netns: lab.netns('cl'), ifName: 'eth0' };
    const { result, failed } = await chainAdd(list, env);
    expect(failed?.stdout).toBeUndefined();
    expect(result).toMatchObject({ ips: [{ address: '192.168.91.100/24' }], routes: [{ dst: '0.0.0.0/0' }] });
    expect(await chainDel(list, env, result)).toBeUndefined();
  });
});
