// Files that land whole or not at all. A plugin is exec-ed and a kubeconfig read at any moment, and a
// node may lose power mid-install: each file is written under a private temporary name, flushed to
// disk, then renamed over the old one, and the directory is flushed so the rename itself survives.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Temporary files of ours start with this, so a later run can tell its own leftovers. */
export const TEMP_PREFIX = '.underlay-install.';

export function tempPath(dir: string): string {
  return join(dir, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`);
}

export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `data` to `file` with `mode` by temp, fsync and rename; the old content stays until then. */
export function writeDurably(file: string, dir: string, data: string | Uint8Array, mode: number): void {
  const tmp = tempPath(dir);
  // O_EXCL: the name is ours alone, and the mode is set at creation (never briefly world-readable).
  const fd = openSync(tmp, 'wx', mode);
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  landByRename(tmp, file, dir);
}

/** Renames a finished temporary file over `file` and makes the rename durable. */
export function landByRename(tmp: string, file: string, dir: string): void {
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncPath(dir);
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
