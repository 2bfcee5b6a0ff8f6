// The embedded store: one JSON file per pool and one per reservation, for a single node (or a
// shared-nothing lab). Layout under the root (directories 0700, files 0600):
//   pools/<pool>.json          {"version":"<n>","range":...,"allocations":{...}}  (whereabouts' IPPool.spec)
//   pools/<pool>.lock          lock file (see below); holds no data
//   reservations/<name>.json   {"version":"<random>","podref":...}  (OverlappingRangeIPReservation.spec)
//   reservations/.lock
//
// Readers take no lock: every file is replaced whole by write-temp, fsync, rename, fsync(dir), so a
// reader sees the old or the new file, never a torn one, even after a crash.
//
// Writers compare-and-swap under an exclusive lock: under it, the version in the file is compared with
// the one the writer read, and only then replaced (version = a counter in the file, so no ABA). Node
// has no flock(2), and a lock file made with O_EXCL cannot be broken safely when its holder is killed
// (two processes may both judge it stale). So the lock is a POSIX record lock (fcntl) taken through
// node:sqlite: "BEGIN IMMEDIATE" on the lock file locks it exclusively, waits up to a timeout for a
// holder, and the kernel drops the lock when its process dies, kill -9 included. Nothing on disk has to
// be repaired after a crash: a half-written temp file is ignored by readers and deleted by the next
// writer of that pool (under the lock every temp file of the pool is a dead writer's).
//
// The critical section is synchronous on purpose: no other code of this process runs while the lock is
// held, so two connections of one process never wait on each other (which would deadlock a thread
// that blocks in SQLite's busy handler).
import {
  accessSync, closeSync, constants, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, statSync, unlinkSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import { Code, CniError } from '../../../lib/cni/errors.ts';
import { SAFE_NAME } from '../../alloc/names.ts';
import { StoreUnavailable, type LegacyIpamStore, type PoolRecord, type Reservation, type Versioned } from '../types.ts';

export const DEFAULT_FILE_STORE_DIR = '/var/lib/cni/underlay/ipam';
// Short: a holder needs milliseconds; a longer wait is retried by the IPAM within its deadline.
const LOCK_TIMEOUT_MS = 2_000;

/** Random hex for temp names and reservation versions: uniqueness, not secrecy (no node:crypto load). */
const randomHex = (bytes: number): string =>
  Array.from({ length: bytes }, () => Math.floor(Math.random() * 256).toString(16).padStart(2, '0')).join('');

const errnoOf = (err: unknown): string | undefined =>
  err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;

function ioError(what: string, path: string, err: unknown): CniError {
  const why = errnoOf(err) ?? (err instanceof Error ? err.message : String(err));
  return new CniError(Code.IoFailure, `file store: cannot ${what} ${path}: ${why}`);
}

function checkName(kind: string, name: string): void {
  if (!SAFE_NAME.test(name)) throw new CniError(Code.InvalidConfig, `file store: ${kind} name ${JSON.stringify(name)} is not a safe file name`);
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw ioError('read', path, err);
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes a new file next to `path`, made durable before it is visible: temp, fsync, then `publish`. */
function writeDurably(path: string, text: string, publish: (temp: string) => void): void {
  const temp = `${path}.tmp-${process.pid}-${randomHex(4)}`;
  try {
    const fd = openSync(temp, 'wx', 0o600);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    publish(temp);
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // Renamed away (the usual case) or never created.
    }
  }
}

/** {"version": v, ...record}: the version first, so a writer can read it without parsing the pool. */
function encode(version: string, record: Record<string, unknown>): string {
  const { version: _dropped, ...rest } = record;
  return `${JSON.stringify({ version, ...rest })}\n`;
}

function decode(text: string, path: string): { version: string; record: Record<string, unknown> } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CniError(Code.IoFailure, `file store: ${path} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || typeof (parsed as { version?: unknown }).version !== 'string') {
    throw new CniError(Code.IoFailure, `file store: ${path} is not a record written by this store (no "version")`);
  }
  const { version, ...record } = parsed as Record<string, unknown> & { version: string };
  return { version, record };
}

/** A hand check, not zod: it runs over every allocation of a pool on every read (60,000 in a /16). */
function asPoolRecord(record: Record<string, unknown>, path: string): PoolRecord {
  const { range, allocations } = record;
  if (typeof range !== 'string' || allocations === null || typeof allocations !== 'object' || Array.isArray(allocations)) {
    throw new CniError(Code.IoFailure, `file store: ${path} is not a pool record (needs "range" and "allocations")`);
  }
  // Values only: the keys are checked where they are used (see keysWhere), as building 60,000 key
  // strings here would double the cost of a read.
  for (const a of Object.values(allocations) as Array<{ id?: unknown; podref?: unknown } | null>) {
    if (a === null || typeof a !== 'object' || typeof a.id !== 'string' || typeof a.podref !== 'string') {
      throw new CniError(Code.IoFailure, `file store: ${path}: an allocation is malformed: ${JSON.stringify(a).slice(0, 80)}`);
    }
  }
  return record as PoolRecord;
}

function asReservation(record: Record<string, unknown>, path: string): Reservation {
  if (typeof record.podref !== 'string') throw new CniError(Code.IoFailure, `file store: ${path} is not a reservation (no "podref")`);
  return record as Reservation;
}

/**
 * The version after `current`: a decimal counter, as a bigint (a Number would lose precision and
 * String(NaN) would disable compare-and-swap for good). A version that is not a decimal counter (a hand
 * edit, another tool) is refused: writing over it could lose an update.
 */
export function nextVersion(current: string | undefined, path: string): string {
  if (current === undefined) return '1';
  if (!/^\d{1,30}$/.test(current)) {
    throw new CniError(Code.IoFailure, `file store: ${path} has version ${JSON.stringify(current.slice(0, 40))}, not a decimal counter: fix or remove the file`);
  }
  return (BigInt(current) + 1n).toString();
}

/** The version at the head of a file written by encode(), without parsing the rest. */
function readVersion(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw ioError('read', path, err);
  }
  try {
    const head = Buffer.alloc(64);
    const length = readSync(fd, head, 0, head.length, 0);
    const match = /^\{"version":"([0-9a-f]+)"/.exec(head.toString('latin1', 0, length));
    return match ? match[1]! : decode(readFileSync(path, 'utf8'), path).version;
  } finally {
    closeSync(fd);
  }
}

export class FileStore implements LegacyIpamStore {
  readonly description: string;
  readonly root: string;
  private readonly lockTimeoutMs: number;
  private readonly pools: string;
  private readonly reservations: string;

  constructor(root: string, lockTimeoutMs = LOCK_TIMEOUT_MS) {
    this.root = root;
    this.lockTimeoutMs = lockTimeoutMs;
    this.description = `file store ${root}`;
    this.pools = join(root, 'pools');
    this.reservations = join(root, 'reservations');
  }

  private ensureDir(dir: string): void {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw ioError('create directory', dir, err);
    }
  }

  /** Runs `body` (synchronous, see the file comment) holding the exclusive lock on `lockPath`. */
  private locked<T>(lockPath: string, body: () => T): T {
    let db: DatabaseSync;
    try {
      closeSync(openSync(lockPath, 'a', 0o600)); // created 0600 before SQLite would create it 0644
      // node:sqlite is loaded on the first write only: reads (CHECK, STATUS, the CLI) never lock.
      db = new (process.getBuiltinModule('node:sqlite').DatabaseSync)(lockPath, { timeout: this.lockTimeoutMs });
    } catch (err) {
      throw ioError('open lock', lockPath, err);
    }
    try {
      try {
        db.exec('BEGIN IMMEDIATE');
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (/locked|busy/i.test(message)) throw new StoreUnavailable(`lock ${lockPath} was held for over ${this.lockTimeoutMs} ms`);
        throw ioError('lock', lockPath, err);
      }
      try {
        return body();
      } finally {
        db.exec('ROLLBACK');
      }
    } finally {
      db.close();
    }
  }

  async readPool(name: string): Promise<Versioned<PoolRecord> | undefined> {
    checkName('pool', name);
    const path = join(this.pools, `${name}.json`);
    const text = readText(path);
    if (text === undefined) return undefined;
    const { version, record } = decode(text, path);
    return { value: asPoolRecord(record, path), version };
  }

  async writePool(name: string, pool: PoolRecord, expected: string | undefined): Promise<boolean> {
    checkName('pool', name);
    this.ensureDir(this.pools);
    const path = join(this.pools, `${name}.json`);
    return this.locked(join(this.pools, `${name}.lock`), () => {
      const current = readVersion(path);
      if (current !== expected) return false;
      this.removeDeadTemps(`${name}.json.tmp-`);
      try {
        writeDurably(path, encode(nextVersion(current, path), pool), (temp) => renameSync(temp, path));
        fsyncDir(this.pools);
      } catch (err) {
        throw ioError('write', path, err);
      }
      return true;
    });
  }

  /** Called under a pool's lock: any temp file of that pool belongs to a writer that died. */
  private removeDeadTemps(prefix: string): void {
    for (const entry of readdirSync(this.pools)) {
      if (!entry.startsWith(prefix)) continue;
      try {
        unlinkSync(join(this.pools, entry));
      } catch {
        // Gone already.
      }
    }
  }

  async listPools(): Promise<string[]> {
    return this.list(this.pools);
  }

  async readReservation(name: string): Promise<Versioned<Reservation> | undefined> {
    checkName('reservation', name);
    const path = join(this.reservations, `${name}.json`);
    const text = readText(path);
    if (text === undefined) return undefined;
    const { version, record } = decode(text, path);
    return { value: asReservation(record, path), version };
  }

  async createReservation(name: string, reservation: Reservation): Promise<boolean> {
    checkName('reservation', name);
    this.ensureDir(this.reservations);
    const path = join(this.reservations, `${name}.json`);
    let created = false;
    try {
      // link(2) fails when the name exists: create-if-absent, atomic, and the content is complete first.
      writeDurably(path, encode(randomHex(8), reservation), (temp) => {
        try {
          linkSync(temp, path);
          created = true;
        } catch (err) {
          if (errnoOf(err) !== 'EEXIST') throw err;
        }
      });
      if (created) fsyncDir(this.reservations);
    } catch (err) {
      throw ioError('create', path, err);
    }
    return created;
  }

  async deleteReservation(name: string, expected: string): Promise<boolean> {
    checkName('reservation', name);
    const path = join(this.reservations, `${name}.json`);
    if (readText(path) === undefined) return true;
    // Under the lock no other delete runs, and a create cannot replace a file that exists, so the
    // version read here is still the file's when it is unlinked.
    return this.locked(join(this.reservations, '.lock'), () => {
      const text = readText(path);
      if (text === undefined) return true;
      if (decode(text, path).version !== expected) return false;
      try {
        unlinkSync(path);
        fsyncDir(this.reservations);
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT') throw ioError('delete', path, err);
      }
      return true;
    });
  }

  async replaceReservation(name: string, expected: string, reservation: Reservation): Promise<boolean> {
    checkName('reservation', name);
    const path = join(this.reservations, `${name}.json`);
    // Under the lock no delete or other replace runs, and a create cannot succeed while the file
    // exists: the version compared here is the one the rename replaces.
    return this.locked(join(this.reservations, '.lock'), () => {
      const text = readText(path);
      if (text === undefined || decode(text, path).version !== expected) return false;
      try {
        writeDurably(path, encode(randomHex(8), reservation), (temp) => renameSync(temp, path));
        fsyncDir(this.reservations);
      } catch (err) {
        throw ioError('write', path, err);
      }
      return true;
    });
  }

  /**
   * Removes temp files older than `ageMs` from reservations/ (a createReservation killed before its
   * cleanup leaves one; creates take no lock, so only old ones are surely dead). Called by GC.
   */
  removeStaleTemps(ageMs: number, now = Date.now()): number {
    let removed = 0;
    let entries: string[];
    try {
      entries = readdirSync(this.reservations);
    } catch {
      return 0;
    }
    for (const entry of entries) {
      if (!entry.includes('.json.tmp-')) continue;
      const path = join(this.reservations, entry);
      try {
        if (now - statSync(path).mtimeMs < ageMs) continue;
        unlinkSync(path);
        removed++;
      } catch {
        // Gone already.
      }
    }
    return removed;
  }

  async listReservations(): Promise<string[]> {
    return this.list(this.reservations);
  }

  private list(dir: string): string[] {
    try {
      return readdirSync(dir)
        .filter((entry) => entry.endsWith('.json') && SAFE_NAME.test(entry))
        .map((entry) => entry.slice(0, -'.json'.length));
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return [];
      throw ioError('list', dir, err);
    }
  }

  async ping(): Promise<void> {
    for (const dir of [this.root, this.pools, this.reservations]) {
      this.ensureDir(dir);
      try {
        accessSync(dir, constants.R_OK | constants.W_OK | constants.X_OK);
      } catch (err) {
        throw ioError('write to', dir, err);
      }
    }
  }
}
