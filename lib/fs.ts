// Durable, private files: what the IPAM's file store and the sriov plugin's cache keep on the node.
// Everything here runs as root in directories a config may name, so no path is followed through a
// symlink, only regular files are read, and every byte of a write lands or the write fails.
import {
  closeSync, constants, fstatSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readSync, renameSync, unlinkSync, writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { Code, CniError, showValue } from './cni/errors.ts';
import { timed } from './trace.ts';

export const errnoOf = (err: unknown): string | undefined =>
  err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;

/** A code 5 error naming the path and the errno (never the content). */
export function ioError(what: string, path: string, err: unknown): CniError {
  const why = errnoOf(err) ?? (err instanceof Error ? err.message : String(err));
  return new CniError(Code.IoFailure, `cannot ${what} ${path}: ${why}`);
}

/** Random hex for temp names and versions: uniqueness, not secrecy (no node:crypto on the ADD path). */
export const randomHex = (bytes: number): string =>
  Array.from({ length: bytes }, () => Math.floor(Math.random() * 256).toString(16).padStart(2, '0')).join('');

/** Writes all of `data` to `fd`: a short write (a full disk, a file size limit) is retried, then fails. */
export function writeAll(fd: number, data: Buffer): void {
  let offset = 0;
  while (offset < data.length) {
    const written = writeSync(fd, data, offset, data.length - offset);
    if (written <= 0) throw Object.assign(new Error('short write'), { code: 'ENOSPC' });
    offset += written;
  }
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    timed(`fsync ${dir}`, () => fsyncSync(fd));
  } finally {
    closeSync(fd);
  }
}

/** The temp file a writer uses next to `path`; `isTempOf` tells a dead writer's temp files apart exactly. */
export const tempPathOf = (path: string): string => `${path}.tmp-${process.pid}-${randomHex(4)}`;
const TEMP_SUFFIX = /^\.tmp-\d+-[0-9a-f]{8}$/;
export const isTempOf = (entry: string, base: string): boolean => entry.startsWith(base) && TEMP_SUFFIX.test(entry.slice(base.length));

export interface DurableWrite {
  mode?: number;
  /** 'replace' (rename over) or 'create' (only if absent; false when it exists). */
  publish?: 'replace' | 'create';
  /**
   * What survives a crash (power loss; a killed process always leaves the old file or the new one):
   *   'all' (default): the new file, under its name (data and directory synced);
   *   'data': never a torn file, but the old version may be back (the directory is not synced);
   *   'none': nothing is synced: for records that mean nothing after a reboot.
   */
  sync?: 'all' | 'data' | 'none';
}

/**
 * Writes `data` as `path`, durable before it is visible: temp file (O_EXCL, no symlink followed), every
 * byte written, fsync, then rename (or link, for create-if-absent), then fsync of the directory. On any
 * failure the temp file is removed, the old file is left as it was, and a code 5 error names the path.
 * Returns false only when publish is 'create' and `path` already exists.
 */
export function writeFileDurably(path: string, data: string | Buffer, options: DurableWrite = {}): boolean {
  const temp = tempPathOf(path);
  let published = true;
  try {
    const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, options.mode ?? 0o600);
    try {
      writeAll(fd, typeof data === 'string' ? Buffer.from(data) : data);
      if (options.sync !== 'none') timed(`fsync ${path}`, () => fsyncSync(fd));
    } finally {
      closeSync(fd);
    }
    if (options.publish === 'create') {
      try {
        linkSync(temp, path);
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
        published = false;
      }
    } else {
      renameSync(temp, path);
    }
    if (published && (options.sync ?? 'all') === 'all') fsyncDir(dirname(path));
  } catch (err) {
    throw ioError('write', path, err);
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // Renamed away (the usual case) or never created.
    }
  }
  return published;
}

/** Larger than any record we write; a bigger file is not ours (or is /dev/zero). */
export const MAX_READ_BYTES = 32 << 20;

export interface ReadOptions {
  maxBytes?: number;
  /** Follow a symlink to a regular file (a config a mount or a tool may link). Default: refuse it. */
  followLinks?: boolean;
}

/**
 * The content of the regular file `path`, or undefined when there is none. A symlink (unless
 * followLinks), a FIFO (opened without blocking), a device or a file larger than maxBytes is refused
 * with a code 5 error.
 */
export function readFileIfExists(path: string, options: ReadOptions | number = {}): string | undefined {
  const { maxBytes = MAX_READ_BYTES, followLinks = false } = typeof options === 'number' ? { maxBytes: options } : options;
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | (followLinks ? 0 : constants.O_NOFOLLOW));
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'ELOOP') throw new CniError(Code.IoFailure, `refusing to read ${path}: it is a symbolic link`);
    throw ioError('read', path, err);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new CniError(Code.IoFailure, `refusing to read ${path}: not a regular file`);
    if (stat.size > maxBytes) throw new CniError(Code.IoFailure, `refusing to read ${path}: ${stat.size} bytes is more than ${maxBytes}`);
    const buffer = Buffer.alloc(stat.size);
    let length = 0;
    while (length < buffer.length) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
    }
    return buffer.toString('utf8', 0, length);
  } catch (err) {
    if (err instanceof CniError) throw err;
    throw ioError('read', path, err);
  } finally {
    closeSync(fd);
  }
}

/**
 * Why `dir` is no place for root to keep files, or '' when it is fine: a symlink, not a directory, not
 * owned by us (root), or writable by group or others (they could plant files or links where root writes).
 * Undefined when `dir` does not exist.
 */
export function privateDirProblem(dir: string): string | undefined {
  let stat;
  try {
    stat = lstatSync(dir);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw ioError('inspect', dir, err);
  }
  return stat.isSymbolicLink() ? 'is a symbolic link'
    : !stat.isDirectory() ? 'is not a directory'
    : stat.uid !== process.geteuid?.() ? `is owned by uid ${stat.uid}, not by us`
    : (stat.mode & 0o022) !== 0 ? `is writable by ${stat.mode & 0o002 ? 'others' : 'its group'} (mode ${(stat.mode & 0o777).toString(8)})`
    : '';
}

const refuseDir = (dir: string, why: string): CniError => new CniError(Code.IoFailure, `refusing to keep files in ${showValue(dir)}: it ${why}`);

/** Throws (code 5) if `dir` exists and is not a private directory; false when it does not exist. */
export function checkPrivateDir(dir: string): boolean {
  const why = privateDirProblem(dir);
  if (why) throw refuseDir(dir, why);
  return why !== undefined;
}

/** Makes sure `dir` exists as a private directory: created 0700 if missing, refused as checkPrivateDir does. */
export function ensurePrivateDir(dir: string): void {
  if (checkPrivateDir(dir)) return;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw ioError('create directory', dir, err);
  }
  const why = privateDirProblem(dir);
  if (why) throw refuseDir(dir, why);
}
