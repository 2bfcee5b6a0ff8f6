// The IPAM plugin's verbs, each a short story on top of config, lease and reconcile. It runs as its own
// executable (`whereabouts`, `underlay-ipam`) or in-process when macvlan or sriov delegate to it.
import { Code, CniError } from '../lib/cni/errors.ts';
import { parseCniArgs } from '../lib/cni/env.ts';
import { parseResult, type IpConfig, type Result } from '../lib/cni/result.ts';
import type { Invocation, Plugin } from '../lib/cni/skel.ts';
import { log } from '../lib/log.ts';
import { formatAddr, parseCidr } from './alloc/addr.ts';
import { emptyPool, findByContainer, lowestFree, type Claimant } from './alloc/allocator.ts';
import { loadIpamConfig, type IpamConfig } from './config/load.ts';
import { acquire, release, rollback, type Lease, type PoolTarget } from './lease/single.ts';
import { poolName } from './alloc/names.ts';
import { cidrAt } from './alloc/ranges.ts';
import { collectGarbage } from './gc/collect.ts';
import { acquireSharded, findSharded, lowestFreeSharded, releaseSharded, rollbackSharded } from './lease/sharded.ts';
import { isSharded } from './alloc/shards.ts';
import { operationDeadline } from './lease/retry.ts';
import { IPAM_ARGS } from './config/static.ts';
import { openStore } from './store/open.ts';
import { StoreUnavailable, type LegacyIpamStore } from './store/types.ts';

/** One pool per range (loadIpamConfig has refused two ranges in one pool, see checkPools). */
export function targetsOf(config: IpamConfig): PoolTarget[] {
  return config.ranges.map((range) => ({ name: poolName(config.networkName, range.cidr), range, networkName: config.networkName, overlapping: config.overlapping }));
}

/** The pod from CNI_ARGS; without one (podman, plain containerd) the container ID stands for it. */
export function claimantOf(inv: Pick<Invocation, 'env' | 'conf'>): Claimant {
  const args = parseCniArgs(inv.env.args, IPAM_ARGS);
  const namespace = args.K8S_POD_NAMESPACE ?? '';
  const name = args.K8S_POD_NAME ?? '';
  const podref = namespace && name ? `${namespace}/${name}` : inv.env.containerId;
  const who: Claimant = { id: inv.env.containerId, podref, ifname: inv.env.ifName, network: inv.conf.name };
  // The UID tells a pod from an earlier one of the same name; it means nothing without a pod name.
  if (podref !== inv.env.containerId && args.K8S_POD_UID) who.uid = args.K8S_POD_UID;
  return who;
}

/** How one pool is worked: as one whereabouts IPPool record, or as shards (see lease/sharded.ts). */
interface PoolOps {
  acquire(store: LegacyIpamStore, target: PoolTarget, who: Claimant, deadline: number): Promise<Lease>;
  rollback(store: LegacyIpamStore, target: PoolTarget, lease: Lease, who: Claimant, deadline: number): Promise<void>;
  release(store: LegacyIpamStore, target: PoolTarget, who: Claimant, deadline: number): Promise<unknown[]>;
  /** The offset `who` holds, if any. */
  find(store: LegacyIpamStore, target: PoolTarget, who: Claimant): Promise<bigint | undefined>;
  lowestFree(store: LegacyIpamStore, target: PoolTarget, deadline: number): Promise<bigint | undefined>;
}

const readRecord = async (store: LegacyIpamStore, target: PoolTarget) => (await store.readPool(target.name))?.value ?? emptyPool(target.range);

const SINGLE_RECORD: PoolOps = {
  acquire,
  rollback,
  release,
  async find(store, target, who) {
    const key = findByContainer(await readRecord(store, target), who.id, who.ifname);
    return key === undefined ? undefined : BigInt(key);
  },
  lowestFree: async (store, target) => lowestFree(await readRecord(store, target), target.range),
};

const SHARDED: PoolOps = {
  acquire: acquireSharded,
  rollback: rollbackSharded,
  release: releaseSharded,
  find: findSharded,
  lowestFree: lowestFreeSharded,
};

const opsFor = (target: PoolTarget): PoolOps => (isSharded(target.range) ? SHARDED : SINGLE_RECORD);

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

