// A VF's netdev on its way into a pod and home again, as iproute2 commands. Into the pod it goes under a
// temporary name no pod interface has (`netns NS name TMP`: the kernel moves it, then renames it), and
// is renamed to the pod's interface name there; home it goes under its host name. A pod's interfaces
// are only ever taken for the VF when the kernel does not say they belong to another device.
//
// Altnames: on kernels that keep a renamed interface's old name as an altname, and with udev's
// alternative names, a VF collects names that block a later rename to one of them ("File exists",
// sriov-cni #445). In the pod it keeps none; at home it gets back exactly the ones it had.
import type { IpCommand } from './ip.ts';
import type { Link } from './schemas.ts';

/** What a VF netdev looked like in the host before a pod had it. */
export interface HostNetdev {
  name: string;
  mac: string;
  mtu: number;
  up: boolean;
}

export function altnamesOf(link: Link): string[] {
  const names = (link as { altnames?: unknown }).altnames;
  return Array.isArray(names) ? names.filter((n): n is string => typeof n === 'string') : [];
}

/** Host side: drop the `stale` altnames (they would block a rename), then move the netdev into the pod as `name`. */
export function moveIntoPod(netdev: string, stale: ReadonlyArray<string>, netns: string, name: string): IpCommand[] {
  return [
    ...stale.map((altname) => ['link', 'property', 'del', 'dev', netdev, 'altname', altname]),
    ['link', 'set', 'dev', netdev, 'netns', netns, 'name', name],
  ];
}

/**
 * The link among `links` (a pod's) that is the VF at PCI address `pci`, looked for under `names` in
 * order. A link the kernel says belongs to another device (its parentdev) is never taken for it.
 */
export function findVfLink(links: ReadonlyArray<Link>, names: ReadonlyArray<string>, pci: string): Link | undefined {
  for (const name of names) {
    const link = links.find((l) => l.ifname === name);
    const parent = link && (link as { parentdev?: unknown }).parentdev;
    if (link && (parent === undefined || parent === pci)) return link;
  }
  return undefined;
}

/** Commands that make `dev`'s altnames exactly `wanted`. */
export function altnameCommands(dev: string, have: ReadonlyArray<string>, wanted: ReadonlyArray<string>): IpCommand[] {
  return [
    ...have.filter((name) => !wanted.includes(name)).map((name) => ['link', 'property', 'del', 'dev', dev, 'altname', name]),
    ...wanted.filter((name) => !have.includes(name)).map((name) => ['link', 'property', 'add', 'dev', dev, 'altname', name]),
  ];
}

const restoreAttributes = (home: HostNetdev): Array<string | number> => [
  ...(home.mac ? ['address', home.mac] : []),
  ...(home.mtu ? ['mtu', home.mtu] : []),
];

/** Pod side: send `ifName` home (`hostNetns`, a path) under its host name, MAC and MTU, down. */
export function sendHome(ifName: string, home: HostNetdev, hostNetns: string): IpCommand[] {
  return [
    ['link', 'set', 'dev', ifName, 'down'],
    ['link', 'set', 'dev', ifName, ...restoreAttributes(home), 'netns', hostNetns, 'name', home.name],
  ];
}

/** Host side, after sendHome: up again if it was. */
export const afterHome = (home: HostNetdev): IpCommand[] => (home.up ? [['link', 'set', 'dev', home.name, 'up']] : []);

/**
 * Host side, for a VF netdev found in the host under `current` (the kernel returns a VF whose pod netns
 * died under the pod's interface name): its host name, MAC, MTU and up state again.
 */
export function restoreInHost(current: string, home: HostNetdev): IpCommand[] {
  const rename: Array<string | number> = current === home.name ? [] : ['name', home.name];
  return [
    ['link', 'set', 'dev', current, 'down'],
    ...(rename.length || restoreAttributes(home).length ? [['link', 'set', 'dev', current, ...rename, ...restoreAttributes(home)]] : []),
    ...afterHome(home),
  ];
}
