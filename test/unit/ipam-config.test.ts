// The IPAM config: the forms of the whereabouts README, the flat file, static addresses, datastores,
// and errors that name the field and value at fault without ever showing a secret.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { strictStderr, takeStderr } from '../helpers/fixture.ts';
import { loadIpamConfig, type IpamConfig } from '../../ipam/config/load.ts';
import { spanOf } from '../../ipam/alloc/ranges.ts';
import { openStore } from '../../ipam/store/open.ts';
import { failure as rejection, invocation, tempStoreDir, type InvocationSpec, thrown } from '../helpers/ipam-invocation.ts';

strictStderr();

const load = (ipam: Record<string, unknown>, spec: Partial<InvocationSpec> = {}, flatFilePaths: string[] = []): IpamConfig =>
  loadIpamConfig(invocation({ ipam, ...spec }), { flatFilePaths, env: {} });

const failure = thrown;

const KUBE = { kubeconfig: '/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig' };

describe('whereabouts README config forms', () => {
  it.each([
    ['a plain range', { range: '192.168.2.225/28' }, ['192.168.2.224/28 192.168.2.225-192.168.2.238 14']],
    ['range_start and range_end', { range: '192.168.2.0/24', range_start: '192.168.2.10', range_end: '192.168.2.20' }, ['192.168.2.0/24 192.168.2.10-192.168.2.20 11']],
    ['the start-end/prefix form', { range: '192.168.91.100-192.168.91.110/24' }, ['192.168.91.0/24 192.168.91.100-192.168.91.110 11']],
    ['exclusions', { range: '192.168.2.0/28', exclude: ['192.168.2.0/30', '192.168.2.9'] }, ['192.168.2.0/28 192.168.2.1-192.168.2.14 10']],
    ['IPv6', { range: '2001::0/116', gateway: '2001::f:1' }, ['2001::/116 2001::1-2001::fff 4095']],
    ['dual-stack ipRanges', { ipRanges: [{ range: '192.168.10.0/24' }, { range: 'abcd::0/64' }] }, ['192.168.10.0/24 192.168.10.1-192.168.10.254 254', 'abcd::/64 abcd::1-abcd::ffff:ffff:ffff:ffff 18446744073709551615']],
    ['range plus ipRanges (range first)', { range: '10.0.0.0/24', ipRanges: [{ range: '10.1.0.0/24', exclude: ['10.1.0.0/25'] }] }, ['10.0.0.0/24 10.0.0.1-10.0.0.254 254', '10.1.0.0/24 10.1.0.1-10.1.0.254 127']],
  ])('%s', (_name, fields, expected) => {
    const config = load({ type: 'whereabouts', datastore: 'file', kubernetes: KUBE, ...fields });
    expect(config.ranges.map((r) => `${r.cidr} ${spanOf(r)} ${r.size}`)).toEqual(expected);
  });

  it('reads network_name, enable_overlapping_ranges (default true), routes, dns, gateway and logs fields', () => {
    const config = load({
      type: 'whereabouts', range: '10.0.0.0/24', network_name: 'blue', enable_overlapping_ranges: false, gateway: '10.0.0.1',
      routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }], dns: { nameservers: ['10.0.0.53'] }, log_file: '/tmp/wb.log', log_level: 'debug',
      leader_lease_duration: 1500, reconciler_cron_expression: '30 4 * * *',
    });
    expect(config).toMatchObject({ networkName: 'blue', overlapping: false, routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }], dns: { nameservers: ['10.0.0.53'] } });
    expect(config.ranges[0]!.size).toBe(253n); // the gateway is never handed out
    expect(load({ range: '10.0.0.0/24' }).overlapping).toBe(true);
  });
});

describe('datastore', () => {
  it('defaults to the file store, under UNDERLAY_IPAM_DIR when set', () => {
    expect(load({ range: '10.0.0.0/24' })).toMatchObject({ datastore: 'file', fileStoreDir: '/var/lib/cni/underlay/ipam' });
    const config = loadIpamConfig(invocation({ ipam: { range: '10.0.0.0/24' } }), { flatFilePaths: [], env: { UNDERLAY_IPAM_DIR: '/tmp/x' } });
    expect(config.fileStoreDir).toBe('/tmp/x');
  });

  it('opens the Kubernetes store from kubernetes.kubeconfig, naming a kubeconfig it cannot read', async () => {
    const err = await rejection(openStore(load({ range: '10.0.0.0/24', kubernetes: KUBE })));
    expect(err.message).toContain(KUBE.kubeconfig);
  });

  it('refuses an etcd datastore without an endpoint, naming the fields to set', async () => {
    const err = await rejection(openStore(load({ range: '10.0.0.0/24', datastore: 'etcd' })));
    expect(err.code).toBe(7);
    expect(err.message).toContain('needs ipam.etcd_host or ipam.etcd_endpoints');
  });

  it('reads the etcd fields and never shows the password', async () => {
    const config = load({
      range: '10.0.0.0/24', datastore: 'etcd', etcd_host: 'https://a:2379', etcd_endpoints: ['https://b:2379'], etcd_username: 'u',
      etcd_password: 's3cr3t-pw', etcd_key_file: '/k', etcd_cert_file: '/c', etcd_ca_cert_file: '/ca',
    });
    expect(config.etcd).toMatchObject({ endpoints: ['https://a:2379', 'https://b:2379'], username: 'u', password: 's3cr3t-pw' });
    const typed = failure(() => load({ range: '10.0.0.0/24', etcd_password: 987654 }));
    expect(typed.message).toContain('ipam.etcd_password');
    expect(typed.message).not.toContain('987654');
    const elsewhere = failure(() => load({ range: 10, etcd_password: 's3cr3t-pw' }));
    expect(elsewhere.message).toContain('ipam.range = 10');
    expect(elsewhere.message).not.toContain('s3cr3t-pw');
    expect((await rejection(openStore(config))).message).not.toContain('s3cr3t-pw');
  });
});

