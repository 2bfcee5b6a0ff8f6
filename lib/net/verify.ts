// CHECK's common part: are the addresses and routes ADD reported still on the pod's interface? Each
// plugin checks its own kind of link first, then this, on what one visit into the pod read
// (lib/net/link.ts readInterfaceAndRoutes).
import { Code, CniError } from '../cni/errors.ts';
import { familyOf, type Result } from '../cni/result.ts';
import type { Link, RouteEntry } from './schemas.ts';

const fail = (msg: string): never => {
  throw new CniError(Code.Internal, msg);
};

/** iproute2 prints 0/0 as "default" and a host route without its /32 or /128. */
const normalizeDst = (dst: string): string =>
  dst === '0.0.0.0/0' || dst === '::/0' ? 'default' : dst.replace(/\/(32|128)$/, (m) => (m === '/32' && dst.includes(':') ? m : ''));

/** The form iproute2 prints: IPv6 compressed and lower case ("2001:DB8::0:5" is "2001:db8::5"). */
function canonical(cidr: string): string {
  const [address = '', prefix] = cidr.split('/');
  const text = address.includes(':') ? new URL(`http://[${address}]`).hostname.slice(1, -1) : address;
  return prefix === undefined ? text : `${text}/${prefix}`;
}

/** Every address of `prev` for interface `index` is on `link`, and every route of `prev` is among `routes` (of `netns`). */
export function checkAddressesAndRoutes(link: Link, prev: Result, index: number, routes: ReadonlyArray<RouteEntry>, netns: string): void {
  const present = new Set((link.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
  for (const ip of prev.ips ?? []) {
    if (ip.interface !== undefined && ip.interface !== index) continue;
    if (!present.has(canonical(ip.address))) fail(`interface ${link.ifname} lacks address ${ip.address}`);
  }
  for (const route of prev.routes ?? []) {
    const family = familyOf(route.dst);
    const found = routes.some(
      (r) =>
        normalizeDst(r.dst) === normalizeDst(canonical(route.dst)) &&
        (route.gw === undefined || r.gateway === canonical(route.gw)) &&
        (r.gateway === undefined || familyOf(r.gateway) === family),
    );
    if (!found) fail(`route to ${route.dst}${route.gw ? ` via ${route.gw}` : ''} is missing in ${netns}`);
  }
}
