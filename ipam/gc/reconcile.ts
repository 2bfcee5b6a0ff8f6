// `underlay reconcile`: frees the leases and reservations of pods that no longer exist (a node lost
// before its pods' DEL ran, a pod force-deleted, a DEL that never came), without ever taking an
// address from a live pod. whereabouts' reconciler freed live addresses three ways (a Pending pod not
// yet in its view, a StatefulSet pod re-created under the same name, a pod created between its two
// listings); each is closed here by the order of the reads and by what a lease is judged on:
//
//   1. The pools and the reservations are listed first, then the pods (one LIST, every namespace). A
//      pod created after the pod listing either has a lease in the pools' view, whose pod is then
//      checked again (step 2), or has none there, and nothing of it is judged.
//   2. A lease (or reservation) is a candidate when its pod is missing from the pod listing, or when
//      the lease carries a pod UID (K8S_POD_UID at ADD) and the pod of that name has another UID (a
//      StatefulSet pod re-created). A lease without a UID (whereabouts wrote none) is judged by name
//      alone. A podref that is a container ID (no pod was named) is never judged.
//   3. Each candidate pod is read again (GET) right before freeing: gone only on the API server's 404,
//      or when the pod of that name now has another UID and its network-status does not list the
//      address (the new pod does not hold it). A pod that exists with the lease's UID is live whatever
//      its state: Pending without network status, Terminating until its object is gone. Any other
//      answer confirms nothing, and nothing of that pod is freed.
//   4. Leases are freed through the pool's own operations (lease/pool.ts collect), with a predicate
//      that dooms exactly the leases seen in step 1 and confirmed in step 3, by pod, UID, container ID
//      and interface: a lease that moved to another sandbox meanwhile (a new container ID, a new UID)
//      is no longer what was judged, and stays. Each pool is re-read and changed by compare-and-swap.
//   5. Then orphaned reservations (as GC repairs them, ipam/gc/collect.ts): a reservation whose pod is
//      confirmed gone and whose address no lease holds, in a listing of the pools taken after step 4,
//      deleted at the version seen in step 1 (an ADD that took it over meanwhile changed it). Ours
//      younger than the orphan grace period may belong to an ADD in flight and are spared.
// A dry run does steps 1-3 and reports what 4 and 5 would free, from the view of step 1.
import { setTimeout as sleep } from 'node:timers/promises';
import { formatAddr, parseCidr } from '../alloc/addr.ts';
import { normalizeForName, poolName, reservationAddress, SAFE_NAME } from '../alloc/names.ts';
import { addressAt, resolveRange } from '../alloc/ranges.ts';
import { isClaimName, roleOf } from '../alloc/shards.ts';
import { opsFor } from '../lease/pool.ts';
import { commitOne, deleteWrite } from '../lease/records.ts';
import { belongsTo } from '../lease/reservations.ts';
import { reservationOf, type PoolTarget } from '../lease/target.ts';
import type { Allocation, IpamStore, Named, PoolRecord, Reservation } from '../store/types.ts';
import { KubeError } from '../../lib/kube/errors.ts';
import { isPodRef, type PodSource, type PodState } from './pods.ts';

export interface ReconcileOptions {
  dryRun: boolean;
  /** Reservations (and claims of big pools) younger than this are spared: see orphanGraceMs. */
  graceMs: number;
  /** A fresh deadline (epoch ms) for one step: a listing, a pod's re-read, one pool's collection. */
  deadline: () => number;
}

export interface Freed {
  kind: 'lease' | 'reservation';
  /** The pool a lease was in; for a reservation, the record's name. */
  pool?: string;
  name?: string;
  address: string;
  podref: string;
  poduid?: string;
  containerID: string;
  ifname: string;
  reason: string;
}

export interface Spared {
  podref: string;
  poduid?: string;
  reason: string;
}

export interface ReconcileOutcome {
  dryRun: boolean;
  /** Pools judged, leases in them, reservations listed, pods listed. */
  pools: number;
  leases: number;
  reservations: number;
  pods: number;
  freed: Freed[];
  /** Candidates that the re-read found live (each pod once per UID). */
  spared: Spared[];
  /** Records of big pools repaired by the collection (orphaned claims). */
  repaired: number;
  /** Pools left alone, with why. */
  skipped: string[];
  errors: string[];
}

interface PoolView {
  target: PoolTarget;
  records: Array<Named<PoolRecord>>;
}

