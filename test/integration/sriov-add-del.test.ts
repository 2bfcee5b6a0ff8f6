// sriov with the BUILT executable on the SR-IOV rig (a PF with 4 VFs, see helpers/sriov-rig): ADD with
// every field, what the pod and the PF's VF table show, DEL putting everything back; the older
// `master` form; and DEL in the ways pods really die.
import { describe, expect, it } from 'vitest';
import { leasesIn } from '../helpers/leases.ts';
import { linksIn, sh } from '../helpers/netns.ts';
import { sriov, useRig } from '../helpers/sriov-rig/fixture.ts';
import type { RigVf } from '../helpers/sriov-rig/rig.ts';

const rig = useRig({ subnet: '10.151.0' });
const ipam = { type: 'whereabouts', range: `${rig.subnet}.0/24`, range_start: `${rig.subnet}.10`, file_store_dir: rig.leaseDir };
const conf = (extra: Record<string, unknown> = {}) => ({ cniVersion: '1.1.0', name: 'sriovnet', type: 'sriov', ipam, ...extra });
const args = (pod: string) => `IgnoreUnknown=1;K8S_POD_NAMESPACE=test;K8S_POD_NAME=${pod}`;
const call = (command: string, id: string, netns: string, config: unknown, extra: { args?: string } = {}) =>
  sriov(rig, { command, config, containerId: id, netns, ifName: 'net1', args: extra.args ?? args(id) });

const CLEAN_ROW = { address: '00:00:00:00:00:00', vlan_list: [{}], rate: { max_tx: 0, min_tx: 0 }, spoofchk: true, link_state: 'auto', trust: false };
const podLink = (netns: string) => (JSON.parse(sh(`nsenter --net=${netns} ip -j -d addr show dev net1`)) as Array<{ address: string; mtu: number; addr_info: Array<{ local: string; prefixlen: number }>; altnames?: string[] }>)[0]!;
const pingable = (netns: string, address: string) => sh(`nsenter --net=${netns} ping -c 1 -W 2 ${address} >/dev/null && echo ok || echo no`).trim() === 'ok';

/** The VF is as the rig made it: clean VF table entry, netdev home under its name, MAC and MTU, no altname. */
function expectPristine(vf: RigVf): void {
  expect(rig.vfTable()[vf.index]).toMatchObject({ vf: vf.index, ...CLEAN_ROW });
  const link = rig.hostNetdev(vf);
  expect(link, `VF ${vf.index} netdev is not in the host`).toBeDefined();
  expect({ name: link!.ifname, mac: link!.address, mtu: link!.mtu, altnames: link!.altnames ?? [] }).toEqual({ name: vf.name, mac: vf.mac, mtu: vf.mtu, altnames: [] });
  expect(rig.sysfsNet(vf)).toEqual([vf.name]);
}

