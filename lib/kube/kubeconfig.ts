// Where the Kubernetes API is and who we are to it: from a kubeconfig file (what whereabouts' config
// names in kubernetes.kubeconfig, usually written by its DaemonSet), or from the service account of
// the pod we run in. The kubeconfig is YAML; js-yaml is imported only here, on first use, so the CNI
// verbs that never read a kubeconfig do not pay for it.
//
// As client-go reads a kubeconfig: the current context picks a cluster and a user; relative file paths
// are relative to the kubeconfig's directory; *-data fields (base64 PEM) win over the file fields; a
// readable tokenFile wins over token; insecure-skip-tls-verify together with a CA is refused. The
// namespace is the current context's, else "kube-system", as whereabouts chooses it. Credential
// plugins (exec, auth-provider) and basic auth are not supported: each is refused by name.
//
// Messages name the file, the context, the entry and the field, never a token or a key; a YAML syntax
// error gives the line only, because js-yaml's own message quotes the offending line.
import type { TlsSettings } from '../http.ts';
import * as z from 'zod/mini';
import '../schema.ts';
import { Code, CniError, showValue } from '../cni/errors.ts';
import { fieldPath } from '../cni/config.ts';

export interface KubeConnection {
  /** The API server's base URL, without a trailing "/" (it may hold a path, as behind Rancher). */
  server: string;
  namespace: string;
  tls: TlsSettings;
  /** The bearer token to send now (a tokenFile is re-read at most once a minute), or undefined. */
  token: () => string | undefined;
  /** For messages: where these settings came from. */
  source: string;
}

const text = () => z.optional(z.nullable(z.string()));

// Built on first use: constructing it costs every process that loads this module, not only those that read a kubeconfig.
const kubeconfigSchema = () => z.looseObject({
  'current-context': text(),
  clusters: z.optional(z.nullable(z.array(z.looseObject({
    name: z.string(),
    cluster: z.looseObject({
      server: z.string(),
      'certificate-authority': text(),
      'certificate-authority-data': text(),
      'insecure-skip-tls-verify': z.optional(z.nullable(z.boolean())),
      'tls-server-name': text(),
      'proxy-url': text(),
    }),
  })))),
  users: z.optional(z.nullable(z.array(z.looseObject({
    name: z.string(),
    user: z.optional(z.nullable(z.looseObject({
      token: text(),
      tokenFile: text(),
      'client-certificate': text(),
      'client-certificate-data': text(),
      'client-key': text(),
      'client-key-data': text(),
      username: text(),
      password: text(),
      exec: z.optional(z.unknown()),
      'auth-provider': z.optional(z.unknown()),
    }))),
  })))),
  contexts: z.optional(z.nullable(z.array(z.looseObject({
    name: z.string(),
    context: z.looseObject({ cluster: z.string(), user: text(), namespace: text() }),
  })))),
});
let schema: ReturnType<typeof kubeconfigSchema> | undefined;
type Kubeconfig = z.infer<ReturnType<typeof kubeconfigSchema>>;

export const DEFAULT_NAMESPACE = 'kube-system';
const TOKEN_REREAD_MS = 60_000;

const fs = () => process.getBuiltinModule('node:fs');
const path = () => process.getBuiltinModule('node:path');

const configError = (where: string, why: string): CniError => new CniError(Code.InvalidConfig, `${where}: ${why}`);

function readFile(file: string, what: string, where: string): string {
  try {
    return fs().readFileSync(file, 'utf8');
  } catch (err) {
    const code = err instanceof Error && 'code' in err ? String(err.code) : String(err);
    throw new CniError(Code.IoFailure, `${where}: cannot read ${what} ${file}: ${code}`);
  }
}

/** A *-data field: base64 of PEM text, checked to hold what the field promises. */
function pemFromData(value: string, field: string, kind: 'CERTIFICATE' | 'PRIVATE KEY', where: string): string {
  const pem = Buffer.from(value, 'base64').toString('utf8');
  if (!pem.includes('-----BEGIN') || !pem.includes(kind === 'CERTIFICATE' ? 'CERTIFICATE-----' : 'PRIVATE KEY-----')) {
    throw configError(where, `${field} is not base64-encoded PEM (${kind === 'CERTIFICATE' ? 'a certificate' : 'a private key'})`);
  }
  return pem;
}

/** A bearer token read from a file now and again later, as client-go re-reads a rotated token file. */
function tokenFromFile(file: string, where: string): () => string {
  let token = readFile(file, 'token file', where).trim();
  let readAt = Date.now();
  return () => {
    if (Date.now() - readAt > TOKEN_REREAD_MS) {
      try {
        token = fs().readFileSync(file, 'utf8').trim();
      } catch {
        // Keep the last token read: a file being rotated may be missing for a moment.
      }
      readAt = Date.now();
    }
    return token;
  };
}

function serverUrl(server: string, where: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(server) ? server : `https://${server}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw configError(where, `server ${showValue(server)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw configError(where, `server ${showValue(server)} must be an https:// URL`);
  return withScheme.replace(/\/+$/, '');
}

async function parseYaml(source: string, file: string): Promise<unknown> {
  const yaml = await import('js-yaml');
  try {
    return yaml.load(source, { schema: yaml.CORE_SCHEMA, filename: file });
  } catch (err) {
    // js-yaml's message quotes the offending line, which may hold a token: keep only reason and line.
    const e = err as { reason?: string; mark?: { line?: number } };
    const line = typeof e.mark?.line === 'number' ? ` at line ${e.mark.line + 1}` : '';
    throw new CniError(Code.InvalidConfig, `kubeconfig ${file} is not valid YAML${line}: ${e.reason ?? 'parse error'}`);
  }
}

export interface KubeconfigOptions {
  /** whereabouts' kubernetes.k8s_api_root: the API server URL to use instead of the cluster's. */
  apiRoot?: string | undefined;
}

/** Reads a kubeconfig file and resolves its current context into a connection. */
export async function loadKubeconfig(file: string, options: KubeconfigOptions = {}): Promise<KubeConnection> {
  const raw = await parseYaml(readFile(file, 'kubeconfig', 'Kubernetes store'), file);
  const parsed = (schema ??= kubeconfigSchema()).safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new CniError(Code.InvalidConfig, `kubeconfig ${file}: ${fieldPath('', issue.path)}: ${issue.message}`);
  }
  return resolveContext(parsed.data, file, options);
}

