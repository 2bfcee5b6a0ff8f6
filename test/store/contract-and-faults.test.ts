// The conformance suite checked on the in-memory store, once with one write per commit (as the file and
// Kubernetes stores) and once with many (as etcd), and the fault wrappers over it.
import { describe, expect, it } from 'vitest';
import { StoreUnavailable, type PoolRecord } from '../../ipam/store/types.ts';
import { describeStoreContract } from './conformance.ts';
import { counting, flaky, pausing } from './faults.ts';
import { MemoryData, MemoryStore } from './memory.ts';

const single = new MemoryData();
describeStoreContract('memory, 1 write per commit', async () => new MemoryStore(single, 1));
const many = new MemoryData();
describeStoreContract('memory, 128 writes per commit', async () => new MemoryStore(many, 128));

const soon = () => Date.now() + 5_000;
const pool: PoolRecord = { range: '10.0.0.0/24', allocations: {} };

describe('fault wrappers', () => {
  it('pausing holds the first matching call until resume(), before the store sees it', async () => {
    const store = new MemoryStore(new MemoryData(), 4);
    const paused = pausing(store, (call) => call.method === 'commit');
    const commit = paused.commit([{ kind: 'pool', name: 'p', expected: undefined, value: pool }], soon());
    const call = await paused.reached;
    expect(call.method).toBe('commit');
    expect(call.writes?.[0]?.name).toBe('p');
    expect(await store.readPool('p', soon())).toBeUndefined();
    // Other calls pass while one is held.
    expect(await paused.readPool('p', soon())).toBeUndefined();
    paused.resume();
    const [version] = (await commit)!;
    expect(await store.readPool('p', soon())).toEqual({ value: pool, version });
  });

  it("pausing at 'after' holds the answer of a call that already took effect", async () => {
    const store = new MemoryStore(new MemoryData(), 4);
    const paused = pausing(store, (call) => call.method === 'commit', 'after');
    const commit = paused.commit([{ kind: 'pool', name: 'p', expected: undefined, value: pool }], soon());
    await paused.reached;
    expect(await store.readPool('p', soon())).toBeDefined();
    paused.resume();
    expect(await commit).toHaveLength(1);
  });

  it('flaky fails the first N matching calls with StoreUnavailable, then passes them', async () => {
    const store = new MemoryStore(new MemoryData(), 4);
    const shaky = flaky(store, (call) => call.method === 'readPool', 2);
    await expect(shaky.readPool('p', soon())).rejects.toBeInstanceOf(StoreUnavailable);
    await expect(shaky.listPools('', soon())).resolves.toEqual([]);
    await expect(shaky.readPool('p', soon())).rejects.toBeInstanceOf(StoreUnavailable);
    await expect(shaky.readPool('p', soon())).resolves.toBeUndefined();
    expect(shaky.failed).toBe(2);
  });

  it("flaky at 'after' applies the commit but reports it unavailable (a lost reply)", async () => {
    const store = new MemoryStore(new MemoryData(), 4);
    const shaky = flaky(store, (call) => call.method === 'commit', 1, 'after');
    await expect(shaky.commit([{ kind: 'pool', name: 'p', expected: undefined, value: pool }], soon())).rejects.toBeInstanceOf(StoreUnavailable);
    expect(await store.readPool('p', soon())).toBeDefined();
  });

  it('counting counts calls per method and writes', async () => {
    const store = counting(new MemoryStore(new MemoryData(), 4));
    await store.readPool('p', soon());
    await store.commit([{ kind: 'pool', name: 'p', expected: undefined, value: pool }, { kind: 'reservation', name: 'r', expected: undefined, value: { podref: 'ns/a' } }], soon());
    await store.listReservations('', soon());
    expect(store.counts).toMatchObject({ readPool: 1, commit: 1, listReservations: 1, listPools: 0 });
    expect(store.writes).toBe(2);
    expect(store.calls.map((c) => c.method)).toEqual(['readPool', 'commit', 'listReservations']);
    expect(store.atomicWrites).toBe(4);
  });
});
