// The embedded store: one JSON file per pool and one per reservation, for a single node (or a
// shared-nothing lab). Layout under the root (directories 0700, files 0600, all owned by root):
//   pools/<pool>.json          {"version":"<n>","range":...,"allocations":{...}}  (whereabouts' IPPool.spec)
//   pools/<pool>.lock          lock file (lib/lock.ts); holds no data
//   reservations/<name>.json   {"version":"<random>","podref":...}  (OverlappingRangeIPReservation.spec)
//   reservations/.lock
//
// Readers take no lock: every file is replaced whole (lib/fs.ts writeFileDurably: temp, every byte,
// fsync, rename, fsync dir), so a reader sees the old or the new file, never a torn one, even after a
// crash or on a full disk. Writers compare-and-swap under the record's lock: the version in the file is
// compared with the one the writer read, and only then replaced (a pool's version is a counter in the
// file, so no ABA). A reservation is created without a lock, by link(2), which fails if the name exists.
// A dead writer leaves at most its temp file: the next writer of that pool removes the pool's own temp
// files (named exactly after it), and tidy() removes old ones everywhere.
//
// fsync: every file's data is synced before it is published, so no record is ever torn, whatever the
// file system. Directories are synced only after a reservation is created: a lease must never outlive
// its reservation across a crash, and on a journalling file system (ext4, XFS) names change durably in
// the order they were made, so the pool write that follows cannot persist without it. A pool write, a
// reservation replaced or deleted, may come back to its old version after a power loss: that is a
// lease or a reservation more (GC frees it), never a duplicate, and every pod holding a lease of a
// node-local store died with the node anyway. An ADD costs three fsyncs (was four), a DEL one (was three).
//
// The store refuses a root, pools/ or reservations/ that is a symlink, not root's, or writable by
// others, and opens nothing through a symlink: the directory may come from a config.
import { accessSync, constants, readdirSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Code, CniError } from '../../../lib/cni/errors.ts';
import { checkPrivateDir, ensurePrivateDir, errnoOf, ioError, isTempOf, randomHex, readFileIfExists, writeFileDurably } from '../../../lib/fs.ts';
import { lockFile, LockTimeout } from '../../../lib/lock.ts';
import { SAFE_NAME } from '../../alloc/names.ts';
import { StoreUnavailable, type IpamStore, type Named, type PoolRecord, type Reservation, type Versioned, type Write } from '../types.ts';
import { asPoolRecord, asReservation, decode, encode, nextVersion, readVersion } from './records.ts';

export const DEFAULT_FILE_STORE_DIR = '/var/lib/cni/underlay/ipam';
// Short: a holder needs milliseconds; a longer wait is retried by the IPAM within its deadline.
const LOCK_TIMEOUT_MS = 2_000;

/** Every call checks its deadline first: a caller out of time gets "may pass", never a late answer. */
function onTime(deadline: number): void {
  if (Date.now() >= deadline) throw new StoreUnavailable('the deadline passed before the call');
}

function checkName(kind: string, name: string): void {
  if (!SAFE_NAME.test(name)) throw new CniError(Code.InvalidConfig, `file store: ${kind} name ${JSON.stringify(name.slice(0, 80))} is not a safe file name`);
}

type Kind = 'pool' | 'reservation';

export class FileStore implements IpamStore {
  readonly description: string;
  readonly atomicWrites = 1;
  readonly sharedByNodes = false;
  readonly root: string;
  private readonly dirs: Record<Kind, string>;
  private readonly lockTimeoutMs: number;
  private checked = false;

  constructor(root: string, lockTimeoutMs = LOCK_TIMEOUT_MS) {
    this.root = root;
    this.lockTimeoutMs = lockTimeoutMs;
    this.description = `file store ${root}`;
    this.dirs = { pool: join(root, 'pools'), reservation: join(root, 'reservations') };
  }

  private pathOf(kind: Kind, name: string): string {
    checkName(kind, name);
    return join(this.dirs[kind], `${name}.json`);
  }

  /** Readers check the directories that exist; writers create what is missing. */
  private safeDirs(create: boolean): void {
    if (this.checked) return;
    const all = [this.root, this.dirs.pool, this.dirs.reservation];
    if (!create) {
      for (const dir of all) checkPrivateDir(dir);
      return;
    }
    for (const dir of all) ensurePrivateDir(dir);
    this.checked = true;
  }

  private async locked<T>(lockPath: string, deadline: number, body: () => T): Promise<T> {
    let lock;
    try {
      lock = await lockFile(lockPath, Math.min(deadline, Date.now() + this.lockTimeoutMs));
    } catch (err) {
      if (err instanceof LockTimeout) throw new StoreUnavailable(`lock ${lockPath} was held for over ${this.lockTimeoutMs} ms`);
      throw err;
    }
    try {
      return body();
    } finally {
      lock.release();
    }
  }

  private read<T>(kind: Kind, name: string, as: (record: Record<string, unknown>, path: string) => T, deadline: number): Versioned<T> | undefined {
    const path = this.pathOf(kind, name);
    onTime(deadline);
    this.safeDirs(false);
    const text = readFileIfExists(path);
    if (text === undefined) return undefined;
    const { version, record } = decode(text, path);
    return { value: as(record, path), version };
  }

