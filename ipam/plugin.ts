// The IPAM plugin's verbs, each a short story on top of config, lease and reconcile. It runs as its own
// executable (`whereabouts`, `underlay-ipam`) or in-process when macvlan or sriov delegate to it.
import { Code, CniError } from '../lib/cni/errors.ts';
import { readFileIfExists } from '../lib/fs.ts';
import { parseCniArgs } from '../lib/cni/env.ts';
import { parseResult, type IpConfig, type Result } from '../lib/cni/result.ts';
import type { Invocation, Plugin } from '../lib/cni/skel.ts';
import { escaped, log } from '../lib/log.ts';
import { formatAddr, parseCidr } from './alloc/addr.ts';
import type { Claimant } from './alloc/allocator.ts';
import { poolName } from './alloc/names.ts';
import { cidrAt } from './alloc/ranges.ts';
import { loadIpamConfig, type IpamConfig } from './config/load.ts';
import { IPAM_ARGS } from './config/static.ts';
import { opsFor, type PoolOps } from './lease/pool.ts';
import { operationDeadline, retryStats } from './lease/retry.ts';
import type { Lease, PodGone, PoolTarget } from './lease/target.ts';
import type { PodLiveness } from '../lib/kube/pods.ts';
import { openStore } from './store/open.ts';
import { StoreUnavailable, type IpamStore } from './store/types.ts';

/** One pool per range (loadIpamConfig has refused two ranges in one pool, see checkPools). */
export function targetsOf(config: IpamConfig): PoolTarget[] {
  return config.ranges.map((range) => ({ name: poolName(config.networkName, range.cidr), range, networkName: config.networkName, overlapping: config.overlapping }));
}

/** Where `underlay install` writes the node's name on each node of a cluster. */
const NODENAME_FILE = '/etc/cni/net.d/underlay.d/nodename';

/** The node, when it is known: NODENAME (whereabouts' variable), else what the installer wrote. */
function nodeName(): string | undefined {
  if (process.env.NODENAME) return process.env.NODENAME;
  try {
    return readFileIfExists(NODENAME_FILE, { maxBytes: 256, followLinks: true })?.trim() || undefined;
  } catch {
    return undefined;
  }
}

/** The pod from CNI_ARGS; without one (podman, plain containerd) the container ID stands for it. */
export function claimantOf(inv: Pick<Invocation, 'env' | 'conf'>): Claimant {
  const args = parseCniArgs(inv.env.args, IPAM_ARGS);
  const namespace = args.K8S_POD_NAMESPACE ?? '';
  const name = args.K8S_POD_NAME ?? '';
  const podref = namespace && name ? `${namespace}/${name}` : inv.env.containerId;
  const who: Claimant = { id: inv.env.containerId, podref, ifname: inv.env.ifName, network: inv.conf.name, node: nodeName() };
  // The UID tells a pod from an earlier one of the same name; it means nothing without a pod name.
  if (podref !== inv.env.containerId && args.K8S_POD_UID) who.uid = args.K8S_POD_UID;
  return who;
}

/** A store outage that outlived the retries of a step is "try again later" (11), not an internal error. */
function outage<A extends unknown[], R>(verb: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A) => {
    try {
      return await verb(...args);
    } catch (err) {
      if (err instanceof StoreUnavailable) throw new CniError(Code.TryAgainLater, `ipam: try again later: the store is unavailable: ${err.message}`);
      throw err;
    }
  };
}

const normalCidr = (text: string): string | undefined => {
  const cidr = parseCidr(text);
  return cidr && `${formatAddr(cidr.family, cidr.addr)}/${cidr.prefix}`;
};

