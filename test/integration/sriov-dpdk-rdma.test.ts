// sriov with a userspace (DPDK) driver, and with RDMA devices in both netns modes, with the BUILT
// executable on the SR-IOV rig.
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { leasesIn } from '../helpers/leases.ts';
import { linksIn } from '../helpers/netns.ts';
import { sriov, useRig } from '../helpers/sriov-rig/fixture.ts';

const rig = useRig({ subnet: '10.153.0', rdma: true });
const ipam = { type: 'whereabouts', range: `${rig.subnet}.0/24`, range_start: `${rig.subnet}.10`, file_store_dir: rig.leaseDir };
const conf = (extra: Record<string, unknown>) => ({ cniVersion: '1.1.0', name: 'fastnet', type: 'sriov', ipam, ...extra });
const call = (command: string, id: string, netns: string, config: unknown) =>
  sriov(rig, { command, config, containerId: id, netns, ifName: 'net1', args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=fast;K8S_POD_NAME=${id}` });

describe('DPDK mode (VF bound to vfio-pci)', () => {
  const vf = rig.vfs[0]!;

  it('applies and restores the PF settings, moves no netdev, and still asks the IPAM', async () => {
    rig.bindDriver(vf, 'vfio-pci');
    try {
      expect(rig.sysfsNet(vf)).toEqual([]);
      const netns = rig.pod('dpdk');
      const config = conf({ deviceID: vf.pci, vlan: 30, mac: '02:00:00:00:30:01', trust: 'on' });
      const add = await call('ADD', 'dpdk', netns, config);
      expect(add.exitCode, add.stdout).toBe(0);
      expect(add.json).toMatchObject({
        interfaces: [{ name: 'net1', mac: '02:00:00:00:30:01', mtu: rig.pfMtu, sandbox: netns, pciID: vf.pci }],
        ips: [{ address: `${rig.subnet}.10/24` }],
      });
      expect(rig.vfTable()[0]).toMatchObject({ address: '02:00:00:00:30:01', vlan_list: [{ vlan: 30 }], trust: true });
      expect(linksIn(netns)).toEqual(['lo']);
      expect(leasesIn(rig.leaseDir).map((l) => l.containerID)).toEqual(['dpdk']);
      // The RDMA device goes with a netdev: a userspace driver has none to follow.
      expect(rig.rdmaDevices()).toContain(vf.rdma);

      const check = await call('CHECK', 'dpdk', netns, { ...config, prevResult: add.json });
      expect(check.exitCode, check.stdout).toBe(0);
      const del = await call('DEL', 'dpdk', netns, config);
      expect(del.exitCode, del.stdout).toBe(0);
      expect(rig.vfTable()[0]).toMatchObject({ address: '00:00:00:00:00:00', vlan_list: [{}], trust: false });
      expect(leasesIn(rig.leaseDir)).toEqual([]);
    } finally {
      rig.bindDriver(vf, 'mlx5_core');
    }
    expect(rig.sysfsNet(vf)).toEqual([vf.name]);
  });
});

describe('RDMA', () => {
  const vf = rig.vfs[1]!;
  const config = conf({ deviceID: vf.pci });

  it('shared mode: the RDMA device stays where it is, seen from host and pod alike', async () => {
    rig.setRdmaMode('shared');
    const netns = rig.pod('shared');
    const add = await call('ADD', 'shared', netns, config);
    expect(add.exitCode, add.stdout).toBe(0);
    expect(rig.rdmaDevices()).toContain(vf.rdma);
    expect(rig.rdmaDevices(netns)).toContain(vf.rdma);
    expect((await call('DEL', 'shared', netns, config)).exitCode).toBe(0);
    expect(rig.rdmaDevices()).toContain(vf.rdma);
  });

  it('exclusive mode: the RDMA device moves into the pod with its netdev, and back on DEL', async () => {
    rig.setRdmaMode('exclusive');
    const netns = rig.pod('excl');
    const add = await call('ADD', 'excl', netns, config);
    expect(add.exitCode, add.stdout).toBe(0);
    expect(rig.rdmaDevices(netns)).toEqual([vf.rdma]);
    expect(rig.rdmaDevices()).not.toContain(vf.rdma);
    const check = await call('CHECK', 'excl', netns, { ...config, prevResult: add.json });
    expect(check.exitCode, check.stdout).toBe(0);
    expect((await call('DEL', 'excl', netns, config)).exitCode).toBe(0);
    expect(rig.rdmaDevices()).toContain(vf.rdma);
    expect(rig.rdmaDevices(netns)).toEqual([]);
  });

  it('exclusive mode with a netns known only as /proc/PID/ns/net: moved in and back through a temporary name', async () => {
    rig.setRdmaMode('exclusive');
    const holder = spawn('unshare', ['--net', 'sleep', '120'], { stdio: 'ignore' });
    afterAll(() => void holder.kill('SIGKILL'));
    await new Promise((r) => setTimeout(r, 200));
    const netns = `/proc/${holder.pid}/ns/net`;
    const add = await call('ADD', 'proc', netns, config);
    expect(add.exitCode, add.stdout).toBe(0);
    expect(rig.rdmaDevices(netns)).toEqual([vf.rdma]);
    expect((await call('DEL', 'proc', netns, config)).exitCode).toBe(0);
    expect(rig.rdmaDevices()).toContain(vf.rdma);
    holder.kill('SIGKILL');
  });

  it('exclusive mode, pod netns gone before DEL: the kernel returned the device, DEL puts the rest back', async () => {
    rig.setRdmaMode('exclusive');
    const netns = rig.pod('died');
    expect((await call('ADD', 'died', netns, config)).exitCode).toBe(0);
    rig.podNetnsDied(netns, ['net1']);
    expect(rig.rdmaDevices()).toContain(vf.rdma);
    const del = await call('DEL', 'died', netns, config);
    expect(del.exitCode, del.stdout).toBe(0);
    expect(rig.hostNetdev(vf)?.ifname).toBe(vf.name);
    rig.setRdmaMode('shared');
  });
});
