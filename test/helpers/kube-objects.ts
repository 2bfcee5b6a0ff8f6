// The object storage and verbs behind the simulated API server (kube-apiserver.ts): what kube-apiserver
// does with a request once it is authenticated and authorized. Every write takes the next value of ONE
// global counter as the object's metadata.resourceVersion (a decimal string), as etcd's revision does.
// Errors are thrown as StatusError (kube-status.ts), in kube-apiserver's order of checks: decoding (400),
// validation (422), then storage (404, 409), then etcd's size limit.
import { randomUUID } from 'node:crypto';
import { applyPatch, PatchFailure } from './kube-jsonpatch.ts';
import { nameErrors, prune, validate, type Schema } from './kube-schema.ts';
import { fieldMatcher, labelMatcher } from './kube-selectors.ts';
import * as S from './kube-status.ts';

export interface Resource extends S.GroupResource {
  version: string;
  listKind: string;
  namespaced: boolean;
  /** A custom resource's structural schema; built-in resources (pods, nodes) have none here. */
  schema?: Schema;
  fieldLabels: ReadonlySet<string>;
  /** Pods answer DELETE with the pod; custom resources and nodes with a Status of Success. */
  deleteReturnsObject: boolean;
}

export interface Meta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  [key: string]: unknown;
}

export type KubeObject = Record<string, unknown> & { apiVersion?: string; kind?: string; metadata: Meta; spec?: unknown };

export const ETCD_MAX_BYTES = 1.5 * 1024 * 1024;

const apiVersionOf = (r: Resource): string => (r.group ? `${r.group}/${r.version}` : r.version);
const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const now = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

export interface ListOptions {
  labelSelector: string | null;
  fieldSelector: string | null;
  limit: number | undefined;
  continueToken: string | null;
}

export class ObjectStore {
  private revision = 0;
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  namespaces: Set<string>;

  constructor(namespaces: Iterable<string>) {
    this.namespaces = new Set(namespaces);
  }

  get resourceVersion(): string {
    return String(this.revision);
  }

  private bucket(r: Resource): Map<string, KubeObject> {
    const key = `${r.group}/${r.plural}`;
    let b = this.objects.get(key);
    if (!b) this.objects.set(key, (b = new Map<string, KubeObject>()));
    return b;
  }

  private key = (namespace: string | undefined, name: string): string => `${namespace ?? ''}/${name}`;

  /** The object as a GET serves it: a copy, pruned by the schema in force now. */
  private serve(r: Resource, stored: KubeObject, inList = false): KubeObject {
    const out = structuredClone(stored);
    if (r.schema) prune(out, r.schema, true);
    if (inList && !r.group) {
      delete out.apiVersion;
      delete out.kind;
    }
    return out;
  }

  private existing(r: Resource, namespace: string | undefined, name: string): KubeObject {
    const found = this.bucket(r).get(this.key(namespace, name));
    if (!found) throw S.notFound(r, name);
    return found;
  }

  get(r: Resource, namespace: string | undefined, name: string): KubeObject {
    return this.serve(r, this.existing(r, namespace, name));
  }

  list(r: Resource, namespace: string | undefined, options: ListOptions): Record<string, unknown> {
    const labels = labelMatcher(options.labelSelector);
    const fields = fieldMatcher(options.fieldSelector, r.fieldLabels);
    let start = '';
    if (options.continueToken) {
      try {
        start = (JSON.parse(Buffer.from(options.continueToken, 'base64url').toString()) as { start: string }).start;
      } catch {
        throw S.badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
      }
    }
    const keys = [...this.bucket(r).keys()].filter((k) => (namespace === undefined || k.startsWith(`${namespace}/`)) && k > start).sort();
    const items: KubeObject[] = [];
    let last = '';
    let more = false;
    for (const key of keys) {
      const served = this.serve(r, this.bucket(r).get(key)!, true);
      if (!labels(served.metadata.labels) || !fields(served)) continue;
      if (options.limit !== undefined && items.length === options.limit) {
        more = true;
        break;
      }
      items.push(served);
      last = key;
    }
    const metadata: Record<string, unknown> = { resourceVersion: this.resourceVersion };
    if (more) metadata.continue = Buffer.from(JSON.stringify({ start: last })).toString('base64url');
    return { kind: r.listKind, apiVersion: apiVersionOf(r), metadata, items };
  }

