// macvlan with the BUILT executable in real network namespaces: modes, MTU, MAC precedence, master
// selection. IPAM is Underlay's own on the file store, in a temporary directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cni, requireBuild } from '../helpers/exec.ts';
import { Lab, linksIn, sh, tryRun } from '../helpers/netns.ts';

const lab = new Lab();
let store: string;

beforeAll(() => {
  requireBuild();
  store = mkdtempSync(join(tmpdir(), 'underlay-modes-'));
});
afterAll(() => {
  lab.cleanup();
  rmSync(store, { recursive: true, force: true });
});

function conf(extra: Record<string, unknown>, range = '10.61.0.0/24'): Record<string, unknown> {
  return { cniVersion: '1.0.0', name: 'modes', type: 'macvlan', ipam: { type: 'whereabouts', range, file_store_dir: store }, ...extra };
}

const pingable = (fromNetns: string, address: string): boolean => tryRun(`nsenter --net=${fromNetns} ping -c 1 -W 1 ${address.split('/')[0]}`).status === 0;

async function addPod(name: string, config: Record<string, unknown>, extra: { args?: string } = {}) {
  const netns = lab.netns(name);
  const out = await cni('macvlan', { command: 'ADD', config, containerId: `c-${name}`, netns, ifName: 'net1', args: extra.args ?? `IgnoreUnknown=1;K8S_POD_NAMESPACE=test;K8S_POD_NAME=${name}` });
  return { netns, out, address: ((out.json?.ips as Array<{ address: string }> | undefined)?.[0]?.address ?? '') };
}

describe('modes', () => {
  it('two bridge-mode pods on one master ping each other', async () => {
    const master = lab.veth('br');
    const a = await addPod('ba', conf({ master }));
    const b = await addPod('bb', conf({ master }));
    expect(a.out.exitCode, a.out.stdout).toBe(0);
    expect(b.out.exitCode, b.out.stdout).toBe(0);
    expect(a.address).not.toBe(b.address);
    expect(pingable(a.netns, b.address)).toBe(true);
    expect(pingable(b.netns, a.address)).toBe(true);
    // Neighbours learn a reused address's new MAC at once: gratuitous ARP / unsolicited NA are on.
    expect(sh(`nsenter --net=${a.netns} cat /proc/sys/net/ipv4/conf/net1/arp_notify`).trim()).toBe('1');
    expect(sh(`nsenter --net=${a.netns} cat /proc/sys/net/ipv6/conf/net1/ndisc_notify`).trim()).toBe('1');
  });

  it('private-mode pods cannot reach each other', async () => {
    const master = lab.veth('pr');
    const a = await addPod('pa', conf({ master, mode: 'private' }, '10.62.0.0/24'));
    const b = await addPod('pb', conf({ master, mode: 'private' }, '10.62.0.0/24'));
    expect(a.out.exitCode).toBe(0);
    expect(b.out.exitCode).toBe(0);
    expect(sh(`nsenter --net=${a.netns} ip -d link show net1`)).toMatch(/macvlan mode private/);
    expect(pingable(a.netns, b.address)).toBe(false);
  });

  it('passthru takes the master whole: a second macvlan on it is refused and leaves nothing', async () => {
    const master = lab.veth('pt');
    const a = await addPod('ta', conf({ master, mode: 'passthru' }, '10.63.0.0/24'));
    expect(a.out.exitCode, a.out.stdout).toBe(0);
    expect(sh(`nsenter --net=${a.netns} ip -d link show net1`)).toMatch(/macvlan mode passthru/);
    const b = await addPod('tb', conf({ master, mode: 'bridge' }, '10.63.0.0/24'));
    expect(b.out.exitCode).not.toBe(0);
    expect(b.out.json?.msg).toMatch(new RegExp(master));
    expect(linksIn(b.netns)).toEqual(['lo']);
  });

  it('an mtu above the master\'s is refused, naming both values', async () => {
    const master = lab.veth('mt');
    sh(`ip link set ${master} mtu 1400`);
    const a = await addPod('ma', conf({ master, mtu: 9000 }));
    expect(a.out.json).toMatchObject({ code: 7 });
    expect(a.out.json?.msg).toMatch(/mtu = 9000.*1400/);
    expect(linksIn(a.netns)).toEqual(['lo']);
    const ok = await addPod('mb', conf({ master, mtu: 1300 }));
    expect(ok.out.exitCode).toBe(0);
    expect(sh(`nsenter --net=${ok.netns} ip -j link show net1`)).toMatch(/"mtu":1300/);
  });

  it('an unknown mode is refused, naming it', async () => {
    const master = lab.veth('um');
    const a = await addPod('ua', conf({ master, mode: 'loose' }));
    expect(a.out.json).toMatchObject({ code: 7 });
    expect(a.out.json?.msg).toMatch(/mode = "loose"/);
  });
});

