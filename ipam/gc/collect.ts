// CNI GC: release this network's leases that no live attachment holds, pool by pool through the same
// operations as ADD and DEL (lease/pool.ts), then repair what crashes can leave behind: reservations
// whose address no pool of the network leases (an ADD killed between its reservation and its pool
// write, a DEL killed between its pool write and its reservation delete), and the store's own debris.
// Such an orphan only blocks an address, it never causes a duplicate, so repair can be cautious: it
// spares young orphans, which may belong to an ADD still in flight.
import { escaped, log } from '../../lib/log.ts';
import { parseCidr } from '../alloc/addr.ts';
import { notValidIn } from '../alloc/allocator.ts';
import { poolName, reservationAddress, SAFE_NAME } from '../alloc/names.ts';
import { offsetOf } from '../alloc/ranges.ts';
import { roleOf } from '../alloc/shards.ts';
import { opsFor } from '../lease/pool.ts';
import { commitOne, deleteWrite } from '../lease/records.ts';
import type { PoolTarget } from '../lease/target.ts';
import type { IpamStore, PoolRecord } from '../store/types.ts';

/**
 * Orphaned reservations younger than this are left alone: far longer than an ADD may take (its
 * deadline, lease/retry.ts). UNDERLAY_IPAM_ORPHAN_GRACE_MS overrides it, for tests that know no ADD runs.
 */
export function orphanGraceMs(env: NodeJS.ProcessEnv = process.env): number {
  const override = Number(env.UNDERLAY_IPAM_ORPHAN_GRACE_MS);
  return env.UNDERLAY_IPAM_ORPHAN_GRACE_MS !== undefined && Number.isFinite(override) && override >= 0 ? override : 10 * 60_000;
}

export interface GcOutcome {
  released: number;
  orphansRemoved: number;
}

/**
 * Releases the leases of `network` not in `valid`, pool by pool, then repairs orphaned records. `valid`
 * lists the attachments of one node, `node`: on a store the nodes share, only that node's leases are
 * judged (none when the node is unknown; in Kubernetes the reconciler frees the leases of gone pods).
 */
export async function collectGarbage(
  store: IpamStore,
  targets: ReadonlyArray<PoolTarget>,
  network: string,
  valid: ReadonlyArray<{ containerID: string; ifname: string }>,
  deadline: number,
  node: string | undefined,
): Promise<GcOutcome> {
  let doomed = notValidIn(network, valid, store.sharedByNodes ? node : undefined);
  if (store.sharedByNodes && node === undefined) {
    log.warn(`GC: ${store.description} holds every node's leases and this node's name is unknown (set NODENAME, or run \`underlay install\`), so GC releases none of them; in Kubernetes, \`underlay reconcile\` frees those of pods that are gone`);
    doomed = () => false;
  }
  const grace = orphanGraceMs();
  let released = 0;
  let orphansRemoved = 0;
  const seen = new Set<string>();
  for (const target of targets) {
    if (seen.has(target.name)) continue;
    seen.add(target.name);
    const outcome = await (await opsFor(store, target, deadline)).collect(store, target, doomed, deadline, grace);
    for (const [, a] of outcome.released) log.info(escaped`GC: released a lease of ${a.podref} (${a.id} ${a.ifname ?? ''}) in pool ${target.name}`);
    released += outcome.released.length;
    orphansRemoved += outcome.repaired;
  }
  if (targets.some((t) => t.overlapping)) orphansRemoved += await removeOrphans(store, targets, grace, deadline);
  orphansRemoved += await store.tidy(grace, deadline);
  return { released, orphansRemoved };
}

/** Every pool record of the network_name scope (shards included), not only this config's: an overlapping one may hold the lease. */
async function poolsInScope(store: IpamStore, networkName: string, deadline: number): Promise<PoolRecord[]> {
  const pools: PoolRecord[] = [];
  for (const record of await store.listPools(networkName ? `${networkName}-` : '', deadline)) {
    const role = roleOf(record.name);
    if (role.kind === 'shard' && poolName(networkName, record.value.range) === role.pool) pools.push(record.value);
  }
  return pools;
}

function leasedTo(pools: ReadonlyArray<PoolRecord>, family: 4 | 6, value: bigint, podref: string): boolean {
  return pools.some((pool) => {
    const cidr = parseCidr(pool.range);
    if (!cidr || cidr.family !== family) return false;
    const offset = value - cidr.network;
    return offset >= 0n && pool.allocations[offset.toString()]?.podref === podref;
  });
}

/**
 * Is the reservation `name` of the scope `networkName`? It says so itself (records we write carry their
 * scope). One written without it (by whereabouts, or an earlier version) is judged by its name only
 * when no longer network_name could have written that name: "x-fd00-1--5" is fd00:1::5 of "x" but
 * also 1::5 of "x-fd00", and GC of "x" must not delete the reservation of a live lease of "x-fd00".
 */
export function inScope(recorded: string | undefined, networkName: string, name: string): boolean {
  if (recorded !== undefined) return recorded === networkName;
  const prefix = networkName ? `${networkName}-` : '';
  for (let i = name.indexOf('-', prefix.length); i > 0; i = name.indexOf('-', i + 1)) {
    const longer = name.slice(0, i);
    if (longer.length > prefix.length && SAFE_NAME.test(longer) && reservationAddress(longer, name) !== undefined) return false;
  }
  return true;
}

async function removeOrphans(store: IpamStore, targets: ReadonlyArray<PoolTarget>, grace: number, deadline: number): Promise<number> {
  let removed = 0;
  const now = Date.now();
  for (const networkName of new Set(targets.filter((t) => t.overlapping).map((t) => t.networkName))) {
    const ranges = targets.filter((t) => t.networkName === networkName).map((t) => t.range);
    // Pools are listed before reservations: a lease written after this listing has a reservation
    // younger than the grace period, which is spared.
    const pools = await poolsInScope(store, networkName, deadline);
    for (const found of await store.listReservations(networkName ? `${networkName}-` : '', deadline)) {
      const addr = reservationAddress(networkName, found.name);
      // Only addresses of this config's own ranges are judged.
      if (!addr || !ranges.some((range) => offsetOf(range, addr) !== undefined)) continue;
      if (!inScope(found.value.networkname, networkName, found.name)) continue;
      const recorded = found.value.since ?? found.created;
      const since = recorded ? Date.parse(recorded) : Number.NaN;
      if (Number.isFinite(since) && now - since < grace) continue;
      if (leasedTo(pools, addr.family, addr.value, found.value.podref)) continue;
      if ((await commitOne(store, deleteWrite(found, found.name), deadline)) !== false) {
        removed++;
        log.info(escaped`GC: removed reservation ${found.name} of ${found.value.podref}: no pool of the network leases that address`);
      }
    }
  }
  return removed;
}