function resolveContext(config: Kubeconfig, file: string, options: KubeconfigOptions): KubeConnection {
  const dir = path().dirname(path().resolve(file));
  const local = (p: string): string => path().resolve(dir, p);
  const contextName = config['current-context'];
  if (!contextName) throw configError(`kubeconfig ${file}`, 'current-context is not set');
  const context = config.contexts?.find((c) => c.name === contextName)?.context;
  if (!context) throw configError(`kubeconfig ${file}`, `current-context ${showValue(contextName)} names no entry of contexts`);
  const cluster = config.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster) throw configError(`kubeconfig ${file}`, `context ${showValue(contextName)} names cluster ${showValue(context.cluster)}, which is not in clusters`);
  const where = `kubeconfig ${file}, cluster ${showValue(context.cluster)}`;
  if (cluster['proxy-url']) throw configError(where, 'proxy-url is not supported; reach the API server directly');

  const tls: TlsSettings = {};
  const caData = cluster['certificate-authority-data'];
  const caFile = cluster['certificate-authority'];
  if (caData) tls.ca = pemFromData(caData, 'certificate-authority-data', 'CERTIFICATE', where);
  else if (caFile) tls.ca = readFile(local(caFile), 'certificate-authority', where);
  if (cluster['insecure-skip-tls-verify'] === true) {
    if (tls.ca !== undefined) throw configError(where, 'insecure-skip-tls-verify cannot be combined with a certificate authority: drop one of them');
    tls.insecureSkipVerify = true;
  }
  if (cluster['tls-server-name']) tls.serverName = cluster['tls-server-name'];

  let token: () => string | undefined = () => undefined;
  const userName = context.user;
  if (userName) {
    const user = config.users?.find((u) => u.name === userName)?.user;
    if (user === undefined) throw configError(`kubeconfig ${file}`, `context ${showValue(contextName)} names user ${showValue(userName)}, which is not in users`);
    const whereUser = `kubeconfig ${file}, user ${showValue(userName)}`;
    if (user?.exec) throw configError(whereUser, 'exec credential plugins are not supported: give the user a token, a tokenFile or a client certificate');
    if (user?.['auth-provider']) throw configError(whereUser, 'auth-provider plugins are not supported: give the user a token, a tokenFile or a client certificate');
    if (user?.username || user?.password) throw configError(whereUser, 'basic authentication (username/password) is not supported by Kubernetes since 1.19: use a token or a client certificate');
    if (user?.tokenFile) token = tokenFromFile(local(user.tokenFile), whereUser);
    else if (user?.token) {
      const fixed = user.token;
      token = () => fixed;
    }
    const certData = user?.['client-certificate-data'];
    const certFile = user?.['client-certificate'];
    const keyData = user?.['client-key-data'];
    const keyFile = user?.['client-key'];
    if (certData) tls.cert = pemFromData(certData, 'client-certificate-data', 'CERTIFICATE', whereUser);
    else if (certFile) tls.cert = readFile(local(certFile), 'client-certificate', whereUser);
    if (keyData) tls.key = pemFromData(keyData, 'client-key-data', 'PRIVATE KEY', whereUser);
    else if (keyFile) tls.key = readFile(local(keyFile), 'client-key', whereUser);
    if ((tls.cert === undefined) !== (tls.key === undefined)) throw configError(whereUser, 'a client certificate needs both a certificate and a key');
  }

  const server = serverUrl(options.apiRoot || cluster.server, options.apiRoot ? 'kubernetes.k8s_api_root' : where);
  return { server, namespace: context.namespace || DEFAULT_NAMESPACE, tls, token, source: `kubeconfig ${file} (context ${contextName})` };
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface InClusterOptions {
  /** Where the service account's token, ca.crt and namespace are (tests move it). */
  dir?: string;
  env?: Record<string, string | undefined>;
}

/**
 * The API server as a pod sees it: KUBERNETES_SERVICE_HOST/PORT and the service account mounted in
 * the pod. The namespace is the service account's, else "kube-system".
 */
export function inClusterConnection(options: InClusterOptions = {}): KubeConnection {
  const env = options.env ?? process.env;
  const dir = options.dir ?? SERVICE_ACCOUNT_DIR;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  const where = 'in-cluster Kubernetes credentials';
  if (!host || !port) throw configError(where, 'KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: not running in a pod; give a kubeconfig instead');
  const join = (name: string): string => path().join(dir, name);
  const token = tokenFromFile(join('token'), where);
  const tls: TlsSettings = {};
  // Without ca.crt the system's CAs are used, as client-go does.
  if (fs().existsSync(join('ca.crt'))) tls.ca = readFile(join('ca.crt'), 'CA certificate', where);
  let namespace = DEFAULT_NAMESPACE;
  if (fs().existsSync(join('namespace'))) namespace = readFile(join('namespace'), 'namespace', where).trim() || DEFAULT_NAMESPACE;
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return { server, namespace, tls, token, source: `service account in ${dir}` };
}
