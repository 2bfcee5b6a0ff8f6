// The BUILT executable allocating from etcd while things break, as a runtime runs it on 10 nodes (one
// process per ADD, each node its own NODENAME):
//  - One etcd member, stopped (SIGTERM) and started again mid-run, later killed with -9 and started
//    again, while allocators are killed with -9 at random moments. Every ADD ends within its deadline
//    (UNDERLAY_IPAM_DEADLINE_MS) plus process start-up, and one that does not succeed fails with code 11;
//    no address is ever leased twice (the answers, the pool, its reservations); each node's GC with its
//    successful ADDs as the valid attachments leaves exactly their leases and reservations.
//  - A 3-member cluster, all three in etcd_endpoints, losing its leader to kill -9 twice mid-run: no
//    ADD fails, no address twice.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireBuild } from '../helpers/exec.ts';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.ts';
import { storeOf } from '../helpers/store.ts';
import { bare, duplicates, killAll, leasesOf, sleep, start, type Outcome } from './etcd-allocators.ts';

const NODES = 10;
const DEADLINE_MS = 5000;
/** Process start-up before the deadline is set, and exit after it, on a busy 2-core machine. */
const MARGIN_MS = 2500;

const clusters: EtcdCluster[] = [];
beforeAll(requireBuild);
afterEach(killAll);
afterAll(async () => {
  await killAll();
  await Promise.all(clusters.map((c) => c.destroy()));
});

interface Tracked extends Outcome {
  /** Epoch ms of the spawn and the exit, to place each ADD against the outages. */
  startedAt: number;
  endedAt: number;
}

/**
 * NODES allocators side by side, ADD after ADD until `running()` turns false. With probability
 * `killRate` an ADD is killed with -9 at a random moment of what an ADD lasts (up to 1.2 times the
 * median so far), so kills land before, during and after its commit.
 */
async function allocate(config: object, prefix: string, env: Record<string, string>, killRate: number, running: () => boolean, progress: Tracked[]): Promise<Tracked[]> {
  let next = 0;
  const lasted: number[] = [];
  await Promise.all(Array.from({ length: NODES }, async (_, w) => {
    while (running()) {
      const k = next++;
      const startedAt = Date.now();
      const call = start({ verb: 'ADD', config, containerId: `${prefix}${k}`, node: `node-${w}`, env: { UNDERLAY_IPAM_STATS: '1', ...env } });
      const typical = lasted.length ? lasted[lasted.length >> 1]! : 150;
      const timer = Math.random() < killRate ? setTimeout(() => call.kill(), Math.random() * 1.2 * typical) : undefined;
      const outcome = await call.done;
      clearTimeout(timer);
      progress.push({ ...outcome, startedAt, endedAt: Date.now() });
      if (outcome.code === 0) {
        lasted.push(outcome.ms);
        lasted.sort((a, b) => a - b);
      }
    }
  }));
  return progress;
}

const until = async (condition: () => boolean): Promise<void> => {
  while (!condition()) await sleep(20);
};

/** Exactly one lease per successful ADD at the address it answered, and a reservation of the same pod for each lease. */
async function expectNoAddressTwice(endpoints: string[], pool: string, succeeded: ReadonlyArray<Outcome>): Promise<void> {
  const answered = succeeded.map((a) => bare(a.address!));
  expect(duplicates(answered)).toEqual([]);
  const leases = await leasesOf(endpoints, pool);
  expect(duplicates(leases.map((l) => l.address))).toEqual([]);
  expect(duplicates(leases.map((l) => l.containerID))).toEqual([]); // one process, one container, one lease at most
  const holder = new Map(leases.map((l) => [l.address, l.containerID]));
  expect(succeeded.filter((a) => holder.get(bare(a.address!)) !== a.call.containerId).map((a) => `${a.call.containerId} ${a.address}`)).toEqual([]);
  const store = await storeOf({ etcd_endpoints: endpoints });
  try {
    const reservations = new Map((await store.listReservations('', Date.now() + 10_000)).map((r) => [r.name, r.value]));
    expect(leases.filter((l) => reservations.get(l.address)?.containerid !== l.containerID).map((l) => l.address)).toEqual([]);
  } finally {
    await store.close();
  }
}

