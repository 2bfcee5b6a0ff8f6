// A randomized chaos run of the lease protocols, in process, on each store (test/helpers/stores.ts).
// Several "kubelets" (one per client, each serializing its own pods, as a runtime does) ADD, re-ADD
// (a new sandbox of the same pod instance, and the same container again), DEL, DEL late (an old
// sandbox), lose a node (no DEL; a StatefulSet pod re-created under its name may take its address over
// once the "API" has no pod of the old UID) on four configs of one network_name scope: two one-record
// pools that overlap and a sharded /21 seen by two configs (one near the shard 0/1 boundary, one
// overlapping the small pools). A GC client runs CNI GC (valid = every attachment not known dead: a
// runtime that sees them all, so no ADD in flight is doomed) and the reconciler (pods from the model)
// concurrently. Every store call may be delayed, fail before it took effect, or take effect and lose its
// reply; some operations are killed at a random call (kill -9: the call may or may not have applied,
// nothing after it runs), and the kubelet then DELs the container as a runtime does after a failed ADD.
//
// Checked as it runs: an ADD never returns an address that another live pod instance holds in the
// scope; a repeated ADD of a live instance returns its address. At the end (no fault): no address is
// leased twice across the scope's records, every lease has its reservation and the reservation is
// the lease's, every live instance's lease is where its ADD said, with its current container; after a
// final GC of exactly the live attachments, no lease is left without one.
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { Claimant } from '../../ipam/alloc/allocator.ts';
import { poolName } from '../../ipam/alloc/names.ts';
import { addressAt, resolveRange, type RangeInput } from '../../ipam/alloc/ranges.ts';
import { roleOf } from '../../ipam/alloc/shards.ts';
import { collectGarbage } from '../../ipam/gc/collect.ts';
import type { PodSource, PodState } from '../../ipam/gc/pods.ts';
import { reconcile } from '../../ipam/gc/reconcile.ts';
import { opsFor } from '../../ipam/lease/pool.ts';
import { belongsTo } from '../../ipam/lease/reservations.ts';
import { reservationOf, type PoolTarget } from '../../ipam/lease/target.ts';
import { StoreUnavailable, type Allocation, type IpamStore, type PoolRecord } from '../../ipam/store/types.ts';
import { useStores, type StoreFixture } from '../helpers/stores.ts';

const SCOPE = 'chaos';
const NETWORK = 'n';
/** One node runs every pod: its GC's valid attachments are all the live ones. */
const NODE = 'chaos-node';
function target(input: RangeInput, overlapping = true): PoolTarget {
  const range = resolveRange(input, 'ipam');
  return { name: poolName(SCOPE, range.cidr), range, networkName: SCOPE, overlapping };
}
/** Configs sharing addresses through overlapping-range reservations. */
const OVERLAPPING: PoolTarget[] = [
  target({ range: '10.50.0.0/27' }), // one record, 30 addresses
  target({ range: '10.50.0.0/28' }), // one record inside the first: overlapping
  target({ range: '10.50.0.0/21', range_end: '10.50.0.40' }), // sharded, overlapping both
  target({ range: '10.50.0.0/21', range_start: '10.50.3.252', range_end: '10.50.4.6' }), // same pool, across shards 0 and 1
];
/** enable_overlapping_ranges false: no reservation, each address kept unique by its record's swap alone. */
const SEPARATE: PoolTarget[] = [
  target({ range: '10.60.0.0/27' }, false),
  target({ range: '10.61.0.0/21', range_end: '10.61.0.30' }, false),
  target({ range: '10.61.0.0/21', range_start: '10.61.3.250', range_end: '10.61.4.8' }, false),
];
const ALL = [...OVERLAPPING, ...SEPARATE];

/** Deterministic randomness per run (mulberry32), so a failing seed says something. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Killed extends Error {
  override readonly name = 'Killed';
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The store as one operation of one process sees it: each call may be delayed, fail before it took
 * effect, or take effect and lose its reply; with `killAt`, the process dies at that call (which then
 * applies or not, at random) and makes no call after it.
 */