interface LeaseSeen {
  view: PoolView;
  offset: bigint;
  allocation: Allocation;
}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** The network_name a pool's name carries, when the name is the one whereabouts gives its range. */
export function networkNameOf(name: string, cidr: string): string | undefined {
  const tail = normalizeForName(cidr);
  if (name === tail) return '';
  if (!name.endsWith(`-${tail}`)) return undefined;
  const networkName = name.slice(0, name.length - tail.length - 1);
  return SAFE_NAME.test(networkName) && poolName(networkName, cidr) === name ? networkName : undefined;
}

/** The pools of the store, each as the target its operations take: its whole range, its scope. */
function poolViews(records: ReadonlyArray<Named<PoolRecord>>, skipped: string[]): Map<string, PoolView> {
  const views = new Map<string, PoolView>();
  const refused = new Set<string>();
  for (const record of records) {
    const role = roleOf(record.name);
    if (role.kind !== 'shard' || refused.has(role.pool)) continue;
    let view = views.get(role.pool);
    if (!view) {
      const why = targetOf(role.pool, record.value.range);
      if (typeof why === 'string') {
        refused.add(role.pool);
        skipped.push(`pool ${role.pool}: ${why}`);
        continue;
      }
      view = { target: why, records: [] };
      views.set(role.pool, view);
    }
    if (record.value.range === view.target.range.cidr) view.records.push(record);
  }
  return views;
}

function targetOf(name: string, range: string): PoolTarget | string {
  let resolved;
  try {
    resolved = resolveRange({ range }, `pool ${name}`);
  } catch (err) {
    return `its range ${JSON.stringify(range)} is not one a config can have: ${messageOf(err)}`;
  }
  if (resolved.cidr !== range) return `its range ${JSON.stringify(range)} is not written as a network (${resolved.cidr})`;
  const networkName = networkNameOf(name, resolved.cidr);
  if (networkName === undefined) return `its name is not the one whereabouts gives range ${range} (with or without a network_name)`;
  // Overlapping: a released lease takes its reservation with it when it has one that is still its own.
  return { name, range: resolved, networkName, overlapping: true };
}

/** Every lease of the view whose key is a decimal offset. */
function* leasesOf(view: PoolView): Generator<LeaseSeen> {
  for (const record of view.records) {
    for (const [key, allocation] of Object.entries(record.value.allocations)) {
      if (/^\d+$/.test(key)) yield { view, offset: BigInt(key), allocation };
    }
  }
}

/** Exactly the lease as it was judged: a lease moved to another sandbox or pod instance is another key. */
const leaseKey = (a: Allocation): string => JSON.stringify([a.podref, a.poduid ?? '', a.id, a.ifname ?? '']);

/** Was the holder (podref and, if it has one, UID) absent from the pod listing? */
function missing(pods: ReadonlyMap<string, PodState>, podref: string, poduid: string | undefined): boolean {
  const pod = pods.get(podref);
  return !pod || (poduid !== undefined && poduid !== '' && !pod.uids.has(poduid));
}

/**
 * The verdict on a holder once its pod was read again: why it is gone, or undefined when it is live.
 * `address` is the address it holds, looked for in a re-created pod's network-status.
 */
export function goneBecause(now: PodState | undefined, podref: string, poduid: string | undefined, address: string | undefined): string | undefined {
  if (!now) return `pod ${podref} no longer exists`;
  if (poduid === undefined || poduid === '' || now.uids.has(poduid)) return undefined;
  if (address !== undefined && now.addresses.has(address)) return undefined;
  return `pod ${podref} was re-created (now uid ${[...now.uids][0] ?? '?'}); this was of uid ${poduid}`;
}

function liveBecause(now: PodState | undefined, poduid: string | undefined): string {
  if (!now) return 'live';
  if (poduid && !now.uids.has(poduid)) return `re-created under the same name, and the new pod (uid ${[...now.uids][0] ?? '?'}) lists the address in its network-status`;
  if (now.terminating) return 'found on re-read: Terminating, live until its object is gone';
  if (now.phase === 'Pending' && now.addresses.size === 0) return 'found on re-read: Pending, without network status yet';
  return `found on re-read (${now.phase || 'no phase'})`;
}

/** The pod now: a 404 is undefined; a failure that may pass is tried again, within the deadline. */
async function reread(pods: PodSource, podref: string, deadline: number): Promise<PodState | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await pods.get(podref, deadline);
    } catch (err) {
      if (!(err instanceof KubeError) || !err.mayPass || attempt >= 3 || Date.now() + 200 * attempt >= deadline) throw err;
      await sleep(200 * attempt);
    }
  }
}

