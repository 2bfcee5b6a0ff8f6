// Per-key exclusive locks held across the async steps of an invocation. STAND-IN until main's
// lib/lock.ts lands (same signatures): a POSIX record lock taken through node:sqlite, which the kernel
// drops when the process dies, kill -9 included; waiting polls without blocking the event loop.
import { closeSync, openSync } from 'node:fs';
import type { DatabaseSync } from 'node:sqlite';
import { Code, CniError } from './cni/errors.ts';

export interface FileLock {
  release(): void;
}

const POLL_MS = 10;

/** Takes the exclusive lock on `path` (created 0600), waiting until the epoch-ms `deadline`. */
export async function lockFile(path: string, deadline: number): Promise<FileLock> {
  let db: DatabaseSync;
  try {
    closeSync(openSync(path, 'a', 0o600));
    db = new (process.getBuiltinModule('node:sqlite').DatabaseSync)(path, { timeout: 0 });
  } catch (err) {
    throw new CniError(Code.IoFailure, `cannot open lock ${path}: ${(err as Error).message}`);
  }
  for (;;) {
    try {
      db.exec('BEGIN IMMEDIATE');
      return {
        release: () => {
          try {
            db.exec('ROLLBACK');
          } finally {
            db.close();
          }
        },
      };
    } catch (err) {
      if (!/locked|busy/i.test((err as Error).message)) {
        db.close();
        throw new CniError(Code.IoFailure, `cannot lock ${path}: ${(err as Error).message}`);
      }
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      db.close();
      throw new CniError(Code.TryAgainLater, `lock ${path} is held by another process; gave up waiting`);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_MS, left)));
  }
}
