// Delegation to an IPAM plugin (spec §4): find `ipam.type` in CNI_PATH and exec it with our environment
// and the whole stdin config. When the file found is this very executable and the type is one of our
// own IPAMs, call it in-process instead: one Node start-up per ADD, not two.
import { accessSync, constants, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { Code, CniError, showValue } from './errors.ts';
import type { Verb } from './env.ts';
import { parseResult, type Result } from './result.ts';
import type { Invocation, Plugin } from './skel.ts';
import { escaped, log } from '../log.ts';
import { DELEGATING_PLUGINS } from '../names.ts';

/** Our own IPAM, loaded only when a config delegates to it (its modules cost every call that loads them). */
const inProcess = new Map<string, () => Promise<Plugin>>();

export function registerInProcessIpam(types: ReadonlyArray<string>, load: () => Promise<Plugin>): void {
  for (const type of types) inProcess.set(type, load);
}

export function findInPath(type: string, path: ReadonlyArray<string>): string {
  if (!type || type.includes('/') || type === '.' || type === '..') throw new CniError(Code.InvalidConfig, `invalid network config: ipam.type = ${showValue(type)}: not a plugin name`);
  for (const dir of path) {
    const candidate = join(dir, type);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory; try the next one.
    }
  }
  throw new CniError(Code.InvalidConfig, `invalid network config: ipam.type = ${showValue(type)}: no such plugin in CNI_PATH ${showValue(path.join(':'))}`);
}

function isThisExecutable(file: string): boolean {
  try {
    return realpathSync(file) === realpathSync(process.execPath);
  } catch {
    return false;
  }
}

/** The in-process IPAM plugin for `file`, if calling it directly is equivalent to exec-ing it. */
export async function inProcessTarget(type: string, file: string): Promise<Plugin | undefined> {
  const load = inProcess.get(type);
  return load && isThisExecutable(file) ? load() : undefined;
}

interface ExecOutcome {
  status: number;
  stdout: string;
}

/**
 * How many plugins deep a delegation may go, counted in DELEGATION_DEPTH_VAR across every exec: a
 * plain ADD is one deep (the plugin and its IPAM). Deeper than this is a chain that calls itself back.
 */
export const MAX_DELEGATION_DEPTH = 3;
export const DELEGATION_DEPTH_VAR = 'UNDERLAY_DELEGATION_DEPTH';

function delegationDepth(): number {
  const depth = Number.parseInt(process.env[DELEGATION_DEPTH_VAR] ?? '', 10);
  return Number.isInteger(depth) && depth > 0 ? depth : 0;
}

/** Why delegating `type` at `depth` would loop, or undefined when it would not. */
export function loopReason(type: string, depth: number): string | undefined {
  if (DELEGATING_PLUGINS.includes(type)) {
    return `ipam.type = ${showValue(type)} names a network plugin, not an IPAM: it would delegate to itself without end`;
  }
  if (depth >= MAX_DELEGATION_DEPTH) {
    return `ipam.type = ${showValue(type)} would take delegation ${depth + 1} plugins deep (${DELEGATION_DEPTH_VAR}; at most ${MAX_DELEGATION_DEPTH}): a plugin of the chain calls this one back`;
  }
  return undefined;
}

const TEXT_FILE_BUSY_RETRIES = 5;
/** Longer than any sane IPAM needs, shorter than the kubelet's 4-minute sandbox deadline. */
const EXEC_DEADLINE_MS = Number(process.env.UNDERLAY_DELEGATE_DEADLINE_MS) || 150_000;

function execOnce(file: string, verb: Verb, stdin: string): Promise<ExecOutcome> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, CNI_COMMAND: verb, [DELEGATION_DEPTH_VAR]: String(delegationDepth() + 1) };
    const child = process.getBuiltinModule('node:child_process').spawn(file, [], { env, stdio: ['pipe', 'pipe', 'inherit'] });
    // If the runtime gives up on us, the IPAM must not go on alone and finish an allocation nobody
    // will ever release: pass the signal on, then let it end us as it would have.
    const forward = (signal: NodeJS.Signals) => {
      child.kill(signal);
      process.exit(1);
    };
    process.once('SIGTERM', forward).once('SIGINT', forward);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new CniError(Code.TryAgainLater, `IPAM plugin ${file} did not answer ${verb} within ${EXEC_DEADLINE_MS / 1000} s`));
    }, EXEC_DEADLINE_MS);
    const chunks: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.stdin.on('error', () => {
      // A plugin that exits without reading stdin closes the pipe; its exit status tells the story.
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      process.off('SIGTERM', forward).off('SIGINT', forward);
      resolve({ status: status ?? 1, stdout: Buffer.concat(chunks).toString('utf8') });
    });
    child.stdin.end(stdin);
  });
}

