// GC: release this network's leases that no live attachment holds, then repair what crashes can leave
// behind: reservations whose address no pool of the network leases (an ADD killed between its
// reservation and its pool write, a DEL killed between its pool write and its reservation delete).
// Such an orphan only blocks an address, it never causes a duplicate, so repair can be cautious: it
// spares young orphans, which may belong to an ADD still in flight.
import { log } from '../../lib/log.ts';
import { applyChange, planCollect } from '../alloc/allocator.ts';
import { dropReservations, type PoolTarget } from '../lease/single.ts';
import { ensureIndex } from '../lease/migrate.ts';
import { collectShard, forgetReleased, shardsOf } from '../lease/sharded.ts';
import { indexName, isClaimOf, isSharded, roleOf, shardName, shardOf } from '../alloc/shards.ts';
import { SAFE_NAME, poolName, reservationAddress } from '../alloc/names.ts';
import { offsetOf } from '../alloc/ranges.ts';
import { parseCidr } from '../alloc/addr.ts';
import { CONFLICT, withRetries } from '../lease/retry.ts';
import { FileStore } from '../store/file/store.ts';
import type { Allocation, LegacyIpamStore, PoolRecord } from '../store/types.ts';

/**
 * Orphaned reservations younger than this are left alone: far longer than an ADD may take (its
 * deadline, ipam/lease/retry.ts). UNDERLAY_IPAM_ORPHAN_GRACE_MS overrides it, for tests that know no ADD runs.
 */
export function orphanGraceMs(env: NodeJS.ProcessEnv = process.env): number {
  const override = Number(env.UNDERLAY_IPAM_ORPHAN_GRACE_MS);
  return env.UNDERLAY_IPAM_ORPHAN_GRACE_MS !== undefined && Number.isFinite(override) && override >= 0 ? override : 10 * 60_000;
}

export interface GcOutcome {
  released: number;
  orphansRemoved: number;
}

/** Releases the leases of `network` not in `valid`, pool by pool, then repairs orphaned reservations. */
export async function collectGarbage(
  store: LegacyIpamStore,
  targets: ReadonlyArray<PoolTarget>,
  network: string,
  valid: ReadonlyArray<{ containerID: string; ifname: string }>,
  deadline: number,
  now = Date.now(),
): Promise<GcOutcome> {
  let released = 0;
  let orphansRemoved = 0;
  const seen = new Set<string>();
  for (const target of targets) {
    if (seen.has(target.name)) continue;
    seen.add(target.name);
    const sharded = isSharded(target.range);
    if (sharded && (await store.readPool(target.name)) !== undefined) await ensureIndex(store, target, deadline);
    const shards = sharded ? await shardsOf(store, target.name) : [0n];
    for (const shard of shards) {
      // A shard's leases leave through collectShard, which changes the index version (see lease/sharded.ts).
      const gone = sharded ? await collectShard(store, target, shard, network, valid, deadline) : await collectRecord(store, target, network, valid, deadline);
      const name = shardName(target.name, shard);
      for (const [, allocation] of gone) log.info(`GC: released a lease of ${allocation.podref} (${allocation.id} ${allocation.ifname ?? ''}) in pool ${name}`);
      if (sharded) await forgetReleased(store, target, gone, deadline);
      else await dropReservations(store, target, gone, deadline);
      released += gone.length;
    }
    if (sharded) orphansRemoved += await repairIndexAndClaims(store, target, deadline, now);
  }
  if (targets.some((t) => t.overlapping)) orphansRemoved += await removeOrphans(store, targets, deadline, now);
  // Temp files of a reservation create killed before its cleanup (file store only): old ones are dead.
  if (store instanceof FileStore) store.removeStaleTemps(orphanGraceMs(), now);
  return { released, orphansRemoved };
}