  async readPool(name: string, deadline: number): Promise<Versioned<PoolRecord> | undefined> {
    return this.read('pool', name, asPoolRecord, deadline);
  }

  async readReservation(name: string, deadline: number): Promise<Versioned<Reservation> | undefined> {
    return this.read('reservation', name, asReservation, deadline);
  }

  private list<T>(kind: Kind, prefix: string, as: (record: Record<string, unknown>, path: string) => T, deadline: number): Array<Named<T>> {
    onTime(deadline);
    this.safeDirs(false);
    let entries: string[];
    try {
      entries = readdirSync(this.dirs[kind]);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return [];
      throw ioError('list', this.dirs[kind], err);
    }
    const out: Array<Named<T>> = [];
    for (const entry of entries.sort()) {
      if (!entry.endsWith('.json')) continue;
      const name = entry.slice(0, -'.json'.length);
      if (!name.startsWith(prefix) || !SAFE_NAME.test(name)) continue;
      const found = this.read(kind, name, as, deadline);
      if (found) out.push({ name, ...found }); // gone between the listing and the read: skipped
    }
    return out;
  }

  async listPools(prefix: string, deadline: number): Promise<Array<Named<PoolRecord>>> {
    return this.list('pool', prefix, asPoolRecord, deadline);
  }

  async listReservations(prefix: string, deadline: number): Promise<Array<Named<Reservation>>> {
    return this.list('reservation', prefix, asReservation, deadline);
  }

  async commit(writes: ReadonlyArray<Write>, deadline: number): Promise<Array<string | undefined> | undefined> {
    if (writes.length === 0) return [];
    if (writes.length > this.atomicWrites) throw new CniError(Code.Internal, `file store: a commit of ${writes.length} writes; it applies one at a time`);
    onTime(deadline);
    const write = writes[0]!;
    this.safeDirs(true);
    const version = write.kind === 'pool' ? await this.writePool(write.name, write.value, write.expected, deadline) : await this.writeReservation(write, deadline);
    return version === false ? undefined : [version];
  }

  private async writePool(name: string, pool: PoolRecord, expected: string | undefined, deadline: number): Promise<string | false> {
    const path = this.pathOf('pool', name);
    return this.locked(join(this.dirs.pool, `${name}.lock`), deadline, () => {
      const current = readVersion(path);
      if (current !== expected) return false;
      this.removeTemps(this.dirs.pool, `${name}.json`, 0);
      const next = nextVersion(current, path);
      writeFileDurably(path, encode(next, pool), { sync: 'data' });
      return next;
    });
  }

  private async writeReservation(write: Extract<Write, { kind: 'reservation' }>, deadline: number): Promise<string | undefined | false> {
    const path = this.pathOf('reservation', write.name);
    if (write.expected === undefined) {
      if (write.value === null) return false;
      const version = randomHex(8);
      return writeFileDurably(path, encode(version, write.value), { publish: 'create' }) ? version : false;
    }
    const { expected, value } = write;
    // Under the lock no other delete or replace runs, and a create cannot succeed while the file exists:
    // the version compared here is the one the rename (or unlink) replaces.
    return this.locked(join(this.dirs.reservation, '.lock'), deadline, () => {
      const text = readFileIfExists(path);
      if (text === undefined || decode(text, path).version !== expected) return false;
      if (value === null) {
        try {
          unlinkSync(path);
        } catch (err) {
          throw ioError('delete', path, err);
        }
        return undefined;
      }
      const version = randomHex(8);
      writeFileDurably(path, encode(version, value), { sync: 'data' });
      return version;
    });
  }

  /** Removes the temp files of `base` (exactly: base.tmp-PID-HEX) older than `ageMs`. */
  private removeTemps(dir: string, base: string | undefined, ageMs: number, now = Date.now()): number {
    let removed = 0;
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      return 0;
    }
    for (const entry of entries) {
      const owner = base ?? entry.slice(0, entry.indexOf('.json.tmp-') + '.json'.length);
      if (!entry.includes('.json.tmp-') || !isTempOf(entry, owner)) continue;
      const path = join(dir, entry);
      try {
        if (ageMs > 0 && now - statSync(path).mtimeMs < ageMs) continue;
        unlinkSync(path);
        removed++;
      } catch {
        // Gone already.
      }
    }
    return removed;
  }

  async tidy(olderThanMs: number): Promise<number> {
    // Creates take no lock, so only old temp files are surely a dead writer's.
    return this.removeTemps(this.dirs.pool, undefined, Math.max(olderThanMs, 1)) + this.removeTemps(this.dirs.reservation, undefined, Math.max(olderThanMs, 1));
  }

  async ping(deadline: number): Promise<void> {
    onTime(deadline);
    // STATUS never writes: what exists must be ours and writable; what does not, creatable.
    for (const dir of [this.root, this.dirs.pool, this.dirs.reservation]) {
      const exists = checkPrivateDir(dir);
      const target = exists ? dir : dirname(dir);
      try {
        accessSync(target, constants.R_OK | constants.W_OK | constants.X_OK);
      } catch (err) {
        if (!exists && errnoOf(err) === 'ENOENT') continue; // the parent is created too
        throw ioError('write to', target, err);
      }
    }
  }

  async close(): Promise<void> {
    // Nothing held open between calls.
  }
}
