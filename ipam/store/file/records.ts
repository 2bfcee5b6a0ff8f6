// How the file store writes a record: `{"version":"<v>", ...record}` on one line, the version first so
// a writer can read it without parsing a 170 KiB pool. Checks are by hand, not zod: they run over every
// allocation of a pool on every read.
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { Code, CniError } from '../../../lib/cni/errors.ts';
import { errnoOf, ioError, readFileIfExists } from '../../../lib/fs.ts';
import type { PoolRecord, Reservation } from '../types.ts';

const corrupt = (path: string, why: string): CniError => new CniError(Code.IoFailure, `file store: ${path} ${why}`);

export function encode(version: string, record: PoolRecord | Reservation): string {
  const { version: _dropped, ...rest } = record as Record<string, unknown>;
  return `${JSON.stringify({ version, ...rest })}\n`;
}

export function decode(text: string, path: string): { version: string; record: Record<string, unknown> } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw corrupt(path, `is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || typeof (parsed as { version?: unknown }).version !== 'string') {
    throw corrupt(path, 'is not a record written by this store (no "version")');
  }
  const { version, ...record } = parsed as Record<string, unknown> & { version: string };
  return { version, record };
}

export function asPoolRecord(record: Record<string, unknown>, path: string): PoolRecord {
  const { range, allocations } = record;
  if (typeof range !== 'string' || allocations === null || typeof allocations !== 'object' || Array.isArray(allocations)) {
    throw corrupt(path, 'is not a pool record (needs "range" and "allocations")');
  }
  // Values only: keys are checked where they are used (a hand-edited "__proto__" or "-5" is skipped
  // there), as building 60,000 key strings here would double the cost of a read.
  for (const a of Object.values(allocations) as Array<{ id?: unknown; podref?: unknown } | null>) {
    if (a === null || typeof a !== 'object' || typeof a.id !== 'string' || typeof a.podref !== 'string') {
      throw corrupt(path, `holds a malformed allocation: ${JSON.stringify(a)?.slice(0, 80)}`);
    }
  }
  return record as PoolRecord;
}

export function asReservation(record: Record<string, unknown>, path: string): Reservation {
  if (typeof record.podref !== 'string') throw corrupt(path, 'is not a reservation (no "podref")');
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
    throw corrupt(path, `has version ${JSON.stringify(current.slice(0, 40))}, not a decimal counter: fix or remove the file`);
  }
  return (BigInt(current) + 1n).toString();
}

/** The version at the head of a file written by encode(), without parsing the rest; no symlink followed. */
export function readVersion(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw ioError('read', path, err);
  }
  try {
    const head = Buffer.alloc(64);
    const length = readSync(fd, head, 0, head.length, 0);
    const match = /^\{"version":"([0-9a-f]+)"/.exec(head.toString('latin1', 0, length));
    if (match) return match[1]!;
  } finally {
    closeSync(fd);
  }
  const text = readFileIfExists(path);
  return text === undefined ? undefined : decode(text, path).version;
}
