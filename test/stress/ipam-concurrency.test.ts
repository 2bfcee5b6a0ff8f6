// The BUILT executable under concurrency and kill -9, as a runtime runs it: one process per call.
//  - 8 processes x 100 ADDs on one /22 file-store pool: 800 distinct addresses, no error; DEL of all
//    empties the pool and its reservations.
//  - 200 concurrent ADDs, some killed with SIGKILL at random moments: the pool file parses, no address
//    is held twice, and GC with the survivors' attachments leaves exactly their leases.
//  - The same on a pool in shards (a /21 whose range crosses the shard boundary): no address twice
//    across the shard records, every survivor's lease where its answer says, GC exact, claims exact.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BIN, requireBuild } from '../helpers/exec.ts';
import { tempStoreDir } from '../helpers/ipam-invocation.ts';

const PLUGIN = join(BIN, 'whereabouts');
beforeAll(requireBuild);

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  kill(): void;
  done: Promise<void>;
}

function call(verb: string, config: object, containerId: string, extraEnv: Record<string, string> = {}): Run {
  const child = spawn(PLUGIN, [], {
    env: {
      CNI_COMMAND: verb, CNI_CONTAINERID: containerId, CNI_NETNS: '/var/run/netns/underlay-ipam-stress', CNI_IFNAME: 'net1',
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=stress;K8S_POD_NAME=pod-${containerId}`, CNI_PATH: BIN, ...extraEnv,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const run: Run = { code: null, signal: null, stdout: '', kill: () => child.kill('SIGKILL'), done: Promise.resolve() };
  child.stdout.on('data', (chunk: Buffer) => (run.stdout += chunk.toString()));
  child.stderr.resume();
  child.stdin.on('error', () => {}); // a killed child closes its stdin early
  child.stdin.end(JSON.stringify(config));
  run.done = new Promise((resolve) => child.on('close', (code, signal) => {
    run.code = code;
    run.signal = signal;
    resolve();
  }));
  return run;
}

const addressOf = (run: Run): string => (JSON.parse(run.stdout) as { ips: Array<{ address: string }> }).ips[0]!.address;

function poolFile(dir: string, pool: string): { allocations: Record<string, { id: string; podref: string }> } {
  return JSON.parse(readFileSync(join(dir, 'pools', `${pool}.json`), 'utf8')) as { allocations: Record<string, { id: string; podref: string }> };
}

/** 200 concurrent ADDs, 60 of them SIGKILLed at random moments in the first 4 s; returns the survivors. */
async function addsWithKills(config: object, prefix: string): Promise<Array<{ run: Run; id: string }>> {
  const runs = Array.from({ length: 200 }, (_, i) => call('ADD', config, `${prefix}${i}`));
  const victims = new Set<number>();
  while (victims.size < 60) victims.add(Math.floor(Math.random() * runs.length));
  await Promise.all([...victims].map(async (i) => {
    await new Promise((r) => setTimeout(r, Math.random() * 4000));
    runs[i]!.kill();
  }));
  await Promise.all(runs.map((r) => r.done));
  const survivors = runs.map((run, i) => ({ run, id: `${prefix}${i}` })).filter(({ run }) => run.code === 0);
  expect(runs.filter((run) => run.signal === null && run.code !== 0).map((r) => r.stdout)).toEqual([]); // only killed processes may fail
  expect(survivors.length).toBeGreaterThan(0);
  expect(runs.filter((run) => run.signal === 'SIGKILL').length).toBeGreaterThan(0);
  return survivors;
}

const reservations = (dir: string): string[] => readdirSync(join(dir, 'reservations')).filter((f) => f.endsWith('.json'));

describe('IPAM executable under concurrency', () => {
  it('8 processes x 100 ADDs on one /22 give 800 distinct addresses; DEL of all empties the pool', async () => {
    const dir = tempStoreDir();
    const config = { cniVersion: '1.1.0', name: 'stress', type: 'whereabouts', ipam: { type: 'whereabouts', range: '10.100.0.0/22', file_store_dir: dir } };
    const worker = async (w: number, verb: string): Promise<Run[]> => {
      const runs: Run[] = [];
      for (let i = 0; i < 100; i++) {
        const run = call(verb, config, `w${w}-${i}`);
        await run.done;
        runs.push(run);
      }
      return runs;
    };
    const adds = (await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((w) => worker(w, 'ADD')))).flat();
    expect(adds.filter((r) => r.code !== 0).map((r) => r.stdout)).toEqual([]);
    const addresses = adds.map(addressOf);
    expect(new Set(addresses).size).toBe(800);
    expect(Object.keys(poolFile(dir, '10.100.0.0-22').allocations)).toHaveLength(800);
    expect(reservations(dir)).toHaveLength(800);

    const dels = (await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((w) => worker(w, 'DEL')))).flat();
    expect(dels.filter((r) => r.code !== 0).map((r) => r.stdout)).toEqual([]);
    expect(poolFile(dir, '10.100.0.0-22').allocations).toEqual({});
    expect(reservations(dir)).toEqual([]);
  }, 600_000);

  it('survives kill -9 at random moments during 200 concurrent ADDs', async () => {
    const dir = tempStoreDir();
    const config = { cniVersion: '1.1.0', name: 'faults', type: 'whereabouts', ipam: { type: 'whereabouts', range: '10.101.0.0/22', file_store_dir: dir } };
    const survivors = await addsWithKills(config, 'k');

    // The pool file parses and no address is held twice, by a survivor's answer or in the pool.
    const pool = poolFile(dir, '10.101.0.0-22');
    const holders = Object.values(pool.allocations).map((a) => a.id);
    expect(new Set(holders).size).toBe(holders.length);
    const answered = survivors.map(({ run }) => addressOf(run));
    expect(new Set(answered).size).toBe(answered.length);
    for (const { run, id } of survivors) {
      const offset = Number(addressOf(run).split('/')[0]!.split('.').reduce((acc, o) => acc * 256 + Number(o), 0)) - (10 * 2 ** 24 + 101 * 2 ** 16);
      expect(pool.allocations[String(offset)]?.id).toBe(id);
    }

    // GC with the survivors' attachments keeps exactly their leases and reservations.
    const gcConfig = { ...config, 'cni.dev/valid-attachments': survivors.map(({ id }) => ({ containerID: id, ifname: 'net1' })) };
    const gc = call('GC', gcConfig, 'gc', { UNDERLAY_IPAM_ORPHAN_GRACE_MS: '0' });
    await gc.done;
    expect([gc.code, gc.stdout]).toEqual([0, '']);
    const after = poolFile(dir, '10.101.0.0-22');
    expect(Object.values(after.allocations).map((a) => a.id).sort()).toEqual(survivors.map(({ id }) => id).sort());
    expect(reservations(dir).map((f) => f.slice(0, -5)).sort()).toEqual(answered.map((a) => a.split('/')[0]).sort());
  }, 600_000);

  it('survives kill -9 during 200 concurrent ADDs on a pool in shards, across the shard boundary', async () => {
    const dir = tempStoreDir();
    // Offsets 868..1067 of 10.102.0.0/21: shard 0 ends at 1023 (10.102.3.255).
    const config = { cniVersion: '1.1.0', name: 'shards', type: 'whereabouts', ipam: { type: 'whereabouts', range: '10.102.0.0/21', range_start: '10.102.3.100', file_store_dir: dir } };
    const survivors = await addsWithKills(config, 's');

    const union = () => {
      const shards = [poolFile(dir, '10.102.0.0-21'), ...(existsSync(join(dir, 'pools', '10.102.0.0-21-s1.json')) ? [poolFile(dir, '10.102.0.0-21-s1')] : [])];
      return shards.flatMap((p) => Object.entries(p.allocations));
    };
    const held = union();
    expect(new Set(held.map(([key]) => key)).size).toBe(held.length); // no offset in two records
    expect(new Set(held.map(([, a]) => a.id)).size).toBe(held.length);
    const answered = survivors.map(({ run }) => addressOf(run));
    expect(new Set(answered).size).toBe(answered.length);
    const byKey = new Map(held);
    for (const { run, id } of survivors) {
      const offset = addressOf(run).split('/')[0]!.split('.').reduce((acc, o) => acc * 256 + Number(o), 0) - (10 * 2 ** 24 + 102 * 2 ** 16);
      expect(byKey.get(String(offset))?.id).toBe(id);
    }

    const gcConfig = { ...config, 'cni.dev/valid-attachments': survivors.map(({ id }) => ({ containerID: id, ifname: 'net1' })) };
    const gc = call('GC', gcConfig, 'gc', { UNDERLAY_IPAM_ORPHAN_GRACE_MS: '0' });
    await gc.done;
    expect([gc.code, gc.stdout]).toEqual([0, '']);
    expect(union().map(([, a]) => a.id).sort()).toEqual(survivors.map(({ id }) => id).sort());
    const left = reservations(dir).map((f) => f.slice(0, -5));
    expect(left.filter((f) => !f.includes('.claim.')).sort()).toEqual(answered.map((a) => a.split('/')[0]).sort());
    expect(left.filter((f) => f.includes('.claim.'))).toHaveLength(survivors.length);
  }, 600_000);
});
