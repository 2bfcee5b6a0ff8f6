// The Status objects the simulated API server (kube-apiserver.ts) answers errors with: kind Status,
// apiVersion v1, status Failure, a message, a reason, details and the HTTP code, in the shapes and
// wordings kube-apiserver uses for each case, so a client is tested against what it will really read.

export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

export interface KubeStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
}

export class StatusError extends Error {
  readonly status: KubeStatus;
  constructor(status: KubeStatus) {
    super(status.message ?? status.reason ?? String(status.code));
    this.status = status;
  }
}

function failure(code: number, reason: string | undefined, message: string, details?: StatusDetails): StatusError {
  const status: KubeStatus = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, code };
  if (reason !== undefined) status.reason = reason;
  if (details !== undefined) status.details = details;
  return new StatusError(status);
}

/** What a resource is called in messages: "ippools.whereabouts.cni.cncf.io", or "pods" in the core group. */
export interface GroupResource {
  group: string;
  plural: string;
  kind: string;
}

const qualified = (r: GroupResource): string => (r.group ? `${r.plural}.${r.group}` : r.plural);
const qualifiedKind = (r: GroupResource): string => (r.group ? `${r.kind}.${r.group}` : r.kind);

export const notFound = (r: GroupResource, name: string): StatusError =>
  failure(404, 'NotFound', `${qualified(r)} "${name}" not found`, { name, group: r.group, kind: r.plural });

/** An API path no resource is served at: kube-apiserver's answer has empty details. */
export const notServed = (): StatusError => failure(404, 'NotFound', 'the server could not find the requested resource', {});

export const namespaceNotFound = (namespace: string): StatusError =>
  failure(404, 'NotFound', `namespaces "${namespace}" not found`, { name: namespace, kind: 'namespaces' });

export const alreadyExists = (r: GroupResource, name: string): StatusError =>
  failure(409, 'AlreadyExists', `${qualified(r)} "${name}" already exists`, { name, group: r.group, kind: r.plural });

export const conflict = (r: GroupResource, name: string, why: string): StatusError =>
  failure(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(r)} "${name}": ${why}`, { name, group: r.group, kind: r.plural });

export const MODIFIED = 'the object has been modified; please apply your changes to the latest version and try again';

/** A field error of an object: kube-apiserver's "<Kind>.<group> "<name>" is invalid: <field>: <why>". */
export function invalid(r: GroupResource, name: string, causes: Array<{ field: string; reason: string; message: string }>): StatusError {
  const summary = causes.map((c) => `${c.field}: ${c.message}`);
  const message = `${qualifiedKind(r)} "${name}" is invalid: ${summary.length === 1 ? summary[0]! : `[${summary.join(', ')}]`}`;
  return failure(422, 'Invalid', message, { name, group: r.group, kind: r.kind, causes });
}

/** A JSON patch that cannot be applied (a failed "test" among them): 422 with the generic message. */
export const patchRejected = (r: GroupResource, name: string, why: string): StatusError =>
  failure(422, 'Invalid', 'the server rejected our request due to an error in our request', {
    name,
    group: r.group,
    kind: r.plural,
    causes: [{ reason: 'UnexpectedServerResponse', message: why }],
  });

export const badRequest = (message: string): StatusError => failure(400, 'BadRequest', message);

export const unauthorized = (): StatusError => failure(401, 'Unauthorized', 'Unauthorized');

export function forbidden(r: GroupResource, name: string | undefined, user: string, verb: string, namespace: string | undefined): StatusError {
  const where = namespace === undefined ? 'at the cluster scope' : `in the namespace "${namespace}"`;
  const subject = name === undefined ? qualified(r) : `${qualified(r)} "${name}"`;
  const message = `${subject} is forbidden: User "${user}" cannot ${verb} resource "${r.plural}" in API group "${r.group}" ${where}`;
  const details: StatusDetails = { group: r.group, kind: r.plural };
  if (name !== undefined) details.name = name;
  return failure(403, 'Forbidden', message, details);
}

export const MAX_REQUEST_BYTES = 3 * 1024 * 1024;

export const requestTooLarge = (): StatusError => failure(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${MAX_REQUEST_BYTES}`);

/** etcd's own limit (1.5 MiB by default) comes back as a bare 500 with etcd's message, no reason. */
export const etcdTooLarge = (): StatusError => failure(500, undefined, 'etcdserver: request is too large');

export const internalError = (message: string): StatusError => failure(500, 'InternalError', message);

export const unsupportedMediaType = (type: string): StatusError =>
  failure(415, 'UnsupportedMediaType', `the body of the request was in an unknown format ("${type}") - accepted media types include: application/json-patch+json`);

export const methodNotAllowed = (verb: string): StatusError => failure(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource (${verb})`);

/** Any code a test wants the server to fail with (429, 500, 503, 504...), with kube-apiserver's reason. */
export function injected(code: number, message?: string): StatusError {
  const reasons: Record<number, string> = { 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout' };
  const details: StatusDetails | undefined = code === 429 ? { retryAfterSeconds: 1 } : undefined;
  return failure(code, reasons[code], message ?? `injected failure ${code}`, details);
}