function chaotic(store: IpamStore, random: () => number, faults: boolean, killAt?: number, seen?: Tracer): IpamStore {
  if (seen) store = seen.wrap(store);
  let calls = 0;
  let dead = false;
  const via = async <T>(proceed: () => Promise<T>): Promise<T> => {
    if (dead) throw new Killed('killed');
    calls++;
    const pause = random();
    if (pause < 0.01) await sleep(100 + random() * 300); // a process descheduled, a slow disk
    else if (pause < 0.3) await sleep(random() * 4);
    if (killAt !== undefined && calls >= killAt) {
      dead = true;
      if (random() < 0.5) await proceed().catch(() => undefined);
      throw new Killed(`killed at call ${calls}`);
    }
    if (!faults) return proceed();
    const r = random();
    if (r < 0.03) throw new StoreUnavailable('injected: before');
    if (r < 0.06) {
      await proceed().catch(() => undefined);
      throw new StoreUnavailable('injected: lost reply');
    }
    return proceed();
  };
  return {
    description: store.description,
    atomicWrites: store.atomicWrites,
    sharedByNodes: store.sharedByNodes,
    readPool: (name, deadline) => via(() => store.readPool(name, deadline)),
    readReservation: (name, deadline) => via(() => store.readReservation(name, deadline)),
    listPools: (prefix, deadline) => via(() => store.listPools(prefix, deadline)),
    listReservations: (prefix, deadline) => via(() => store.listReservations(prefix, deadline)),
    commit: (writes, deadline) => via(() => store.commit(writes, deadline)),
    ping: (deadline) => via(() => store.ping(deadline)),
    tidy: (ms, deadline) => via(() => store.tidy(ms, deadline)),
    close: () => Promise.resolve(),
  };
}

/** What each commit changed, in words (addresses, holders), for the trace of a failing run. */
class Tracer {
  private readonly snapshots = new Map<string, Record<string, Allocation>>();
  label = '';
  private readonly note: (line: string) => void;
  constructor(note: (line: string) => void) {
    this.note = note;
  }

  private remember(name: string, version: string, pool: PoolRecord): void {
    this.snapshots.set(`${name}@${version}`, pool.allocations);
  }

  wrap(store: IpamStore): IpamStore {
    const label = this.label;
    const address = (range: string, key: string) => {
      const t = ALL.find((x) => x.range.cidr === range);
      return t ? addressAt(t.range, BigInt(key)) : key;
    };
    return {
      ping: (deadline) => store.ping(deadline),
      tidy: (ms, deadline) => store.tidy(ms, deadline),
      close: () => store.close(),
      description: store.description,
      atomicWrites: store.atomicWrites,
      sharedByNodes: store.sharedByNodes,
      readPool: async (name, deadline) => {
        const found = await store.readPool(name, deadline);
        if (found) this.remember(name, found.version, found.value);
        return found;
      },
      listPools: async (prefix, deadline) => {
        const found = await store.listPools(prefix, deadline);
        for (const r of found) this.remember(r.name, r.version, r.value);
        return found;
      },
      readReservation: (name, deadline) => store.readReservation(name, deadline),
      listReservations: (prefix, deadline) => store.listReservations(prefix, deadline),
      commit: async (writes, deadline) => {
        let outcome: Awaited<ReturnType<IpamStore['commit']>> | 'threw' = 'threw';
        try {
          outcome = await store.commit(writes, deadline);
          return outcome;
        } finally {
          const verdict = outcome === 'threw' ? 'threw' : outcome === undefined ? 'conflict' : 'ok';
          writes.forEach((w, n) => {
            if (w.kind === 'pool') {
              const before = (w.expected && this.snapshots.get(`${w.name}@${w.expected}`)) || {};
              const changes: string[] = [];
              for (const [k, a] of Object.entries(before)) if (w.value.allocations[k]?.id !== a.id) changes.push(`-${address(w.value.range, k)} ${a.podref}:${a.id}`);
              for (const [k, a] of Object.entries(w.value.allocations)) if (before[k]?.id !== a.id) changes.push(`+${address(w.value.range, k)} ${a.podref}:${a.id}`);
              if (changes.length > 0) this.note(`${label} commit ${w.name} (${verdict}): ${changes.join(', ')}`);
              const version = outcome !== 'threw' && outcome?.[n];
              if (version) this.remember(w.name, version, w.value);
            } else if (!w.name.includes('.claim.')) {
              this.note(`${label} commit ${w.value === null ? 'delete' : w.expected === undefined ? 'create' : 'replace'} ${w.name} ${w.value ? `${w.value.podref}:${w.value.containerid}` : ''} (${verdict})`);
            }
          });
        }
      },
    };
  }
}

interface Instance {
  podref: string;
  uid: string;
  target: number;
  /** The container that holds the lease now, and the address its ADD returned. */
  container: string;
  address: string;
  /** Earlier sandboxes of this instance, whose late DEL must free nothing. */
  old: string[];
}

