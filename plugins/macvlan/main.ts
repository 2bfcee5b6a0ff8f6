// macvlan: a macvlan link on a host interface, moved into the pod. The story of each verb, on top of
// lib/cni (protocol, IPAM delegation) and lib/net (iproute2).
import { delegateIpam, wantsIpam } from '../../lib/cni/delegate.ts';
import { asCniError, Code, CniError, showValue } from '../../lib/cni/errors.ts';
import { parseResult, type Result } from '../../lib/cni/result.ts';
import { atLeast } from '../../lib/cni/version.ts';
import type { Invocation, Plugin } from '../../lib/cni/skel.ts';
import { assertBatchSafe, IpError, ipBatch } from '../../lib/net/ip.ts';
import { configurePodInterface, deleteLinkOfKind, findLink, findLinkAsync, netnsGone, readInterfaceAndRoutes, removePodInterface, temporaryLinkName } from '../../lib/net/link.ts';
import { Undo } from '../../lib/undo.ts';
import { loadConf, parseFields, type MacvlanConf } from './config.ts';
import { checkInterface } from './check.ts';

/** Creates the macvlan straight into the pod namespace under a temporary name. */
async function createMacvlan(conf: MacvlanConf, netns: string, temporaryName: string): Promise<void> {
  const command: Array<string | number> = ['link', 'add', 'link', conf.master, 'name', temporaryName];
  if (!conf.linkInContainer) command.push('netns', netns);
  if (conf.mac) command.push('address', conf.mac);
  if (conf.mtu) command.push('mtu', conf.mtu);
  command.push('type', 'macvlan', 'mode', conf.mode);
  if (conf.bcqueuelen !== undefined) command.push('bcqueuelen', conf.bcqueuelen);
  try {
    await ipBatch([command], conf.linkInContainer ? netns : undefined);
  } catch (err) {
    if (err instanceof CniError && !(err instanceof IpError)) throw err;
    if (err instanceof IpError && /Cannot find device/.test(err.stderr) && err.stderr.includes(conf.master)) {
      throw new CniError(Code.InvalidConfig, `invalid network config: master = ${showValue(conf.master)}: no such link`);
    }
    throw new CniError(Code.Internal, `cannot create a macvlan on master ${showValue(conf.master)}: ${(err as Error).message}`);
  }
}

async function add(inv: Invocation): Promise<Result> {
  const conf = loadConf(inv, { requireMaster: false });
  const { netns, ifName } = inv.env;
  if (netnsGone(netns)) throw new CniError(Code.InvalidNetns, `CNI_NETNS ${netns} does not exist`);
  assertBatchSafe(netns, ifName); // before anything is made, not halfway through
  if (!atLeast(inv.cniVersion, '0.3.0') && !wantsIpam(inv)) {
    throw new CniError(Code.IncompatibleVersion, `cniVersion ${inv.cniVersion} results need an IP address; a macvlan without ipam needs cniVersion 0.3.0 or later`);
  }
  // Chained after another plugin, ADD must pass the earlier result on with its own added (spec §3).
  const prev: Result = inv.conf.prevResult === undefined ? {} : parseResult(inv.conf.prevResult, inv.cniVersion, 'prevResult');
  const ourIndex = prev.interfaces?.length ?? 0;
  const temporaryName = temporaryLinkName();
  const undo = new Undo();
  return undo.guard(async () => {
    // The kernel makes the link while the IPAM takes the lease: neither waits for the other.
    const creating = createMacvlan(conf, netns, temporaryName).then(() => undefined, (err: unknown) => asCniError(err));
    let ipam: Result = {};
    let ipamError: CniError | undefined;
    if (wantsIpam(inv)) {
      try {
        ipam = (await delegateIpam('ADD', inv)) ?? {};
        undo.push('the IPAM lease', () => delegateIpam('DEL', inv));
      } catch (err) {
        ipamError = asCniError(err);
      }
    }
    const linkError = await creating;
    if (!linkError) undo.push(`the macvlan in ${netns}`, () => removePodInterface({ netns, temporaryName, ifName }, 'macvlan'));
    // A bad master is the config's fault and said first; either way the other half is undone.
    const failed = linkError ?? ipamError;
    if (failed) throw failed;
    if (wantsIpam(inv) && !ipam.ips?.length) throw new CniError(Code.Internal, `IPAM plugin ${inv.conf.ipam?.type} returned missing IP config`);
    const ips = (ipam.ips ?? []).map((ip) => ({ ...ip, interface: ourIndex }));
    const link = configurePodInterface({
      netns,
      temporaryName,
      ifName,
      ips,
      routes: ipam.routes ?? [],
      prepare: conf.mode === 'source' ? [['link', 'set', 'dev', temporaryName, 'type', 'macvlan', 'macaddr', 'set', ...conf.sourceMacs]] : [],
    });
    const dns = inv.conf.dns && Object.keys(inv.conf.dns).length > 0 ? inv.conf.dns : ipam.dns;
    return {
      interfaces: [...(prev.interfaces ?? []), { name: ifName, mac: link.address, sandbox: netns }],
      ips: [...(prev.ips ?? []), ...ips],
      routes: [...(prev.routes ?? []), ...(ipam.routes ?? [])],
      dns: dns ?? prev.dns,
    };
  });
}

