// One SR-IOV virtual function, found from its PCI address or from its PF and index: everything a plugin
// needs to know before it touches it. Failures name the config field that led here.
import { Code, CniError, showValue } from '../cni/errors.ts';
import { driverOf, netdevsOf, pciDeviceExists, pciDevicePath, pciOfNetdev, physfnOf, rdmaDevicesOf, USERSPACE_DRIVERS, virtfnsOf } from './pci.ts';

export interface VfDevice {
  pci: string;
  /** The PF's PCI address and its network interface (where `ip link set PF vf N` goes). */
  pfPci: string;
  pf: string;
  index: number;
  driver?: string;
  /** Bound to a userspace driver (DPDK): there is no netdev to move. */
  userspace: boolean;
  /** The VF's network interface in our namespace, if it is here. */
  netdev?: string;
  rdma?: string;
}

const invalid = (field: string, value: string, why: string): CniError =>
  new CniError(Code.InvalidConfig, `invalid network config: ${field} = ${showValue(value)}: ${why}`);

function describe(pci: string, pfPci: string, pf: string, index: number): VfDevice {
  const driver = driverOf(pci);
  return {
    pci,
    pfPci,
    pf,
    index,
    driver,
    userspace: driver !== undefined && USERSPACE_DRIVERS.includes(driver),
    netdev: netdevsOf(pci)[0],
    rdma: rdmaDevicesOf(pci)[0],
  };
}

/** The PF's network interface; a PF without one (unbound driver) has nowhere to apply VF settings. */
function pfNetdev(pfPci: string, field: string, value: string): string {
  const pf = netdevsOf(pfPci)[0];
  if (!pf) throw invalid(field, value, `its PF ${pfPci} has no network interface in this namespace (is the PF driver bound?)`);
  return pf;
}

/** The VF at PCI address `pci` (the config's deviceID). */
export function vfByPciAddress(pci: string, field = 'deviceID'): VfDevice {
  if (!pciDeviceExists(pci)) throw invalid(field, pci, `no such PCI device (${pciDevicePath(pci)} does not exist)`);
  const pfPci = physfnOf(pci);
  if (!pfPci) throw invalid(field, pci, 'not an SR-IOV virtual function (it has no physfn)');
  const index = [...virtfnsOf(pfPci)].find(([, vf]) => vf === pci)?.[0];
  if (index === undefined) throw invalid(field, pci, `its PF ${pfPci} does not list it among its virtfnN links`);
  return describe(pci, pfPci, pfNetdev(pfPci, field, pci), index);
}

/** The PF behind network interface `pf` (the config's master) and its VFs by index. */
export function vfsOfPf(pf: string, field = 'master'): { pfPci: string; vfs: Map<number, string> } {
  const pfPci = pciOfNetdev(pf);
  if (!pfPci) throw invalid(field, pf, 'no such PCI network interface in this namespace');
  const vfs = virtfnsOf(pfPci);
  if (vfs.size === 0) throw invalid(field, pf, 'has no SR-IOV virtual functions (sriov_numvfs is 0?)');
  return { pfPci, vfs };
}

/** VF number `index` of PF `pf`. */
export function vfByIndex(pf: string, index: number, field: string): VfDevice {
  const { pfPci, vfs } = vfsOfPf(pf);
  const pci = vfs.get(index);
  if (!pci) throw invalid(field, String(index), `PF ${showValue(pf)} has no VF ${index} (it has ${vfs.size}: 0-${vfs.size - 1})`);
  return describe(pci, pfPci, pf, index);
}

/** Re-reads what may have changed since `vf` was described (its netdev, driver, RDMA device). */
export const refresh = (vf: VfDevice): VfDevice => describe(vf.pci, vf.pfPci, vf.pf, vf.index);