const OP_DEADLINE_MS = 2_500;
/** Steps per kubelet; UNDERLAY_CHAOS_STEPS for a longer run. */
const STEPS = Number(process.env.UNDERLAY_CHAOS_STEPS ?? 150);
const GRACE_MS = 4_000;

async function chaos(fixture: StoreFixture, TARGETS: PoolTarget[], seed: number): Promise<void> {
  const random = rng(seed);
  const ipam = fixture.fresh();
  const violations: string[] = [];
  const trace: string[] = [];
  const t0 = Date.now();
  const note = (line: string) => trace.push(`${Date.now() - t0}ms ${line}`);
  const tracer = new Tracer(note);
  const about = (...words: string[]) => trace.filter((line) => words.some((w) => new RegExp(`(^|[^0-9.])${w.replace(/\./g, '\\.')}([^0-9.]|$)`).test(line))).join('\n');
  const stats = { adds: 0, addFailed: 0, kills: 0, dels: 0, gcs: 0, reconciles: 0, gcReleased: 0, reconcileFreed: 0, takeovers: 0 };
  const live = new Map<string, Instance>(); // by podref (one pod instance per name at a time)
  const holder = new Map<string, string>(); // address -> podref of the live instance that holds it
  const api = new Map<string, string>(); // podref -> uid: the pods the "API" has
  const dead = new Set<string>(); // containers that will never run again
  // Every container ID a kubelet may use, known up front: GC's valid list then holds the ones whose ADD
  // starts after it was made (a runtime's GC sees every attachment it has; none is in flight unseen).
  const everyId = [0, 1, 2, 3].flatMap((client) => Array.from({ length: STEPS * 2 }, (_, n) => `k${client}-x${n}`));
  const deadline = () => Date.now() + OP_DEADLINE_MS;
  const who = (i: Pick<Instance, 'podref' | 'uid'>, id: string): Claimant => ({ id, podref: i.podref, ifname: 'net1', network: NETWORK, uid: i.uid, node: NODE });
  // As the API answers (lib/kube/pods.ts): the pod of that UID is gone; for a lease without one, the pod of that name is the successor.
  const podGone = async (podref: string, uid: string | undefined, successor: string) => (uid === undefined ? api.get(podref) === successor : api.get(podref) !== uid);

  const clean = await fixture.open(ipam);
  const base = await Promise.all(Array.from({ length: 5 }, () => fixture.open(ipam)));
  const opStore = (client: number, faults = true, label = `client ${client}`) => {
    tracer.label = label;
    return chaotic(base[client]!, random, faults, random() < 0.06 ? 1 + Math.floor(random() * 14) : undefined, tracer);
  };


  const becomeLive = (i: Instance) => {
    const other = holder.get(i.address);
    if (other !== undefined && other !== i.podref) {
      violations.push(`seed ${seed}: ${i.podref} (${i.container}) got ${i.address}, which live ${other} holds`);
      console.log(about(i.address, i.podref, other));
    }
    holder.set(i.address, i.podref);
    live.set(i.podref, i);
  };
  const leave = (i: Instance) => {
    live.delete(i.podref);
    if (holder.get(i.address) === i.podref) holder.delete(i.address);
  };

  /** ADD as one process: the address, or undefined when it failed (the runtime then DELs the container). */
  async function add(client: number, i: Pick<Instance, 'podref' | 'uid' | 'target'>, id: string): Promise<string | undefined> {
    const t = TARGETS[i.target]!;
    const store = opStore(client, true, `ADD ${i.podref} ${id}`);
    stats.adds++;
    try {
      const ops = await opsFor(store, t, deadline());
      const lease = await ops.acquire(store, t, who(i, id), deadline(), podGone);
      note(`ADD ${i.podref} ${id} uid ${i.uid.slice(0, 8)} target ${i.target} -> ${addressAt(t.range, lease.offset)}${lease.existing ? ' (existing)' : ''}`);
      return addressAt(t.range, lease.offset);
    } catch (err) {
      note(`ADD ${i.podref} ${id} uid ${i.uid.slice(0, 8)} target ${i.target} failed: ${err instanceof Error ? err.message.slice(0, 80) : String(err)}`);
      stats.addFailed++;
      if (err instanceof Killed) stats.kills++;
      await del(client, i, id);
      return undefined;
    }
  }

  /** DEL as a runtime does it: retried until it succeeds (a killed or failed DEL is run again). */
  async function del(client: number, i: Pick<Instance, 'podref' | 'uid' | 'target'>, id: string): Promise<void> {
    const t = TARGETS[i.target]!;
    for (let attempt = 0; ; attempt++) {
      const store = opStore(client, attempt < 3, `DEL ${i.podref} ${id}`);
      stats.dels++;
      try {
        const released = await (await opsFor(store, t, deadline())).release(store, t, who(i, id), deadline());
        note(`DEL ${i.podref} ${id} released ${released.map(([o]) => addressAt(t.range, o)).join(',') || 'nothing'}`);
        return;
      } catch (err) {
        if (attempt > 20) throw err;
      }
    }
  }

  async function kubelet(client: number, steps: number): Promise<void> {
    let seq = 0;
    let sandbox = 0;
    const mine = () => [...live.values()].filter((i) => i.podref.startsWith(`ns/k${client}-`));
    const newId = (_podref: string) => `k${client}-x${sandbox++}`;
    for (let step = 0; step < steps; step++) {
      const r = random();
      const pods = mine();
      const some = pods[Math.floor(random() * pods.length)];
      if (r < 0.3 || !some) {
        if (pods.length >= 5) continue;
        const podref = `ns/k${client}-p${seq++}`;
        const uid = randomUUID();
        api.set(podref, uid);
        const i = { podref, uid, target: Math.floor(random() * TARGETS.length) };
        const id = newId(podref);
        const address = await add(client, i, id);
        if (address === undefined) {
          dead.add(id);
          api.delete(podref);
        } else becomeLive({ ...i, container: id, address, old: [] });
      } else if (r < 0.45) {
        // The sandbox is re-created (its old one is dead): the same instance must get its address back.
        const id = newId(some.podref);
        leave(some);
        const address = await add(client, some, id);
        if (address === undefined) {
          dead.add(id);
          dead.add(some.container);
          await del(client, some, some.container);
          api.delete(some.podref);
        } else {
          if (address !== some.address) violations.push(`seed ${seed}: ${some.podref} got ${address} for its new sandbox, not its ${some.address}`);
          becomeLive({ ...some, container: id, address, old: [...some.old, some.container] });
        }
      } else if (r < 0.55) {
        // The same container's ADD again: the same address. Until it answers, the attachment is in doubt
        // (a failed ADD is followed by its DEL, which frees the lease).
        leave(some);
        const address = await add(client, some, some.container);
        if (address === undefined) {
          dead.add(some.container);
          for (const old of some.old) dead.add(old);
          api.delete(some.podref);
        } else {
          if (address !== some.address) violations.push(`seed ${seed}: ${some.podref} got ${address} on a repeated ADD, not its ${some.address}`);
          becomeLive({ ...some, address });
        }
      } else if (r < 0.7) {
        // The pod is deleted: DEL, then its object goes.
        leave(some);
        dead.add(some.container);
        for (const old of some.old) dead.add(old);
        await del(client, some, some.container);
        api.delete(some.podref);
      } else if (r < 0.8) {
        // A late DEL of an earlier sandbox of a live pod: frees nothing.
        const old = some.old[Math.floor(random() * some.old.length)];
        if (old !== undefined) await del(client, some, old);
      } else if (r < 0.9) {
        // The node is lost: no DEL; the pod is force-deleted and (a StatefulSet) re-created under its name.
        leave(some);
        dead.add(some.container);
        for (const old of some.old) dead.add(old);
        const uid = randomUUID();
        api.set(some.podref, uid);
        const id = newId(some.podref);
        const address = await add(client, { ...some, uid }, id);
        if (address === undefined) {
          dead.add(id);
          api.delete(some.podref);
        } else {
          if (address === some.address) stats.takeovers++;
          becomeLive({ ...some, uid, container: id, address, old: [] });
        }
      } else {
        // The node is lost for good: no DEL, the pod is force-deleted.
        leave(some);
        dead.add(some.container);
        for (const old of some.old) dead.add(old);
        api.delete(some.podref);
      }
    }
  }

  const pods: PodSource = {
    description: 'the model',
    requests: 0,
    close() {},
    async list() {
      const out = new Map<string, PodState>();
      for (const [podref, uid] of api) out.set(podref, state(podref, uid));
      return out;
    },
    async get(podref) {
      const uid = api.get(podref);
      return uid === undefined ? undefined : state(podref, uid);
    },
  };
  function state(podref: string, uid: string): PodState {
    const i = live.get(podref);
    return { uids: new Set([uid]), terminating: false, phase: 'Running', addresses: new Set(i && i.uid === uid ? [i.address] : []) };
  }

  let stop = false;
  async function janitor(): Promise<void> {
    while (!stop) {
      await sleep(20 + random() * 60);
      const gc = random() < 0.5;
      const store = opStore(4, true, gc ? 'GC' : 'reconcile');
      try {
        if (gc) {
          const valid = everyId.filter((id) => !dead.has(id)).map((containerID) => ({ containerID, ifname: 'net1' }));
          stats.gcs++;
          stats.gcReleased += (await collectGarbage(store, TARGETS, NETWORK, valid, deadline(), NODE)).released;
          note('GC done');
        } else {
          stats.reconciles++;
          const outcome = await reconcile(store, pods, { dryRun: false, graceMs: GRACE_MS, deadline });
          stats.reconcileFreed += outcome.freed.length;
          for (const f of outcome.freed) note(`reconcile freed ${f.kind} ${f.address} of ${f.podref} ${f.containerID}`);
        }
      } catch {
        // Killed, or out of time: the next run repairs.
      }
    }
  }

  process.env.UNDERLAY_IPAM_ORPHAN_GRACE_MS = String(GRACE_MS);
  const gc = janitor();
  await Promise.all([0, 1, 2, 3].map((client) => kubelet(client, STEPS)));
  stop = true;
  await gc;

  // The records, with nothing in flight and no fault.
  const held = new Map<string, string[]>();
  const leases: Array<{ pool: string; address: string; id: string; podref: string }> = [];
  for (const record of await clean.listPools(`${SCOPE}-`, Date.now() + 10_000)) {
    if (roleOf(record.name).kind !== 'shard') continue;
    const t = TARGETS.find((x) => x.range.cidr === record.value.range)!;
    for (const [key, a] of Object.entries(record.value.allocations)) {
      const address = addressAt(t.range, BigInt(key));
      held.set(address, [...(held.get(address) ?? []), `${record.name}:${a.podref}/${a.id}`]);
      leases.push({ pool: record.name, address, id: a.id, podref: a.podref });
      if (!t.overlapping) continue;
      const r = await clean.readReservation(reservationOf(t, BigInt(key)), Date.now() + 10_000);
      if (!r || !belongsTo(r.value, a)) violations.push(`seed ${seed}: lease ${address} of ${a.podref} (${a.id}) in ${record.name} has ${r ? `the reservation of ${r.value.podref} (${r.value.containerid})` : 'no reservation'}`);
    }
  }
  for (const [address, by] of held) if (by.length > 1) violations.push(`seed ${seed}: ${address} is leased ${by.length} times: ${by.join(', ')}`);
  for (const i of live.values()) {
    const t = TARGETS[i.target]!;
    const found = await (await opsFor(clean, t, Date.now() + 10_000)).find(clean, t, who(i, i.container), Date.now() + 10_000);
    if (found === undefined || addressAt(t.range, found) !== i.address) violations.push(`seed ${seed}: live ${i.podref} (${i.container}) holds ${found === undefined ? 'nothing' : addressAt(t.range, found)}, not ${i.address}`);
  }

  // GC of exactly the live attachments, with no ADD in flight: every other lease goes.
  process.env.UNDERLAY_IPAM_ORPHAN_GRACE_MS = '0';
  await collectGarbage(clean, TARGETS, NETWORK, [...live.values()].map((i) => ({ containerID: i.container, ifname: 'net1' })), Date.now() + 30_000, NODE);
  const after = new Set<string>();
  for (const record of await clean.listPools(`${SCOPE}-`, Date.now() + 10_000)) {
    if (roleOf(record.name).kind === 'shard') for (const a of Object.values(record.value.allocations)) after.add(a.id);
  }
  const liveIds = new Set([...live.values()].map((i) => i.container));
  for (const id of after) if (!liveIds.has(id)) violations.push(`seed ${seed}: after GC, ${id} still holds a lease`);
  for (const id of liveIds) if (!after.has(id)) violations.push(`seed ${seed}: after GC, live ${id} holds no lease`);
  console.log(`chaos on the ${fixture.kind} store, seed ${seed}: ${JSON.stringify({ ...stats, live: live.size, leases: leases.length })}`);
  expect(violations).toEqual([]);
}

const env = { ...process.env };
afterEach(() => {
  process.env = { ...env };
});

const stores = useStores();
for (const fixture of stores) {
  describe(`chaos on the ${fixture.kind} store`, () => {
    fixture.startBeforeAll();
    for (const [label, targets] of [['overlapping ranges', OVERLAPPING], ['separate pools, no reservations', SEPARATE]] as const) {
      it(`no address twice, no live lease lost, every lease with its reservation, GC exact (${label})`, async () => {
        const seed = Number(process.env.UNDERLAY_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
        await chaos(fixture, targets, seed);
      }, 180_000);
    }
  });
}
