// lib/fs and lib/lock on real files: a write on a full disk fails and keeps the old file, reads refuse
// what is not a regular file of ours, private directories refuse what others could write, and a lock
// held by a process is released by the kernel when that process is killed.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CniError } from '../../lib/cni/errors.ts';
import { ensurePrivateDir, readFileIfExists, writeFileDurably } from '../../lib/fs.ts';
import { lockFile, tryLockFile } from '../../lib/lock.ts';
import { thrown } from '../helpers/ipam-invocation.ts';

const dir = mkdtempSync(join(tmpdir(), 'underlay-fs-'));
afterAll(() => {
  execFileSync('sh', ['-c', `umount ${dir}/small 2>/dev/null; true`]);
  rmSync(dir, { recursive: true, force: true });
});

describe('writeFileDurably', () => {
  it('on a disk that fills mid-write fails with code 5 and leaves the old file whole', () => {
    const small = join(dir, 'small');
    mkdirSync(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', small]);
    const path = join(small, 'pool.json');
    writeFileDurably(path, 'old\n');
    const error = thrown(() => writeFileDurably(path, 'x'.repeat(200_000)));
    expect(error.code).toBe(5);
    expect(error.message).toMatch(/pool\.json: ENOSPC/);
    expect(readFileSync(path, 'utf8')).toBe('old\n');
    expect(execFileSync('ls', ['-A', small], { encoding: 'utf8' }).trim()).toBe('pool.json');
  });

  it('creates only when absent with publish "create"', () => {
    const path = join(dir, 'reservation.json');
    expect(writeFileDurably(path, 'a', { publish: 'create' })).toBe(true);
    expect(writeFileDurably(path, 'b', { publish: 'create' })).toBe(false);
    expect(readFileSync(path, 'utf8')).toBe('a');
  });
});

describe('readFileIfExists', () => {
  it('reads a regular file, says undefined for none, and refuses a symlink, a FIFO, a device and a huge file at once', () => {
    writeFileSync(join(dir, 'plain'), 'hello');
    expect(readFileIfExists(join(dir, 'plain'))).toBe('hello');
    expect(readFileIfExists(join(dir, 'missing'))).toBeUndefined();
    symlinkSync(join(dir, 'plain'), join(dir, 'link'));
    expect(thrown(() => readFileIfExists(join(dir, 'link'))).message).toMatch(/symbolic link/);
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    const started = Date.now();
    expect(thrown(() => readFileIfExists(join(dir, 'fifo'))).message).toMatch(/not a regular file/);
    expect(thrown(() => readFileIfExists('/dev/zero')).message).toMatch(/not a regular file/);
    expect(Date.now() - started).toBeLessThan(1000);
    writeFileSync(join(dir, 'big'), Buffer.alloc(2048));
    expect(thrown(() => readFileIfExists(join(dir, 'big'), 1024)).message).toMatch(/2048 bytes is more than 1024/);
  });
});

describe('ensurePrivateDir', () => {
  it('creates 0700 and refuses a symlink, a directory others can write, and one owned by someone else', () => {
    ensurePrivateDir(join(dir, 'store', 'pools'));
    symlinkSync(join(dir, 'store'), join(dir, 'store-link'));
    expect(thrown(() => ensurePrivateDir(join(dir, 'store-link'))).message).toMatch(/symbolic link/);
    mkdirSync(join(dir, 'open'));
    chmodSync(join(dir, 'open'), 0o777);
    expect(thrown(() => ensurePrivateDir(join(dir, 'open'))).message).toMatch(/writable by others \(mode 777\)/);
    mkdirSync(join(dir, 'theirs'), { mode: 0o700 });
    chownSync(join(dir, 'theirs'), 1000, 1000);
    expect(thrown(() => ensurePrivateDir(join(dir, 'theirs'))).message).toMatch(/owned by uid 1000/);
  });
});

describe('lockFile', () => {
  it('excludes a second holder in the same process until release', async () => {
    const path = join(dir, 'same.lock');
    const first = await lockFile(path, Date.now() + 1000);
    expect(tryLockFile(path)).toBeUndefined();
    const second = lockFile(path, Date.now() + 2000);
    setTimeout(() => first.release(), 50);
    (await second).release();
  });

  it('times out with code 11 while another process holds it, and is free once that process is killed', async () => {
    const path = join(dir, 'vf.lock');
    const holder = spawn(process.execPath, ['--input-type=module', '-e', `
      const { DatabaseSync } = await import('node:sqlite');
      const db = new DatabaseSync(${JSON.stringify(path)}); db.exec('BEGIN IMMEDIATE'); console.log('held'); setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    const error = await lockFile(path, Date.now() + 200).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CniError);
    expect((error as CniError).code).toBe(11);
    holder.kill('SIGKILL');
    await new Promise((resolve) => holder.once('exit', resolve));
    (await lockFile(path, Date.now() + 1000)).release();
  });
});
