// Exclusive per-key locks between processes on one node: one pool's writers (the IPAM's file store), one
// VF's ADD and DEL (sriov). Node has no flock(2), and a lock file made with O_EXCL cannot be broken
// safely when its holder is killed (two processes may both judge it stale). So the lock is a POSIX record
// lock (fcntl) taken through node:sqlite: "BEGIN IMMEDIATE" on the lock file locks it for one writer,
// and the kernel drops the lock when its process dies, kill -9 included: nothing on disk to repair.
//
// The attempt itself never waits (busy timeout 0): a held lock is retried after a short sleep, so the
// event loop keeps running while a holder finishes, and two holders in one process cannot deadlock.
import { closeSync, constants, openSync } from 'node:fs';
import type { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { Code, CniError } from './cni/errors.ts';
import { ioError } from './fs.ts';

export interface FileLock {
  release(): void;
}

/** A lock that stayed held until the deadline: "try again later". */
export class LockTimeout extends CniError {
  constructor(path: string) {
    super(Code.TryAgainLater, `lock ${path} is still held by another process: try again later`);
  }
}

/** One attempt: the held lock, or undefined when another connection holds it. */
export function tryLockFile(path: string): FileLock | undefined {
  let db: DatabaseSync;
  try {
    // Created 0600 (and never through a symlink) before SQLite would create it 0644.
    closeSync(openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600));
    // node:sqlite is loaded on the first lock only: readers never lock.
    db = new (process.getBuiltinModule('node:sqlite').DatabaseSync)(path, { timeout: 0 });
  } catch (err) {
    throw ioError('open lock', path, err);
  }
  try {
    db.exec('BEGIN IMMEDIATE');
  } catch (err) {
    db.close();
    const message = err instanceof Error ? err.message : String(err);
    if (/locked|busy/i.test(message)) return undefined;
    // SQLite's own words ("database or disk is full") say more than its error code.
    throw new CniError(Code.IoFailure, `cannot lock ${path}: ${message}`);
  }
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      try {
        db.exec('ROLLBACK');
      } finally {
        db.close();
      }
    },
  };
}

/**
 * Takes the exclusive lock on `path`, waiting (without blocking the event loop) until `deadline`
 * (epoch ms); then throws LockTimeout (code 11).
 */
export async function lockFile(path: string, deadline: number): Promise<FileLock> {
  for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
    const lock = tryLockFile(path);
    if (lock) return lock;
    if (Date.now() + wait >= deadline) throw new LockTimeout(path);
    await sleep(wait * (0.5 + Math.random()));
  }
}
