// An in-test stand-in for kube-apiserver (no real one can run on these machines), over HTTPS with a CA
// and server certificate made by openssl. It reproduces what Underlay's Kubernetes code relies on:
//   - namespaced custom resources of the CRDs it is loaded with (Underlay's deploy/crds/*.yaml, or
//     whereabouts' own from test/fixtures/whereabouts/crds/), at /apis/<group>/<version>/namespaces/
//     <ns>/<plural>[/<name>] (and the all-namespaces list); core/v1 pods (namespaced, and /api/v1/pods
//     for all namespaces) and nodes (cluster-scoped);
//   - GET; LIST (kind <Kind>List, metadata.resourceVersion, items sorted by namespace and name, as etcd
//     keys are; labelSelector; fieldSelector over each resource's field labels, 400 for others; limit
//     and continue); POST (201; 409 AlreadyExists); PUT (409 Conflict on a stale resourceVersion, 422
//     Invalid for a custom resource without one, 404 when absent); PATCH with
//     application/json-patch+json only (a failed "test" or a missing path is 422 Invalid with the
//     generic "the server rejected our request..." message, as kube-apiserver answers); DELETE with
//     DeleteOptions preconditions (409 on a resourceVersion or uid mismatch), finalizers and graceful
//     pod deletion leaving the object with a deletionTimestamp; dryRun=All on every write; 404
//     NotFound, for objects and for paths no resource is served at;
//   - one global resourceVersion counter (a decimal string) taken by every write;
//   - structural-schema pruning on write and on read, type/required/name validation (kube-schema.ts);
//   - request bodies over 3 MiB: 413; stored objects over etcd's 1.5 MiB: 500 "etcdserver: request is
//     too large" (sized as JSON, which is larger than etcd's protobuf, so it errs on the safe side);
//   - authentication by bearer token or by a client certificate signed by the cluster CA (CN = user,
//     O = groups): 401 Unauthorized without either; authorization by an RBAC-like table: 403 Forbidden
//     with kube-apiserver's message;
//   - every error as a Status object (kind, apiVersion v1, status Failure, message, reason, details,
//     code), see kube-status.ts.
// Test hooks: `inject` queues faults (a delay, a Status with any code, a dropped connection, a request
// that never gets an answer, code run just before a request is served, to slip in a racing write: the
// request waits for it when it returns a promise, so it may run whole CNI verbs against this server);
// `latencyMs` delays every answer; `log` records each request; `seed`/`object` bypass authentication.
// NOT reproduced: watch, server-side apply, merge and strategic-merge patches (415 here), generateName,
// managedFields, defaulting, admission webhooks, API priority and fairness, continue-token expiry (410),
// resourceVersion semantics of GET/LIST parameters (every read is a quorum read), CRD lifecycle (a CRD
// applied over another keeps the stored objects, as kube-apiserver does; deleting CRDs is not offered).
import { readdirSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { TestPki } from './kube-certs.ts';
import { ObjectStore, type KubeObject, type Resource } from './kube-objects.ts';
import { loadCrd } from './kube-schema.ts';
import * as S from './kube-status.ts';

const ROOT = join(import.meta.dirname, '..', '..');
export const UNDERLAY_CRDS = join(ROOT, 'deploy', 'crds');
export const WHEREABOUTS_CRDS = join(ROOT, 'test', 'fixtures', 'whereabouts', 'crds');

export const crdFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort().map((f) => join(dir, f));

export interface Identity {
  user: string;
  groups?: string[];
  /** The bearer token that authenticates as this user. */
  token?: string;
}

/** Allows `verbs` on `resources` ("pods", "ippools.whereabouts.cni.cncf.io", "*") to a user or "group:<g>". */
export interface Rule {
  who: string;
  verbs: string[];
  resources: string[];
  /** Only in these namespaces (never at the cluster scope); every namespace and the cluster when absent. */
  namespaces?: string[];
}

export type FaultAction =
  | { delayMs: number }
  | { status: number; message?: string }
  | { drop: true }
  | { hang: true }
  | { before: () => void | Promise<void> };

export type Fault = FaultAction & { method?: string; path?: RegExp; times?: number };

export interface ServerOptions {
  crds?: string[];
  namespaces?: string[];
  identities?: Identity[];
  /** Without rules, every authenticated identity may do everything. */
  rules?: Rule[];
}

export interface LoggedRequest {
  method: string;
  path: string;
  user: string | undefined;
  code: number;
}

const CORE: Resource[] = [
  {
    group: '', version: 'v1', plural: 'pods', kind: 'Pod', listKind: 'PodList', namespaced: true, deleteReturnsObject: true,
    fieldLabels: new Set(['metadata.name', 'metadata.namespace', 'spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName', 'spec.hostNetwork', 'status.phase', 'status.podIP', 'status.nominatedNodeName']),
  },
  { group: '', version: 'v1', plural: 'nodes', kind: 'Node', listKind: 'NodeList', namespaced: false, deleteReturnsObject: false, fieldLabels: new Set(['metadata.name', 'spec.unschedulable']) },
];

const VERBS: Record<string, string> = { POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };

interface Target {
  resource: Resource | undefined;
  group: string;
  plural: string;
  namespace: string | undefined;
  name: string | undefined;
  verb: string;
}

export class KubeApiServer {
  readonly pki = new TestPki();
  readonly store: ObjectStore;
  readonly identities: Identity[];
  rules: Rule[] | undefined;
  latencyMs = 0;
  readonly log: LoggedRequest[] = [];
  private faults: Fault[] = [];
  private readonly resources = new Map<string, Resource>();
  private readonly server: Server;
  url = '';

  private constructor(options: ServerOptions) {
    this.store = new ObjectStore(options.namespaces ?? ['default', 'kube-system']);
    this.identities = options.identities ?? [{ user: 'admin', token: 'admin-token' }];
    this.rules = options.rules;
    for (const r of CORE) this.resources.set(this.id(r.group, r.version, r.plural), r);
    this.loadCrds(options.crds ?? crdFiles(UNDERLAY_CRDS));
    const { pki } = this;
    this.server = createServer({ key: pki.server.key, cert: pki.server.cert, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: false }, (req, res) => {
      void this.handle(req, res);
    });
  }

  static async start(options: ServerOptions = {}): Promise<KubeApiServer> {
    const s = new KubeApiServer(options);
    await new Promise<void>((resolve) => s.server.listen(0, '127.0.0.1', resolve));
    s.url = `https://127.0.0.1:${(s.server.address() as AddressInfo).port}`;
    return s;
  }

  private id = (group: string, version: string, plural: string): string => `${group}/${version}/${plural}`;

  /** Applies CRDs as `kubectl apply` would: a CRD of the same name replaces the one in force. */
  loadCrds(files: string[]): void {
    for (const file of files) {
      const crd = loadCrd(file);
      for (const [key, r] of this.resources) if (r.group === crd.group && r.plural === crd.plural) this.resources.delete(key);
      this.resources.set(this.id(crd.group, crd.version, crd.plural), { ...crd, fieldLabels: new Set(['metadata.name', 'metadata.namespace']), deleteReturnsObject: false });
    }
  }

  /** A resource by "plural.group" (or "pods", "nodes"), for the test hooks. */
  resource(qualified: string): Resource {
    for (const r of this.resources.values()) if ((r.group ? `${r.plural}.${r.group}` : r.plural) === qualified) return r;
    throw new Error(`no resource ${qualified} is served`);
  }

  /** Creates an object as an administrator would (no authentication); throws the StatusError. */
  seed(qualified: string, object: Record<string, unknown>): KubeObject {
    const r = this.resource(qualified);
    const meta = (object.metadata ?? {}) as { namespace?: string };
    const body = { apiVersion: r.group ? `${r.group}/${r.version}` : r.version, kind: r.kind, ...structuredClone(object) };
    return this.store.create(r, r.namespaced ? (meta.namespace ?? 'default') : undefined, body);
  }

  /** The object as a GET would serve it now, or undefined. */
  object(qualified: string, namespace: string | undefined, name: string): KubeObject | undefined {
    try {
      return this.store.get(this.resource(qualified), namespace, name);
    } catch (err) {
      if (err instanceof S.StatusError && err.status.code === 404) return undefined;
      throw err;
    }
  }

  inject(fault: Fault): void {
    this.faults.push(fault);
  }

  /** A kubeconfig (YAML) for this server, with the CA inline and the given user entry. */
  kubeconfig(user: Record<string, unknown>, namespace?: string): string {
    const ca = Buffer.from(this.pki.ca.cert).toString('base64');
    const context = { cluster: 'sim', user: 'u', ...(namespace !== undefined && { namespace }) };
    return JSON.stringify({
      apiVersion: 'v1', kind: 'Config', 'current-context': 'sim',
      clusters: [{ name: 'sim', cluster: { server: this.url, 'certificate-authority-data': ca } }],
      users: [{ name: 'u', user }],
      contexts: [{ name: 'sim', context }],
    }, null, 2);
  }

  /** Stops listening, cuts every connection (held requests included) and removes the PKI, whatever happens. */
  async close(): Promise<void> {
    try {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.server.closeAllConnections();
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    } finally {
      this.pki.cleanup();
    }
  }

  private takeFault(method: string, path: string): Fault | undefined {
    const i = this.faults.findIndex((f) => (f.method === undefined || f.method === method) && (f.path === undefined || f.path.test(path)));
    if (i < 0) return undefined;
    const fault = this.faults[i]!;
    if (fault.times === undefined || --fault.times <= 0) this.faults.splice(i, 1);
    return fault;
  }

  private authenticate(req: IncomingMessage): Identity | undefined {
    const socket = req.socket as TLSSocket;
    if (socket.authorized) {
      const subject = socket.getPeerCertificate().subject as unknown as Record<string, string | string[] | undefined> | undefined;
      const cn = subject?.CN;
      const o = subject?.O;
      if (typeof cn === 'string' && cn !== '') return { user: cn, groups: o === undefined ? [] : Array.isArray(o) ? o : [o] };
    }
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    return bearer ? this.identities.find((i) => i.token !== undefined && i.token === bearer[1]) : undefined;
  }

  private allowed(who: Identity, t: Target): boolean {
    if (!this.rules) return true;
    const qualified = t.group ? `${t.plural}.${t.group}` : t.plural;
    const names = new Set([who.user, ...(who.groups ?? []).map((g) => `group:${g}`)]);
    return this.rules.some((rule) => names.has(rule.who)
      && (rule.verbs.includes('*') || rule.verbs.includes(t.verb))
      && (rule.resources.includes('*') || rule.resources.includes(qualified))
      && (rule.namespaces === undefined || (t.namespace !== undefined && rule.namespaces.includes(t.namespace))));
  }

  private parse(method: string, path: string): Target | undefined {
    const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?$/.exec(path);
    if (!m) return undefined;
    const [, coreVersion, group = '', groupVersion, namespace, plural, name] = m;
    const version = coreVersion ?? groupVersion!;
    const resource = this.resources.get(this.id(group, version, plural!));
    const ns = namespace === undefined ? undefined : decodeURIComponent(namespace);
    const n = name === undefined ? undefined : decodeURIComponent(name);
    const verb = method === 'GET' ? (n === undefined ? 'list' : 'get') : (VERBS[method] ?? method.toLowerCase());
    if (resource && ((resource.namespaced && ns === undefined && verb !== 'list') || (!resource.namespaced && ns !== undefined))) return undefined;
    return { resource, group, plural: plural!, namespace: ns, name: n, verb };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://sim');
    const method = req.method ?? 'GET';
    const entry: LoggedRequest = { method, path: url.pathname + url.search, user: undefined, code: 0 };
    this.log.push(entry);
    const answer = (code: number, body: unknown): void => {
      entry.code = code;
      const text = JSON.stringify(body);
      setTimeout(() => res.writeHead(code, { 'content-type': 'application/json' }).end(text), this.latencyMs);
    };
    const body = await readBody(req);
    const fault = this.takeFault(method, url.pathname);
    if (fault && 'drop' in fault) return void req.socket.destroy();
    if (fault && 'hang' in fault) return;
    if (fault && 'delayMs' in fault) await new Promise((r) => setTimeout(r, fault.delayMs));
    if (fault && 'before' in fault) await fault.before();
    try {
      if (fault && 'status' in fault) throw S.injected(fault.status, fault.message);
      const who = this.authenticate(req);
      if (!who) throw S.unauthorized();
      entry.user = who.user;
      const target = this.parse(method, url.pathname);
      if (!target) throw S.notServed();
      if (!this.allowed(who, target)) {
        const r = target.resource ?? { group: target.group, plural: target.plural, kind: target.plural };
        throw S.forbidden(r, target.name, who.user, target.verb, target.namespace);
      }
      if (body === undefined) throw S.requestTooLarge();
      const [code, out] = this.serve(target, req, url.searchParams, body);
      answer(code, out);
    } catch (err) {
      const status = err instanceof S.StatusError ? err.status : S.internalError(err instanceof Error ? err.message : String(err)).status;
      answer(status.code, status);
    }
  }

  private serve(t: Target, req: IncomingMessage, query: URLSearchParams, text: string): [number, unknown] {
    const r = t.resource;
    if (!r) throw S.notServed();
    const dryRun = query.get('dryRun') === 'All';
    const json = (): unknown => {
      if (text === '') return undefined;
      try {
        return JSON.parse(text);
      } catch (err) {
        throw S.badRequest(`couldn't get version/kind; json parse error: ${(err as Error).message}`);
      }
    };
    if (query.get('watch') === 'true' || query.get('watch') === '1') throw S.badRequest('watch is not reproduced by this simulation');
    const name = t.name ?? '';
    switch (t.verb) {
      case 'get':
        return [200, this.store.get(r, t.namespace, name)];
      case 'list': {
        const limit = query.get('limit');
        return [200, this.store.list(r, t.namespace, {
          labelSelector: query.get('labelSelector'),
          fieldSelector: query.get('fieldSelector'),
          limit: limit === null || Number(limit) <= 0 ? undefined : Number(limit),
          continueToken: query.get('continue'),
        })];
      }
      case 'create':
        if (t.name !== undefined) throw S.methodNotAllowed('POST');
        return [201, this.store.create(r, t.namespace, json(), dryRun)];
      case 'update':
        return [200, this.store.replace(r, t.namespace, name, json(), dryRun)];
      case 'patch': {
        const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
        if (type !== 'application/json-patch+json') throw S.unsupportedMediaType(type);
        return [200, this.store.patch(r, t.namespace, name, json(), dryRun)];
      }
      case 'delete':
        if (t.name === undefined) throw S.methodNotAllowed('DELETE collection');
        return [200, this.store.delete(r, t.namespace, name, json(), dryRun)];
      default:
        throw S.methodNotAllowed(t.verb);
    }
  }
}

/** The request body, or undefined past kube-apiserver's 3 MiB limit (the rest is drained unread). */
function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= S.MAX_REQUEST_BYTES) chunks.push(c);
    });
    req.on('end', () => resolve(size > S.MAX_REQUEST_BYTES ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(''));
  });
}