async function execPlugin(file: string, verb: Verb, stdin: string): Promise<ExecOutcome> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await execOnce(file, verb, stdin);
    } catch (err) {
      if (err instanceof CniError) throw err;
      // A plugin binary being replaced on disk (an upgrade in progress) fails with ETXTBSY for a moment.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ETXTBSY' && attempt < TEXT_FILE_BUSY_RETRIES) {
        await new Promise((r) => setTimeout(r, 200 * attempt));
        continue;
      }
      throw new CniError(Code.IoFailure, `cannot run IPAM plugin ${file}: ${(err as Error).message}`);
    }
  }
}

function pluginError(file: string, outcome: ExecOutcome): CniError {
  try {
    const parsed: unknown = JSON.parse(outcome.stdout);
    if (parsed && typeof parsed === 'object' && 'code' in parsed && 'msg' in parsed) {
      const { code, msg, details } = parsed as { code: unknown; msg: unknown; details?: unknown };
      if (typeof code === 'number' && typeof msg === 'string') {
        return new CniError(code, msg, typeof details === 'string' ? details : '');
      }
    }
  } catch {
    // Not the CNI error JSON; report what it printed.
  }
  const text = outcome.stdout.trim().slice(0, 200) || '(no output)';
  return new CniError(Code.Internal, `IPAM plugin ${file} exited with status ${outcome.status}: ${text}`);
}

/**
 * A delegation that would loop is refused before any process is spawned. ADD refuses it with the
 * same config and environment, so nothing was ever leased through it: DEL and GC have nothing to
 * release and succeed, which keeps a pod with such a config deletable.
 */
function refuseLoop(verb: Exclude<Verb, 'VERSION'>, type: string, depth: number): boolean {
  const loop = loopReason(type, depth);
  if (loop === undefined) return false;
  if (verb === 'DEL' || verb === 'GC') {
    log.warn(`IPAM ${verb}: nothing to release: ${loop}`);
    return true;
  }
  throw new CniError(Code.InvalidConfig, `invalid network config: ${loop}`);
}

/** Runs `verb` on the configured IPAM. ADD returns its (abbreviated) result in the 1.1 shape. */
export async function delegateIpam(verb: Exclude<Verb, 'VERSION'>, inv: Invocation): Promise<Result | undefined> {
  const type = inv.conf.ipam?.type ?? '';
  if (refuseLoop(verb, type, 0)) return undefined;
  const file = findInPath(type, inv.env.path);
  const local = await inProcessTarget(type, file);
  if (local) {
    log.debug(escaped`IPAM ${verb} in-process (${type})`);
    const delegated: Invocation = { ...inv, verb, env: { ...inv.env, command: verb } };
    switch (verb) {
      case 'ADD': return local.add(delegated);
      case 'DEL': return void (await local.del(delegated));
      case 'CHECK': return void (await local.check(delegated));
      case 'GC': return void (await local.gc(delegated));
      case 'STATUS': return void (await local.status(delegated));
    }
  }
  if (refuseLoop(verb, type, delegationDepth())) return undefined;
  log.debug(escaped`IPAM ${verb} by exec of ${file}`);
  const outcome = await execPlugin(file, verb, inv.stdin);
  if (outcome.status !== 0) throw pluginError(file, outcome);
  if (verb !== 'ADD') return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(outcome.stdout);
  } catch {
    throw new CniError(Code.DecodingFailure, `IPAM plugin ${file} printed a result that is not JSON: ${showValue(outcome.stdout)}`);
  }
  const version = (raw as { cniVersion?: unknown }).cniVersion;
  return parseResult(raw, typeof version === 'string' ? version : inv.cniVersion, `result of IPAM plugin ${type}`);
}

/** True when a config asks for IPAM at all: `ipam` absent or `{}` means an L2-only interface. */
export const wantsIpam = (inv: Invocation): boolean => Boolean(inv.conf.ipam?.type);
