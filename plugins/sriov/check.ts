// CHECK: is the VF still what ADD made of it? (sriov-cni's CHECK does nothing.) The VF is still held
// by this pod, its PF-level settings are still those asked for, and its netdev is in the pod with the
// MAC, addresses and routes ADD reported; in exclusive RDMA mode its RDMA device is there too.
import type { CmdArgs } from '../../lib/cni/env.ts';
import { Code, CniError } from '../../lib/cni/errors.ts';
import type { Result } from '../../lib/cni/result.ts';
import { readInterfaceAndRoutes } from '../../lib/net/link.ts';
import { rdmaDevicesIn } from '../../lib/net/rdma.ts';
import { checkAddressesAndRoutes } from '../../lib/net/verify.ts';
import { readPfAndLinks, vfDifferences, vfSettings } from '../../lib/net/vf.ts';
import { netdevsOf } from '../../lib/sysfs/pci.ts';
import { holdsVf, markerOf, type Attachment } from './state.ts';

const fail = (msg: string): never => {
  throw new CniError(Code.Internal, msg);
};

export async function checkAttachment(att: Attachment, env: CmdArgs, prev: Result): Promise<void> {
  const index = (prev.interfaces ?? []).findIndex((iface) => iface.name === env.ifName && iface.sandbox === env.netns);
  if (index < 0) fail(`prevResult has no interface ${env.ifName} in sandbox ${env.netns}`);
  const expected = prev.interfaces![index]!;
  if (!holdsVf(att)) fail(`VF ${att.vf.pci} is no longer allocated to this pod (its marker names ${markerOf(att.vf.pci) ?? 'nobody'})`);

  const [pf] = readPfAndLinks(att.vf.pf);
  const differences = vfDifferences(vfSettings(pf!, att.vf.index), att.change);
  if (differences.length > 0) fail(`VF ${att.vf.index} of ${att.vf.pf} has ${differences.join(', ')}`);
  if (att.dpdk) return;

  const inHost = netdevsOf(att.vf.pci)[0];
  if (inHost !== undefined) fail(`the netdev of VF ${att.vf.pci} is in the host as ${inHost}, not in the pod`);
  const seen = await readInterfaceAndRoutes(env.ifName, env.netns);
  const link = seen.link ?? fail(`interface ${env.ifName} not found in ${env.netns}`);
  const parent = (link as { parentdev?: unknown }).parentdev;
  if (typeof parent === 'string' && parent !== att.vf.pci) fail(`interface ${env.ifName} is PCI device ${parent}, not VF ${att.vf.pci}`);
  if (expected.mac && link.address?.toLowerCase() !== expected.mac.toLowerCase()) {
    fail(`interface ${env.ifName} has MAC ${link.address}, not ${expected.mac} as ADD reported`);
  }
  if (expected.mtu !== undefined && link.mtu !== expected.mtu) fail(`interface ${env.ifName} has MTU ${link.mtu}, not ${expected.mtu} as ADD reported`);
  checkAddressesAndRoutes(link, prev, index, seen.routes, env.netns);
  if (att.rdma?.exclusive && !rdmaDevicesIn(env.netns).includes(att.rdma.device)) {
    fail(`RDMA device ${att.rdma.device} of VF ${att.vf.pci} is not in ${env.netns}`);
  }
}
