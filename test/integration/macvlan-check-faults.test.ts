// CHECK and the failure paths of ADD and DEL, with the BUILT executable in real namespaces: a failed
// ADD leaves no link and no lease, and DEL succeeds whatever is already gone.
import { describe, expect, it } from 'vitest';
import { labWithMaster } from '../helpers/fixture.ts';
import { cni } from '../helpers/exec.ts';
import { leasesIn } from '../helpers/leases.ts';
import { linksIn, sh } from '../helpers/netns.ts';

const { lab, dir: store, master } = labWithMaster('f', 'faults');

const conf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.1.0', name: 'faults', type: 'macvlan', master,
  ipam: { type: 'whereabouts', range: '10.71.0.0/24', file_store_dir: store, routes: [{ dst: '198.51.100.0/24' }], gateway: '10.71.0.1' },
  ...extra,
});
const call = (command: string, netns: string, id: string, config: unknown = conf()) =>
  cni('macvlan', { command, config, containerId: id, netns, ifName: 'net1', args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=f;K8S_POD_NAME=${id}` });
const hostMacvlans = () => sh('ip -d -j link show').match(/"info_kind":"macvlan"/g)?.length ?? 0;

describe('CHECK', () => {
  it('passes on a fresh ADD and fails, naming the cause, after each kind of drift', async () => {
    const netns = lab.netns('chk');
    const add = await call('ADD', netns, 'chk');
    expect(add.exitCode, add.stdout).toBe(0);
    const withPrev = conf({ prevResult: add.json });
    expect((await call('CHECK', netns, 'chk', withPrev)).exitCode).toBe(0);

    sh(`nsenter --net=${netns} ip route del 198.51.100.0/24`);
    expect((await call('CHECK', netns, 'chk', withPrev)).json?.msg).toMatch(/route to 198\.51\.100\.0\/24.*missing/);
    sh(`nsenter --net=${netns} ip route add 198.51.100.0/24 via 10.71.0.1 dev net1`);

    sh(`nsenter --net=${netns} ip link set net1 type macvlan mode vepa`);
    expect((await call('CHECK', netns, 'chk', withPrev)).json?.msg).toMatch(/mode vepa, not bridge/);
    sh(`nsenter --net=${netns} ip link set net1 type macvlan mode bridge`);

    const address = (add.json?.ips as Array<{ address: string }>)[0]!.address;
    sh(`nsenter --net=${netns} ip addr del ${address} dev net1`);
    expect((await call('CHECK', netns, 'chk', withPrev)).json?.msg).toMatch(new RegExp(`lacks address ${address}`));

    sh(`nsenter --net=${netns} ip link del net1`);
    expect((await call('CHECK', netns, 'chk', withPrev)).json?.msg).toMatch(/net1 not found/);
    expect((await call('DEL', netns, 'chk', withPrev)).exitCode).toBe(0);
  });

  it('requires prevResult', async () => {
    const netns = lab.netns('chp');
    const out = await call('CHECK', netns, 'chp');
    expect(out.json?.msg).toMatch(/prevResult = missing/);
  });
});

describe('a failed ADD leaves nothing behind', () => {
  it('IPAM failure: no link in the pod or on the host', async () => {
    const netns = lab.netns('ipf');
    const before = hostMacvlans();
    const out = await call('ADD', netns, 'ipf', conf({ ipam: { type: 'whereabouts', range: 'not-a-range', file_store_dir: store } }));
    expect(out.exitCode).not.toBe(0);
    expect(out.json?.msg).toMatch(/not-a-range/);
    expect(linksIn(netns)).toEqual(['lo']);
    expect(hostMacvlans()).toBe(before);
  });

  it('ifname already in the pod: error, the existing link untouched, no macvlan, lease released', async () => {
    const netns = lab.netns('dup');
    sh(`ip -n ${lab.nameOf(netns)} link add net1 type veth peer name dupx`);
    const out = await call('ADD', netns, 'dup');
    expect(out.exitCode).not.toBe(0);
    expect(out.json?.msg).toMatch(/net1/);
    expect(linksIn(netns).sort()).toEqual(['dupx', 'lo', 'net1']);
    expect(sh(`nsenter --net=${netns} ip -d link show net1`)).toMatch(/veth/);
    expect(leasesIn(store).filter((l) => l.containerID === 'dup')).toEqual([]);
    // The runtime's DEL that follows must not take the other attachment's net1 with it.
    expect((await call('DEL', netns, 'dup')).exitCode).toBe(0);
    expect(sh(`nsenter --net=${netns} ip -d link show net1`)).toMatch(/veth/);
  });

  it('a cniVersion 0.2.0 config without ipam is refused before anything is made', async () => {
    const netns = lab.netns('v02');
    const out = await call('ADD', netns, 'v02', { cniVersion: '0.2.0', name: 'faults', type: 'macvlan', master });
    expect(out.json).toMatchObject({ code: 1 });
    expect(linksIn(netns)).toEqual(['lo']);
  });

  it('a bad master: error naming it, nothing left', async () => {
    const netns = lab.netns('bm');
    const out = await call('ADD', netns, 'bm', conf({ master: 'nosuchmaster0' }));
    expect(out.json).toMatchObject({ code: 7 });
    expect(out.json?.msg).toMatch(/master = "nosuchmaster0"/);
    expect(leasesIn(store).filter((l) => l.containerID === 'bm')).toEqual([]);
    expect(linksIn(netns)).toEqual(['lo']);
  });
});

describe('DEL always succeeds when there is nothing left to clean', () => {
  it('the netns was deleted before DEL: success, lease released', async () => {
    const netns = lab.netns('gone');
    expect((await call('ADD', netns, 'gone')).exitCode).toBe(0);
    expect(leasesIn(store).some((l) => l.containerID === 'gone')).toBe(true);
    sh(`ip netns del ${lab.nameOf(netns)}`);
    expect((await call('DEL', netns, 'gone')).exitCode).toBe(0);
    expect(leasesIn(store).some((l) => l.containerID === 'gone')).toBe(false);
  });

  it('the master was deleted before DEL: success, link and lease gone', async () => {
    const own = lab.veth('gm');
    const netns = lab.netns('gm');
    expect((await call('ADD', netns, 'gm', conf({ master: own }))).exitCode).toBe(0);
    sh(`ip link del ${own}`);
    expect((await call('DEL', netns, 'gm', conf({ master: own }))).exitCode).toBe(0);
    expect(leasesIn(store).some((l) => l.containerID === 'gm')).toBe(false);
    expect(linksIn(netns)).toEqual(['lo']);
  });

  it('empty CNI_NETNS, a repeated DEL, and a DEL that never had an ADD', async () => {
    const netns = lab.netns('rep');
    expect((await call('ADD', netns, 'rep')).exitCode).toBe(0);
    expect((await call('DEL', '', 'rep')).exitCode).toBe(0);
    expect((await call('DEL', netns, 'rep')).exitCode).toBe(0);
    expect((await call('DEL', netns, 'rep')).exitCode).toBe(0);
    expect((await call('DEL', netns, 'never-added')).exitCode).toBe(0);
    expect(linksIn(netns)).toEqual(['lo']);
  });
});

describe('names that could smuggle commands', () => {
  it('an interface name with shell metacharacters is used literally, never run', async () => {
    const netns = lab.netns('meta');
    const ifName = 'n;echo$(id)';
    const out = await cni('macvlan', { command: 'ADD', config: conf(), containerId: 'meta', netns, ifName, args: 'K8S_POD_NAMESPACE=f;K8S_POD_NAME=meta' });
    expect(out.exitCode, out.stdout).toBe(0);
    expect(linksIn(netns)).toContain(ifName);
    expect((await cni('macvlan', { command: 'DEL', config: conf(), containerId: 'meta', netns, ifName })).exitCode).toBe(0);
    expect(linksIn(netns)).toEqual(['lo']);
  });

  it('a legal interface name iproute2 batches cannot carry ("#") is refused up front; DEL still succeeds', async () => {
    const netns = lab.netns('hash');
    const add = await cni('macvlan', { command: 'ADD', config: conf(), containerId: 'hash', netns, ifName: 'net#1' });
    expect(add.json).toMatchObject({ code: 7 });
    expect(add.json?.msg).toMatch(/"net#1"/);
    expect(linksIn(netns)).toEqual(['lo']);
    expect((await cni('macvlan', { command: 'DEL', config: conf(), containerId: 'hash', netns, ifName: 'net#1' })).exitCode).toBe(0);
  });

  it('a config ADD refused (bad mode) can still be deleted', async () => {
    const netns = lab.netns('badmode');
    const bad = conf({ mode: 'Bridge' });
    expect((await call('ADD', netns, 'badmode', bad)).json).toMatchObject({ code: 7 });
    expect((await call('DEL', netns, 'badmode', bad)).exitCode).toBe(0);
  });

  it('a master holding white space is refused before anything runs', async () => {
    const netns = lab.netns('sp');
    const out = await call('ADD', netns, 'sp', conf({ master: `${master}\nlink del lo` }));
    expect(out.json).toMatchObject({ code: 7 });
    expect(out.json?.msg).toMatch(/master = .*not an interface name/);
  });
});
