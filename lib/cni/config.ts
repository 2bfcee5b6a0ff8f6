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

/** JSON.parse's reason without the piece of input it quotes: that piece may be a secret. */
function decodeFailure(err: unknown): string {
  const why = err instanceof Error ? err.message : String(err);
  return why.replace(/, .* is not valid JSON$/s, ': not valid JSON').replace(UNSAFE_CHARS, unicodeEscape).slice(0, 2 * SHOWN_CHARS);
}

/** Decodes stdin. Undecodable JSON is code 6; a config that is not an object, or has a bad name, code 7. */
export function decodeConfig(stdin: string): { conf: NetConf; raw: Record<string, unknown> } {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(Code.DecodingFailure, `cannot decode network config from stdin: ${decodeFailure(err)}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CniError(Code.DecodingFailure, `network config on stdin must be a JSON object, got ${showValue(raw)}`);
  }
  const object = raw as Record<string, unknown>;
  if (object.name === undefined || object.name === '') {
    throw new CniError(Code.InvalidConfig, 'invalid network config: name is missing');
  }
  return { conf: parseWith(NetConfSchema, object), raw: object };
}