function resultOf(config: IpamConfig, leases: ReadonlyArray<readonly [PoolTarget, Lease, ...unknown[]]>): Result {
  const gateway = config.gateway;
  const ips: IpConfig[] = leases.map(([target, lease]) => {
    const address = cidrAt(target.range, lease.offset);
    // whereabouts gives its one gateway to every address; only one of the same family makes sense.
    return gateway && gateway.family === target.range.family ? { address, gateway: formatAddr(gateway.family, gateway.value) } : { address };
  });
  for (const a of config.addresses) ips.push(a.gateway ? { address: a.address, gateway: a.gateway } : { address: a.address });
  const result: Result = { ips, routes: config.routes };
  if (config.dns) result.dns = config.dns;
  return result;
}

/** Config errors a DEL or GC tolerates: such a config could never have leased anything here. */
const NOTHING_LEASED: ReadonlyArray<number> = [Code.IncompatibleVersion, Code.UnsupportedField, Code.InvalidEnvironment, Code.InvalidConfig];

/** DEL and GC: the config and its store, or undefined when the config could never have leased anything. */
async function openTolerant(inv: Invocation, verb: string): Promise<{ config: IpamConfig; store: IpamStore } | undefined> {
  try {
    const config = loadIpamConfig(inv);
    return { config, store: await openStore(config) };
  } catch (err) {
    if (!(err instanceof CniError) || !NOTHING_LEASED.includes(err.code)) throw err;
    log.warn(`${verb}: nothing to release: ${err.message}`);
    return undefined;
  }
}

/**
 * Runs `body` on the config's store, closed afterwards so no connection holds the process open. With
 * UNDERLAY_IPAM_STATS set, one line on stderr says what the verb cost (the benchmarks read it).
 */
async function withStore<T>(opened: IpamStore | Promise<IpamStore>, body: (store: IpamStore) => Promise<T>): Promise<T> {
  const store = await opened;
  const started = Date.now();
  try {
    return await body(store);
  } finally {
    await store.close();
    if (process.env.UNDERLAY_IPAM_STATS) {
      process.stderr.write(`${JSON.stringify({ ipamStats: { ms: Date.now() - started, requests: store.requests ?? null, ...retryStats } })}\n`);
    }
  }
}

/**
 * Where the cluster can be asked whether a pod is gone (a kubeconfig, or the Kubernetes store's
 * service account), a pod re-created under its name takes over its predecessor's address once it is.
 */
async function podLivenessOf(config: IpamConfig): Promise<PodLiveness | undefined> {
  if (!config.kubeconfig && config.datastore !== 'kubernetes') return undefined;
  return (await import('../lib/kube/pods.ts')).podLiveness(config.kubeconfig);
}

async function add(inv: Invocation): Promise<Result> {
  const config = loadIpamConfig(inv);
  const who = claimantOf(inv);
  const pods = await podLivenessOf(config);
  const podGone: PodGone | undefined = pods && ((podref, uid, successor, deadline) => pods.gone(podref, uid, successor, deadline));
  return withStore(openStore(config), async (store) => {
    const deadline = operationDeadline();
    const leases: Array<[PoolTarget, Lease, PoolOps]> = [];
    try {
      for (const target of targetsOf(config)) {
        const ops = await opsFor(store, target, deadline);
        leases.push([target, await ops.acquire(store, target, who, deadline, podGone), ops]);
      }
    } catch (err) {
      // A failed ADD keeps nothing: the leases taken for earlier ranges go back, within one deadline
      // for all of them (the ADD's own may be what ran out).
      const undoDeadline = operationDeadline();
      for (const [target, lease, ops] of leases.reverse()) {
        try {
          await ops.rollback(store, target, lease, who, undoDeadline);
        } catch (undo) {
          log.warn(`ADD failed and its lease in pool ${target.name} could not be returned: ${undo instanceof Error ? undo.message : String(undo)}`);
        }
      }
      throw err;
    } finally {
      pods?.close();
    }
    return resultOf(config, leases);
  });
}

