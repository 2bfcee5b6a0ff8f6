// Interop and parity with Debian's reference plugins (/usr/lib/cni, containernetworking-plugins):
// our macvlan with their host-local and static IPAM, their macvlan with our IPAM, a chain with their
// tuning plugin, and the shape of our ADD result against their macvlan's for each cniVersion.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { labWithMaster } from '../helpers/fixture.ts';
import { chainAdd, chainCheck, chainDel } from '../helpers/chain.ts';
import { BIN, cni, REFERENCE_BIN } from '../helpers/exec.ts';
import { linksIn, sh } from '../helpers/netns.ts';

const { lab, dir, master } = labWithMaster('io', 'interop');

const ours = join(BIN, 'macvlan');
const theirs = join(REFERENCE_BIN, 'macvlan');
const hostLocal = (subnet: string) => ({ type: 'host-local', subnet, dataDir: join(dir, 'host-local'), routes: [{ dst: '0.0.0.0/0' }] });
const whereabouts = (range: string) => ({ type: 'whereabouts', range, file_store_dir: join(dir, 'leases'), gateway: range.replace(/0\/\d+$/, '1') });

async function addDel(plugin: string, ipam: Record<string, unknown>, id: string, version = '1.0.0') {
  const netns = lab.netns(id);
  const config = { cniVersion: version, name: 'interop', type: 'macvlan', master, ipam };
  const env = { containerId: id, netns, ifName: 'net1', args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=io;K8S_POD_NAME=${id}`, path: `${BIN}:${REFERENCE_BIN}` };
  const add = await cni(plugin, { ...env, command: 'ADD', config });
  const addresses = sh(`nsenter --net=${netns} ip -j addr show`);
  const del = await cni(plugin, { ...env, command: 'DEL', config: { ...config, prevResult: add.json } });
  return { add, del, addresses, netns };
}

describe('our macvlan with the reference IPAMs', () => {
  it('host-local', async () => {
    const { add, del, addresses } = await addDel(ours, hostLocal('10.72.0.0/24'), 'hl');
    expect(add.exitCode, add.stdout).toBe(0);
    expect(add.json).toMatchObject({ ips: [{ address: '10.72.0.2/24', gateway: '10.72.0.1', interface: 0 }], routes: [{ dst: '0.0.0.0/0' }] });
    expect(addresses).toContain('"local":"10.72.0.2"');
    expect(del.exitCode).toBe(0);
  });

  it('static', async () => {
    const ipam = { type: 'static', addresses: [{ address: '10.73.0.9/24', gateway: '10.73.0.1' }], routes: [{ dst: '203.0.113.0/24' }] };
    const { add, del, addresses, netns } = await addDel(ours, ipam, 'st');
    expect(add.exitCode, add.stdout).toBe(0);
    expect(add.json).toMatchObject({ ips: [{ address: '10.73.0.9/24', gateway: '10.73.0.1' }] });
    expect(addresses).toContain('"local":"10.73.0.9"');
    expect(del.exitCode).toBe(0);
    expect(linksIn(netns)).toEqual(['lo']);
  });

  it('a failing reference IPAM\'s error comes back intact', async () => {
    const { add } = await addDel(ours, { type: 'host-local' }, 'hlbad');
    expect(add.exitCode).not.toBe(0);
    expect(add.json?.msg).toMatch(/subnet|range/i);
  });
});

describe('the reference macvlan with our IPAM', () => {
  it('allocates, configures and releases', async () => {
    const { add, del, addresses } = await addDel(theirs, whereabouts('10.74.0.0/24'), 'rw');
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    expect(add.json).toMatchObject({ ips: [{ address: '10.74.0.1/24'.replace('.1/', '.2/') }] });
    expect(addresses).toContain('"local":"10.74.0.2"');
    expect(del.exitCode).toBe(0);
  });
});

describe('a conflist chaining our macvlan with the reference tuning plugin', () => {
  it('passes prevResult through, CHECK passes, DEL cleans up', async () => {
    const netns = lab.netns('tun');
    const list = {
      cniVersion: '1.0.0', name: 'chain',
      plugins: [
        { type: 'macvlan', master, ipam: whereabouts('10.75.0.0/24') },
        { type: 'tuning', sysctl: { 'net.ipv4.conf.net1.arp_filter': '1' } },
      ],
    };
    const env = { containerId: 'tun', netns, ifName: 'net1', args: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=io;K8S_POD_NAME=tun' };
    const { result, failed } = await chainAdd(list, env);
    expect(failed?.stdout).toBeUndefined();
    expect(result).toMatchObject({ interfaces: [{ name: 'net1', sandbox: netns }], ips: [{ address: '10.75.0.2/24' }] });
    expect(sh(`nsenter --net=${netns} cat /proc/sys/net/ipv4/conf/net1/arp_filter`).trim()).toBe('1');
    expect(await chainCheck(list, env, result)).toBeUndefined();
    expect(await chainDel(list, env, result)).toBeUndefined();
    expect(linksIn(netns)).toEqual(['lo']);
  });
});

/** The structure of a result: keys and value types, with addresses and MACs abstracted away. */
function shape(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(shape);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, k === 'cniVersion' ? v : shape(v)]));
  return typeof value;
}

describe('parity of the ADD result with the reference macvlan', () => {
  for (const version of ['0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0']) {
    it(`cniVersion ${version}: same keys and structure`, async () => {
      const a = await addDel(ours, hostLocal('10.76.0.0/24'), `po${version.replaceAll('.', '')}`, version);
      const b = await addDel(theirs, hostLocal('10.76.0.0/24'), `pt${version.replaceAll('.', '')}`, version);
      expect(a.add.exitCode, a.add.stdout).toBe(0);
      expect(b.add.exitCode, b.add.stdout).toBe(0);
      expect(Object.keys(a.add.json!)).toEqual(Object.keys(b.add.json!));
      expect(shape(a.add.json)).toEqual(shape(b.add.json));
    });
  }

  it('cniVersion 1.1.0 (newer than the reference): the 1.0.0 structure', async () => {
    // host-local 1.1 predates spec 1.1.0, so both use our IPAM here.
    const a = await addDel(ours, whereabouts('10.77.0.0/24'), 'po110', '1.1.0');
    const b = await addDel(theirs, whereabouts('10.77.0.0/24'), 'pt110', '1.0.0');
    expect(a.add.exitCode, a.add.stdout).toBe(0);
    expect({ ...(shape(a.add.json) as object), cniVersion: '' }).toEqual({ ...(shape(b.add.json) as object), cniVersion: '' });
  });
});

describe('chained after another interface plugin', () => {
  it('ADD passes prevResult on, with its own interface appended and indexed', async () => {
    const netns = lab.netns('prv');
    const prevResult = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', mac: '02:00:00:00:01:01', sandbox: netns }],
      ips: [{ address: '192.0.2.5/24', gateway: '192.0.2.1', interface: 0 }],
      routes: [{ dst: '0.0.0.0/0', gw: '192.0.2.1' }],
    };
    const config = { cniVersion: '1.0.0', name: 'interop', type: 'macvlan', master, ipam: whereabouts('10.84.0.0/24'), prevResult };
    const add = await cni('macvlan', { command: 'ADD', config, containerId: 'prv', netns, ifName: 'net1', args: 'K8S_POD_NAMESPACE=io;K8S_POD_NAME=prv' });
    expect(add.exitCode, add.stdout).toBe(0);
    expect(add.json).toMatchObject({
      interfaces: [{ name: 'eth0' }, { name: 'net1', sandbox: netns }],
      ips: [{ address: '192.0.2.5/24', interface: 0 }, { address: '10.84.0.2/24', interface: 1 }],
      routes: [{ dst: '0.0.0.0/0', gw: '192.0.2.1' }],
    });
  });
});
