// The file store's contract on real files: compare-and-swap pools, create-if-absent and
// delete-if-unchanged reservations, no lost update under concurrent writers, refusal of corrupt files.
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CniError } from '../../lib/cni/errors.ts';
import { FileStore } from '../../ipam/store/file/store.ts';
import type { PoolRecord } from '../../ipam/store/types.ts';
import { tempStoreDir } from '../helpers/ipam-invocation.ts';

const pool = (n: number): PoolRecord => ({ range: '10.0.0.0/24', allocations: Object.fromEntries(Array.from({ length: n }, (_, i) => [String(i + 1), { id: `c${i}`, podref: `c${i}` }])) });

describe('FileStore pools', () => {
  it('creates only when absent and writes only over the version it read', async () => {
    const store = new FileStore(tempStoreDir());
    expect(await store.readPool('p')).toBeUndefined();
    expect(await store.writePool('p', pool(1), undefined)).toBe(true);
    expect(await store.writePool('p', pool(9), undefined)).toBe(false);
    const first = (await store.readPool('p'))!;
    expect(first.value).toEqual(pool(1));
    expect(await store.writePool('p', pool(2), first.version)).toBe(true);
    expect(await store.writePool('p', pool(3), first.version)).toBe(false); // stale version
    expect((await store.readPool('p'))!.value).toEqual(pool(2));
    expect(await store.listPools()).toEqual(['p']);
  });

  it('loses no update among concurrent read-modify-write loops', async () => {
    const store = new FileStore(tempStoreDir());
    const writer = async (id: number) => {
      for (let i = 0; i < 20; i++) {
        for (;;) {
          const snapshot = await store.readPool('p');
          const value = snapshot?.value ?? { range: '10.0.0.0/24', allocations: {} };
          const next = { ...value, allocations: { ...value.allocations, [String(id * 100 + i)]: { id: `w${id}`, podref: `w${id}` } } };
          if (await store.writePool('p', next, snapshot?.version)) break;
          await new Promise((r) => setTimeout(r, Math.random() * 3));
        }
      }
    };
    await Promise.all([1, 2, 3, 4].map(writer));
    expect(Object.keys((await store.readPool('p'))!.value.allocations)).toHaveLength(80);
  });

  it('removes the temp files of dead writers on the next write', async () => {
    const dir = tempStoreDir();
    const store = new FileStore(dir);
    await store.writePool('p', pool(1), undefined);
    writeFileSync(join(dir, 'pools', 'p.json.tmp-999999-dead'), '{"half');
    const { version } = (await store.readPool('p'))!;
    await store.writePool('p', pool(2), version);
    expect(readdirSync(join(dir, 'pools')).sort()).toEqual(['p.json', 'p.lock']);
  });

  it('refuses a corrupt pool file and an unsafe name with a clear error', async () => {
    const dir = tempStoreDir();
    const store = new FileStore(dir);
    await store.ping();
    writeFileSync(join(dir, 'pools', 'bad.json'), '{"version":"1","range":"10.0.0.0/24","allocations":{"x":{}}}');
    await expect(store.readPool('bad')).rejects.toThrow(/an allocation is malformed/);
    await expect(store.readPool('../etc/passwd')).rejects.toBeInstanceOf(CniError);
  });
});

describe('FileStore reservations', () => {
  it('creates if absent, deletes only the version it read', async () => {
    const store = new FileStore(tempStoreDir());
    expect(await store.createReservation('10.0.0.5', { podref: 'ns/a' })).toBe(true);
    expect(await store.createReservation('10.0.0.5', { podref: 'ns/b' })).toBe(false);
    const first = (await store.readReservation('10.0.0.5'))!;
    expect(first.value.podref).toBe('ns/a');
    expect(await store.deleteReservation('10.0.0.5', first.version)).toBe(true);
    expect(await store.createReservation('10.0.0.5', { podref: 'ns/c' })).toBe(true);
    expect(await store.deleteReservation('10.0.0.5', first.version)).toBe(false); // a newer one: kept
    expect((await store.readReservation('10.0.0.5'))!.value.podref).toBe('ns/c');
    expect(await store.listReservations()).toEqual(['10.0.0.5']);
    expect(await store.deleteReservation('10.0.0.6', 'any')).toBe(true);
  });
});