async function del(inv: Invocation): Promise<void> {
  const opened = await openTolerant(inv, 'DEL');
  if (!opened) return;
  const who = claimantOf(inv);
  await withStore(opened.store, async (store) => {
    const deadline = operationDeadline();
    for (const target of targetsOf(opened.config)) {
      const released = await (await opsFor(store, target, deadline)).release(store, target, who, deadline);
      if (released.length === 0) log.debug(escaped`DEL: no lease of ${who.id} ${who.ifname} in pool ${target.name}`);
    }
  });
}

async function check(inv: Invocation): Promise<void> {
  const config = loadIpamConfig(inv);
  if (inv.conf.prevResult === undefined) throw new CniError(Code.InvalidConfig, 'invalid network config: prevResult is missing: CHECK compares the leases with it');
  const previous = parseResult(inv.conf.prevResult, inv.cniVersion, 'prevResult');
  const listed = new Set((previous.ips ?? []).map((ip) => normalCidr(ip.address)));
  const who = claimantOf(inv);
  await withStore(openStore(config), async (store) => {
    const deadline = operationDeadline();
    for (const target of targetsOf(config)) {
      const key = await (await opsFor(store, target, deadline)).find(store, target, who, deadline);
      if (key === undefined) {
        throw new CniError(Code.UnknownContainer, `CHECK: container ${who.id} interface ${who.ifname} holds no lease in pool ${target.name} (${target.range.field}.range ${JSON.stringify(target.range.source)})`);
      }
      const address = cidrAt(target.range, key);
      if (!listed.has(address)) throw new CniError(Code.Internal, `CHECK: lease ${address} in pool ${target.name} is not among prevResult.ips`);
    }
  });
  for (const a of config.addresses) {
    if (!listed.has(normalCidr(a.address))) throw new CniError(Code.Internal, `CHECK: static address ${a.address} is not among prevResult.ips`);
  }
}

async function gc(inv: Invocation): Promise<void> {
  const valid = inv.conf['cni.dev/valid-attachments'];
  if (valid === undefined) {
    // Read as "no attachment is valid" it would release every lease of the network: refuse instead.
    throw new CniError(Code.InvalidConfig, 'invalid network config: cni.dev/valid-attachments is missing: GC needs the list of attachments to keep');
  }
  const opened = await openTolerant(inv, 'GC');
  if (!opened) return;
  const { config } = opened;
  const { collectGarbage } = await import('./gc/collect.ts');
  const outcome = await withStore(opened.store, (store) => collectGarbage(store, targetsOf(config), config.network, valid, operationDeadline(), nodeName()));
  log.info(`GC: released ${outcome.released} leases, removed ${outcome.orphansRemoved} orphaned records`);
}

const why = (err: unknown): string => (err instanceof Error ? err.message : String(err));

async function status(inv: Invocation): Promise<void> {
  const config = loadIpamConfig(inv);
  let store: IpamStore;
  try {
    store = await openStore(config);
  } catch (err) {
    throw new CniError(Code.NotAvailable, `ipam: the store is not usable: ${why(err)}`);
  }
  try {
    const deadline = operationDeadline();
    try {
      await store.ping(deadline);
    } catch (err) {
      throw new CniError(Code.NotAvailable, `ipam: the ${store.description} is not usable: ${why(err)}`);
    }
    for (const target of targetsOf(config)) {
      let free: bigint | undefined;
      try {
        free = await (await opsFor(store, target, deadline)).lowestFree(store, target, deadline);
      } catch (err) {
        throw new CniError(Code.NotAvailable, `ipam: cannot read pool ${target.name} from the ${store.description}: ${why(err)}`);
      }
      if (free === undefined) {
        throw new CniError(Code.NotAvailable, `pool exhausted: ${target.range.field}.range = ${JSON.stringify(target.range.source)} has no free address (pool ${target.name})`);
      }
    }
  } finally {
    await store.close();
  }
}

export const ipamPlugin: Plugin = {
  about: 'Underlay IPAM: whereabouts-compatible cluster IP address management (file store built in)',
  add: outage(add),
  del: outage(del),
  check: outage(check),
  gc: outage(gc),
  status,
};
