// The CNI protocol's main loop, once for every plugin: read the environment and stdin, gate the verb on
// the config's version, call the plugin, and print either the result in the config's cniVersion or the
// error JSON. Nothing else is ever written to stdout.
import { readSync, statSync } from 'node:fs';
import { CONFIG_LIMITS, decodeConfig, type NetConf } from './config.ts';
import { loopReason } from './delegate.ts';
import { asCniError, Code, CniError, showValue } from './errors.ts';
import { parseEnv, parseVerb, type CmdArgs, type Verb } from './env.ts';
import { encodeResult, type Result } from './result.ts';
import { atLeast, CURRENT_VERSION, isSupported, requireSupported, SUPPORTED_VERSIONS, versionInfo, type SpecVersion } from './version.ts';
import { configureLog, debugEnabled, log, logValue } from '../log.ts';
import { mark } from '../trace.ts';

export interface Invocation {
  verb: Verb;
  env: CmdArgs;
  conf: NetConf;
  /** The decoded stdin object: each plugin parses its own fields out of it. */
  raw: Record<string, unknown>;
  /** stdin exactly as received, handed unchanged to a delegated plugin. */
  stdin: string;
  cniVersion: SpecVersion;
}

export interface Plugin {
  about: string;
  add(inv: Invocation): Promise<Result>;
  del(inv: Invocation): Promise<void>;
  check(inv: Invocation): Promise<void>;
  gc(inv: Invocation): Promise<void>;
  status(inv: Invocation): Promise<void>;
}

export interface Io {
  env: NodeJS.ProcessEnv;
  readStdin(): string;
  stdout(text: string): void;
  stderr(text: string): void;
}

const MIN_VERSION: Partial<Record<Verb, string>> = { CHECK: '0.4.0', GC: '1.1.0', STATUS: '1.1.0' };

/** Same inode as our own netns: a runtime bug that would configure the host itself (skel's code 8). */
function refuseOwnNetns(netns: string, env: NodeJS.ProcessEnv): void {
  if (!netns || /^(1|true)$/i.test(env.CNI_NETNS_OVERRIDE ?? '')) return;
  try {
    const target = statSync(netns);
    const own = statSync('/proc/self/ns/net');
    if (target.ino === own.ino && target.dev === own.dev) {
      throw new CniError(Code.InvalidNetns, `CNI_NETNS ${showValue(netns)} is the plugin's own network namespace`);
    }
  } catch (err) {
    if (err instanceof CniError) throw err;
  }
}

/**
 * `ipam.type` naming one of our network plugins would have it exec itself without end: refused before
 * the plugin does anything. DEL and GC go on, and delegateIpam finds nothing to release.
 */
function refuseSelfDelegation(conf: NetConf): void {
  const loop = conf.ipam?.type === undefined ? undefined : loopReason(conf.ipam.type, 0);
  if (loop !== undefined) throw new CniError(Code.InvalidConfig, `invalid network config: ${loop}`);
}

async function dispatch(plugin: Plugin, verb: Verb, io: Io, reply: { version: string }): Promise<string | undefined> {
  const env = parseEnv(verb, io.env);
  let stdin: string;
  try {
    stdin = io.readStdin();
  } catch (err) {
    if (err instanceof CniError) throw err;
    throw new CniError(Code.IoFailure, `cannot read network config from stdin: ${asCniError(err).message}`);
  }
  const { conf, raw } = decodeConfig(stdin);
  mark('config decoded');
  // The error goes out in the config's version only when that is one we speak: echoing any string
  // back would repeat whatever the config holds, however long.
  if (isSupported(conf.cniVersion)) reply.version = conf.cniVersion;
  const cniVersion = requireSupported(conf.cniVersion);
  const floor = MIN_VERSION[verb];
  if (floor && !atLeast(cniVersion, floor)) {
    throw new CniError(Code.IncompatibleVersion, `config version ${cniVersion} does not allow ${verb} (needs ${floor} or later)`);
  }
  configureLog([raw, conf.ipam], `${logValue(conf.type ?? 'underlay')} ${verb} ${env.containerId}`.trim());
  if (verb === 'ADD' || verb === 'CHECK' || verb === 'DEL') refuseOwnNetns(env.netns, io.env);
  if (verb === 'ADD' || verb === 'CHECK' || verb === 'STATUS') refuseSelfDelegation(conf);
  const inv: Invocation = { verb, env, conf, raw, stdin, cniVersion };
  switch (verb) {
    case 'ADD':
      return JSON.stringify(encodeResult(await plugin.add(inv), cniVersion));
    case 'DEL':
      await plugin.del(inv);
      break;
    case 'CHECK':
      await plugin.check(inv);
      break;
    case 'GC':
      await plugin.gc(inv);
      break;
    case 'STATUS':
      await plugin.status(inv);
      break;
    case 'VERSION':
      break;
  }
  return undefined;
}

/** Runs one CNI invocation; returns the process exit code. */
export async function runPlugin(plugin: Plugin, io: Io): Promise<number> {
  const command = io.env.CNI_COMMAND;
  if (command === undefined || command === '') {
    io.stderr(`${plugin.about}\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(', ')}\n`);
    return 0;
  }
  const reply = { version: CURRENT_VERSION as string };
  try {
    const verb = parseVerb(command);
    if (verb === 'VERSION') {
      io.stdout(`${versionInfo()}\n`);
      return 0;
    }
    const out = await dispatch(plugin, verb, io, reply);
    mark('verb done');
    if (out !== undefined) io.stdout(`${out}\n`);
    return 0;
  } catch (err) {
    const error = asCniError(err);
    if (error.code === Code.Internal) log.error(debugEnabled() && err instanceof Error ? (err.stack ?? error.message) : error.message);
    io.stdout(`${JSON.stringify(error.toJSON(reply.version))}\n`);
    return 1;
  }
}

/**
 * Reads stdin up to CONFIG_LIMITS.stdinBytes and refuses more without reading it all: a runaway
 * writer must not make a root process buffer gigabytes.
 */
export function readBoundedStdin(fd = 0): string {
  const limit = CONFIG_LIMITS.stdinBytes;
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(Math.min(65_536, limit + 1 - total));
    let read: number;
    try {
      read = readSync(fd, chunk, 0, chunk.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
        continue;
      }
      throw err;
    }
    if (read === 0) break;
    chunks.push(chunk.subarray(0, read));
    total += read;
    if (total > limit) throw new CniError(Code.InvalidConfig, `invalid network config: stdin holds more than ${limit / 1048576} MiB`);
  }
  return Buffer.concat(chunks, total).toString('utf8');
}

export function processIo(): Io {
  return {
    env: process.env,
    readStdin: () => readBoundedStdin(),
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
  };
}
