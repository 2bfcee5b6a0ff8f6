// Telling the neighbours about a new interface. A reused address on a new MAC is unreachable until the
// neighbours' ARP and ND entries expire (hours on some switches), so every pod interface turns on
// gratuitous ARP / unsolicited NA (the kernel then announces on link-up and MAC change, and IPv6 once
// DAD completes), and an SR-IOV VF, whose carrier may come up after the link, also sends one explicit
// gratuitous ARP per IPv4 address with iputils' arping where it is installed.
import { familyOf, type IpConfig } from '../cni/result.ts';

/** The sysctls to write on the new link (`path` or `path=value`, value 1 by default), set before it is renamed. */
export function notifySysctls(ifName: string, ips: ReadonlyArray<IpConfig>): string[] {
  const files = [`/proc/sys/net/ipv4/conf/${ifName}/arp_notify`, `/proc/sys/net/ipv6/conf/${ifName}/ndisc_notify`];
  if (ips.some((ip) => familyOf(ip.address) === 6)) {
    files.push('/proc/sys/net/ipv6/conf/lo/disable_ipv6=0', `/proc/sys/net/ipv6/conf/${ifName}/disable_ipv6=0`, `/proc/sys/net/ipv6/conf/${ifName}/keep_addr_on_down`);
  }
  return files;
}

/** The IPv4 addresses (without prefix) to announce explicitly, as one space-separated shell word list. */
export const garpAddresses = (ips: ReadonlyArray<IpConfig>): string =>
  ips.filter((ip) => familyOf(ip.address) === 4).map((ip) => ip.address.split('/')[0]).join(' ');

/**
 * Shell lines for a script run in the pod, with $ifname set and $garp holding garpAddresses(). arping
 * sends at once but lingers a second waiting for replies: it runs in the background, detached from the
 * script's output, so the plugin does not wait for it.
 */
export const GARP_SCRIPT = 'if [ -n "$garp" ] && command -v arping >/dev/null 2>&1; then for a in $garp; do arping -q -U -c 1 -I "$ifname" "$a" </dev/null >/dev/null 2>&1 & done; fi';
