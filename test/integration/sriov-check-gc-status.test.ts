// sriov's CHECK (a real one: sriov-cni's does nothing), GC, STATUS and `underlay doctor`, with the
// BUILT executable on the SR-IOV rig.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { BIN } from '../helpers/exec.ts';
import { leasesIn } from '../helpers/leases.ts';
import { sh } from '../helpers/netns.ts';
import { sriov, useRig } from '../helpers/sriov-rig/fixture.ts';

const rig = useRig({ subnet: '10.154.0' });
const ipam = { type: 'whereabouts', range: `${rig.subnet}.0/24`, range_start: `${rig.subnet}.10`, gateway: `${rig.subnet}.1`, routes: [{ dst: '198.51.100.0/24' }], file_store_dir: rig.leaseDir };
const conf = (extra: Record<string, unknown>) => ({ cniVersion: '1.1.0', name: 'checknet', type: 'sriov', ipam, ...extra });
const call = (command: string, id: string, netns: string, config: unknown) =>
  sriov(rig, { command, config, containerId: id, netns, ifName: 'net1', args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=chk;K8S_POD_NAME=${id}` });

interface DoctorVf { index: number; pci: string; netdev?: string; netdevIn?: string; adminMac?: string; vlan?: { id: number }; trust?: boolean; pod?: { netns: string; name?: string }; issues: string[] }
async function doctor(): Promise<{ code: number; text: string; vfs: DoctorVf[] }> {
  const run = async (args: string[]) => {
    try {
      return { code: 0, out: (await promisify(execFile)(join(BIN, 'underlay'), args, { env: rig.env() })).stdout };
    } catch (err) {
      const e = err as { code: number; stdout: string };
      return { code: e.code, out: e.stdout };
    }
  };
  const json = await run(['doctor', '--json']);
  const text = await run(['doctor']);
  expect(text.code).toBe(json.code);
  const report = JSON.parse(json.out) as { pfs: Array<{ name: string; vfs: DoctorVf[] }> };
  expect(report.pfs.map((pf) => pf.name)).toEqual([rig.pf]);
  return { code: json.code, text: text.out, vfs: report.pfs[0]!.vfs };
}

describe('CHECK', () => {
  const vf = rig.vfs[0]!;
  const config = conf({ deviceID: vf.pci, vlan: 100, trust: 'on', mac: '02:00:00:00:01:00' });

  it('passes on a fresh ADD and fails, naming the cause, after each kind of drift', async () => {
    const netns = rig.pod('chk');
    const add = await call('ADD', 'chk', netns, config);
    expect(add.exitCode, add.stdout).toBe(0);
    const withPrev = { ...config, prevResult: add.json };
    const check = async () => (await call('CHECK', 'chk', netns, withPrev)).json?.msg;
    expect((await call('CHECK', 'chk', netns, withPrev)).exitCode).toBe(0);

    rig.ip(`link set dev ${rig.pf} vf 0 vlan 9`);
    expect(await check()).toMatch(/VF 0 of .* has vlan 9 \(wanted 100\)/);
    rig.ip(`link set dev ${rig.pf} vf 0 vlan 100`);

    rig.ip(`link set dev ${rig.pf} vf 0 trust off`);
    expect(await check()).toMatch(/trust false \(wanted true\)/);
    rig.ip(`link set dev ${rig.pf} vf 0 trust on`);

    sh(`nsenter --net=${netns} ip link set net1 address 02:00:00:00:01:99`);
    expect(await check()).toMatch(/MAC 02:00:00:00:01:99, not 02:00:00:00:01:00/);
    sh(`nsenter --net=${netns} ip link set net1 address 02:00:00:00:01:00`);

    sh(`nsenter --net=${netns} ip route del 198.51.100.0/24`);
    expect(await check()).toMatch(/route to 198\.51\.100\.0\/24.*missing/);
    sh(`nsenter --net=${netns} ip route add 198.51.100.0/24 via ${rig.subnet}.1 dev net1`);
    expect((await call('CHECK', 'chk', netns, withPrev)).exitCode).toBe(0);

    rig.ip(`-n ${netns.split('/').pop()} link set dev net1 netns ${rig.hostRef}`);
    expect(await check()).toMatch(/netdev of VF 0000:5e:02\.0 is in the host as net1, not in the pod/);
    rig.ip(`link set dev net1 netns ${netns}`);

    expect((await call('DEL', 'chk', netns, config)).exitCode).toBe(0);
    expect(await check()).toMatch(/no record of an sriov ADD/);
  });

  it('requires prevResult', async () => {
    const out = await call('CHECK', 'noprev', rig.pod('noprev'), config);
    expect(out.json?.msg).toMatch(/prevResult = missing/);
  });
});

describe('GC', () => {
  it('keeps exactly the valid attachments: the others lose their lease and their VF is put back', async () => {
    const keep = rig.pod('keep');
    const drop = rig.pod('drop');
    const keepConf = conf({ deviceID: rig.vfs[1]!.pci, vlan: 11 });
    const dropConf = conf({ deviceID: rig.vfs[2]!.pci, vlan: 12 });
    expect((await call('ADD', 'keep', keep, keepConf)).exitCode).toBe(0);
    expect((await call('ADD', 'drop', drop, dropConf)).exitCode).toBe(0);
    const gc = await sriov(rig, { command: 'GC', config: conf({ 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'net1' }] }) });
    expect(gc.exitCode, gc.stdout).toBe(0);
    expect(gc.stdout).toBe('');
    expect(leasesIn(rig.leaseDir).map((l) => l.containerID)).toEqual(['keep']);
    expect(rig.vfTable()[2]).toMatchObject({ vlan_list: [{}] });
    expect(rig.hostNetdev(rig.vfs[2]!)?.ifname).toBe(rig.vfs[2]!.name);
    expect(rig.vfTable()[1]).toMatchObject({ vlan_list: [{ vlan: 11 }] });
    expect((await call('DEL', 'keep', keep, keepConf)).exitCode).toBe(0);
  });
});

describe('STATUS', () => {
  it('is ready with the PF present, and says 50 when the PF or the VF is gone', async () => {
    expect((await sriov(rig, { command: 'STATUS', config: conf({ master: rig.pf }) })).exitCode).toBe(0);
    expect((await sriov(rig, { command: 'STATUS', config: conf({ deviceID: rig.vfs[0]!.pci }) })).exitCode).toBe(0);
    const noPf = await sriov(rig, { command: 'STATUS', config: conf({ master: 'gonepf0' }) });
    expect(noPf.json).toMatchObject({ code: 50 });
    expect(noPf.json?.msg).toMatch(/master "gonepf0": no such PF on this node/);
    const noVf = await sriov(rig, { command: 'STATUS', config: conf({ deviceID: '0000:5e:07.0' }) });
    expect(noVf.json).toMatchObject({ code: 50 });
  });

  it('passes on the IPAM\'s answer: 50 when the pool is exhausted', async () => {
    const tiny = { ...conf({ master: rig.pf }), ipam: { type: 'whereabouts', range: '10.154.9.0/30', file_store_dir: rig.leaseDir } };
    const netns = [rig.pod('st1'), rig.pod('st2')];
    for (const [i, ns] of netns.entries()) expect((await call('ADD', `st${i}`, ns, tiny)).exitCode).toBe(0);
    expect((await sriov(rig, { command: 'STATUS', config: tiny })).json).toMatchObject({ code: 50 });
    for (const [i, ns] of netns.entries()) expect((await call('DEL', `st${i}`, ns, tiny)).exitCode).toBe(0);
  });
});

describe('underlay doctor', () => {
  it('shows each VF with the pod holding it, flags a VF left dirty and a lost one, and nothing once repaired', async () => {
    const clean = await doctor();
    expect(clean.code, clean.text).toBe(0);
    expect(clean.text).toMatch(new RegExp(`PF ${rig.pf} \\(${rig.pfPci}\\)  driver mlx5_core  link UP  VFs 4 of 8`));
    expect(clean.text).toContain('No VF needs attention.');

    const held = rig.pod('held');
    const dies = rig.pod('dies');
    expect((await call('ADD', 'held', held, conf({ deviceID: rig.vfs[0]!.pci, vlan: 21, trust: 'on' }))).exitCode).toBe(0);
    expect((await call('ADD', 'dies', dies, conf({ deviceID: rig.vfs[1]!.pci, vlan: 22, mac: '02:00:00:00:22:22' }))).exitCode).toBe(0);
    rig.podNetnsDied(dies, ['net1']);
    rig.ip(`link set dev ${rig.vfs[3]!.name} netns ${rig.wire}`); // lost: in no pod, no record

    const report = await doctor();
    expect(report.code).toBe(1);
    const [v0, v1, , v3] = report.vfs;
    expect(v0).toMatchObject({ pci: rig.vfs[0]!.pci, netdev: 'net1', netdevIn: 'pod', vlan: { id: 21 }, trust: true, pod: { netns: held, name: 'chk/held' }, issues: [] });
    expect(v1!.issues.join('\n')).toMatch(/allocation marker names .*dies, which is gone/);
    expect(v1!.issues.join('\n')).toMatch(/left dirty by dies\/net1 with no pod holding it: vlan 22 \(original 0\).*mac 02:00:00:00:22:22 \(original 00:00:00:00:00:00\).*netdev named net1 \(original/);
    expect(v3!.issues).toEqual(['its netdev is not in the host and no pod holds it (lost)']);
    expect(report.text).toMatch(/! VF 1 \(0000:5e:02\.1\): left dirty/);
    expect(report.text).toMatch(/chk\/held \/run\/netns\//);

    rig.ip(`-n ${rig.wire} link set dev ${rig.vfs[3]!.name} netns ${rig.hostRef}`);
    rig.ip(`link set dev ${rig.vfs[3]!.name} up`);
    for (const [id, netns, vf] of [['held', held, 0], ['dies', dies, 1]] as const) {
      expect((await call('DEL', id, netns, conf({ deviceID: rig.vfs[vf]!.pci }))).exitCode).toBe(0);
    }
    const repaired = await doctor();
    expect(repaired.vfs.flatMap((vf) => vf.issues)).toEqual([]);
    expect(repaired.code).toBe(0);
  });
});