describe('ADD with every field, then DEL', () => {
  const vf = rig.vfs[1]!;
  const every = {
    deviceID: vf.pci, vlan: 100, vlanQoS: 3, vlanProto: '802.1ad', mac: '02:aa:bb:cc:dd:01', spoofchk: 'off', trust: 'on',
    link_state: 'enable', min_tx_rate: 100, max_tx_rate: 1000, logLevel: 'info',
  };

  it('sets each field on the VF table, gives the pod net1 with its address, MAC and MTU, reports pciID at 1.1.0', async () => {
    const netns = rig.pod('every');
    const add = await call('ADD', 'every', netns, conf(every));
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    expect(rig.vfTable()[1]).toEqual({
      vf: 1, link_type: 'ether', address: '02:aa:bb:cc:dd:01', broadcast: 'ff:ff:ff:ff:ff:ff', vlan_list: [{ vlan: 100, qos: 3, protocol: '802.1ad' }],
      tx_rate: 1000, rate: { max_tx: 1000, min_tx: 100 }, spoofchk: false, link_state: 'enable', trust: true, query_rss_en: false,
    });
    expect(add.json).toMatchObject({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'net1', mac: '02:aa:bb:cc:dd:01', mtu: 1500, sandbox: netns, pciID: vf.pci }],
      ips: [{ interface: 0, address: `${rig.subnet}.10/24` }],
    });
    const link = podLink(netns);
    expect(link.address).toBe('02:aa:bb:cc:dd:01');
    expect(link.mtu).toBe(1500);
    expect(link.addr_info).toContainEqual(expect.objectContaining({ local: `${rig.subnet}.10`, prefixlen: 24 }));
    expect(pingable(netns, `${rig.subnet}.1`)).toBe(true);
    expect(rig.hostNetdev(vf)).toBeUndefined();
    expect(rig.sysfsNet(vf)).toEqual([]);
    // Neighbours hear of the new MAC: gratuitous ARP / unsolicited NA on.
    expect(sh(`nsenter --net=${netns} cat /proc/sys/net/ipv4/conf/net1/arp_notify /proc/sys/net/ipv6/conf/net1/ndisc_notify`).split('\n').filter(Boolean)).toEqual(['1', '1']);

    const check = await call('CHECK', 'every', netns, conf({ ...every, prevResult: add.json }));
    expect(check.exitCode, check.stdout).toBe(0);

    const del = await call('DEL', 'every', netns, conf({ ...every, prevResult: add.json }));
    expect(del.exitCode, del.stdout).toBe(0);
    expectPristine(vf);
    expect(linksIn(netns)).toEqual(['lo']);
    expect(leasesIn(rig.leaseDir)).toEqual([]);
  });

  it('at cniVersion 1.0.0 the result has neither pciID nor mtu', async () => {
    const netns = rig.pod('v10');
    const add = await call('ADD', 'v10', netns, conf({ ...every, cniVersion: '1.0.0' }));
    expect(add.exitCode, add.stdout).toBe(0);
    const iface = (add.json?.interfaces as Array<Record<string, unknown>>)[0]!;
    expect(iface).toEqual({ name: 'net1', mac: '02:aa:bb:cc:dd:01', sandbox: netns });
    expect((await call('DEL', 'v10', netns, conf({ ...every, cniVersion: '1.0.0' }))).exitCode).toBe(0);
    expectPristine(vf);
  });

  it('takes the deviceID Multus sends in runtimeConfig, and the MAC from runtimeConfig over CNI_ARGS and config', async () => {
    const netns = rig.pod('rtc');
    const config = conf({ mac: '02:00:00:00:00:0a', runtimeConfig: { deviceID: vf.pci, mac: '02:00:00:00:00:0c' } });
    const add = await call('ADD', 'rtc', netns, config, { args: `${args('rtc')};MAC=02:00:00:00:00:0b` });
    expect(add.exitCode, add.stdout).toBe(0);
    expect(podLink(netns).address).toBe('02:00:00:00:00:0c');
    expect(rig.vfTable()[1]!.address).toBe('02:00:00:00:00:0c');
    expect((await call('DEL', 'rtc', netns, config)).exitCode).toBe(0);
    expectPristine(vf);
  });

  it('DEL puts back a MAC and MTU the pod changed, and drops altnames the VF picked up in the pod', async () => {
    const netns = rig.pod('drift');
    const add = await call('ADD', 'drift', netns, conf({ deviceID: vf.pci }));
    expect(add.exitCode, add.stdout).toBe(0);
    sh(`nsenter --net=${netns} sh -c 'ip link set net1 mtu 1400 && ip link set net1 address 02:de:ad:00:00:01 && ip link property add dev net1 altname podname1'`);
    expect((await call('DEL', 'drift', netns, conf({ deviceID: vf.pci }))).exitCode).toBe(0);
    expectPristine(vf);
  });

  it('a stale altname equal to the pod interface name does not block the next ADD (#445)', async () => {
    sh(`ip link property add dev ${vf.name} altname net1`); // left by an earlier plugin on an altname-keeping kernel
    const netns = rig.pod('alt');
    const add = await call('ADD', 'alt', netns, conf({ deviceID: vf.pci }));
    expect(add.exitCode, add.stdout).toBe(0);
    expect(podLink(netns).altnames ?? []).toEqual([]);
    expect((await call('DEL', 'alt', netns, conf({ deviceID: vf.pci }))).exitCode).toBe(0);
    expectPristine(vf);
  });
});

describe('the older form: master and no deviceID', () => {
  const seed = () => conf({ master: rig.pf, vlan: 7 });

  it('gives each pod a free VF of the PF, VF=N picks one, and DEL frees them', async () => {
    const a = rig.pod('ma');
    const b = rig.pod('mb');
    const c = rig.pod('mc');
    const addA = await call('ADD', 'ma', a, seed());
    const addB = await call('ADD', 'mb', b, seed());
    const addC = await call('ADD', 'mc', c, seed(), { args: `${args('mc')};VF=3` });
    for (const add of [addA, addB, addC]) expect(add.exitCode, add.stdout).toBe(0);
    const pciOf = (add: typeof addA) => (add.json?.interfaces as Array<{ pciID: string }>)[0]!.pciID;
    expect([pciOf(addA), pciOf(addB), pciOf(addC)]).toEqual([rig.vfs[0]!.pci, rig.vfs[1]!.pci, rig.vfs[3]!.pci]);
    expect(rig.vfTable().map((row) => row.vlan_list[0]?.vlan ?? 0)).toEqual([7, 7, 0, 7]);
    expect(pingable(a, (addB.json?.ips as Array<{ address: string }>)[0]!.address.split('/')[0]!)).toBe(true);

    const addD = await call('ADD', 'md', rig.pod('md'), seed(), { args: `${args('md')};VF=3` });
    expect(addD.json).toMatchObject({ code: 11 });
    expect(addD.json?.msg).toMatch(/CNI_ARGS VF = "3".*already allocated/);

    for (const [id, netns] of [['ma', a], ['mb', b], ['mc', c]] as const) expect((await call('DEL', id, netns, seed())).exitCode).toBe(0);
    for (const i of [0, 1, 3]) expectPristine(rig.vfs[i]!);
  });
});

