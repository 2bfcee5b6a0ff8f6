// The network configuration on stdin: the keys every plugin shares, and the one way a schema failure
// becomes a CNI error that names the field and the value at fault.
import * as z from 'zod/mini';
import '../schema.ts';
import { Code, CniError, isSecretKey, showValue, SHOWN_CHARS, UNSAFE_CHARS, unicodeEscape } from './errors.ts';
import { DnsSchema } from './result.ts';
import { DEFAULT_CONFIG_VERSION } from './version.ts';

const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export const AttachmentSchema = z.object({ containerID: z.string(), ifname: z.string() });
export type Attachment = z.infer<typeof AttachmentSchema>;

export const RuntimeConfigSchema = z.looseObject({
  mac: z.optional(z.string()),
  ips: z.optional(z.array(z.string())),
  deviceID: z.optional(z.string()),
});

/** Keys the runtime inserts or every plugin shares. Unknown keys pass through untouched (spec §3). */
export const NetConfSchema = z.looseObject({
  cniVersion: z._default(z.string(), DEFAULT_CONFIG_VERSION),
  name: z.string().check(z.regex(NETWORK_NAME, 'must start with a letter or digit and hold only letters, digits, "_", "." and "-"')),
  type: z.optional(z.string()),
  ipam: z.optional(z.looseObject({ type: z.optional(z.string()) })),
  dns: z.optional(DnsSchema),
  prevResult: z.optional(z.unknown()),
  runtimeConfig: z.optional(RuntimeConfigSchema),
  args: z.optional(z.looseObject({ cni: z.optional(z.looseObject({ ips: z.optional(z.array(z.string())) })) })),
  'cni.dev/valid-attachments': z.optional(z.array(AttachmentSchema)),
});
export type NetConf = z.infer<typeof NetConfSchema>;

function valueAt(root: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let node: unknown = root;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/** A key shown as it is when it is a plain name, else quoted: keys are config text too. */
const PLAIN_KEY = /^[\w./-]{1,40}$/;

/** `ipam.ipRanges[0].range`; a path so long that it would bury the message is cut. */
export function fieldPath(prefix: string, path: ReadonlyArray<PropertyKey>): string {
  const parts = path.map((key) =>
    typeof key === 'number' ? `[${key}]`
    : typeof key === 'string' && PLAIN_KEY.test(key) ? `.${key}`
    : `[${showValue(String(key))}]`);
  const text = (prefix + parts.join('')).replace(/^\./, '') || '(config)';
  return text.length > SHOWN_CHARS ? `${text.slice(0, SHOWN_CHARS - 3)}...` : text;
}

/** Parses `raw` with `schema`; the first problem becomes a code 7 error naming field and value. */
export function parseWith<S extends z.ZodMiniType>(schema: S, raw: unknown, prefix = ''): z.infer<S> {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const value = valueAt(raw, issue.path);
  const secret = [prefix, ...issue.path].some((key) => typeof key === 'string' && isSecretKey(key));
  const shown = value === undefined ? 'missing' : secret ? '(not shown)' : showValue(value);
  throw new CniError(Code.InvalidConfig, `invalid network config: ${fieldPath(prefix, issue.path)} = ${shown}: ${issue.message}`);
}

/**
 * Bounds no real config comes near. They are checked before any schema walks the config, so an
 * oversized or deeply nested input costs one linear pass and a code 7, not a stack overflow.
 */
export const CONFIG_LIMITS = { stdinBytes: 4 * 1024 * 1024, items: 10_000, depth: 64, values: 200_000 } as const;

interface Pending {
  node: unknown;
  depth: number;
  parent: Pending | undefined;
  key: PropertyKey;
}

function pathOf(entry: Pending): PropertyKey[] {
  const path: PropertyKey[] = [];
  for (let at: Pending | undefined = entry; at?.parent; at = at.parent) path.unshift(at.key);
  return path;
}

/** Refuses a decoded config beyond CONFIG_LIMITS, naming where; iterative, so depth costs no stack. */
export function checkConfigSize(root: unknown): void {
  const refuse = (entry: Pending, why: string): never => {
    throw new CniError(Code.InvalidConfig, `invalid network config: ${fieldPath('', pathOf(entry))} ${why}`);
  };
  const stack: Pending[] = [{ node: root, depth: 0, parent: undefined, key: '' }];
  let values = 0;
  for (let entry = stack.pop(); entry; entry = stack.pop()) {
    const { node, depth } = entry;
    if (++values > CONFIG_LIMITS.values) refuse({ ...entry, parent: undefined }, `holds more than ${CONFIG_LIMITS.values} values`);
    if (node === null || typeof node !== 'object') continue;
    if (depth >= CONFIG_LIMITS.depth) refuse(entry, `nests deeper than ${CONFIG_LIMITS.depth} levels`);
    if (Array.isArray(node)) {
      if (node.length > CONFIG_LIMITS.items) refuse(entry, `has ${node.length} items; at most ${CONFIG_LIMITS.items} are accepted`);
      for (let i = 0; i < node.length; i++) stack.push({ node: node[i], depth: depth + 1, parent: entry, key: i });
    } else {
      const keys = Object.keys(node);
      if (keys.length > CONFIG_LIMITS.items) refuse(entry, `has ${keys.length} keys; at most ${CONFIG_LIMITS.items} are accepted`);
      for (const key of keys) stack.push({ node: (node as Record<string, unknown>)[key], depth: depth + 1, parent: entry, key });
    }
  }
}

/** JSON.parse's reason without the piece of input it quotes: that piece may be a secret. */
function decodeFailure(err: unknown): string {
  const why = err instanceof Error ? err.message : String(err);
  return why.replace(/, .* is not valid JSON$/s, ': not valid JSON').replace(UNSAFE_CHARS, unicodeEscape).slice(0, 2 * SHOWN_CHARS);
}

/** Decodes stdin. Undecodable JSON is code 6; a config that is not an object, or has a bad name, code 7. */
export function decodeConfig(stdin: string): { conf: NetConf; raw: Record<string, unknown> } {
  if (stdin.length > CONFIG_LIMITS.stdinBytes) {
    throw new CniError(Code.InvalidConfig, `invalid network config: stdin holds more than ${CONFIG_LIMITS.stdinBytes / 1048576} MiB`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(Code.DecodingFailure, `cannot decode network config from stdin: ${decodeFailure(err)}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CniError(Code.DecodingFailure, `network config on stdin must be a JSON object, got ${showValue(raw)}`);
  }
  checkConfigSize(raw);
  const object = raw as Record<string, unknown>;
  if (object.name === undefined || object.name === '') {
    throw new CniError(Code.InvalidConfig, 'invalid network config: name is missing');
  }
  return { conf: parseWith(NetConfSchema, object), raw: object };
}
