// A small REST client for the Kubernetes API, on lib/http.ts: get, list, create (POST), replace (PUT),
// patch (JSON patch) and delete (with preconditions), each bounded by the caller's deadline. Every
// failure is a KubeError (errors.ts): the Status the server answered, mapped to an outcome, or a
// transport failure, which may pass. Tokens go in the Authorization header only; the server's words
// are quoted in messages with the token cut out, in case a proxy echoes it.
//
// client-go is not used: @kubernetes/client-node costs 300-380 ms to import, paid by every CNI call.
import { HttpClient, HttpTlsError, HttpUnreachable, type HttpMethod } from '../http.ts';
import { describeStatus, KubeError, outcomeOf, parseStatus } from './errors.ts';
import type { KubeConnection } from './kubeconfig.ts';

export interface ResourceType {
  /** "" for the core group (pods, nodes). */
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  resourceVersion?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: unknown[];
  creationTimestamp?: string;
  deletionTimestamp?: string;
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export interface KubeList {
  resourceVersion: string;
  items: KubeObject[];
}

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /** A namespace other than the connection's; null lists every namespace. */
  namespace?: string | null;
}

export interface JsonPatchOp {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  value?: unknown;
  from?: string;
}

export interface Preconditions {
  resourceVersion?: string;
  uid?: string;
}

export const apiVersionOf = (t: ResourceType): string => (t.group ? `${t.group}/${t.version}` : t.version);

/** "ippools.whereabouts.cni.cncf.io", "pods": how kube-apiserver and kubectl name a resource. */
export const resourceName = (t: ResourceType): string => (t.group ? `${t.plural}.${t.group}` : t.plural);

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The checks every object the server returns must pass, by hand: lists hold thousands. */
function asObject(value: unknown): KubeObject | undefined {
  if (!isRecord(value) || !isRecord(value.metadata) || typeof value.metadata.name !== 'string') return undefined;
  return value as KubeObject;
}

export class KubeClient {
  /** HTTP requests sent so far (the benchmark's figure). */
  requests = 0;
  readonly connection: KubeConnection;
  readonly description: string;
  private readonly http: HttpClient;

  constructor(connection: KubeConnection) {
    this.connection = connection;
    this.http = new HttpClient(connection.tls);
    this.description = `Kubernetes API at ${connection.server}`;
  }

