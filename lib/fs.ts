// Durable files for plugin state. STAND-IN until main's lib/fs.ts lands (same signatures).
import { closeSync, constants, fstatSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { Code, CniError } from './cni/errors.ts';

const ioError = (what: string, path: string, err: unknown): CniError =>
  new CniError(Code.IoFailure, `cannot ${what} ${path}: ${err instanceof Error ? err.message : String(err)}`);

/** Writes `data` to `path` so that a crash leaves either the old file or the new one, whole. */
export function writeFileDurably(path: string, data: string | Uint8Array, mode = 0o600): void {
  const temp = `${path}.tmp-${process.pid}-${Math.floor(Math.random() * 1e9).toString(36)}`;
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  try {
    const fd = openSync(temp, 'wx', mode);
    try {
      for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
    const dir = openSync(dirname(path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch (err) {
    rmSync(temp, { force: true });
    throw ioError('write', path, err);
  }
}

/** The content of the regular file `path`, or undefined when there is none. Symlinks are not followed. */
export function readFileIfExists(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError('read', path, err);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new CniError(Code.IoFailure, `cannot read ${path}: not a regular file`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** mkdir -p with mode 0700; refuses a symlink, a directory not owned by root, or one others may write. */
export function ensurePrivateDir(path: string): void {
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw ioError('create directory', path, err);
  }
  const st = lstatSync(path);
  if (st.isSymbolicLink() || !st.isDirectory()) throw new CniError(Code.IoFailure, `refusing state directory ${path}: not a directory`);
  if (st.uid !== 0) throw new CniError(Code.IoFailure, `refusing state directory ${path}: owned by uid ${st.uid}, not root`);
  if ((st.mode & 0o022) !== 0) throw new CniError(Code.IoFailure, `refusing state directory ${path}: writable by group or others`);
}