describe('one VF, two pods', () => {
  const vf = rig.vfs[2]!;
  const config = (extra: Record<string, unknown> = {}) => conf({ deviceID: vf.pci, ...extra });

  it('a second ADD of a VF in use fails with "already allocated" and changes nothing', async () => {
    const a = rig.pod('ua');
    expect((await call('ADD', 'ua', a, config({ vlan: 42 }))).exitCode).toBe(0);
    const b = rig.pod('ub');
    const second = await call('ADD', 'ub', b, config({ vlan: 43, mac: '02:00:00:00:00:43' }));
    expect(second.json).toMatchObject({ code: 11 });
    expect(second.json?.msg).toMatch(new RegExp(`deviceID = "${vf.pci}".*already allocated`));
    expect(linksIn(b)).toEqual(['lo']);
    expect(rig.vfTable()[2]!.vlan_list).toEqual([{ vlan: 42 }]);
    expect(linksIn(a)).toContain('net1');
    expect((await call('DEL', 'ua', a, config())).exitCode).toBe(0);
    expectPristine(vf);
  });

  it('the DEL of one pod racing the ADD of the next on its VF: the new pod gets the VF whole, or "already allocated" (#219)', async () => {
    for (let i = 0; i < 6; i++) {
      const a = rig.pod(`ra${i}`);
      const b = rig.pod(`rb${i}`);
      expect((await call('ADD', `ra${i}`, a, config({ vlan: 42, mac: '02:00:00:00:00:42' }))).exitCode).toBe(0);
      const [del, add] = await Promise.all([call('DEL', `ra${i}`, a, config()), call('ADD', `rb${i}`, b, config({ vlan: 43 }))]);
      expect(del.exitCode, del.stdout).toBe(0);
      if (add.exitCode === 0) {
        // Nothing of the old pod's is left on it, and the old pod's DEL did not undo the new one's settings.
        expect(rig.vfTable()[2]).toMatchObject({ address: '00:00:00:00:00:00', vlan_list: [{ vlan: 43 }] });
        expect(linksIn(b)).toContain('net1');
        expect((await call('DEL', `rb${i}`, b, config())).exitCode).toBe(0);
      } else {
        expect(add.json, add.stdout).toMatchObject({ code: 11 });
        expect(add.json?.msg).toMatch(/already allocated/);
        expect(linksIn(b)).toEqual(['lo']);
      }
      expectPristine(vf);
    }
  });

  it('a VF whose pod died without DEL is restored from that pod\'s record and reused; the late DEL leaves the new holder alone (#219)', async () => {
    const old = rig.pod('old');
    expect((await call('ADD', 'old', old, config({ vlan: 42, trust: 'on', mac: '02:00:00:00:00:42' }))).exitCode).toBe(0);
    rig.podNetnsDied(old, ['net1']); // the VF is back in the host as "net1", still with the dead pod's settings
    expect(rig.hostNetdev(vf)?.ifname).toBe('net1');

    const fresh = rig.pod('new');
    const add = await call('ADD', 'new', fresh, config({ vlan: 43 }));
    expect(add.exitCode, add.stdout).toBe(0);
    // Only what the new pod asked for is set: the dead pod's MAC and trust are gone.
    expect(rig.vfTable()[2]).toMatchObject({ address: '00:00:00:00:00:00', vlan_list: [{ vlan: 43 }], trust: false });

    const late = await call('DEL', 'old', old, config({ vlan: 42 }));
    expect(late.exitCode, late.stdout).toBe(0);
    expect(rig.vfTable()[2]!.vlan_list).toEqual([{ vlan: 43 }]);
    expect(linksIn(fresh)).toContain('net1');

    expect((await call('DEL', 'new', fresh, config())).exitCode).toBe(0);
    expectPristine(vf); // with its host name again, not the dead pod's "net1"
  });
});

describe('DEL however the pod went', () => {
  const vf = rig.vfs[3]!;
  const config = conf({ deviceID: vf.pci, vlan: 5, mac: '02:00:00:00:05:05' });

  it('after the pod netns was deleted, DEL repairs the VF the kernel returned under the pod name (#126)', async () => {
    const netns = rig.pod('gone');
    expect((await call('ADD', 'gone', netns, config)).exitCode).toBe(0);
    rig.podNetnsDied(netns, ['net1']);
    expect(rig.sysfsNet(vf)).toEqual(['net1']);
    const del = await call('DEL', 'gone', netns, config);
    expect(del.exitCode, del.stdout).toBe(0);
    expectPristine(vf);
    expect(leasesIn(rig.leaseDir).filter((l) => l.containerID === 'gone')).toEqual([]);
    const again = await call('DEL', 'gone', netns, config);
    expect(again.exitCode, again.stdout).toBe(0);
  });

  it('succeeds with no record, with no netns, and twice in a row', async () => {
    for (const netns of ['', '/run/netns/never-existed']) {
      const out = await sriov(rig, { command: 'DEL', config, containerId: 'nothing', netns, ifName: 'net1' });
      expect(out.exitCode, out.stdout).toBe(0);
    }
    const netns = rig.pod('twice');
    expect((await call('ADD', 'twice', netns, config)).exitCode).toBe(0);
    for (let i = 0; i < 2; i++) expect((await call('DEL', 'twice', netns, config)).exitCode).toBe(0);
    expectPristine(vf);
  });
});