const addressKey = (family: 4 | 6, value: bigint): string => `${family}/${value}`;

/** Every address some lease holds, over all pools and scopes, from pool records. */
function heldAddresses(records: Iterable<Named<PoolRecord>>, skip?: (name: string, a: Allocation) => boolean): Set<string> {
  const held = new Set<string>();
  for (const record of records) {
    const cidr = parseCidr(record.value.range);
    if (!cidr) continue;
    for (const [key, allocation] of Object.entries(record.value.allocations)) {
      if (!/^\d+$/.test(key) || skip?.(record.name, allocation)) continue;
      held.add(addressKey(cidr.family, cidr.network + BigInt(key)));
    }
  }
  return held;
}

/**
 * Every address a reservation's name can stand for, whatever network_name wrote it ("x-fd00-1--5" is
 * fd00:1::5 of "x" and 1::5 of "x-fd00"). The first is the one its own record names, when it does.
 */
function addressesNamedBy(found: Named<Reservation>): Array<{ family: 4 | 6; value: bigint }> {
  const out: Array<{ family: 4 | 6; value: bigint }> = [];
  const recorded = found.value.networkname;
  if (recorded !== undefined) {
    const own = reservationAddress(recorded, found.name);
    if (own) out.push(own);
  }
  const whole = reservationAddress('', found.name);
  if (whole) out.push(whole);
  for (let i = found.name.indexOf('-'); i > 0; i = found.name.indexOf('-', i + 1)) {
    const addr = reservationAddress(found.name.slice(0, i), found.name);
    if (addr) out.push(addr);
  }
  return out;
}

