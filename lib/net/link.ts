// Reading links and routes, and the one scripted visit into a pod's namespace that makes and configures
// a new interface: one spawn (sh → ip → nsenter → sh → ip) creates the link, renames it, sets the
// sysctls, adds addresses, sets it up and adds routes.
import { existsSync } from 'node:fs';
import { Code, CniError } from '../cni/errors.ts';
import { familyOf, type IpConfig, type Route } from '../cni/result.ts';
import { GARP_SCRIPT, garpAddresses, notifySysctls } from './announce.ts';
import { assertBatchSafe, batchText, IpError, ipJson, parseIpJson, run, runAsync, type IpCommand } from './ip.ts';
import { LinkListSchema, RouteListSchema, type Link, type RouteEntry } from './schemas.ts';

/** The link called `name` (with -d details and addresses), or undefined when there is none. */
export function findLink(name: string, netns?: string): Link | undefined {
  try {
    return ipJson(LinkListSchema, ['-d', 'addr', 'show', 'dev', name], netns)[0];
  } catch (err) {
    if (err instanceof IpError && err.linkMissing) return undefined;
    throw err;
  }
}

/** The interface of the first default route, IPv4 first, as the reference macvlan picks its master. */
export function defaultRouteInterface(netns?: string): string | undefined {
  for (const family of ['-4', '-6']) {
    const routes = ipJson(RouteListSchema, [family, 'route', 'show', 'default'], netns);
    const dev = routes.find((route) => route.dev)?.dev;
    if (dev) return dev;
  }
  return undefined;
}

/** The link `name` (or undefined) and every route, of both families, in one visit: what CHECK compares. */
export async function readInterfaceAndRoutes(name: string, netns?: string): Promise<{ link: Link | undefined; routes: RouteEntry[] }> {
  // Three JSON documents, one per line; a missing link prints an empty list (its error is thrown away).
  const script = 'ip -j -d addr show dev "$1" 2>/dev/null || echo "[]"; echo; ip -j -4 route show table all; echo; ip -j -6 route show table all';
  const out = (await runAsync(['sh', '-c', script, 'sh', name], { netns })).split('\n').filter((line) => line.trim() !== '');
  const [links = '[]', v4 = '[]', v6 = '[]'] = out;
  return {
    link: parseIpJson(LinkListSchema, links, ['addr', 'show', 'dev', name])[0],
    routes: [...parseIpJson(RouteListSchema, v4, ['-4', 'route', 'show']), ...parseIpJson(RouteListSchema, v6, ['-6', 'route', 'show'])],
  };
}

/** findLink without waiting: the lookup runs while other work goes on. */
export async function findLinkAsync(name: string, netns?: string): Promise<Link | undefined> {
  try {
    return parseIpJson(LinkListSchema, (await runAsync(['ip', '-j', '-d', 'addr', 'show', 'dev', name], { netns })).trim() || '[]', ['addr', 'show', 'dev', name])[0];
  } catch (err) {
    if (err instanceof IpError && err.linkMissing) return undefined;
    throw err;
  }
}

/**
 * A fresh temporary name: a new link must not collide with a host name while it moves (kernel bug).
 * Collision avoidance, not secrecy: Math.random spares loading node:crypto on every ADD.
 */
export const temporaryLinkName = (): string => `ul${Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0')}`;

/** A network namespace path that can no longer be entered: the pod is gone, DEL has nothing to do there. */
export const netnsGone = (netns: string): boolean => !existsSync(netns);

const NOT_OF_KIND = 3;
const DAD_FAILED = 4;

/**
 * Deletes the link `name` if it is of `kind` (say "macvlan"); true when it was deleted. DEL must not
 * remove a link some other attachment owns under the same name (the pod's eth0, another net1), and a
 * vanished link or namespace is not an error. The name reaches the script only as an argument.
 */
export async function deleteLinkOfKind(name: string, kind: string, netns?: string): Promise<boolean> {
  if (netns && netnsGone(netns)) return false;
  // One shell, no grep: the link's details are matched by the shell itself.
  const script = `details=$(ip -d -o link show dev "$1" 2>/dev/null) || exit ${NOT_OF_KIND}\ncase "$details" in *" $2 "*) exec ip link del dev "$1";; esac\nexit ${NOT_OF_KIND}`;
  try {
    await runAsync(['sh', '-c', script, 'sh', name, kind], { netns });
    return true;
  } catch (err) {
    if (err instanceof IpError && (err.status === NOT_OF_KIND || err.linkMissing || /No such file|Invalid argument.*netns|reassociate/i.test(err.stderr))) return false;
    throw err;
  }
}

export interface PodInterfacePlan {
  netns: string;
  /** The name the link was created under, and the one it must end up with. */
  temporaryName: string;
  ifName: string;
  ips: ReadonlyArray<IpConfig>;
  routes: ReadonlyArray<Route>;
  /** ip commands to run on the temporary name before anything else (mode-specific tweaks). */
  prepare?: ReadonlyArray<IpCommand>;
  /**
   * The ip command that makes the link, run first in the same spawn: in our own namespace ('host': it
   * names the pod's namespace to make the link there) or in the pod's. If it fails the spawn exits
   * with LINK_NOT_CREATED and nothing was made.
   */
  create?: { command: IpCommand; in: 'host' | 'pod' };
  /** Also send one gratuitous ARP per IPv4 address once the link is up (see announce.ts). */
  announce?: boolean;
}

