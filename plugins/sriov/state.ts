// What the sriov plugin keeps on disk, in sriov-cni's places (UNDERLAY_SRIOV_STATE_DIR moves it all,
// for tests), records in its shape (record.ts):
//   <dir>/<containerID>-<ifName>     the attachment: config, the VF's original state (OrigVfState)
//   <dir>/pci/<pciAddr>              allocation marker: the netns path of the pod holding the VF
//   <dir>/pci/vf_lock/<pciAddr>.lock the per-VF lock
// ADD writes the attachment, then the marker, before it changes anything: whatever kills it, DEL finds
// what to restore.
import { readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Code, CniError } from '../../lib/cni/errors.ts';
import { ensurePrivateDir, isTempOf, readFileIfExists, writeFileDurably } from '../../lib/fs.ts';
import { lockFile, tryLockFile, type FileLock } from '../../lib/lock.ts';
import { escaped, log } from '../../lib/log.ts';
import { CacheSchema, decode, encode, type Attachment } from './record.ts';

export type { Attachment } from './record.ts';

export const stateDir = (): string => process.env.UNDERLAY_SRIOV_STATE_DIR || '/var/lib/cni/sriov';
const pciDir = (): string => join(stateDir(), 'pci');
const lockDir = (): string => join(pciDir(), 'vf_lock');
export const markerPath = (pci: string): string => join(pciDir(), pci);
const cachePath = (containerId: string, ifName: string): string => join(stateDir(), `${containerId}-${ifName}`);

function parseCache(text: string, path: string, key: { containerId: string; ifName: string; netns: string }): Attachment | undefined {
  try {
    const parsed = CacheSchema.safeParse(JSON.parse(text));
    if (parsed.success) return decode(parsed.data, key);
    log.error(escaped`ignoring ${path}: not an sriov attachment record (${parsed.error.issues[0]?.message})`);
  } catch (err) {
    log.error(escaped`ignoring ${path}: ${(err as Error).message}`);
  }
  return undefined;
}

/** The attachment of (containerId, ifName); `netns` stands in for a record that does not say. */
export function loadAttachment(containerId: string, ifName: string, netns: string): Attachment | undefined {
  const path = cachePath(containerId, ifName);
  const text = readFileIfExists(path);
  return text === undefined ? undefined : parseCache(text, path, { containerId, ifName, netns });
}

/** Every attachment on record (GC, the doctor, and the owners of a VF whose pod died). */
export function allAttachments(): Attachment[] {
  let names: string[];
  try {
    names = readdirSync(stateDir(), { withFileTypes: true }).filter((e) => e.isFile() && !e.name.includes('.tmp-')).map((e) => e.name);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const path = join(stateDir(), name);
    const text = readFileIfExists(path);
    const att = text === undefined ? undefined : parseCache(text, path, { containerId: name, ifName: '', netns: '' });
    return att ? [att] : [];
  });
}

/** The netns path named by the VF's allocation marker, or undefined when it has none. */
export const markerOf = (pci: string): string | undefined => readFileIfExists(markerPath(pci))?.trim();

/**
 * Replaces `path` whole: a killed writer leaves the old file or the new one. Not synced: these files
 * describe VFs and netns that do not outlive a reboot either, and after one a lost or empty record makes
 * DEL do less, never harm (a durable write costs ~12 ms on a busy disk).
 */
const replaceFile = (path: string, data: string): void => void writeFileDurably(path, data, { sync: 'none' });

/** Records the attachment, then marks its VF as held by its pod: before anything is changed. */
export function saveAttachment(att: Attachment): void {
  ensurePrivateDir(stateDir());
  ensurePrivateDir(pciDir());
  replaceFile(cachePath(att.containerId, att.ifName), encode(att));
  replaceFile(markerPath(att.vf.pci), att.netns);
}

/** True when the VF's marker names this attachment's pod: only then is the VF this attachment's to restore. */
export const holdsVf = (att: Attachment): boolean => markerOf(att.vf.pci) === att.netns;

/**
 * Removes the temp files a writer of `path` killed mid-write left. Only called where no writer of
 * `path` can be running: a record's while its attachment is deleted (the runtime never runs two calls
 * for one attachment at once), a marker's under its VF's lock.
 */
function dropTempsOf(path: string): void {
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return;
  }
  for (const name of names) if (isTempOf(name, basename(path))) rmSync(join(dirname(path), name), { force: true });
}

/** What an ADD of (containerId, ifName) killed while writing its record left (DEL with no record). */
export const dropRecordTemps = (containerId: string, ifName: string): void => dropTempsOf(cachePath(containerId, ifName));

/** What a writer of the VF's marker killed mid-write left; under the VF's lock. */
export const dropMarkerTemps = (pci: string): void => dropTempsOf(markerPath(pci));

/** Drops the marker (if it is this attachment's) and the record, and what killed writers of either left. */
export function forget(att: Attachment): void {
  try {
    if (holdsVf(att)) rmSync(markerPath(att.vf.pci), { force: true });
    dropMarkerTemps(att.vf.pci);
    rmSync(cachePath(att.containerId, att.ifName), { force: true });
    dropRecordTemps(att.containerId, att.ifName);
  } catch (err) {
    throw new CniError(Code.IoFailure, `cannot remove the record of ${att.containerId}/${att.ifName}: ${(err as Error).message}`);
  }
}

const LOCK_WAIT_MS = 60_000;

function lockPath(pci: string): string {
  ensurePrivateDir(stateDir());
  ensurePrivateDir(pciDir());
  ensurePrivateDir(lockDir());
  return join(lockDir(), `${pci}.lock`);
}

/** The per-VF lock, held from the first look at a VF to the last change; waits up to 60 s for it. */
export const lockVf = (pci: string): Promise<FileLock> => lockFile(lockPath(pci), Date.now() + LOCK_WAIT_MS);

/** The per-VF lock if nobody holds it now. */
export const tryLockVf = (pci: string): FileLock | undefined => tryLockFile(lockPath(pci));