describe('allocators on one etcd member that is stopped, killed and restarted, themselves killed with -9', () => {
  it('never lease an address twice, never run past the deadline, fail only with 11; GC leaves exactly the live leases', async () => {
    const etcd = await startEtcd();
    clusters.push(etcd);
    const ipam = { type: 'whereabouts', range: '10.71.0.0/22', etcd_endpoints: etcd.endpoints };
    const config = { cniVersion: '1.1.0', name: 'faults', type: 'whereabouts', ipam };
    const env = { UNDERLAY_IPAM_DEADLINE_MS: String(DEADLINE_MS) };

    let running = true;
    const adds: Tracked[] = [];
    // began: the stop or kill was sent; from: etcd is gone; down: until the restart began; to: it answers again.
    const outages: Array<{ how: string; began: number; from: number; down: number; to: number }> = [];
    const fleetDone = allocate(config, 'f', env, 0.25, () => running, adds);
    await until(() => adds.length >= 80);
    // Down for longer than two deadlines: ADDs that start then must give up with 11.
    let began = Date.now();
    await etcd.stop(0);
    let from = Date.now();
    await sleep(2 * DEADLINE_MS + 3000); // ADDs in flight hang on to their deadline, then the next ones start
    let down = Date.now();
    await etcd.start(0);
    outages.push({ how: 'stopped', began, from, down, to: Date.now() });
    const afterFirst = adds.length;
    await until(() => adds.length >= afterFirst + 80);
    began = Date.now();
    await etcd.kill(0);
    from = Date.now();
    await sleep(2000);
    down = Date.now();
    await etcd.start(0);
    outages.push({ how: 'killed -9', began, from, down, to: Date.now() });
    const afterSecond = adds.length;
    await until(() => adds.length >= afterSecond + 60);
    running = false;
    await fleetDone;

    const killed = adds.filter((a) => a.signal === 'SIGKILL');
    const lived = adds.filter((a) => a.signal === null);
    const succeeded = lived.filter((a) => a.code === 0);
    const tryAgain = lived.filter((a) => a.code !== 0);
    const during = (a: Tracked) => outages.some((o) => a.startedAt < o.to && a.endedAt > o.began);
    // Started with etcd gone, their deadline (set a little after the spawn) over before the restart
    // began: these can only fail.
    const inside = lived.filter((a) => outages.some((o) => a.startedAt >= o.from && a.startedAt + DEADLINE_MS + 1000 < o.down));
    const slowest = Math.max(...lived.map((a) => a.ms));
    const slowestInside = Math.max(...lived.map((a) => a.stats?.ms ?? 0));
    console.log(
      `${adds.length} ADDs: ${succeeded.length} succeeded, ${tryAgain.length} failed with 11 (${inside.length} of them started with etcd down), ${killed.length} killed with -9; ` +
      `outages ${outages.map((o) => `${o.how} ${((o.to - o.began) / 1000).toFixed(1)} s`).join(', ')}; slowest ADD ${slowest.toFixed(0)} ms, of it in the IPAM ${slowestInside} ms (deadline ${DEADLINE_MS} ms)`,
    );

    // Whatever the store did, an ADD that lived either succeeded or said "try again later", in time.
    expect(lived.filter((a) => a.code !== 0 && a.errorCode !== 11).map((a) => `${a.call.containerId}: ${a.code} ${a.stdout}`)).toEqual([]);
    // The IPAM's own time (UNDERLAY_IPAM_STATS: store open to close) is the deadline and a timer's slack.
    expect(lived.filter((a) => (a.stats?.ms ?? Infinity) > DEADLINE_MS + 500).map((a) => `${a.call.containerId}: ${a.stats?.ms} ms`)).toEqual([]);
    expect(lived.filter((a) => a.ms > DEADLINE_MS + MARGIN_MS).map((a) => `${a.call.containerId}: ${a.ms.toFixed(0)} ms`)).toEqual([]);
    expect(killed.length).toBeGreaterThan(0);
    expect(inside.length).toBeGreaterThan(0);
    expect(inside.filter((a) => a.errorCode !== 11).map((a) => `${a.call.containerId}: ${a.code} ${a.stdout}`)).toEqual([]);
    expect(tryAgain.filter((a) => !during(a)).map((a) => `${a.call.containerId}: ${a.stdout}`)).toEqual([]); // 11 only while etcd was away
    expect(succeeded.filter((a) => a.startedAt > outages[1]!.to).length).toBeGreaterThan(0); // and back to work after

    await expectNoAddressTwice(etcd.endpoints, '10.71.0.0-22', succeeded);
    const leasedBefore = (await leasesOf(etcd.endpoints, '10.71.0.0-22')).length;

    // Each node's runtime runs its own GC with the attachments of that node, and judges that node's leases.
    for (let w = 0; w < NODES; w++) {
      const node = `node-${w}`;
      const valid = succeeded.filter((a) => a.call.node === node).map((a) => ({ containerID: a.call.containerId, ifname: 'net1' }));
      const gc = await start({ verb: 'GC', config: { ...config, 'cni.dev/valid-attachments': valid }, containerId: `gc-${w}`, node, env: { UNDERLAY_IPAM_ORPHAN_GRACE_MS: '0' } }).done;
      expect([gc.code, gc.stdout]).toEqual([0, '']);
    }
    const leases = await leasesOf(etcd.endpoints, '10.71.0.0-22');
    console.log(`GC: ${leasedBefore} leases before (${leasedBefore - succeeded.length} of killed or failed ADDs), ${leases.length} after`);
    expect(leases.map((l) => `${l.address} ${l.containerID}`).sort()).toEqual(succeeded.map((a) => `${bare(a.address!)} ${a.call.containerId}`).sort());
    const store = await storeOf({ etcd_endpoints: etcd.endpoints });
    try {
      expect((await store.listReservations('', Date.now() + 10_000)).map((r) => r.name).sort()).toEqual(succeeded.map((a) => bare(a.address!)).sort());
    } finally {
      await store.close();
    }
  }, 600_000);
});

