// The etcd store while etcd misbehaves: a 3-member cluster on loopback losing its leader to kill -9, or
// a member frozen by SIGSTOP, under concurrent commits from several store instances (as processes on
// several nodes would be); and a single etcd stopped and started again mid-run. The writers do what
// the IPAM does: read, change, commit on the version read, re-read on a conflict, retry what was
// unavailable, and take an update found already applied (a reply lost with a member) as done.
import { afterAll, describe, expect, it } from 'vitest';
import { EtcdStore } from '../../ipam/store/etcd/store.ts';
import { StoreUnavailable, type PoolRecord } from '../../ipam/store/types.ts';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const clusters: EtcdCluster[] = [];
afterAll(async () => {
  await Promise.all(clusters.map((c) => c.destroy()));
});

interface Tally {
  done: number;
  conflicts: number;
  /** Messages of StoreUnavailable, one per failed call. */
  unavailable: string[];
  /** The longest any single call took, failed or not (ms). */
  slowest: number;
}

const newTally = (): Tally => ({ done: 0, conflicts: 0, unavailable: [], slowest: 0 });

async function timed<T>(tally: Tally, call: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await call();
  } finally {
    tally.slowest = Math.max(tally.slowest, Date.now() - started);
  }
}

/** `rounds` updates of one pool by writer `w`, each adding its allocation and a reservation in one commit. */
async function writer(store: EtcdStore, w: number, rounds: number, name: string, callMs: number, tally: Tally): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    const key = String(w * 1000 + i);
    const id = `w${w}-${i}`;
    for (;;) {
      try {
        const current = (await timed(tally, () => store.readPool(name, Date.now() + callMs)))!;
        if (current.value.allocations[key]?.id === id) break;
        const value: PoolRecord = { ...current.value, allocations: { ...current.value.allocations, [key]: { id, podref: `ns/${id}` } } };
        const applied = await timed(tally, () => store.commit([
          { kind: 'pool', name, expected: current.version, value },
          { kind: 'reservation', name: `${name}-${key}`, expected: undefined, value: { podref: `ns/${id}`, containerid: id } },
        ], Date.now() + callMs));
        if (applied) break;
        tally.conflicts++;
        await sleep(Math.random() * 10);
      } catch (err) {
        if (!(err instanceof StoreUnavailable)) throw err;
        tally.unavailable.push(err.message);
        await sleep(50);
      }
    }
    tally.done++;
  }
}

async function untilDone(tally: Tally, count: number): Promise<void> {
  while (tally.done < count) await sleep(10);
}

/** Every writer's every round is in the pool, and has its reservation. */
async function expectAllUpdates(store: EtcdStore, name: string, writers: number, rounds: number): Promise<void> {
  const expected = Array.from({ length: writers }, (_, w) => Array.from({ length: rounds }, (_, i) => String(w * 1000 + i))).flat().sort();
  const final = (await store.readPool(name, Date.now() + 10_000))!;
  expect(Object.keys(final.value.allocations).sort()).toEqual(expected);
  const reservations = await store.listReservations(`${name}-`, Date.now() + 10_000);
  expect(reservations.map((r) => r.name.slice(name.length + 1)).sort()).toEqual(expected);
}