  /** Decoding checks every write body goes through: kind and apiVersion of the URL's resource. */
  private decode(r: Resource, body: unknown): KubeObject {
    if (!isRecord(body)) throw S.badRequest('the body of the request is not a JSON object');
    if (body.kind === undefined || body.kind === '') throw S.badRequest(`Object 'Kind' is missing in '${JSON.stringify(body).slice(0, 120)}'`);
    if (body.kind !== r.kind || body.apiVersion !== apiVersionOf(r)) {
      throw S.badRequest(`the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${apiVersionOf(r)})`);
    }
    if (!isRecord(body.metadata)) body.metadata = {};
    return body as KubeObject;
  }

  /** Pruning, validation and etcd's size limit: the path every stored object takes. */
  private admit(r: Resource, object: KubeObject, name: string): void {
    if (r.schema) prune(object, r.schema, true);
    const errors = [...nameErrors(object.metadata.name), ...(r.schema ? validate(object, r.schema) : [])];
    if (errors.length > 0) throw S.invalid(r, name, errors);
  }

  private persist(r: Resource, object: KubeObject, dryRun: boolean): KubeObject {
    if (Buffer.byteLength(JSON.stringify(object)) > ETCD_MAX_BYTES) throw S.etcdTooLarge();
    if (dryRun) return object;
    object.metadata.resourceVersion = String(++this.revision);
    this.bucket(r).set(this.key(object.metadata.namespace, object.metadata.name), object);
    return this.serve(r, object);
  }