describe('allocators on a 3-member etcd cluster losing its leader to kill -9', () => {
  it('fail no ADD and lease no address twice', async () => {
    const etcd = await startEtcd({ members: 3 });
    clusters.push(etcd);
    const ipam = { type: 'whereabouts', range: '10.72.0.0/22', etcd_endpoints: etcd.endpoints };
    const config = { cniVersion: '1.1.0', name: 'failover', type: 'whereabouts', ipam };
    const total = 600;
    let running = true;
    const adds: Tracked[] = [];
    let issued = 0;
    const fleetDone = allocate(config, 'l', {}, 0, () => running && issued++ < total, adds);

    const killedLeaders: number[] = [];
    for (const after of [120, 360]) {
      await until(() => adds.length >= after);
      const leader = await etcd.leader();
      await etcd.kill(leader);
      killedLeaders.push(leader);
      const at = adds.length;
      await until(() => adds.length >= at + 60); // the two members left carry on
      await etcd.start(leader);
    }
    await fleetDone;
    running = false;

    const slowest = Math.max(...adds.map((a) => a.ms));
    const outages = adds.reduce((sum, a) => sum + (a.stats?.outages ?? 0), 0);
    console.log(`${adds.length} ADDs; leaders killed: ${killedLeaders.map((i) => `m${i}`).join(', ')}; ${outages} calls found no member answering and were retried; slowest ADD ${slowest.toFixed(0)} ms`);
    expect(adds).toHaveLength(total);
    expect(adds.filter((a) => a.code !== 0).map((a) => `${a.call.containerId}: ${a.code} ${a.stdout}`)).toEqual([]);
    expect(new Set(adds.map((a) => bare(a.address!))).size).toBe(total);
    await expectNoAddressTwice(etcd.endpoints, '10.72.0.0-22', adds);
    expect(await leasesOf(etcd.endpoints, '10.72.0.0-22')).toHaveLength(total);
  }, 600_000);
});
