// Puts the executable and its plugin links into the node's CNI plugin directory, the rules of a good
// neighbour: a plugin of another origin under one of our names (the reference macvlan, a real
// whereabouts) stays unless --force; the underlay-* names are ours and always made; every change lands
// by rename, so a runtime exec-ing a plugin meanwhile gets the old file or the new one, never half.
import { execFile } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, constants, lstatSync, mkdirSync, openSync, readlinkSync, readSync, realpathSync, rmSync, symlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { PLUGIN_NAMES } from '../names.ts';
import { fsyncFile, landByRename, removeStaleTemps, tempPath } from './durable.ts';

export const EXECUTABLE = 'underlay';
/** A killed installer's temporary copy older than this is garbage; a younger one may be in use. */
const STALE_TEMP_MS = 10 * 60_000;
/** How often to retry running the fresh copy while some process still holds it open for writing. */
const BUSY_RETRIES = 10;

export interface PluginInstall {
  source: string;
  binDir: string;
  force: boolean;
  say: (line: string) => void;
}

const execFileAsync = promisify(execFile);

const errnoOf = (err: unknown): string => (err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : '');

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

function samePath(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false; // a dangling link is not the running executable
  }
}

/** Byte-for-byte equality, read in chunks: cheaper than hashing two 120 MB files. */
function sameContent(a: string, b: string): boolean {
  const stA = lstatOrUndefined(a);
  const stB = lstatOrUndefined(b);
  if (!stA?.isFile() || !stB?.isFile() || stA.size !== stB.size) return false;
  const fdA = openSync(a, 'r');
  const fdB = openSync(b, 'r');
  try {
    const bufA = Buffer.alloc(1 << 20);
    const bufB = Buffer.alloc(1 << 20);
    for (;;) {
      const n = readSync(fdA, bufA);
      const m = readSync(fdB, bufB);
      if (n !== m || !bufA.subarray(0, n).equals(bufB.subarray(0, m))) return false;
      if (n === 0) return true;
    }
  } finally {
    closeSync(fdA);
    closeSync(fdB);
  }
}

/**
 * Runs the fresh copy once before it goes live: a directory mounted noexec, or a copy the disk
 * mangled, fails here instead of in every pod's ADD. Exec can fail with ETXTBSY for a moment after the
 * write: a process forked meanwhile may still hold the file open for writing until it execs.
 */
async function checkRuns(file: string): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    try {
      const { stdout } = await execFileAsync(file, ['version'], { env: {}, timeout: 30_000, encoding: 'utf8' });
      const first = stdout.split('\n')[0] ?? '';
      if (!first.startsWith(`${EXECUTABLE} `)) throw new Error(`it printed ${JSON.stringify(first.slice(0, 80))} instead of its version`);
      return first;
    } catch (err) {
      if (errnoOf(err) === 'ETXTBSY' && attempt < BUSY_RETRIES) {
        await sleep(50 * (attempt + 1));
        continue;
      }
      const why = errnoOf(err) === 'EACCES' ? 'permission denied (is the directory mounted noexec?)' : err instanceof Error ? err.message : String(err);
      throw new Error(`the copy at ${file} does not run: ${why}`, { cause: err });
    }
  }
}

async function installExecutable({ source, binDir, say }: PluginInstall): Promise<void> {
  const dest = join(binDir, EXECUTABLE);
  const existing = lstatOrUndefined(dest);
  if (existing && samePath(dest, source)) {
    say(`${dest} is the executable running now; nothing to copy`);
    return;
  }
  if (existing && sameContent(source, dest)) {
    say(`${dest} is up to date`);
    return;
  }
  const tmp = tempPath(binDir);
  try {
    copyFileSync(source, tmp, constants.COPYFILE_EXCL);
    chmodSync(tmp, 0o755);
    fsyncFile(tmp);
    const version = await checkRuns(tmp);
    landByRename(tmp, dest, binDir);
    say(`${existing ? 'replaced' : 'installed'} ${dest} (${version})`);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Makes the link `name` -> underlay when the rules allow; false when it was already in place. */
function linkPlugin(name: string, { binDir, force, say }: PluginInstall): boolean {
  const target = join(binDir, name);
  const st = lstatOrUndefined(target);
  if (st?.isSymbolicLink() && readlinkSync(target) === EXECUTABLE) return false;
  const ourName = name.startsWith(`${EXECUTABLE}-`);
  if (st?.isDirectory()) {
    say(`${target} is a directory; left it alone (plugin "${name}" is not installed)`);
    return true;
  }
  if (st && !ourName && !force) {
    say(`${target} is a plugin of another origin; kept it (use "type": "underlay-${aliasOf(name)}" instead, or --force to replace it)`);
    return true;
  }
  const tmp = tempPath(binDir);
  symlinkSync(EXECUTABLE, tmp);
  landByRename(tmp, target, binDir);
  if (!st) say(`linked ${target} -> ${EXECUTABLE}`);
  else if (ourName) say(`replaced ${target}, which was not a link to ${EXECUTABLE}, with one`);
  else say(`replaced ${target} with a link to ${EXECUTABLE} (--force)`);
  return true;
}

/** The underlay-* name that stands in for a plugin name we share with another project. */
function aliasOf(name: string): string {
  return name === 'whereabouts' ? 'ipam' : name;
}

export async function installPlugins(install: PluginInstall): Promise<void> {
  mkdirSync(install.binDir, { recursive: true, mode: 0o755 });
  for (const path of removeStaleTemps(install.binDir, STALE_TEMP_MS)) install.say(`removed ${path}, left behind by an installer that was stopped mid-copy`);
  await installExecutable(install);
  let changed = 0;
  for (const name of PLUGIN_NAMES) if (linkPlugin(name, install)) changed++;
  if (changed === 0) install.say(`plugin links ${PLUGIN_NAMES.join(', ')} are in place`);
}
