// What etcd's answers mean for the caller. A reply is one of: worth another endpoint (the member has no
// leader, is stopping, timed out: it may pass), a stale token (authenticate again), or final: the
// request itself is refused (too many operations, too large) or the credentials, certificates or
// permissions the config names are wrong. Final answers become an EtcdError that says what to fix;
// none of them quotes a request, so no password, token or key reaches a message.
import { Code, CniError, showValue } from '../../../lib/cni/errors.ts';
import type { HttpResponse } from '../../../lib/http.ts';
import type { GatewaySettings } from './settings.ts';
import { ErrorReplySchema } from './wire.ts';

/** A final answer from etcd (or about it): retrying will not help. */
export class EtcdError extends CniError {
  /** The endpoint that answered. */
  readonly endpoint: string;

  constructor(code: number, endpoint: string, message: string) {
    super(code, `etcd at ${endpoint}: ${message}`);
    this.name = 'EtcdError';
    this.endpoint = endpoint;
  }
}

export type Verdict =
  | { kind: 'ok'; body: unknown }
  /** `why` names the endpoint. */
  | { kind: 'elsewhere'; why: string }
  | { kind: 'reauthenticate' }
  | { kind: 'no-auth' }
  | { kind: 'final'; error: CniError };

/** Answers that pass: the member is between leaders, overloaded, stopping or cut off from its peers. */
const PASSING = /leader changed|no leader|request timed out|timed out|server stopped|not capable|too many requests|unhealthy cluster|connection|transport|broken pipe|EOF|stopping|context canceled|deadline exceeded/i;
/**
 * gRPC codes the gateway passes on for those: Unavailable, DeadlineExceeded, Aborted, Canceled, and
 * ResourceExhausted ("too many requests"; the NOSPACE alarm has that code too, but REFUSED sees it first).
 */
const PASSING_CODES = new Set([14, 4, 10, 1, 8]);
/** Refusals of the request itself, whatever member is asked. */
const REFUSED = /too many operations in txn request|request is too large|duplicate key given in txn request|database space exceeded|value provided is too large|key is not provided|required revision/i;

const tooLargeHint = ' (etcd refuses requests over its --max-request-bytes, 1.5 MiB by default; the gateway carries values in base64, a third larger than the record)';
const tooManyHint = ' (etcd allows at most --max-txn-ops operations per txn, 128 by default)';
const noSpaceHint = ' (the NOSPACE alarm: compact and defragment etcd, then disarm the alarm)';