describe('etcd store on a 3-member cluster', () => {
  it('loses no commit and fails no call when the leader is killed with -9 mid-run', async () => {
    const cluster = await startEtcd({ members: 3 });
    clusters.push(cluster);
    const leader = await cluster.leader();
    // Every store talks to the leader until it dies: each must go on to another member.
    const stores = Array.from({ length: 4 }, () => new EtcdStore({ endpoints: cluster.endpoints }, { startAt: leader }));
    const tally = newTally();
    const rounds = 25;
    try {
      await stores[0]!.commit([{ kind: 'pool', name: 'shared', expected: undefined, value: { range: '10.5.0.0/16', allocations: {} } }], Date.now() + 10_000);
      const writers = Promise.all(stores.map((s, w) => writer(s, w, rounds, 'shared', 15_000, tally)));
      await untilDone(tally, 30);
      await cluster.kill(leader);
      const killedAt = tally.done;
      await untilDone(tally, 75);
      await cluster.start(leader);
      await writers;
      console.log(`leader m${leader} killed after ${killedAt} commits: ${tally.conflicts} conflicts retried, slowest call ${tally.slowest} ms`);
      expect(tally.unavailable).toEqual([]);
      await expectAllUpdates(stores[0]!, 'shared', stores.length, rounds);
      // The member killed and started again serves the same, complete pool.
      const rejoined = new EtcdStore({ endpoints: [cluster.endpoints[leader]!] });
      try {
        expect(await rejoined.readPool('shared', Date.now() + 10_000)).toEqual(await stores[0]!.readPool('shared', Date.now() + 10_000));
      } finally {
        await rejoined.close();
      }
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('holds a call begun while the cluster has no quorum until a leader is elected, within its deadline', async () => {
    const cluster = await startEtcd({ members: 3 });
    clusters.push(cluster);
    const survivor = await cluster.leader();
    const [gone, alsoGone] = [(survivor + 1) % 3, (survivor + 2) % 3];
    const store = new EtcdStore({ endpoints: cluster.endpoints }, { startAt: survivor });
    try {
      await cluster.kill(gone);
      await cluster.kill(alsoGone);
      const started = Date.now();
      const commit = store.commit([{ kind: 'reservation', name: 'quorum', expected: undefined, value: { podref: 'ns/quorum' } }], started + 20_000)
        .then((versions) => versions, (err: unknown) => err);
      // Longer than any one attempt may take, so every endpoint has failed at least once.
      await sleep(3_000);
      await cluster.start(gone);
      // Applied (a version), or found applied by a retry after a member held it past an attempt's
      // share (a conflict the caller re-reads): either way the call did not fail.
      const outcome = await commit;
      expect(outcome instanceof Error ? outcome.message : 'no error').toBe('no error');
      expect(Date.now() - started).toBeGreaterThanOrEqual(3_000);
      expect((await store.listReservations('quorum', Date.now() + 5_000)).map((r) => r.value)).toEqual([{ podref: 'ns/quorum' }]);
    } finally {
      await store.close();
    }
  });

  it('goes around a member that hangs (SIGSTOP) within each call\'s deadline', async () => {
    const cluster = await startEtcd({ members: 3 });
    clusters.push(cluster);
    const leader = await cluster.leader();
    const frozen = (leader + 1) % 3;
    // Every store asks the frozen member first: its first attempt hangs until its share of the deadline.
    const stores = Array.from({ length: 3 }, () => new EtcdStore({ endpoints: cluster.endpoints }, { startAt: frozen }));
    const tally = newTally();
    try {
      await stores[0]!.commit([{ kind: 'pool', name: 'frozen', expected: undefined, value: { range: '10.6.0.0/16', allocations: {} } }], Date.now() + 10_000);
      cluster.pause(frozen);
      await Promise.all(stores.map((s, w) => writer(s, w, 10, 'frozen', 6_000, tally)));
      cluster.resume(frozen);
      console.log(`member m${frozen} frozen: ${tally.conflicts} conflicts retried, slowest call ${tally.slowest} ms`);
      expect(tally.unavailable).toEqual([]);
      // A third of the 6 s deadline went to the frozen member, then the next one answered.
      expect(tally.slowest).toBeGreaterThanOrEqual(1_900);
      expect(tally.slowest).toBeLessThan(6_000);
      await expectAllUpdates(stores[0]!, 'frozen', stores.length, 10);
    } finally {
      cluster.resume(frozen);
      await Promise.all(stores.map((s) => s.close()));
    }
  });
});

describe('etcd store when its only etcd goes away and comes back', () => {
  for (const how of ['stop', 'kill'] as const) {
    it(`fails calls with StoreUnavailable within their deadline while etcd is down (${how}), then works again`, async () => {
      const cluster = await startEtcd();
      clusters.push(cluster);
      const stores = Array.from({ length: 3 }, () => new EtcdStore({ endpoints: cluster.endpoints }));
      const tally = newTally();
      const callMs = 1_000;
      const rounds = 20;
      try {
        await stores[0]!.commit([{ kind: 'pool', name: 'restart', expected: undefined, value: { range: '10.7.0.0/16', allocations: {} } }], Date.now() + 10_000);
        const writers = Promise.all(stores.map((s, w) => writer(s, w, rounds, 'restart', callMs, tally)));
        await untilDone(tally, 15);
        await (how === 'stop' ? cluster.stop(0) : cluster.kill(0));
        const doneWhileUp = tally.done;
        await sleep(2_000);
        expect(tally.done).toBeLessThanOrEqual(doneWhileUp + stores.length); // at most the calls in flight
        await cluster.start(0);
        await writers;
        console.log(`etcd ${how === 'stop' ? 'stopped' : 'killed'} for 2 s: ${tally.unavailable.length} calls unavailable, slowest call ${tally.slowest} ms`);
        expect(tally.unavailable.length).toBeGreaterThan(0);
        expect(tally.unavailable.every((m) => m.startsWith('etcd is unavailable: '))).toBe(true);
        // Never a hang: no call outlived its deadline by more than a timer's slack.
        expect(tally.slowest).toBeLessThan(callMs + 250);
        await expectAllUpdates(stores[0]!, 'restart', stores.length, rounds);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    });
  }

  it('ends a call on a frozen etcd (SIGSTOP) at its deadline, with StoreUnavailable', async () => {
    const cluster = await startEtcd();
    clusters.push(cluster);
    const store = new EtcdStore({ endpoints: cluster.endpoints });
    try {
      await store.ping(Date.now() + 5_000);
      cluster.pause(0);
      for (const call of [() => store.readPool('x', Date.now() + 800), () => store.commit([{ kind: 'reservation', name: 'x', expected: undefined, value: { podref: 'ns/x' } }], Date.now() + 800)]) {
        const started = Date.now();
        const err = await call().then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(StoreUnavailable);
        expect((err as Error).message).toMatch(/did not answer within/);
        expect(Date.now() - started).toBeGreaterThanOrEqual(790);
        expect(Date.now() - started).toBeLessThan(800 + 250);
      }
      cluster.resume(0);
      await store.ping(Date.now() + 5_000);
    } finally {
      cluster.resume(0);
      await store.close();
    }
  });
});