// DEL and GC read no macvlan field: a config ADD refused (a bad mode, a master since renamed) must
// still be deletable, or the pod is stuck Terminating while the kubelet retries forever.
async function del(inv: Invocation): Promise<void> {
  const { netns, ifName } = inv.env;
  // The kernel's link teardown (the slow part of a DEL) runs while the IPAM releases the lease.
  const deleting = netns && !netnsGone(netns) ? deleteLinkOfKind(ifName, 'macvlan', netns) : Promise.resolve(false);
  let ipamError: unknown;
  if (wantsIpam(inv)) await delegateIpam('DEL', inv).catch((err: unknown) => void (ipamError = err));
  await deleting;
  if (ipamError !== undefined) throw asCniError(ipamError);
}

async function check(inv: Invocation): Promise<void> {
  const conf = loadConf(inv, { requireMaster: false });
  if (inv.conf.prevResult === undefined) throw new CniError(Code.InvalidConfig, 'invalid network config: prevResult = missing: CHECK requires it');
  const prev = parseResult(inv.conf.prevResult, inv.cniVersion, 'prevResult');
  // The master, the pod's interface and routes are read while the IPAM checks its lease.
  const masterNetns = conf.linkInContainer ? inv.env.netns : undefined;
  const master = findLinkAsync(conf.master, masterNetns).then((link) => link, (err: unknown) => asCniError(err));
  const seen = readInterfaceAndRoutes(inv.env.ifName, inv.env.netns).then((found) => found, (err: unknown) => asCniError(err));
  if (wantsIpam(inv)) await delegateIpam('CHECK', inv);
  const [masterLink, pod] = [await master, await seen];
  if (masterLink instanceof CniError) throw masterLink;
  if (!masterLink) throw new CniError(Code.InvalidConfig, `invalid network config: master = ${showValue(conf.master)}: no such link${masterNetns ? ` in ${masterNetns}` : ''}`);
  if (pod instanceof CniError) throw pod;
  checkInterface(conf, inv.env, prev, pod);
}

async function status(inv: Invocation): Promise<void> {
  const fields = parseFields(inv);
  if (fields.master && !fields.linkInContainer && !findLink(fields.master)) {
    throw new CniError(Code.NotAvailable, `master ${showValue(fields.master)} does not exist on this node`);
  }
  if (wantsIpam(inv)) await delegateIpam('STATUS', inv);
}

async function gc(inv: Invocation): Promise<void> {
  if (wantsIpam(inv)) await delegateIpam('GC', inv);
}

export const macvlanPlugin: Plugin = {
  about: 'Underlay macvlan: a macvlan interface on a host interface, for pods on the physical network',
  add,
  del,
  check,
  status,
  gc,
};