/** Reads a gateway answer. `user` and the files are named in messages; the password never is. */
export function judgeReply(res: HttpResponse, endpoint: string, path: string, settings: GatewaySettings): Verdict {
  if (res.status === 200) {
    try {
      return { kind: 'ok', body: JSON.parse(res.body) as unknown };
    } catch {
      return final(Code.IoFailure, endpoint, `answered ${path} with something that is not JSON: ${showValue(res.body.slice(0, 60))}`);
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(res.body);
  } catch {
    parsed = undefined;
  }
  const reply = ErrorReplySchema.safeParse(parsed);
  const text = reply.success ? (reply.data.message ?? reply.data.error ?? '') : res.body.trim().slice(0, 200);
  const grpcCode = reply.success ? reply.data.code : undefined;
  const user = settings.username === undefined ? 'no user' : `user ${showValue(settings.username)}`;

  if (/invalid auth token|auth store is old|auth token is expired/i.test(text)) return { kind: 'reauthenticate' };
  if (/authentication is not enabled/i.test(text)) return { kind: 'no-auth' };
  if (/authentication failed, invalid user ID or password/i.test(text)) {
    return final(Code.InvalidConfig, endpoint, `authentication of ${user} failed: check ipam.etcd_username and ipam.etcd_password`);
  }
  if (/user name is empty/i.test(text)) {
    return final(Code.InvalidConfig, endpoint, 'authentication is enabled: set ipam.etcd_username and ipam.etcd_password');
  }
  if (/permission denied/i.test(text)) {
    return final(Code.InvalidConfig, endpoint, `${user} may not read and write the store's keys: grant its role readwrite on the store's key prefix`);
  }
  if (/CommonName of client sending a request against gateway/i.test(text)) {
    return final(
      Code.InvalidConfig,
      endpoint,
      `with authentication enabled, etcd's JSON gateway refuses a client certificate that has a Common Name (ipam.etcd_cert_file ${showValue(settings.files.cert)}): ` +
        'use a certificate whose subject has no CN, and etcd_username/etcd_password to authenticate',
    );
  }
  if (REFUSED.test(text)) {
    const hint = /too large/i.test(text) ? tooLargeHint : /too many operations/i.test(text) ? tooManyHint : /space exceeded/i.test(text) ? noSpaceHint : '';
    return final(Code.IoFailure, endpoint, `refused ${path}: ${text}${hint}`);
  }
  if (res.status === 404) {
    return final(Code.InvalidConfig, endpoint, `answered HTTP 404 for ${path}: is it an etcd client URL, of etcd 3.4 or later (the v3 JSON gateway)?`);
  }
  const passing = [429, 502, 503, 504].includes(res.status) || (grpcCode !== undefined && PASSING_CODES.has(grpcCode)) || (res.status >= 500 && PASSING.test(text));
  if (passing) {
    return { kind: 'elsewhere', why: `${endpoint} answered ${text ? `${text}${gatewayDialHint(text, settings)}` : `HTTP ${res.status}`}` };
  }
  return final(Code.IoFailure, endpoint, `answered ${path} with HTTP ${res.status}: ${showValue(text)}`);
}

/**
 * A member's gateway reaches its own gRPC server through a TLS connection that presents the member's
 * server certificate; with --client-cert-auth, a server certificate without extendedKeyUsage
 * clientAuth breaks every request that way while /health still says true.
 */
function gatewayDialHint(text: string, settings: GatewaySettings): string {
  if (settings.files.cert === undefined || !/broken pipe|connection reset|connection closed|transport is closing|bad certificate|createTransport/i.test(text)) return '';
  return " (if this persists: the member's server certificate may lack extendedKeyUsage clientAuth, which its own gateway needs with --client-cert-auth)";
}

function final(code: number, endpoint: string, message: string): Verdict {
  return { kind: 'final', error: new EtcdError(code, endpoint, message) };
}

/** A TLS handshake refused by either side, as a final error that says which file to look at. */
export function tlsFailure(message: string, endpoint: string, settings: GatewaySettings): EtcdError {
  const { ca, cert } = settings.files;
  const cause = message.replace(/^TLS with \S+ failed: /, '');
  if (/UNABLE_TO_VERIFY|SELF_SIGNED|DEPTH_ZERO|UNABLE_TO_GET_ISSUER|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE/i.test(cause)) {
    const trust = ca === undefined ? 'a CA the system trusts: set ipam.etcd_ca_cert_file' : `the CA in ipam.etcd_ca_cert_file ${showValue(ca)}`;
    return new EtcdError(Code.InvalidConfig, endpoint, `its certificate is not signed by ${trust} (${cause})`);
  }
  if (/ALTNAME|HOSTNAME|ERR_TLS_CERT_ALTNAME/i.test(cause)) {
    return new EtcdError(Code.InvalidConfig, endpoint, `its certificate does not name the host of the endpoint (${cause})`);
  }
  if (/EXPIRED|NOT_YET_VALID/i.test(cause)) {
    return new EtcdError(Code.InvalidConfig, endpoint, `its certificate is expired or not yet valid (${cause})`);
  }
  if (/CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE|UNSUPPORTED_CERTIFICATE|ALERT/i.test(cause)) {
    const ours = cert === undefined
      ? 'it requires a client certificate: set ipam.etcd_cert_file and ipam.etcd_key_file'
      : `it refused the client certificate ipam.etcd_cert_file ${showValue(cert)}: is it signed by a CA etcd trusts (--trusted-ca-file)?`;
    return new EtcdError(Code.InvalidConfig, endpoint, `the TLS handshake failed: ${ours} (${cause})`);
  }
  return new EtcdError(Code.InvalidConfig, endpoint, `the TLS handshake failed (${cause})`);
}
