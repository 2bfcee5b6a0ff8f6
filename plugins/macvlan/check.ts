// CHECK: is the interface that ADD reported still what ADD made? Judged on what one visit into the pod
// read (lib/net/link.ts readInterfaceAndRoutes).
import type { CmdArgs } from '../../lib/cni/env.ts';
import { Code, CniError } from '../../lib/cni/errors.ts';
import type { Result } from '../../lib/cni/result.ts';
import type { Link, RouteEntry } from '../../lib/net/schemas.ts';
import { checkAddressesAndRoutes } from '../../lib/net/verify.ts';
import type { MacvlanConf } from './config.ts';

const fail = (msg: string): never => {
  throw new CniError(Code.Internal, msg);
};

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

  checkAddressesAndRoutes(link, prev, index, seen.routes, env.netns);
}