export async function reconcile(store: IpamStore, pods: PodSource, options: ReconcileOptions): Promise<ReconcileOutcome> {
  const outcome: ReconcileOutcome = { dryRun: options.dryRun, pools: 0, leases: 0, reservations: 0, pods: 0, freed: [], spared: [], repaired: 0, skipped: [], errors: [] };

  // 1. Pools and reservations, then pods.
  const listed = await store.listPools('', options.deadline());
  const views = poolViews(listed, outcome.skipped);
  const reservations = (await store.listReservations('', options.deadline())).filter((r) => !isClaimName(r.name));
  const podList = await pods.list(options.deadline());
  outcome.pools = views.size;
  outcome.reservations = reservations.length;
  outcome.pods = podList.size;

  // 2. Candidates: holders missing from the pod listing.
  const leaseCandidates: LeaseSeen[] = [];
  for (const view of views.values()) {
    for (const seen of leasesOf(view)) {
      outcome.leases++;
      const a = seen.allocation;
      if (isPodRef(a.podref, a.id) && missing(podList, a.podref, a.poduid)) leaseCandidates.push(seen);
    }
  }
  const reservationCandidates = reservations.filter((r) => isPodRef(r.value.podref, r.value.containerid) && missing(podList, r.value.podref, r.value.poduid));

  // 3. One GET per candidate pod, right before freeing.
  const now = new Map<string, PodState | undefined>();
  const podrefs = [...new Set([...leaseCandidates.map((c) => c.allocation.podref), ...reservationCandidates.map((r) => r.value.podref)])].sort();
  for (const podref of podrefs) {
    try {
      now.set(podref, await reread(pods, podref, options.deadline()));
    } catch (err) {
      outcome.errors.push(`pod ${podref} could not be read again, nothing of it is freed: ${messageOf(err)}`);
    }
  }
  const sparedSeen = new Set<string>();
  const spare = (podref: string, poduid: string | undefined, reason: string): void => {
    const key = `${podref}\u0000${poduid ?? ''}`;
    if (sparedSeen.has(key)) return;
    sparedSeen.add(key);
    outcome.spared.push({ podref, ...(poduid && { poduid }), reason });
  };

  // 4. Leases, pool by pool.
  const doomed = new Map<PoolView, Map<string, string>>();
  for (const seen of leaseCandidates) {
    const a = seen.allocation;
    if (!now.has(a.podref)) continue;
    const pod = now.get(a.podref);
    const reason = goneBecause(pod, a.podref, a.poduid, addressAt(seen.view.target.range, seen.offset));
    if (reason === undefined) {
      spare(a.podref, a.poduid, liveBecause(pod, a.poduid));
      continue;
    }
    const keys = doomed.get(seen.view) ?? new Map<string, string>();
    keys.set(leaseKey(a), reason);
    doomed.set(seen.view, keys);
  }
  // The leases freed (or, in a dry run, to be freed), for step 5.
  const freedLeases: Array<[PoolTarget, bigint, Allocation]> = [];
  const leaseFreed = (target: PoolTarget, offset: bigint, a: Allocation, reason: string): Freed => {
    freedLeases.push([target, offset, a]);
    return {
      kind: 'lease', pool: target.name, address: addressAt(target.range, offset), podref: a.podref, ...(a.poduid && { poduid: a.poduid }),
      containerID: a.id, ifname: a.ifname ?? '', reason,
    };
  };
  for (const [view, keys] of doomed) {
    const { target } = view;
    if (options.dryRun) {
      for (const seen of leasesOf(view)) {
        const reason = keys.get(leaseKey(seen.allocation));
        if (reason !== undefined) outcome.freed.push(leaseFreed(target, seen.offset, seen.allocation, reason));
      }
      continue;
    }
    try {
      const collected = await (await opsFor(store, target, options.deadline())).collect(store, target, (a) => keys.has(leaseKey(a)), options.deadline(), options.graceMs);
      for (const [offset, a] of collected.released) outcome.freed.push(leaseFreed(target, offset, a, keys.get(leaseKey(a))!));
      outcome.repaired += collected.repaired;
    } catch (err) {
      outcome.errors.push(`pool ${target.name}: ${messageOf(err)}`);
    }
  }

  // 5. Orphaned reservations. Those a freed lease took with it (lease/remove.ts drops a lease's
  // reservation while it belongs to the lease) are not judged again.
  const withLeases = new Map<string, Allocation[]>();
  for (const [target, offset, a] of freedLeases) {
    const name = reservationOf(target, offset);
    withLeases.set(name, [...(withLeases.get(name) ?? []), a]);
  }
  const judged = reservationCandidates.filter((r) => now.has(r.value.podref) && !(withLeases.get(r.name) ?? []).some((a) => belongsTo(r.value, a)));
  if (judged.length === 0) return outcome;
  let held: Set<string>;
  if (options.dryRun) {
    const doomedIn = new Map<string, Map<string, string>>();
    for (const [view, keys] of doomed) for (const record of view.records) doomedIn.set(record.name, keys);
    held = heldAddresses(listed, (name, a) => doomedIn.get(name)?.has(leaseKey(a)) === true);
  } else {
    try {
      held = heldAddresses(await store.listPools('', options.deadline()));
    } catch (err) {
      outcome.errors.push(`the pools could not be listed again, no reservation is freed: ${messageOf(err)}`);
      return outcome;
    }
  }
  const since = Date.now();
  for (const found of judged) {
    const r = found.value;
    const addresses = addressesNamedBy(found);
    if (addresses.length === 0) continue; // not a name any scope gives an address: not judged
    const display = formatAddr(addresses[0]!.family, addresses[0]!.value);
    const reason = goneBecause(now.get(r.podref), r.podref, r.poduid, display);
    if (reason === undefined) {
      spare(r.podref, r.poduid, liveBecause(now.get(r.podref), r.poduid));
      continue;
    }
    if (addresses.some((addr) => held.has(addressKey(addr.family, addr.value)))) continue; // a lease holds it: not an orphan
    const made = r.since ? Date.parse(r.since) : Number.NaN;
    if (Number.isFinite(made) && since - made < options.graceMs) {
      spare(r.podref, r.poduid, `reservation ${found.name} is younger than the orphan grace period: it may be an ADD's in flight`);
      continue;
    }
    const freed: Freed = {
      kind: 'reservation', name: found.name, address: display, podref: r.podref, ...(r.poduid && { poduid: r.poduid }),
      containerID: r.containerid ?? '', ifname: r.ifname ?? '', reason: `${reason}, and no lease holds the address`,
    };
    if (options.dryRun) {
      outcome.freed.push(freed);
      continue;
    }
    try {
      // At the version listed in step 1: one an ADD made its own since then is another version, and stays.
      if ((await commitOne(store, deleteWrite(found, found.name), options.deadline())) !== false) outcome.freed.push(freed);
    } catch (err) {
      outcome.errors.push(`reservation ${found.name}: ${messageOf(err)}`);
    }
  }
  return outcome;
}
