// The kubeconfig the IPAM plugin reads on the node ("kubernetes": {"kubeconfig": ...}), made from the
// installer pod's own service account: the plugin runs in the host's namespaces, where the pod's
// token file is out of reach, so token and CA go into the file itself. The token is a secret: it is
// written 0600 in a 0700 directory and never appears in a log line or an error message.
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { isTempOf, writeFileDurably } from '../fs.ts';

export interface ServiceAccount {
  token: string;
  ca: Buffer;
  namespace: string;
}

/** A problem the operator must fix (no API server address, say): retrying will not help. */
export class ConfigurationError extends Error {
  override readonly name = 'ConfigurationError';
}

const errnoOf = (err: unknown): string => (err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : '');

function readPart(dir: string, name: string): Buffer {
  const path = join(dir, name);
  try {
    return readFileSync(path);
  } catch (err) {
    // The message names the file and the reason only: an error object could carry content one day.
    const why = errnoOf(err) === 'ENOENT' ? 'it does not exist' : `cannot read it (${errnoOf(err) || 'unknown error'})`;
    throw new Error(`service account file ${path}: ${why}`, { cause: err });
  }
}

export function readServiceAccount(dir: string): ServiceAccount {
  const token = readPart(dir, 'token').toString('utf8').trim();
  if (token === '' || /\s/.test(token)) throw new Error(`service account file ${join(dir, 'token')}: it does not hold a token (empty, or white space inside)`);
  const ca = readPart(dir, 'ca.crt');
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`service account file ${join(dir, 'ca.crt')}: it does not hold a PEM certificate`);
  const namespace = readPart(dir, 'namespace').toString('utf8').trim();
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(namespace)) throw new Error(`service account file ${join(dir, 'namespace')}: ${JSON.stringify(namespace.slice(0, 70))} is not a namespace name`);
  return { token, ca, namespace };
}

/** The API server as the node reaches it: the address Kubernetes gives every pod, unless overridden. */
export function apiServer(env: NodeJS.ProcessEnv, override?: string): string {
  if (override) return override.replace(/\/+$/, '');
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT || '443';
  if (!host) {
    throw new ConfigurationError('KUBERNETES_SERVICE_HOST is not set, so this is not a pod Kubernetes started: pass --server URL, or --skip-kubeconfig to install the plugins only');
  }
  if (!/^[0-9]+$/.test(port)) throw new ConfigurationError(`KUBERNETES_SERVICE_PORT ${JSON.stringify(port)} is not a port number`);
  return `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export interface KubeconfigInput {
  server: string;
  account: ServiceAccount;
  /** The namespace the IPAM keeps its pools in: the context's namespace, as whereabouts reads it. */
  namespace: string;
}

/** YAML with every value in JSON quotes: JSON strings are valid YAML double-quoted scalars. */
export function renderKubeconfig({ server, account, namespace }: KubeconfigInput): string {
  const q = (value: string) => JSON.stringify(value);
  return [
    '# Written by `underlay install` (the underlay-node DaemonSet) from its service account, and',
    '# rewritten whenever Kubernetes rotates the token. Edits are lost; change the DaemonSet instead.',
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '  - name: underlay',
    '    cluster:',
    `      server: ${q(server)}`,
    `      certificate-authority-data: ${q(account.ca.toString('base64'))}`,
    'users:',
    '  - name: underlay',
    '    user:',
    `      token: ${q(account.token)}`,
    'contexts:',
    '  - name: underlay',
    '    context:',
    '      cluster: underlay',
    '      user: underlay',
    `      namespace: ${q(namespace)}`,
    'current-context: underlay',
    '',
  ].join('\n');
}

function readOrEmpty(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/**
 * Writes the kubeconfig if its content differs from what is on disk; false when it was up to date.
 * Its directory is made 0700, and tightened if someone loosened it.
 */
export function writeKubeconfig(file: string, content: string): boolean {
  const dir = dirname(file);
  mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if ((statSync(dir).mode & 0o077) !== 0) chmodSync(dir, 0o700);
  // A write killed midway leaves a temporary copy, token inside; one lives milliseconds otherwise.
  for (const entry of readdirSync(dir)) {
    const temp = join(dir, entry);
    if (isTempOf(entry, basename(file)) && Date.now() - (statSync(temp, { throwIfNoEntry: false })?.mtimeMs ?? 0) > 60_000) rmSync(temp, { force: true });
  }
  if ((statSync(file, { throwIfNoEntry: false })?.mode ?? 0) & 0o077) chmodSync(file, 0o600);
  if (readOrEmpty(file) === content) return false;
  writeFileDurably(file, content, { mode: 0o600 });
  return true;
}