export const LINK_NOT_CREATED = 10;

/** Makes the link in our namespace, then runs the pod's script inside the pod's (stdin passes through). */
const HOST_THEN_POD = `set -f; create=$1 ns=$2 inner=$3; shift 3\nip $create || exit ${LINK_NOT_CREATED}\nexec nsenter --net="$ns" -- sh -c "$inner" sh "$@"`;

/** A result route as `ip route add`: the gateway defaults to the first of its family, as ConfigureIface. */
export function routeCommand(route: Route, ifName: string, ips: ReadonlyArray<IpConfig>): IpCommand {
  const family = familyOf(route.dst);
  const gw = route.gw ?? ips.find((ip) => ip.gateway && familyOf(ip.gateway) === family)?.gateway;
  const tokens: Array<string | number> = ['route', 'add', route.dst];
  if (gw) tokens.push('via', gw);
  tokens.push('dev', ifName);
  if (route.priority !== undefined) tokens.push('metric', route.priority);
  if (route.table !== undefined) tokens.push('table', route.table);
  if (route.mtu !== undefined) tokens.push('mtu', route.mtu);
  if (route.advmss !== undefined) tokens.push('advmss', route.advmss);
  if (route.scope !== undefined) tokens.push('scope', route.scope);
  return tokens;
}

/**
 * Renames the new link, turns on gratuitous ARP / unsolicited NA, adds addresses, sets it up and adds
 * routes, all in one visit; returns the link as it ends up. On failure nothing of ours is left: the
 * caller deletes the link with removePodInterface.
 */
export function configurePodInterface(plan: PodInterfacePlan): Link {
  const create = plan.create ? (assertBatchSafe(...plan.create.command), plan.create.command.join(' ')) : '';
  const batch = batchText([
    ...(plan.prepare ?? []),
    ['link', 'set', 'dev', plan.temporaryName, 'name', plan.ifName],
    ...plan.ips.map((ip) => ['addr', 'add', ip.address, 'dev', plan.ifName]),
    ['link', 'set', 'dev', plan.ifName, 'up'],
    ...plan.routes.map((route) => routeCommand(route, plan.ifName, plan.ips)),
  ]);
  // Names reach the script only as arguments ("$1", "$@"), never inside its text: an interface may
  // legally be called "a;b". sysctl writes are shell built-ins (no extra process); a missing file
  // (IPv6 off) is not an error.
  // As the reference's ConfigureIface: with an IPv6 gateway, wait (up to 5 s) until duplicate address
  // detection has settled, or the pod starts unable to reach it; a duplicate fails the ADD.
  const waitForDad = plan.ips.some((ip) => familyOf(ip.address) === 6 && ip.gateway !== undefined);
  const script = [
    // The create command's tokens are checked words (no white space, quotes or "\\"): split, not globbed.
    'ifname=$1 waitdad=$2 create=$3 garp=$4; shift 4; set -f',
    `if [ -n "$create" ]; then ip $create || exit ${LINK_NOT_CREATED}; fi`,
    'for setting in "$@"; do case "$setting" in *=*) f=${setting%=*} v=${setting#*=};; *) f=$setting v=1;; esac; { echo "$v" > "$f"; } 2>/dev/null; done',
    'ip -batch - || exit 1',
    'if [ -n "$waitdad" ]; then n=0; while pending=$(ip -6 -o addr show dev "$ifname" tentative) && [ -n "$pending" ]; do',
    `  case "$pending" in *dadfailed*) echo "an IPv6 address of $ifname is already in use on the network (DAD failed)" >&2; exit ${DAD_FAILED};; esac`,
    `  n=$((n+1)); [ $n -le 50 ] || { echo "IPv6 address on $ifname still tentative after 5 s" >&2; exit ${DAD_FAILED}; }`,
    '  sleep 0.1; done; fi',
    GARP_SCRIPT,
    'exec ip -j -d addr show dev "$ifname"',
  ].join('\n');
  // Set on the temporary name: the settings follow the link through the rename.
  const sysctls = notifySysctls(plan.temporaryName, plan.ips);
  const garp = plan.announce ? garpAddresses(plan.ips) : '';
  const out = plan.create?.in === 'host'
    ? run(['sh', '-c', HOST_THEN_POD, 'sh', create, plan.netns, script, plan.ifName, waitForDad ? '1' : '', '', garp, ...sysctls], { input: batch })
    : run(['sh', '-c', script, 'sh', plan.ifName, waitForDad ? '1' : '', create, garp, ...sysctls], { netns: plan.netns, input: batch });
  const link = parseIpJson(LinkListSchema, out.trim(), ['addr', 'show', 'dev', plan.ifName])[0];
  if (!link) throw new CniError(Code.Internal, `${plan.ifName} vanished from ${plan.netns} while it was configured`);
  return link;
}

/** Undoes a half-made pod interface: the temporary name if the rename never happened, else ifName. */
export async function removePodInterface(plan: Pick<PodInterfacePlan, 'netns' | 'temporaryName' | 'ifName'>, kind: string): Promise<void> {
  if (!(await deleteLinkOfKind(plan.temporaryName, kind, plan.netns))) await deleteLinkOfKind(plan.ifName, kind, plan.netns);
}