describe('flat file', () => {
  it('fills what the NAD leaves unset, NAD values winning, configuration_path first', () => {
    const dir = tempStoreDir();
    const chosen = join(dir, 'chosen.conf');
    const fallback = join(dir, 'fallback.conf');
    writeFileSync(chosen, JSON.stringify({ datastore: 'file', file_store_dir: '/srv/ipam', network_name: 'flat', enable_overlapping_ranges: false, gateway: '10.0.0.9' }));
    writeFileSync(fallback, JSON.stringify({ file_store_dir: '/wrong' }));
    const config = load({ range: '10.0.0.0/24', configuration_path: chosen, network_name: 'nad', enable_overlapping_ranges: true }, {}, [fallback]);
    expect(config).toMatchObject({ flatFile: chosen, fileStoreDir: '/srv/ipam', networkName: 'nad', overlapping: true, gateway: { text: '10.0.0.9' } });
    expect(load({ range: '10.0.0.0/24' }, {}, [join(dir, 'missing'), fallback]).fileStoreDir).toBe('/wrong');
  });

  it('reports an unreadable flat file without showing its content', () => {
    const path = join(tempStoreDir(), 'bad.conf');
    writeFileSync(path, '{"etcd_password": "hunter2",');
    const err = failure(() => load({ range: '10.0.0.0/24', configuration_path: path }));
    expect(err.message).toContain(path);
    expect(err.message).not.toContain('hunter2');
  });
});

describe('static addresses', () => {
  const ranges = { range: '10.0.0.0/24', addresses: [{ address: '192.168.0.5/24', gateway: '192.168.0.1' }] };
  it('adds CNI_ARGS IP= to the config addresses, with GATEWAY= on the address that holds it', () => {
    const config = load(ranges, { args: 'IP=172.16.0.5/16,fd00::5/64;GATEWAY=172.16.0.1' });
    expect(config.addresses.map((a) => [a.address, a.gateway])).toEqual([['192.168.0.5/24', '192.168.0.1'], ['172.16.0.5/16', '172.16.0.1'], ['fd00::5/64', undefined]]);
  });
  it('lets args.cni.ips replace them, and the ips capability replace those', () => {
    const args = { args: { cni: { ips: ['172.16.0.6/16'] } } };
    expect(load(ranges, { args: 'IP=172.16.0.5/16', extra: args }).addresses.map((a) => a.address)).toEqual(['172.16.0.6/16']);
    const both = { ...args, runtimeConfig: { ips: ['172.16.0.7'] } };
    expect(load(ranges, { extra: both }).addresses.map((a) => a.address)).toEqual(['172.16.0.7/32']);
    expect(load(ranges, { extra: { runtimeConfig: { ips: ['10.0.0.77'] } } }).addresses.map((a) => a.address)).toEqual(['10.0.0.77/24']);
    expect(takeStderr()).toEqual([expect.stringContaining('static address 10.0.0.77/24 lies inside ipam.range 10.0.0.0/24 but is not leased there')]);
  });
  it('refuses a malformed address, naming where it came from', () => {
    expect(failure(() => load(ranges, { args: 'IP=nope' })).message).toContain('CNI_ARGS IP = "nope"');
    expect(failure(() => load(ranges, { extra: { runtimeConfig: { ips: ['x/y'] } } })).message).toContain('runtimeConfig.ips[0] = "x/y"');
  });
});

describe('errors name the field and value', () => {
  it.each([
    [{ range: '10.0.0.0/24', datastore: 'consul' }, 'ipam.datastore = "consul"'],
    [{ range: '10.0.0.0/24', network_name: 'a/b' }, 'ipam.network_name = "a/b"'],
    [{ range: '10.0.0.0/24', gateway: '10.0.0.300' }, 'ipam.gateway = "10.0.0.300"'],
    [{ range: '10.0.0.0/24', ipRanges: [{ range: '' }] }, 'ipam.ipRanges[0].range = ""'],
    [{ range: '10.0.0.0/24', exclude: '10.0.0.5' }, 'ipam.exclude = "10.0.0.5"'],
    [{ ipRanges: [] }, 'ipam.range is missing'],
  ])('%j', (ipam, fragment) => {
    const err = failure(() => load(ipam));
    expect(err.code).toBe(7);
    expect(err.message).toContain(fragment);
  });

  it('allows one address per family below cniVersion 0.3.0', () => {
    expect(failure(() => load({ ipRanges: [{ range: '10.0.0.0/24' }, { range: '10.1.0.0/24' }] }, { cniVersion: '0.2.0' })).code).toBe(1);
    expect(load({ ipRanges: [{ range: '10.0.0.0/24' }, { range: 'fd00::/64' }] }, { cniVersion: '0.2.0' }).ranges).toHaveLength(2);
  });
});
