// lib/sysfs on a small tree laid out as the kernel does (under UNDERLAY_SYSFS_ROOT): a PF with two VFs,
// one bound to vfio-pci, and a NIC without SR-IOV.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listPfs, pciOfNetdev, sriovCounts } from '../../lib/sysfs/pci.ts';
import { vfByIndex, vfByPciAddress, vfsOfPf } from '../../lib/sysfs/vf.ts';
import { thrown } from '../helpers/ipam-invocation.ts';

const root = mkdtempSync(join(tmpdir(), 'underlay-sysfs-'));
const PF = '0000:af:00.1';
const VF0 = '0000:af:06.0';
const VF1 = '0000:af:06.1';
const NIC = '0000:3b:00.0';

function device(pci: string, driver: string, netdevs: string[]): string {
  const dir = join(root, 'devices', 'pci0000:af', pci);
  mkdirSync(join(dir, 'net'), { recursive: true });
  mkdirSync(join(root, 'bus', 'pci', 'drivers', driver), { recursive: true });
  symlinkSync(`../../../devices/pci0000:af/${pci}`, join(root, 'bus', 'pci', 'devices', pci));
  symlinkSync(`../../../bus/pci/drivers/${driver}`, join(dir, 'driver'));
  for (const name of netdevs) {
    mkdirSync(join(dir, 'net', name));
    symlinkSync(`../../../${pci}`, join(dir, 'net', name, 'device'));
    symlinkSync(`../../devices/pci0000:af/${pci}/net/${name}`, join(root, 'class', 'net', name));
  }
  return dir;
}

beforeAll(() => {
  process.env.UNDERLAY_SYSFS_ROOT = root;
  mkdirSync(join(root, 'bus', 'pci', 'devices'), { recursive: true });
  mkdirSync(join(root, 'class', 'net'), { recursive: true });
  const pf = device(PF, 'i40e', ['enp175s0f1']);
  writeFileSync(join(pf, 'sriov_numvfs'), '2\n');
  writeFileSync(join(pf, 'sriov_totalvfs'), '64\n');
  const vf0 = device(VF0, 'iavf', ['enp175s6']);
  mkdirSync(join(vf0, 'infiniband', 'mlx5_2'), { recursive: true });
  device(VF1, 'vfio-pci', []);
  for (const [i, vf] of [VF0, VF1].entries()) {
    symlinkSync(`../${vf}`, join(pf, `virtfn${i}`));
    symlinkSync(`../${PF}`, join(root, 'devices', 'pci0000:af', vf, 'physfn'));
  }
  device(NIC, 'ixgbe', ['ens1']);
});
afterAll(() => {
  delete process.env.UNDERLAY_SYSFS_ROOT;
  rmSync(root, { recursive: true, force: true });
});

describe('a VF by PCI address', () => {
  it('knows its PF, index, driver, netdev and RDMA device', () => {
    expect(vfByPciAddress(VF0)).toEqual({ pci: VF0, pfPci: PF, pf: 'enp175s0f1', index: 0, driver: 'iavf', userspace: false, netdev: 'enp175s6', rdma: 'mlx5_2' });
  });

  it('bound to vfio-pci it is a userspace (DPDK) VF without netdev', () => {
    expect(vfByPciAddress(VF1)).toMatchObject({ index: 1, driver: 'vfio-pci', userspace: true, netdev: undefined });
  });

  it('refuses, naming the field and the value, a device that does not exist or is not a VF', () => {
    expect(thrown(() => vfByPciAddress('0000:af:07.0')).message).toMatch(/deviceID = "0000:af:07\.0": no such PCI device/);
    expect(thrown(() => vfByPciAddress(NIC)).message).toMatch(/deviceID = "0000:3b:00\.0": not an SR-IOV virtual function/);
    expect(thrown(() => vfByPciAddress(PF, 'runtimeConfig.deviceID')).message).toMatch(/runtimeConfig\.deviceID = "0000:af:00\.1"/);
  });
});

describe('a PF by netdev name', () => {
  it('lists its VFs by index, and finds one', () => {
    expect(vfsOfPf('enp175s0f1')).toEqual({ pfPci: PF, vfs: new Map([[0, VF0], [1, VF1]]) });
    expect(vfByIndex('enp175s0f1', 1, 'CNI_ARGS VF')).toMatchObject({ pci: VF1 });
    expect(thrown(() => vfByIndex('enp175s0f1', 2, 'CNI_ARGS VF')).message).toMatch(/CNI_ARGS VF = "2": PF "enp175s0f1" has no VF 2 \(it has 2: 0-1\)/);
  });

  it('refuses a NIC without VFs and a name that is no PCI netdev', () => {
    expect(thrown(() => vfsOfPf('ens1')).message).toMatch(/master = "ens1": has no SR-IOV virtual functions/);
    expect(thrown(() => vfsOfPf('lo')).message).toMatch(/master = "lo": no such PCI network interface/);
  });

  it('the node\'s PFs are the netdevs whose device has sriov_totalvfs', () => {
    expect(listPfs()).toEqual([{ name: 'enp175s0f1', pci: PF }]);
    expect(sriovCounts(PF)).toEqual({ numvfs: 2, totalvfs: 64 });
    expect(pciOfNetdev('ens1')).toBe(NIC);
  });
});