function resultOf(config: IpamConfig, leases: ReadonlyArray<[PoolTarget, Lease]>): Result {
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

function openTolerant(inv: Invocation, verb: string): { config: IpamConfig; store: LegacyIpamStore } | undefined {
  try {
    const config = loadIpamConfig(inv);
    return { config, store: openStore(config) };
  } catch (err) {
    if (!(err instanceof CniError) || !NOTHING_LEASED.includes(err.code)) throw err;
    log.warn(`${verb}: nothing to release: ${err.message}`);
    return undefined;
  }
}

async function add(inv: Invocation): Promise<Result> {
  const config = loadIpamConfig(inv);
  const store = openStore(config);
  const who = claimantOf(inv);
  const deadline = operationDeadline();
  const leases: Array<[PoolTarget, Lease]> = [];
  try {
    for (const target of targetsOf(config)) {
      leases.push([target, await opsFor(target).acquire(store, target, who, deadline)]);
    }
  } catch (err) {
    // A failed ADD keeps nothing: the leases taken for earlier ranges go back, within one deadline
    // for all of them (the ADD's own may be what ran out).
    const undoDeadline = operationDeadline();
    for (const [target, lease] of leases.reverse()) {
      try {
        await opsFor(target).rollback(store, target, lease, who, undoDeadline);
      } catch (undo) {
        log.warn(`ADD failed and its lease in pool ${target.name} could not be returned: ${undo instanceof Error ? undo.message : String(undo)}`);
      }
    }
    throw err;
  }
  return resultOf(config, leases);
}

async function del(inv: Invocation): Promise<void> {
  const opened = openTolerant(inv, 'DEL');
  if (!opened) return;
  const who = claimantOf(inv);
  const deadline = operationDeadline();
  for (const target of targetsOf(opened.config)) {
    const released = await opsFor(target).release(opened.store, target, who, deadline);
    if (released.length === 0) log.debug(`DEL: no lease of ${who.id} ${who.ifname} in pool ${target.name}`);
  }
}

async function check(inv: Invocation): Promise<void> {
  const config = loadIpamConfig(inv);
  const store = openStore(config);
  if (inv.conf.prevResult === undefined) throw new CniError(Code.InvalidConfig, 'invalid network config: prevResult is missing: CHECK compares the leases with it');
  const previous = parseResult(inv.conf.prevResult, inv.cniVersion, 'prevResult');
  const listed = new Set((previous.ips ?? []).map((ip) => normalCidr(ip.address)));
  const who = claimantOf(inv);
  const { id, ifname } = who;
  for (const target of targetsOf(config)) {
    const key = await opsFor(target).find(store, target, who);
    if (key === undefined) {
      throw new CniError(Code.UnknownContainer, `CHECK: container ${id} interface ${ifname} holds no lease in pool ${target.name} (${target.range.field}.range ${JSON.stringify(target.range.source)})`);
    }
    const address = cidrAt(target.range, key);
    if (!listed.has(address)) throw new CniError(Code.Internal, `CHECK: lease ${address} in pool ${target.name} is not among prevResult.ips`);
  }
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
  const opened = openTolerant(inv, 'GC');
  if (!opened) return;
  const outcome = await collectGarbage(opened.store, targetsOf(opened.config), opened.config.network, valid, operationDeadline());
  log.info(`GC: released ${outcome.released} leases, removed ${outcome.orphansRemoved} orphaned reservations`);
}

async function status(inv: Invocation): Promise<void> {
  const config = loadIpamConfig(inv);
  let store: LegacyIpamStore;
  try {
    store = openStore(config);
    await store.ping();
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new CniError(Code.NotAvailable, `ipam: the store is not usable: ${why}`);
  }
  for (const target of targetsOf(config)) {
    let free: bigint | undefined;
    try {
      free = await opsFor(target).lowestFree(store, target, operationDeadline());
    } catch (err) {
      throw new CniError(Code.NotAvailable, `ipam: cannot read pool ${target.name} from the ${store.description}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (free === undefined) {
      throw new CniError(Code.NotAvailable, `pool exhausted: ${target.range.field}.range = ${JSON.stringify(target.range.source)} has no free address (pool ${target.name})`);
    }
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
