// CHECK: is the interface that ADD reported still what ADD made? Judged on what one visit into the pod
// read (lib/net/link.ts readInterfaceAndRoutes).
import type { CmdArgs } from '../../lib/cni/env.ts';
import { Code, CniError } from '../../lib/cni/errors.ts';
import { familyOf, type Result } from '../../lib/cni/result.ts';
import type { Link, RouteEntry } from '../../lib/net/schemas.ts';
import type { MacvlanConf } from './config.ts';

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

export function checkInterface(conf: MacvlanConf, env: CmdArgs, prev: Result, seen: { link: Link | undefined; routes: RouteEntry[] }): void {
  const index = (prev.interfaces ?? []).findIndex((iface) => iface.name === env.ifName && iface.sandbox === env.netns);
  if (index < 0) fail(`prevResult has no interface ${env.ifName} in sandbox ${env.netns}`);
  const expected = prev.interfaces![index]!;

  const link = seen.link ?? fail(`interface ${env.ifName} not found in ${env.netns}`);
  const kind = link.linkinfo?.info_kind;
  if (kind !== 'macvlan') fail(`interface ${env.ifName} is of type ${kind ?? 'unknown'}, not macvlan`);
  const mode = link.linkinfo?.info_data?.mode;
  if (mode !== conf.mode) fail(`interface ${env.ifName} has macvlan mode ${mode}, not ${conf.mode}`);
  if (expected.mac && link.address?.toLowerCase() !== expected.mac.toLowerCase()) {
    fail(`interface ${env.ifName} has MAC ${link.address}, not ${expected.mac} as ADD reported`);
  }

  const present = new Set((link.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
  for (const ip of prev.ips ?? []) {
    if (ip.interface !== undefined && ip.interface !== index) continue;
    if (!present.has(canonical(ip.address))) fail(`interface ${env.ifName} lacks address ${ip.address}`);
  }

  if ((prev.routes ?? []).length === 0) return;
  const { routes } = seen;
  for (const route of prev.routes ?? []) {
    const family = familyOf(route.dst);
    const found = routes.some(
      (r) =>
        normalizeDst(r.dst) === normalizeDst(canonical(route.dst)) &&
        (route.gw === undefined || r.gateway === canonical(route.gw)) &&
        (r.gateway === undefined || familyOf(r.gateway) === family),
    );
    if (!found) fail(`route to ${route.dst}${route.gw ? ` via ${route.gw}` : ''} is missing in ${env.netns}`);
  }
}
