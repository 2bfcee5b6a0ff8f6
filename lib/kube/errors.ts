// What a Kubernetes API answer means to a caller. kube-apiserver reports every failure as a Status
// object (kind Status, reason, message, details, code); the REST client turns it, or a failed
// transport, into one KubeError whose `outcome` a caller can branch on (a conflict, an object that
// already exists...) and whose message names the server, the verb and the object, never a credential.
// A failure that may pass (no answer, 429 throttling, a 5xx other than etcd's size limit) has
// mayPass = true and CNI code 11; everything else is final (code 5).
import * as z from 'zod/mini';
import '../schema.ts';
import { Code, CniError } from '../cni/errors.ts';

export type KubeOutcome =
  | 'conflict'
  | 'alreadyExists'
  | 'notFound'
  /** No resource is served at that path: a CRD that is not installed, or a wrong API version. */
  | 'notServed'
  | 'invalid'
  | 'badRequest'
  | 'unauthorized'
  | 'forbidden'
  /** 413 from kube-apiserver (3 MiB body limit) or etcd's "request is too large" (1.5 MiB). */
  | 'tooLarge'
  | 'unavailable'
  | 'tls'
  | 'failed';

const statusSchema = () => z.looseObject({
  kind: z.literal('Status'),
  status: z.optional(z.string()),
  message: z.optional(z.string()),
  reason: z.optional(z.string()),
  code: z.optional(z.number()),
  details: z.optional(z.looseObject({
    name: z.optional(z.string()),
    group: z.optional(z.string()),
    kind: z.optional(z.string()),
    retryAfterSeconds: z.optional(z.number()),
    causes: z.optional(z.array(z.looseObject({ reason: z.optional(z.string()), message: z.optional(z.string()), field: z.optional(z.string()) }))),
  })),
});
export type Status = z.infer<ReturnType<typeof statusSchema>>;
let schema: ReturnType<typeof statusSchema> | undefined;

/** The Status in an error answer, if it is one. The schema is built on the first error, not at load. */
export const parseStatus = (body: unknown): Status | undefined => (schema ??= statusSchema()).safeParse(body).data;

export class KubeError extends CniError {
  readonly outcome: KubeOutcome;
  readonly httpStatus: number | undefined;
  readonly mayPass: boolean;
  readonly status: Status | undefined;

  constructor(outcome: KubeOutcome, message: string, httpStatus?: number, status?: Status) {
    const mayPass = outcome === 'unavailable';
    super(mayPass ? Code.TryAgainLater : Code.IoFailure, message);
    this.name = 'KubeError';
    this.outcome = outcome;
    this.httpStatus = httpStatus;
    this.mayPass = mayPass;
    this.status = status;
  }
}

/** The outcome of an HTTP error answer, from its code and, when it is one, its Status. */
export function outcomeOf(code: number, status: Status | undefined): KubeOutcome {
  switch (code) {
    case 400:
      return 'badRequest';
    case 401:
      return 'unauthorized';
    case 403:
      return 'forbidden';
    case 404:
      // An object that is not there names itself in details; a path nothing is served at does not.
      return status?.details?.name ? 'notFound' : 'notServed';
    case 409:
      return status?.reason === 'AlreadyExists' ? 'alreadyExists' : 'conflict';
    case 413:
      return 'tooLarge';
    case 422:
      return 'invalid';
    case 429:
      return 'unavailable';
    default:
      if (code >= 500 && /request is too large/i.test(status?.message ?? '')) return 'tooLarge';
      return code >= 500 ? 'unavailable' : 'failed';
  }
}

/** The server's own words, with the field causes of a 422, shortened. */
export function describeStatus(status: Status | undefined, body: string): string {
  if (!status) return body.trim() === '' ? 'no body' : `a body that is not a Status: ${JSON.stringify(body.slice(0, 120))}`;
  const causes = (status.details?.causes ?? []).map((c) => [c.field, c.message].filter(Boolean).join(': ')).filter((c) => c !== '' && !(status.message ?? '').includes(c));
  const text = [status.message ?? status.reason ?? 'no message', ...causes].join('; ');
  return text.length > 400 ? `${text.slice(0, 397)}...` : text;
}
