// The executable and its links land whole or not at all: a plugin is exec-ed at any moment, and a node
// may lose power mid-install. Each is made under a private temporary name in the CNI bin directory
// (the executable copied, flushed to disk), then renamed over the old one, and the directory is
// flushed so the rename itself survives. (Small files, the kubeconfig, go through lib/fs.ts.)
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir } from '../fs.ts';

/** Temporary files of ours start with this, so a later run can tell its own leftovers. */
export const TEMP_PREFIX = '.underlay-install.';

export function tempPath(dir: string): string {
  return join(dir, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`);
}

/** Flushes a finished temporary copy to disk before it is renamed into place. */
export function fsyncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Renames a finished temporary file over `file` and makes the rename durable. */
export function landByRename(tmp: string, file: string, dir: string): void {
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(dir);
}

/**
 * Removes temporary files an earlier installer left when it was killed mid-copy (a 120 MB executable
 * each). Young ones are spared: another installer on this node may still be writing them.
 */
export function removeStaleTemps(dir: string, olderThanMs: number, now = Date.now()): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    const path = join(dir, name);
    try {
      if (now - statSync(path).mtimeMs < olderThanMs) continue;
      rmSync(path, { force: true });
      removed.push(path);
    } catch {
      // Gone already (the other installer finished): nothing to do.
    }
  }
  return removed;
}
