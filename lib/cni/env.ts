// The CNI_* environment, validated as the Go skel validates it. CNI_CONTAINERID and CNI_IFNAME end up in
// file names and cache keys, so these checks are a security boundary, not politeness.
import { isAbsolute } from 'node:path';
import { Code, CniError, showValue } from './errors.ts';

export const VERBS = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'] as const;
export type Verb = (typeof VERBS)[number];

export interface CmdArgs {
  command: Verb;
  containerId: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS as given; parse with parseCniArgs. */
  args: string;
  path: string[];
}

const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** A name the kernel accepts for a link: 1-15 bytes, no "/", ":" or white space, not "." or "..". */
export const INTERFACE_NAME = /^(?!\.\.?$)[^\s/:]{1,15}$/;

const REQUIRED: Record<Exclude<Verb, 'VERSION'>, ReadonlyArray<string>> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
  GC: ['CNI_PATH'],
  STATUS: ['CNI_PATH'],
};

export function parseVerb(value: string): Verb {
  if ((VERBS as readonly string[]).includes(value)) return value as Verb;
  throw new CniError(Code.InvalidEnvironment, `CNI_COMMAND ${showValue(value)} is not one of ${VERBS.join(', ')}`);
}

export function validateIfName(ifName: string, field = 'CNI_IFNAME'): void {
  const why =
    ifName.length === 0 ? 'is empty'
    : Buffer.byteLength(ifName) > 15 ? 'is longer than 15 bytes'
    : ifName === '.' || ifName === '..' ? 'is a relative directory name'
    : /[/:\s]/.test(ifName) ? 'contains "/", ":" or white space'
    : '';
  if (why) throw new CniError(Code.InvalidEnvironment, `${field} ${showValue(ifName)} ${why}`);
}

export function validateContainerId(id: string): void {
  if (!CONTAINER_ID.test(id)) {
    throw new CniError(
      Code.InvalidEnvironment,
      `CNI_CONTAINERID ${showValue(id)} must start with a letter or digit and hold only letters, digits, "_", "." and "-"`,
    );
  }
}

export function parseEnv(command: Verb, env: NodeJS.ProcessEnv): CmdArgs {
  const get = (key: string): string => env[key] ?? '';
  if (command !== 'VERSION') {
    const missing = REQUIRED[command].filter((key) => get(key) === '');
    if (missing.length > 0) {
      throw new CniError(Code.InvalidEnvironment, `required environment variables [${missing.join(' ')}] missing for ${command}`);
    }
  }
  const args: CmdArgs = {
    command,
    containerId: get('CNI_CONTAINERID'),
    netns: get('CNI_NETNS'),
    ifName: get('CNI_IFNAME'),
    args: get('CNI_ARGS'),
    path: get('CNI_PATH').split(':').filter(Boolean),
  };
  if (args.containerId) validateContainerId(args.containerId);
  if (args.ifName || command === 'ADD' || command === 'DEL' || command === 'CHECK') validateIfName(args.ifName);
  if (args.netns && !isAbsolute(args.netns)) {
    // A relative path names a different file for us (resolved against our working directory) than
    // for the runtime that wrote it, and for nsenter than for a stat.
    if (command === 'ADD' || command === 'CHECK') throw new CniError(Code.InvalidEnvironment, `CNI_NETNS ${showValue(args.netns)} is not an absolute path`);
    // ADD refuses it, so no interface can live there: for DEL that is nothing to clean in a netns,
    // and the IPAM still gets its DEL.
    args.netns = '';
  }
  return args;
}

/**
 * CNI_ARGS `K=V;K2=V2`. Keys outside `known` are an error unless IgnoreUnknown is set, as in libcni.
 * Kubernetes' keys are always known: every plugin may be called by a kubelet.
 */
export function parseCniArgs(raw: string, known: ReadonlyArray<string> = []): Record<string, string> {
  const values: Record<string, string> = {};
  if (!raw) return values;
  for (const pair of raw.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError(Code.InvalidEnvironment, `CNI_ARGS: pair ${showValue(pair)} is not KEY=VALUE`);
    values[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const ignoreUnknown = /^(1|true)$/i.test(values.IgnoreUnknown ?? '');
  if (!ignoreUnknown) {
    const allowed = new Set([...known, ...K8S_ARGS, 'IgnoreUnknown']);
    const unknown = Object.keys(values).find((key) => !allowed.has(key));
    if (unknown !== undefined) {
      throw new CniError(
        Code.InvalidEnvironment,
        `CNI_ARGS: unknown key ${showValue(unknown)} (known: ${[...allowed].join(', ')}; set IgnoreUnknown=1 to ignore it)`,
      );
    }
  }
  return values;
}

export const K8S_ARGS = ['K8S_POD_NAMESPACE', 'K8S_POD_NAME', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID'] as const;
