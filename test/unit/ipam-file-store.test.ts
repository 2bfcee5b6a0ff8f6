// What is particular to the file store (the contract every store shares is in test/store/): refusal of
// corrupt files, unsafe names and directories others could write, no symlink followed, the temp files
// of dead writers removed exactly, and read verbs that create nothing. (Full disks and directories
// others can write: test/integration/ipam-hardening.test.ts, on the built executable.)
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CniError } from '../../lib/cni/errors.ts';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { FileStore } from '../../ipam/store/file/store.ts';
import type { PoolRecord } from '../../ipam/store/types.ts';
import { failure, invocation, tempStoreDir } from '../helpers/ipam-invocation.ts';
import { readPool, writePool } from '../helpers/store.ts';

const pool = (n: number): PoolRecord => ({ range: '10.0.0.0/24', allocations: Object.fromEntries(Array.from({ length: n }, (_, i) => [String(i + 1), { id: `c${i}`, podref: `c${i}` }])) });

describe('FileStore files', () => {
  it('removes only the temp files of the pool it writes, matched exactly', async () => {
    const dir = tempStoreDir();
    const store = new FileStore(dir);
    await writePool(store, 'p', pool(1), undefined);
    // A pool whose name extends p's temp-file name is another pool, not debris.
    await writePool(store, 'p.json.tmp-7-0123abcd', pool(2), undefined);
    writeFileSync(join(dir, 'pools', 'p.json.tmp-999999-deadbeef'), '{"half');
    await writePool(store, 'p', pool(3), (await readPool(store, 'p'))!.version);
    expect(readdirSync(join(dir, 'pools')).sort()).toEqual(['p.json', 'p.json.tmp-7-0123abcd.json', 'p.json.tmp-7-0123abcd.lock', 'p.lock']);
    expect((await readPool(store, 'p.json.tmp-7-0123abcd'))!.value).toEqual(pool(2));
  });

  it('refuses a corrupt pool file, an unsafe name and a symlinked record with a clear error', async () => {
    const dir = tempStoreDir();
    const store = new FileStore(dir);
    await writePool(store, 'ok', pool(1), undefined);
    writeFileSync(join(dir, 'pools', 'bad.json'), '{"version":"1","range":"10.0.0.0/24","allocations":{"x":{}}}');
    await expect(readPool(store, 'bad')).rejects.toThrow(/malformed allocation/);
    await expect(readPool(store, '../etc/passwd')).rejects.toBeInstanceOf(CniError);
    writeFileSync(join(dir, 'secret'), '{"version":"1","range":"10.0.0.0/24","allocations":{}}');
    symlinkSync(join(dir, 'secret'), join(dir, 'pools', 'planted.json'));
    await expect(readPool(store, 'planted')).rejects.toThrow(/planted\.json: it is a symbolic link/);
    symlinkSync(join(dir, 'secret'), join(dir, 'pools', 'ok2.lock'));
    await expect(writePool(store, 'ok2', pool(1), undefined)).rejects.toThrow(/ok2\.lock: ELOOP/);
    expect(readFileSync(join(dir, 'secret'), 'utf8')).toContain('"allocations":{}');
  });
});

describe('read verbs', () => {
  it('never create the store: STATUS and CHECK on a missing directory leave nothing behind', async () => {
    const dir = join(tempStoreDir(), 'not-yet');
    const ipam = { type: 'whereabouts', range: '10.3.0.0/24', file_store_dir: dir };
    await ipamPlugin.status(invocation({ ipam, verb: 'STATUS' }));
    const prevResult = { cniVersion: '1.1.0', ips: [{ address: '10.3.0.1/24' }] };
    expect((await failure(ipamPlugin.check(invocation({ ipam, verb: 'CHECK', extra: { prevResult } })))).code).toBe(3);
    expect(() => readdirSync(dir)).toThrow(/ENOENT/);
    mkdirSync(dir, { mode: 0o700 });
  });
});