  private checkNamespace(r: Resource, namespace: string | undefined, object: KubeObject): void {
    if (!r.namespaced) return;
    const given = object.metadata.namespace;
    if (given !== undefined && given !== '' && given !== namespace) {
      throw S.badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    object.metadata.namespace = namespace!;
  }

  create(r: Resource, namespace: string | undefined, body: unknown, dryRun = false): KubeObject {
    const object = this.decode(r, body);
    const name = typeof object.metadata.name === 'string' ? object.metadata.name : '';
    object.metadata.name = name;
    this.checkNamespace(r, namespace, object);
    if (r.namespaced && !this.namespaces.has(namespace!)) throw S.namespaceNotFound(namespace!);
    this.admit(r, object, name);
    if (object.metadata.resourceVersion) throw S.internalError('resourceVersion should not be set on objects to be created');
    if (this.bucket(r).has(this.key(namespace, name))) throw S.alreadyExists(r, name);
    const { deletionTimestamp: _d, deletionGracePeriodSeconds: _g, ...meta } = object.metadata;
    object.metadata = { ...meta, uid: randomUUID(), creationTimestamp: now(), ...(r.schema && { generation: 1 }) };
    return this.persist(r, object, dryRun);
  }

  /** The stored object `next` replaces, after the checks an update makes (PUT and PATCH alike). */
  private update(r: Resource, current: KubeObject, next: KubeObject, dryRun: boolean): KubeObject {
    const name = current.metadata.name;
    this.admit(r, next, name);
    const given = next.metadata.resourceVersion;
    if (given === undefined || given === '') {
      // Custom resources do not allow an unconditional update; built-in pods and nodes do.
      if (r.schema) throw S.invalid(r, name, [{ field: 'metadata.resourceVersion', reason: 'FieldValueInvalid', message: 'Invalid value: 0x0: must be specified for an update' }]);
    } else if (given !== current.metadata.resourceVersion) {
      throw S.conflict(r, name, S.MODIFIED);
    }
    const { uid, creationTimestamp, generation, deletionTimestamp, deletionGracePeriodSeconds } = current.metadata;
    const specChanged = JSON.stringify(next.spec) !== JSON.stringify(current.spec);
    next.metadata = {
      ...next.metadata,
      name,
      ...(current.metadata.namespace !== undefined && { namespace: current.metadata.namespace }),
      ...(uid !== undefined && { uid }),
      ...(creationTimestamp !== undefined && { creationTimestamp }),
      ...(generation !== undefined && { generation: specChanged ? generation + 1 : generation }),
      ...(deletionTimestamp !== undefined && { deletionTimestamp }),
      ...(deletionGracePeriodSeconds !== undefined && { deletionGracePeriodSeconds }),
    };
    return this.persist(r, next, dryRun);
  }

  replace(r: Resource, namespace: string | undefined, name: string, body: unknown, dryRun = false): KubeObject {
    const object = this.decode(r, body);
    if (object.metadata.name !== name) throw S.badRequest(`the name of the object (${String(object.metadata.name)}) does not match the name on the URL (${name})`);
    this.checkNamespace(r, namespace, object);
    return this.update(r, this.existing(r, namespace, name), object, dryRun);
  }

  patch(r: Resource, namespace: string | undefined, name: string, ops: unknown, dryRun = false): KubeObject {
    const current = this.existing(r, namespace, name);
    let patched: KubeObject;
    try {
      patched = applyPatch(this.serve(r, current), ops);
    } catch (err) {
      if (err instanceof PatchFailure) throw S.patchRejected(r, name, err.message);
      throw err;
    }
    if (!isRecord(patched.metadata) || patched.metadata.name !== name) {
      throw S.invalid(r, name, [{ field: 'metadata.name', reason: 'FieldValueInvalid', message: 'Invalid value: field is immutable' }]);
    }
    if (patched.metadata.resourceVersion === undefined) patched.metadata.resourceVersion = current.metadata.resourceVersion!;
    return this.update(r, current, this.decode(r, patched), dryRun);
  }

  delete(r: Resource, namespace: string | undefined, name: string, options: unknown, dryRun = false): unknown {
    const current = this.existing(r, namespace, name);
    const opts = isRecord(options) ? options : {};
    const pre = isRecord(opts.preconditions) ? opts.preconditions : {};
    if (typeof pre.resourceVersion === 'string' && pre.resourceVersion !== current.metadata.resourceVersion) {
      throw S.conflict(r, name, `the ResourceVersion in the precondition (${pre.resourceVersion}) does not match the ResourceVersion in record (${current.metadata.resourceVersion}). The object might have been modified`);
    }
    if (typeof pre.uid === 'string' && pre.uid !== current.metadata.uid) {
      throw S.conflict(r, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${current.metadata.uid}`);
    }
    const grace = typeof opts.gracePeriodSeconds === 'number' ? opts.gracePeriodSeconds : 30;
    const graceful = r.plural === 'pods' && !r.group && grace > 0 && isRecord(current.spec) && typeof current.spec.nodeName === 'string';
    if ((current.metadata.finalizers?.length ?? 0) > 0 || graceful) {
      // Deletion is pending: a finalizer must go, or the kubelet must stop the pod first.
      if (dryRun || current.metadata.deletionTimestamp) return this.serve(r, current);
      const next = structuredClone(current);
      next.metadata.deletionTimestamp = now();
      if (graceful) next.metadata.deletionGracePeriodSeconds = grace;
      return this.persist(r, next, false);
    }
    if (!dryRun) this.bucket(r).delete(this.key(namespace, name));
    if (r.deleteReturnsObject) return this.serve(r, current);
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, group: r.group, kind: r.plural, uid: current.metadata.uid } };
  }

  /** Test hook: what the kubelet does once a terminating pod has stopped. */
  forget(r: Resource, namespace: string | undefined, name: string): boolean {
    return this.bucket(r).delete(this.key(namespace, name));
  }
}
