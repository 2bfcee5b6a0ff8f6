// The IpamStore contract (ipam/store/types.ts) as one suite any store runs:
//   describeStoreContract('file store', () => openFileStore(dir), { cleanup: () => rm(dir) });
// Each test works on names of its own (a random tag), so the suite needs no wipe between tests and
// runs on a store that already holds records. Every store the suite opens is closed after its test.
// Names are lowercase letters, digits, "-" and ".", which every store can hold (Kubernetes names too).
import { randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CniError } from '../../lib/cni/errors.ts';
import { StoreUnavailable, type IpamStore, type PoolRecord, type Reservation, type Write } from '../../ipam/store/types.ts';

export interface ContractOptions {
  /** Runs once after the suite: remove the store's data, stop its server. */
  cleanup?: () => Promise<void> | void;
  /** The deadline given to each call (ms from now); default 10 s. */
  callBudgetMs?: number;
}

const pool = (note: string, allocations: PoolRecord['allocations'] = {}): PoolRecord => ({ range: '10.20.0.0/24', allocations, note });
const reservation = (podref: string): Reservation => ({ podref, containerid: `c-${podref.replace('/', '-')}`, ifname: 'net1' });
const tag = (): string => `c${randomBytes(4).toString('hex')}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * What a closed store must not leave behind, by kind: the handles that keep the event loop alive, and
 * open file descriptors (a kept-alive socket is unref'ed and would not stop an exit, but it is still a
 * connection the store did not release; so is a database file left open).
 */
function handleCounts(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1);
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the descriptor readdir itself used
    }
    const kind = `fd ${target.replace(/\[\d+\]$/, '').replace(/^\/.*/, 'file')}`;
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return counts;
}

export function describeStoreContract(label: string, open: () => Promise<IpamStore>, options: ContractOptions = {}): void {
  const budget = options.callBudgetMs ?? 10_000;
  const soon = (): number => Date.now() + budget;

  describe(`IpamStore contract: ${label}`, () => {
    const opened: IpamStore[] = [];
    const openStore = async (): Promise<IpamStore> => {
      const store = await open();
      opened.push(store);
      return store;
    };
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });
    afterAll(async () => {
      await options.cleanup?.();
    });

    it('creates a pool and a reservation only while they are absent', async () => {
      const s = await openStore();
      const name = tag();
      expect(await s.readPool(name, soon())).toBeUndefined();
      expect(await s.readReservation(name, soon())).toBeUndefined();

      const created = await s.commit([{ kind: 'pool', name, expected: undefined, value: pool('first') }], soon());
      expect(created).toHaveLength(1);
      expect(typeof created![0]).toBe('string');
      expect(await s.readPool(name, soon())).toEqual({ value: pool('first'), version: created![0] });
      // The same name as a reservation is another record.
      expect(await s.readReservation(name, soon())).toBeUndefined();

      expect(await s.commit([{ kind: 'pool', name, expected: undefined, value: pool('second') }], soon())).toBeUndefined();
      expect(await s.readPool(name, soon())).toEqual({ value: pool('first'), version: created![0] });

      const [rv] = (await s.commit([{ kind: 'reservation', name, expected: undefined, value: reservation('ns/a') }], soon()))!;
      expect(await s.commit([{ kind: 'reservation', name, expected: undefined, value: reservation('ns/b') }], soon())).toBeUndefined();
      expect(await s.readReservation(name, soon())).toEqual({ value: reservation('ns/a'), version: rv });
    });

    it('replaces a record only at the version read: a stale version is a conflict and changes nothing', async () => {
      const s = await openStore();
      const name = tag();
      const [v1] = (await s.commit([{ kind: 'pool', name, expected: undefined, value: pool('v1') }], soon()))!;
      const [v2] = (await s.commit([{ kind: 'pool', name, expected: v1, value: pool('v2') }], soon()))!;
      expect(v2).not.toBe(v1);
      expect(await s.readPool(name, soon())).toEqual({ value: pool('v2'), version: v2 });

      expect(await s.commit([{ kind: 'pool', name, expected: v1, value: pool('stale') }], soon())).toBeUndefined();
      expect(await s.readPool(name, soon())).toEqual({ value: pool('v2'), version: v2 });

      const [r1] = (await s.commit([{ kind: 'reservation', name, expected: undefined, value: reservation('ns/a') }], soon()))!;
      const [r2] = (await s.commit([{ kind: 'reservation', name, expected: r1, value: reservation('ns/b') }], soon()))!;
      expect(await s.commit([{ kind: 'reservation', name, expected: r1, value: reservation('ns/stale') }], soon())).toBeUndefined();
      expect(await s.readReservation(name, soon())).toEqual({ value: reservation('ns/b'), version: r2 });
    });

    it('deletes a reservation at its version; a wrong version, or one already gone, is a conflict', async () => {
      const s = await openStore();
      const name = tag();
      const [v1] = (await s.commit([{ kind: 'reservation', name, expected: undefined, value: reservation('ns/a') }], soon()))!;
      const [v2] = (await s.commit([{ kind: 'reservation', name, expected: v1!, value: reservation('ns/b') }], soon()))!;

      expect(await s.commit([{ kind: 'reservation', name, expected: v1!, value: null }], soon())).toBeUndefined();
      expect(await s.readReservation(name, soon())).toEqual({ value: reservation('ns/b'), version: v2 });

      expect(await s.commit([{ kind: 'reservation', name, expected: v2!, value: null }], soon())).toEqual([undefined]);
      expect(await s.readReservation(name, soon())).toBeUndefined();
      expect(await s.commit([{ kind: 'reservation', name, expected: v2!, value: null }], soon())).toBeUndefined();
      // A write that expects the version of a record since deleted does not bring it back.
      expect(await s.commit([{ kind: 'reservation', name, expected: v2!, value: reservation('ns/ghost') }], soon())).toBeUndefined();
      expect(await s.readReservation(name, soon())).toBeUndefined();
    });

    it('applies the writes of one commit all or nothing, or refuses more than atomicWrites', async () => {
      const s = await openStore();
      const base = tag();
      const [p1] = (await s.commit([{ kind: 'pool', name: base, expected: undefined, value: pool('p1') }], soon()))!;
      if (s.atomicWrites === 1) {
        // The refusal itself is the next test's; here: nothing of a refused pair is written.
        await expect(s.commit([
          { kind: 'reservation', name: `${base}-a`, expected: undefined, value: reservation('ns/a') },
          { kind: 'pool', name: base, expected: p1, value: pool('p2') },
        ], soon())).rejects.toBeInstanceOf(CniError);
        expect(await s.readReservation(`${base}-a`, soon())).toBeUndefined();
        expect((await s.readPool(base, soon()))?.version).toBe(p1);
        return;
      }
      const both = (await s.commit([
        { kind: 'reservation', name: `${base}-a`, expected: undefined, value: reservation('ns/a') },
        { kind: 'pool', name: base, expected: p1, value: pool('p2') },
      ], soon()))!;
      expect(both).toHaveLength(2);
      expect(await s.readReservation(`${base}-a`, soon())).toEqual({ value: reservation('ns/a'), version: both[0] });
      expect(await s.readPool(base, soon())).toEqual({ value: pool('p2'), version: both[1] });

      // One stale expectation among several: nothing is applied, not even the writes that would hold.
      const writes: Write[] = [
        { kind: 'reservation', name: `${base}-b`, expected: undefined, value: reservation('ns/b') },
        { kind: 'reservation', name: `${base}-a`, expected: both[0]!, value: null },
        { kind: 'pool', name: base, expected: p1, value: pool('stale') },
      ];
      expect(await s.commit(writes.slice(0, Math.min(writes.length, s.atomicWrites)), soon())).toBeUndefined();
      expect(await s.readReservation(`${base}-b`, soon())).toBeUndefined();
      expect(await s.readReservation(`${base}-a`, soon())).toEqual({ value: reservation('ns/a'), version: both[0] });
      expect(await s.readPool(base, soon())).toEqual({ value: pool('p2'), version: both[1] });

      // With every expectation right, a delete and a replace go together.
      const next = (await s.commit([
        { kind: 'reservation', name: `${base}-a`, expected: both[0]!, value: null },
        { kind: 'pool', name: base, expected: both[1], value: pool('p3') },
      ], soon()))!;
      expect(next[0]).toBeUndefined();
      expect(await s.readReservation(`${base}-a`, soon())).toBeUndefined();
      expect(await s.readPool(base, soon())).toEqual({ value: pool('p3'), version: next[1] });
    });

    it('refuses a commit of more writes than atomicWrites with an error, writing none of them', async () => {
      const s = await openStore();
      const base = tag();
      const writes: Write[] = Array.from({ length: s.atomicWrites + 1 }, (_, i) => ({
        kind: 'reservation', name: `${base}-${i}`, expected: undefined, value: reservation(`ns/p${i}`),
      }));
      const refused = await s.commit(writes, soon()).then(() => undefined, (err: unknown) => err);
      expect(refused).toBeInstanceOf(CniError);
      expect(await s.listReservations(base, soon())).toEqual([]);
    });

    it('lists by prefix exactly the matching records, in name order, with the versions reads show', async () => {
      const s = await openStore();
      const base = tag();
      for (const name of [`${base}-b`, `${base}-a1`, `${base}-a`, `${base}x`]) {
        await s.commit([{ kind: 'pool', name, expected: undefined, value: pool(name) }], soon());
      }
      await s.commit([{ kind: 'reservation', name: `${base}-r`, expected: undefined, value: reservation('ns/r') }], soon());

      const all = await s.listPools(base, soon());
      expect(all.map((p) => p.name)).toEqual([`${base}-a`, `${base}-a1`, `${base}-b`, `${base}x`]);
      for (const entry of all) expect(await s.readPool(entry.name, soon())).toEqual({ value: entry.value, version: entry.version });
      expect((await s.listPools(`${base}-a`, soon())).map((p) => p.name)).toEqual([`${base}-a`, `${base}-a1`]);
      expect((await s.listPools(`${base}-a1`, soon())).map((p) => p.name)).toEqual([`${base}-a1`]);
      expect(await s.listPools(`${base}-none`, soon())).toEqual([]);

      const reservations = await s.listReservations(base, soon());
      // A store that keeps a creation time apart from the record adds it to listings (Named.created).
      expect(reservations.map(({ name, value, version }) => ({ name, value, version }))).toEqual([{ name: `${base}-r`, value: reservation('ns/r'), version: (await s.readReservation(`${base}-r`, soon()))!.version }]);

      // "" lists every record: ours among them, the whole listing in name order.
      const everything = (await s.listPools('', soon())).map((p) => p.name);
      expect(everything).toEqual(expect.arrayContaining(all.map((p) => p.name)));
      expect(everything).toEqual([...everything].sort());
      expect(everything).not.toContain(`${base}-r`);
    });

    it('keeps fields it does not know, on records and on allocations', async () => {
      const s = await openStore();
      const name = tag();
      const value = { range: '10.9.0.0/16', allocations: { '5': { id: 'c1', podref: 'ns/a', ifname: 'net1', future: { x: [1, 2] } } }, extra: 'kept' };
      const [v] = (await s.commit([{ kind: 'pool', name, expected: undefined, value }], soon()))!;
      expect(await s.readPool(name, soon())).toEqual({ value, version: v });
      expect(await s.listPools(name, soon())).toEqual([{ name, value, version: v }]);
      const resv = { ...reservation('ns/a'), offset: '5', color: 'blue' };
      const [rv] = (await s.commit([{ kind: 'reservation', name, expected: undefined, value: resv }], soon()))!;
      expect(await s.readReservation(name, soon())).toEqual({ value: resv, version: rv });
    });

    it('loses no update among concurrent read-modify-write loops of separate store instances', async () => {
      const writers = 4;
      const rounds = 8;
      const stores = await Promise.all(Array.from({ length: writers }, () => openStore()));
      const name = tag();
      await stores[0]!.commit([{ kind: 'pool', name, expected: undefined, value: pool('shared') }], soon());
      let conflicts = 0;
      await Promise.all(stores.map(async (s, w) => {
        for (let i = 0; i < rounds; i++) {
          for (;;) {
            const current = (await s.readPool(name, soon()))!;
            const key = String(w * 100 + i);
            const value = { ...current.value, allocations: { ...current.value.allocations, [key]: { id: `w${w}-${i}`, podref: `ns/w${w}` } } };
            const writes: Write[] = [{ kind: 'pool', name, expected: current.version, value }];
            if (s.atomicWrites > 1) writes.push({ kind: 'reservation', name: `${name}-${key}`, expected: undefined, value: reservation(`ns/w${w}`) });
            if (await s.commit(writes, soon())) break;
            conflicts++;
            await sleep(Math.random() * 5);
          }
        }
      }));
      const final = (await stores[0]!.readPool(name, soon()))!;
      expect(Object.keys(final.value.allocations).sort()).toEqual(
        Array.from({ length: writers }, (_, w) => Array.from({ length: rounds }, (_, i) => String(w * 100 + i))).flat().sort(),
      );
      if (stores[0]!.atomicWrites > 1) expect(await stores[0]!.listReservations(`${name}-`, soon())).toHaveLength(writers * rounds);
      // Not an assertion on timing: the loops ran side by side if any of them had to retry, which is
      // likely but not certain, so the count is only shown.
      console.log(`${label}: ${writers}x${rounds} concurrent updates, ${conflicts} conflicts retried`);
    });

    it('fails a call whose deadline has passed at once, with StoreUnavailable, doing nothing', async () => {
      const s = await openStore();
      const name = tag();
      const past = Date.now() - 1;
      const calls: Array<[string, () => Promise<unknown>]> = [
        ['readPool', () => s.readPool(name, past)],
        ['readReservation', () => s.readReservation(name, past)],
        ['listPools', () => s.listPools(name, past)],
        ['listReservations', () => s.listReservations(name, past)],
        ['commit', () => s.commit([{ kind: 'pool', name, expected: undefined, value: pool('late') }], past)],
        ['ping', () => s.ping(past)],
      ];
      for (const [method, call] of calls) {
        const started = Date.now();
        const outcome = await call().then(() => 'resolved', (err: unknown) => err);
        expect(outcome, method).toBeInstanceOf(StoreUnavailable);
        expect(Date.now() - started, method).toBeLessThan(500);
      }
      expect(await s.readPool(name, soon())).toBeUndefined();
    });

    it('refuses a name it cannot hold with a CniError', async () => {
      const s = await openStore();
      for (const name of ['', '../escape', 'a/b', 'nul\u0000byte']) {
        await expect(s.readPool(name, soon()), JSON.stringify(name)).rejects.toBeInstanceOf(CniError);
        await expect(s.readReservation(name, soon()), JSON.stringify(name)).rejects.toBeInstanceOf(CniError);
        await expect(s.commit([{ kind: 'pool', name, expected: undefined, value: pool('bad') }], soon()), JSON.stringify(name)).rejects.toBeInstanceOf(CniError);
        await expect(s.commit([{ kind: 'reservation', name, expected: undefined, value: reservation('ns/bad') }], soon()), JSON.stringify(name)).rejects.toBeInstanceOf(CniError);
      }
    });

    it('answers ping and tidy on a working store', async () => {
      const s = await openStore();
      await expect(s.ping(soon())).resolves.toBeUndefined();
      const removed = await s.tidy(60_000, soon());
      expect(Number.isInteger(removed) && removed >= 0).toBe(true);
      expect(typeof s.description).toBe('string');
      expect(s.description.length).toBeGreaterThan(0);
      expect(Number.isInteger(s.atomicWrites) && s.atomicWrites >= 1).toBe(true);
    });

    it('leaves no open handle or descriptor after close(), so the process can exit', async () => {
      await sleep(50);
      const before = handleCounts();
      const s = await open();
      const name = tag();
      const [v] = (await s.commit([{ kind: 'pool', name, expected: undefined, value: pool('x') }], soon()))!;
      await s.readPool(name, soon());
      await s.listPools(name, soon());
      await s.commit([{ kind: 'pool', name, expected: v, value: pool('y') }], soon());
      await s.ping(soon());
      await s.close();
      let extra: string[] = [];
      for (let i = 0; i < 40; i++) {
        const after = handleCounts();
        extra = [...after].filter(([type, n]) => n > (before.get(type) ?? 0)).map(([type, n]) => `${type} x${n - (before.get(type) ?? 0)}`);
        if (extra.length === 0) break;
        await sleep(25);
      }
      expect(extra).toEqual([]);
    });
  });
}
