// whereabouts' flat file: IPAM settings a node keeps outside the NetworkAttachmentDefinition (a
// kubeconfig path, etcd credentials), merged under the NAD's values. A NAD author names the path
// (configuration_path) and the plugin reads it as root, so only a regular file of sane size is read
// (not /dev/zero, not a FIFO that would hang), and nothing it holds is ever echoed: an error shows the
// field name, never a value from the file.
import { Code, CniError } from '../../lib/cni/errors.ts';
import { readFileIfExists } from '../../lib/fs.ts';

/** Where whereabouts looks for its flat file, after `configuration_path`. */
export const FLAT_FILE_PATHS: ReadonlyArray<string> = [
  '/etc/kubernetes/cni/net.d/whereabouts.d/whereabouts.conf',
  '/etc/cni/net.d/whereabouts.d/whereabouts.conf',
  '/host/etc/cni/net.d/whereabouts.d/whereabouts.conf',
];

/** Far more than any flat file holds (a few settings and a path). */
export const MAX_FLAT_FILE_BYTES = 1 << 20;

export interface FlatFile {
  path: string;
  values: Record<string, unknown>;
}

export const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

const absent = (value: unknown): boolean => value === undefined || value === null || value === '';

/** Fills what the NAD leaves unset from the flat file; values in the NAD win (mergo.Merge semantics). */
export function mergeFlat(nad: Record<string, unknown>, flat: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...nad };
  for (const [key, value] of Object.entries(flat)) {
    const mine = merged[key];
    if (absent(mine)) merged[key] = value;
    else if (isPlainObject(mine) && isPlainObject(value)) merged[key] = mergeFlat(mine, value);
  }
  return merged;
}

/** The first flat file that exists: configuration_path, then whereabouts' default places. */
export function readFlatFile(nad: Record<string, unknown>, paths: ReadonlyArray<string>): FlatFile | undefined {
  const given = nad.configuration_path;
  if (given !== undefined && (typeof given !== 'string' || (given !== '' && !given.startsWith('/')))) {
    throw new CniError(Code.InvalidConfig, 'invalid network config: ipam.configuration_path must be an absolute path to the flat file');
  }
  for (const path of [...(given ? [given] : []), ...paths]) {
    const text = readFileIfExists(path, { maxBytes: MAX_FLAT_FILE_BYTES, followLinks: true });
    if (text === undefined) continue;
    let values: unknown;
    try {
      values = JSON.parse(text);
    } catch {
      throw new CniError(Code.InvalidConfig, `invalid network config: flat file ${path} (ipam.configuration_path or a whereabouts.d default) is not valid JSON`);
    }
    if (!isPlainObject(values)) throw new CniError(Code.InvalidConfig, `invalid network config: flat file ${path} must hold a JSON object`);
    return { path, values };
  }
  return undefined;
}

/** Every string the flat file contributed to the merged config (the NAD's own values win). */
function contributed(nad: Record<string, unknown>, flat: Record<string, unknown>, out: string[] = []): string[] {
  for (const [key, value] of Object.entries(flat)) {
    const mine = nad[key];
    if (isPlainObject(mine) && isPlainObject(value)) contributed(mine, value, out);
    else if (absent(mine)) collectStrings(value, out);
  }
  return out;
}

function collectStrings(value: unknown, out: string[]): void {
  if (typeof value === 'string' || typeof value === 'number') out.push(String(value));
  else if (Array.isArray(value)) for (const item of value) collectStrings(item, out);
  else if (isPlainObject(value)) for (const item of Object.values(value)) collectStrings(item, out);
}

/**
 * Runs `body` (which reads the merged config) so that no error it throws repeats a value that came
 * from the flat file: each such value in the message becomes "(from the flat file)".
 */
export function hidingFlatValues<T>(nad: Record<string, unknown>, flat: FlatFile | undefined, body: () => T): T {
  if (!flat) return body();
  try {
    return body();
  } catch (err) {
    if (!(err instanceof CniError)) throw err;
    let message = err.message;
    const secrets = contributed(nad, flat.values).filter((v) => v.length >= 3).sort((a, b) => b.length - a.length);
    for (const value of secrets) {
      for (const form of [JSON.stringify(value), value]) message = message.split(form).join('(value from the flat file, not shown)');
    }
    throw message === err.message ? err : new CniError(err.code, `${message} [flat file ${flat.path}]`, err.details);
  }
}