describe('MAC precedence: runtimeConfig > CNI_ARGS > config', () => {
  const configMac = '02:00:00:00:00:0a';
  const argsMac = '02:00:00:00:00:0b';
  const runtimeMac = '02:00:00:00:00:0c';
  const cases: Array<[string, Record<string, unknown>, string, string]> = [
    ['config only', { mac: configMac }, 'IgnoreUnknown=1', configMac],
    ['CNI_ARGS over config', { mac: configMac }, `IgnoreUnknown=1;MAC=${argsMac}`, argsMac],
    ['runtimeConfig over both', { mac: configMac, runtimeConfig: { mac: runtimeMac } }, `IgnoreUnknown=1;MAC=${argsMac}`, runtimeMac],
  ];
  for (const [what, extra, args, expected] of cases) {
    it(what, async () => {
      const master = lab.veth(`m${expected.slice(-1)}`);
      const pod = await addPod(`mac${expected.slice(-1)}`, conf({ master, ...extra }, '10.64.0.0/24'), { args });
      expect(pod.out.exitCode, pod.out.stdout).toBe(0);
      expect((pod.out.json?.interfaces as Array<{ mac: string }>)[0]?.mac).toBe(expected);
      expect(sh(`nsenter --net=${pod.netns} ip -j link show net1`)).toContain(`"address":"${expected}"`);
    });
  }

  it('a malformed MAC in CNI_ARGS is refused, naming the source and value', async () => {
    const master = lab.veth('mbad');
    const pod = await addPod('macbad', conf({ master }), { args: 'IgnoreUnknown=1;MAC=zz:00' });
    expect(pod.out.json?.msg).toMatch(/CNI_ARGS MAC = "zz:00"/);
  });
});

describe('where the master is', () => {
  it('linkInContainer finds the master inside the pod namespace', async () => {
    const netns = lab.netns('lic');
    const inner = lab.veth('in', lab.nameOf(netns));
    const out = await cni('macvlan', {
      command: 'ADD', config: conf({ master: inner, linkInContainer: true }, '10.65.0.0/24'),
      containerId: 'c-lic', netns, ifName: 'net1', args: 'K8S_POD_NAMESPACE=t;K8S_POD_NAME=lic',
    });
    expect(out.exitCode, out.stdout).toBe(0);
    expect(sh(`nsenter --net=${netns} ip -d link show net1`)).toMatch(new RegExp(`net1@${inner}[\\s\\S]*macvlan mode bridge`));
    const del = await cni('macvlan', { command: 'DEL', config: conf({ master: inner, linkInContainer: true }, '10.65.0.0/24'), containerId: 'c-lic', netns, ifName: 'net1' });
    expect(del.exitCode).toBe(0);
    expect(linksIn(netns)).not.toContain('net1');
  });

  it('without master, the interface of the default route is used', async () => {
    const host = lab.netns('host');
    const hostName = lab.nameOf(host);
    const uplink = lab.veth('up', hostName);
    sh(`ip -n ${hostName} addr add 192.0.2.10/24 dev ${uplink} && ip -n ${hostName} route add default via 192.0.2.1`);
    const pod = lab.netns('dr');
    const out = await cni('macvlan', { command: 'ADD', config: conf({}, '10.66.0.0/24'), containerId: 'c-dr', netns: pod, ifName: 'net1', hostNetns: hostName });
    expect(out.exitCode, out.stdout + out.stderr).toBe(0);
    expect(sh(`nsenter --net=${pod} ip -d link show net1`)).toMatch(/macvlan mode bridge/);
    const parent = (JSON.parse(sh(`nsenter --net=${pod} ip -j link show net1`)) as Array<{ link_index: number }>)[0]!.link_index;
    expect((JSON.parse(sh(`ip -n ${hostName} -j link show ${uplink}`)) as Array<{ ifindex: number }>)[0]!.ifindex).toBe(parent);
  });
});

describe('IPv6', () => {
  const v6 = (address: string) => ({ type: 'static', addresses: [{ address, gateway: 'fd00:61::1' }], routes: [{ dst: '::/0' }] });

  it('with an IPv6 gateway, ADD returns once duplicate address detection has settled', async () => {
    const master = lab.veth('v6');
    const a = await addPod('v6a', { cniVersion: '1.0.0', name: 'v6', type: 'macvlan', master, ipam: v6('fd00:61::5/64') });
    expect(a.out.exitCode, a.out.stdout).toBe(0);
    expect(sh(`nsenter --net=${a.netns} ip -6 -o addr show dev net1 tentative`)).toBe('');
    expect(sh(`nsenter --net=${a.netns} ip -6 route show default`)).toMatch(/via fd00:61::1 dev net1/);

    // A second pod given the same address: DAD finds the duplicate, the ADD fails and leaves nothing.
    const b = await addPod('v6b', { cniVersion: '1.0.0', name: 'v6', type: 'macvlan', master, ipam: v6('fd00:61::5/64') });
    expect(b.out.exitCode).not.toBe(0);
    expect(b.out.json?.msg).toMatch(/already in use on the network \(DAD failed\)/);
    expect(linksIn(b.netns)).toEqual(['lo']);
  });
});
