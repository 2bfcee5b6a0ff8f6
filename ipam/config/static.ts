// Static addresses, returned as given next to the allocated ones (whereabouts' `addresses`, and the
// static plugin's sources). Precedence as in the static plugin: the `ips` capability (runtimeConfig)
// replaces args.cni.ips, which replaces the config's addresses; CNI_ARGS IP= adds to the config's.
import { Code, CniError, showValue } from '../../lib/cni/errors.ts';
import { parseCniArgs } from '../../lib/cni/env.ts';
import type { Invocation } from '../../lib/cni/skel.ts';
import { escaped, log } from '../../lib/log.ts';
import { bitsOf, formatAddr, parseAddr, parseCidr, type Family } from '../alloc/addr.ts';
import { offsetOf, type IpRange } from '../alloc/ranges.ts';

export interface StaticAddress {
  family: Family;
  /** CIDR form, as a result carries it: "10.1.1.5/24". */
  address: string;
  gateway?: string;
}

/** CNI_ARGS keys the IPAM understands, plus those of the plugins that call it in-process (MAC). */
export const IPAM_ARGS = ['IP', 'GATEWAY', 'MAC'] as const;

/**
 * A CIDR, or a bare address: that one takes the prefix of the configured range holding it (else a host
 * prefix), since a runtime's `ips` capability may carry bare addresses.
 */
function toStatic(text: string, field: string, ranges: ReadonlyArray<IpRange>, code: number): StaticAddress {
  const cidr = parseCidr(text);
  if (cidr) return { family: cidr.family, address: `${formatAddr(cidr.family, cidr.addr)}/${cidr.prefix}` };
  const addr = parseAddr(text);
  if (!addr) throw new CniError(code, `${field} = ${showValue(text)} is not an IP address or CIDR`);
  const range = ranges.find((r) => offsetOf(r, addr) !== undefined);
  return { family: addr.family, address: `${formatAddr(addr.family, addr.value)}/${range?.prefix ?? bitsOf(addr.family)}` };
}

function inRangeWarning(address: StaticAddress, ranges: ReadonlyArray<IpRange>): void {
  const addr = parseAddr(address.address.slice(0, address.address.indexOf('/')));
  const range = addr && ranges.find((r) => {
    const offset = offsetOf(r, addr);
    return offset !== undefined && offset >= r.first && offset <= r.last;
  });
  if (range) {
    log.warn(escaped`static address ${address.address} lies inside ${range.field}.range ${range.source} but is not leased there: the pool may hand it to another pod; exclude it`);
  }
}

export function staticAddresses(
  inv: Pick<Invocation, 'conf' | 'env'>,
  configured: ReadonlyArray<{ address: string; gateway?: string | undefined }>,
  ranges: ReadonlyArray<IpRange>,
): StaticAddress[] {
  const withGateway = (address: StaticAddress, gateway: string | undefined, field: string): StaticAddress => {
    if (!gateway) return address;
    if (!parseAddr(gateway)) throw new CniError(Code.InvalidConfig, `invalid network config: ${field} = ${showValue(gateway)} is not an IP address`);
    return { ...address, gateway };
  };
  let addresses = configured.map((entry, i) =>
    withGateway(toStatic(entry.address, `invalid network config: ipam.addresses[${i}].address`, ranges, Code.InvalidConfig), entry.gateway, `ipam.addresses[${i}].gateway`),
  );

  const args = parseCniArgs(inv.env.args, IPAM_ARGS);
  if (args.IP) {
    addresses.push(...args.IP.split(',').map((item) => toStatic(item.trim(), 'CNI_ARGS IP', ranges, Code.InvalidEnvironment)));
  }
  if (args.GATEWAY) {
    for (const item of args.GATEWAY.split(',').map((g) => g.trim())) {
      const gw = parseAddr(item);
      if (!gw) throw new CniError(Code.InvalidEnvironment, `CNI_ARGS GATEWAY = ${showValue(item)} is not an IP address`);
      addresses = addresses.map((a) => {
        const net = parseCidr(a.address)!;
        const containing = net.family === gw.family && gw.value >> BigInt(bitsOf(gw.family) - net.prefix) === net.network >> BigInt(bitsOf(gw.family) - net.prefix);
        return containing ? { ...a, gateway: formatAddr(gw.family, gw.value) } : a;
      });
    }
  }
  const fromArgs = inv.conf.args?.cni?.ips ?? [];
  if (fromArgs.length > 0) addresses = fromArgs.map((ip, i) => toStatic(ip, `invalid network config: args.cni.ips[${i}]`, ranges, Code.InvalidConfig));
  const fromCapability = inv.conf.runtimeConfig?.ips ?? [];
  if (fromCapability.length > 0) {
    addresses = fromCapability.map((ip, i) => toStatic(ip, `invalid network config: runtimeConfig.ips[${i}]`, ranges, Code.InvalidConfig));
  }
  for (const address of addresses) inRangeWarning(address, ranges);
  return addresses;
}
