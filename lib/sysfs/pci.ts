// PCI devices as sysfs shows them: which PF a VF belongs to, its index there, its driver, its network
// interface and RDMA device. Everything is read under one root, /sys unless UNDERLAY_SYSFS_ROOT moves
// it (tests build a tree of their own). sysfs follows the reader's network namespace for net/ and, in
// exclusive RDMA mode, infiniband/ entries: a VF's netdev moved into a pod is not listed here.
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';

export const sysfsRoot = (): string => process.env.UNDERLAY_SYSFS_ROOT || '/sys';

/** A PCI address as sysfs names devices: domain:bus:device.function, lower case. */
export const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** Drivers that hand the device to a userspace program (DPDK): no netdev, nothing to move. */
export const USERSPACE_DRIVERS: ReadonlyArray<string> = ['vfio-pci', 'uio_pci_generic', 'igb_uio'];

export const pciDevicePath = (pci: string): string => join(sysfsRoot(), 'bus', 'pci', 'devices', pci);

function entries(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

function linkTarget(path: string): string | undefined {
  try {
    return basename(readlinkSync(path));
  } catch {
    return undefined;
  }
}

function readNumber(path: string): number | undefined {
  try {
    const value = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

export const pciDeviceExists = (pci: string): boolean => existsSync(pciDevicePath(pci));

/** The driver bound to a device (the basename of its driver link), or undefined when none is. */
export const driverOf = (pci: string): string | undefined => linkTarget(join(pciDevicePath(pci), 'driver'));

/** The device's network interfaces in our network namespace (a VF has at most one). */
export const netdevsOf = (pci: string): string[] => entries(join(pciDevicePath(pci), 'net'));

/** The device's RDMA devices visible from our network namespace. */
export const rdmaDevicesOf = (pci: string): string[] => entries(join(pciDevicePath(pci), 'infiniband'));

/** The PF of a VF (its physfn link), or undefined when the device is no SR-IOV virtual function. */
export const physfnOf = (vfPci: string): string | undefined => linkTarget(join(pciDevicePath(vfPci), 'physfn'));

/** A PF's VFs by index, from its virtfnN links. */
export function virtfnsOf(pfPci: string): Map<number, string> {
  const vfs = new Map<number, string>();
  const dir = pciDevicePath(pfPci);
  for (const name of entries(dir)) {
    const m = /^virtfn(\d+)$/.exec(name);
    const target = m && linkTarget(join(dir, name));
    if (m && target) vfs.set(Number(m[1]), target);
  }
  return vfs;
}

export interface SriovCounts {
  numvfs: number;
  totalvfs: number;
}

/** sriov_numvfs and sriov_totalvfs of a PF, or undefined for a device that cannot make VFs. */
export function sriovCounts(pfPci: string): SriovCounts | undefined {
  const dir = pciDevicePath(pfPci);
  const totalvfs = readNumber(join(dir, 'sriov_totalvfs'));
  if (totalvfs === undefined) return undefined;
  return { numvfs: readNumber(join(dir, 'sriov_numvfs')) ?? 0, totalvfs };
}

/** The PCI device behind a network interface of our namespace, if it is one. */
export function pciOfNetdev(name: string): string | undefined {
  const target = linkTarget(join(sysfsRoot(), 'class', 'net', name, 'device'));
  return target && PCI_ADDRESS.test(target) ? target : undefined;
}

/** Network interfaces of our namespace whose device can make VFs: the PFs, as name and PCI address. */
export function listPfs(): Array<{ name: string; pci: string }> {
  const pfs: Array<{ name: string; pci: string }> = [];
  for (const name of entries(join(sysfsRoot(), 'class', 'net'))) {
    const pci = pciOfNetdev(name);
    if (pci && sriovCounts(pci)) pfs.push({ name, pci });
  }
  return pfs;
}