async function collectRecord(
  store: LegacyIpamStore, target: PoolTarget, network: string, valid: ReadonlyArray<{ containerID: string; ifname: string }>, deadline: number,
): Promise<Array<[bigint, Allocation]>> {
  const { name } = target;
  return withRetries(`ipam: pool ${name}`, deadline, async () => {
    const snapshot = await store.readPool(name);
    if (!snapshot) return [];
    if (snapshot.value.range !== target.range.cidr) {
      // Another scope's pool under the same name ("x" + fd00:1::/120 and "x-fd00" + 1::/120 both name
      // "x-fd00-1---120", as whereabouts names them): its leases are not this config's to judge.
      log.warn(`GC: pool ${name} holds range ${snapshot.value.range}, not ${target.range.cidr}: left alone`);
      return [];
    }
    const change = planCollect(snapshot.value, network, valid);
    if (change.remove.length === 0) return [];
    if (!(await store.writePool(name, applyChange(snapshot.value, change), snapshot.version))) return CONFLICT;
    return change.remove.map((key): [bigint, Allocation] => [BigInt(key), snapshot.value.allocations[key]!]);
  });
}

/**
 * The hints are reset (a hint left too high by a crashed DEL would skip free addresses; none at all
 * only costs an ADD a few reads), and old claims whose lease is gone are removed: an ADD killed between
 * its claim and its shard write, or a lease released by whereabouts. Young ones may be an ADD in flight.
 */
async function repairIndexAndClaims(store: LegacyIpamStore, target: PoolTarget, deadline: number, now: number): Promise<number> {
  // Always written, so its version changes even when it holds no hint: an ADD that read it before
  // cannot raise a hint over an address this GC freed.
  await withRetries(`ipam: index ${indexName(target.name)}`, deadline, async () => {
    const index = await store.readPool(indexName(target.name));
    if (!index) return undefined;
    return (await store.writePool(indexName(target.name), { ...index.value, hints: {} }, index.version)) ? undefined : CONFLICT;
  });
  let removed = 0;
  const grace = orphanGraceMs();
  for (const name of (await store.listReservations()).filter((n) => isClaimOf(target.name, n))) {
    const found = await store.readReservation(name);
    if (!found) continue;
    const since = found.value.since ? Date.parse(found.value.since) : Number.NaN;
    if (Number.isFinite(since) && now - since < grace) continue;
    const offset = found.value.offset;
    const held = offset && /^\d+$/.test(offset) ? (await store.readPool(shardName(target.name, shardOf(BigInt(offset)))))?.value.allocations[offset] : undefined;
    if (held && held.podref === found.value.podref) continue;
    if (await withRetries(`ipam: claim ${name}`, deadline, () => store.deleteReservation(name, found.version))) removed++;
  }
  return removed;
}

/** Every pool of the network_name scope, not only this config's: an overlapping one may hold the lease. */
async function poolsInScope(store: LegacyIpamStore, networkName: string): Promise<PoolRecord[]> {
  const pools: PoolRecord[] = [];
  for (const name of await store.listPools()) {
    const snapshot = await store.readPool(name);
    // Shards of a big pool too: each holds its own offsets, with the pool's range.
    const role = roleOf(name);
    if (snapshot && role.kind === 'shard' && poolName(networkName, snapshot.value.range) === role.pool) pools.push(snapshot.value);
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

async function removeOrphans(store: LegacyIpamStore, targets: ReadonlyArray<PoolTarget>, deadline: number, now: number): Promise<number> {
  let removed = 0;
  const grace = orphanGraceMs();
  for (const networkName of new Set(targets.filter((t) => t.overlapping).map((t) => t.networkName))) {
    const ranges = targets.filter((t) => t.networkName === networkName).map((t) => t.range);
    // Pools are read before reservations are judged: a lease written after this read has a reservation
    // younger than the grace period, which is spared.
    const pools = await poolsInScope(store, networkName);
    for (const name of await store.listReservations()) {
      const addr = reservationAddress(networkName, name);
      // Only addresses of this config's own ranges are judged.
      if (!addr || !ranges.some((range) => offsetOf(range, addr) !== undefined)) continue;
      const found = await store.readReservation(name);
      if (!found || !inScope(found.value.networkname, networkName, name)) continue;
      const since = found.value.since ? Date.parse(found.value.since) : Number.NaN;
      if (Number.isFinite(since) && now - since < grace) continue;
      if (leasedTo(pools, addr.family, addr.value, found.value.podref)) continue;
      const deleted = await withRetries(`ipam: reservation ${name}`, deadline, async () => store.deleteReservation(name, found.version));
      if (deleted) {
        removed++;
        log.info(`GC: removed reservation ${name} of ${found.value.podref}: no pool of the network leases that address`);
      }
    }
  }
  return removed;
}