  private path(t: ResourceType, name: string | undefined, namespace: string | null | undefined): string {
    const base = t.group ? `/apis/${t.group}/${t.version}` : `/api/${t.version}`;
    const ns = namespace === undefined ? this.connection.namespace : namespace;
    const scope = t.namespaced && ns !== null ? `/namespaces/${encodeURIComponent(ns)}` : '';
    return `${this.connection.server}${base}${scope}/${t.plural}${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;
  }

  private redact(text: string): string {
    const token = this.connection.token();
    return token && token.length >= 4 ? text.split(token).join('<redacted>') : text;
  }

  private async send(method: HttpMethod, url: string, what: string, deadline: number, body?: unknown, contentType = 'application/json'): Promise<unknown> {
    const headers: Record<string, string> = { 'user-agent': 'underlay' };
    const token = this.connection.token();
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = contentType;
    this.requests++;
    let res;
    try {
      res = await this.http.request({ method, url, headers, deadline, ...(body !== undefined && { body: JSON.stringify(body) }) });
    } catch (err) {
      if (err instanceof HttpTlsError) throw new KubeError('tls', `${this.description}: ${what}: ${err.message} (check the certificate authority of the kubeconfig)`);
      if (err instanceof HttpUnreachable) throw new KubeError('unavailable', `${this.description}: ${what}: ${err.message}`);
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = res.body === '' ? undefined : JSON.parse(res.body);
    } catch {
      parsed = undefined;
    }
    if (res.status >= 200 && res.status < 300) {
      if (parsed === undefined) throw new KubeError('failed', `${this.description}: ${what}: answered ${res.status} with a body that is not JSON`, res.status);
      return parsed;
    }
    const status = parseStatus(parsed);
    const outcome = outcomeOf(res.status, status);
    const reason = status?.reason ? ` ${status.reason}` : '';
    const message = this.redact(`${this.description}: ${what}: ${describeStatus(status, res.body)} (HTTP ${res.status}${reason})`);
    throw new KubeError(outcome, message, res.status, status);
  }

  private object(value: unknown, what: string): KubeObject {
    const object = asObject(value);
    if (!object) throw new KubeError('failed', `${this.description}: ${what}: the answer is not a Kubernetes object`);
    return object;
  }

  async get(t: ResourceType, name: string, deadline: number, namespace?: string): Promise<KubeObject> {
    const what = `get ${resourceName(t)} ${JSON.stringify(name)}`;
    return this.object(await this.send('GET', this.path(t, name, namespace), what, deadline), what);
  }

  async list(t: ResourceType, deadline: number, options: ListOptions = {}): Promise<KubeList> {
    const query = new URLSearchParams();
    if (options.labelSelector) query.set('labelSelector', options.labelSelector);
    if (options.fieldSelector) query.set('fieldSelector', options.fieldSelector);
    const url = this.path(t, undefined, options.namespace) + (query.size > 0 ? `?${query.toString()}` : '');
    const what = `list ${resourceName(t)}`;
    const answer = await this.send('GET', url, what, deadline);
    if (!isRecord(answer) || !Array.isArray(answer.items)) throw new KubeError('failed', `${this.description}: ${what}: the answer is not a list`);
    const items = answer.items.map((item) => this.object(item, what));
    const meta = isRecord(answer.metadata) ? answer.metadata : {};
    return { resourceVersion: typeof meta.resourceVersion === 'string' ? meta.resourceVersion : '', items };
  }

  /** POST. `dryRun` has the server check everything (authorization included) and store nothing. */
  async create(t: ResourceType, object: KubeObject, deadline: number, options: { dryRun?: boolean } = {}): Promise<KubeObject> {
    const what = `create ${resourceName(t)} ${JSON.stringify(object.metadata.name)}`;
    const url = this.path(t, undefined, object.metadata.namespace) + (options.dryRun ? '?dryRun=All' : '');
    return this.object(await this.send('POST', url, what, deadline, { apiVersion: apiVersionOf(t), kind: t.kind, ...object }), what);
  }

  /** PUT: the object must carry the resourceVersion it replaces (a stale one is a 'conflict'). */
  async replace(t: ResourceType, object: KubeObject, deadline: number): Promise<KubeObject> {
    const what = `replace ${resourceName(t)} ${JSON.stringify(object.metadata.name)}`;
    const url = this.path(t, object.metadata.name, object.metadata.namespace);
    return this.object(await this.send('PUT', url, what, deadline, { apiVersion: apiVersionOf(t), kind: t.kind, ...object }), what);
  }

  async patch(t: ResourceType, name: string, ops: JsonPatchOp[], deadline: number, namespace?: string): Promise<KubeObject> {
    const what = `patch ${resourceName(t)} ${JSON.stringify(name)}`;
    return this.object(await this.send('PATCH', this.path(t, name, namespace), what, deadline, ops, 'application/json-patch+json'), what);
  }

  /** DELETE, applied only while the object still has the preconditions' resourceVersion/uid. */
  async delete(t: ResourceType, name: string, deadline: number, preconditions: Preconditions = {}, namespace?: string): Promise<void> {
    const what = `delete ${resourceName(t)} ${JSON.stringify(name)}`;
    const body = { kind: 'DeleteOptions', apiVersion: 'v1', preconditions };
    await this.send('DELETE', this.path(t, name, namespace), what, deadline, body);
  }

  close(): void {
    this.http.close();
  }
}
