// One small HTTP(S) client for the stores behind a network: the etcd v3 JSON gateway and the Kubernetes
// REST API. node:http/node:https are loaded on first use (~10 ms), so a verb on the file store never pays
// for them; the client libraries of etcd and Kubernetes cost 100-380 ms to import, which every pod
// would pay.
//
// Failures come in two kinds, because callers treat them differently:
//   HttpUnreachable: no answer (refused, reset, timed out): it may pass, so retry or try the next endpoint;
//   HttpTlsError: the TLS handshake was refused (an untrusted CA, a missing client certificate): retrying
//   will not help, and the message says which side refused.
// Neither message ever holds a header or a body: requests carry tokens and passwords.
import type { Agent, IncomingHttpHeaders, IncomingMessage } from 'node:http';

export interface TlsSettings {
  ca?: string | Buffer | undefined;
  cert?: string | Buffer | undefined;
  key?: string | Buffer | undefined;
  insecureSkipVerify?: boolean | undefined;
  /** The name the server's certificate must carry, when it is not the URL's host. */
  serverName?: string | undefined;
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface HttpRequest {
  method: HttpMethod;
  url: string;
  headers?: Record<string, string>;
  body?: string;
  /** Epoch milliseconds: no request outlives it, whatever the server does. */
  deadline: number;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export class HttpUnreachable extends Error {
  override readonly name = 'HttpUnreachable';
}

export class HttpTlsError extends Error {
  override readonly name = 'HttpTlsError';
}

/** A store's answers are small; a larger one is a wrong endpoint or a hostile server. */
const MAX_BODY_BYTES = 64 << 20;

const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH|ERR_OSSL_)/;

const errnoOf = (err: unknown): string =>
  err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : '';

/** Turns a transport error into one of our two kinds, naming the endpoint but nothing sent to it. */
export function classify(err: unknown, where: string): HttpUnreachable | HttpTlsError {
  if (err instanceof HttpUnreachable || err instanceof HttpTlsError) return err;
  const code = errnoOf(err);
  const why = err instanceof Error ? err.message : String(err);
  if (TLS_CODE.test(code) || /certificate|handshake|alert|ssl/i.test(why)) return new HttpTlsError(`TLS with ${where} failed: ${code || why}`);
  return new HttpUnreachable(`${where} is unreachable: ${code || why}`);
}

export class HttpClient {
  private readonly tls: TlsSettings;
  private readonly agents = new Map<'http:' | 'https:', Agent>();

  constructor(tls: TlsSettings = {}) {
    this.tls = tls;
  }

  private agentFor(protocol: 'http:' | 'https:'): Agent {
    let agent = this.agents.get(protocol);
    if (agent) return agent;
    // Keep-alive within one process: an ADD makes several requests to the same server.
    if (protocol === 'https:') {
      const https = process.getBuiltinModule('node:https');
      const { ca, cert, key, insecureSkipVerify, serverName } = this.tls;
      agent = new https.Agent({
        keepAlive: true,
        maxSockets: 8,
        ...(ca !== undefined && { ca }),
        ...(cert !== undefined && { cert }),
        ...(key !== undefined && { key }),
        ...(serverName !== undefined && { servername: serverName }),
        rejectUnauthorized: insecureSkipVerify !== true,
      });
    } else {
      agent = new (process.getBuiltinModule('node:http').Agent)({ keepAlive: true, maxSockets: 8 });
    }
    this.agents.set(protocol, agent);
    return agent;
  }

  request(req: HttpRequest): Promise<HttpResponse> {
    const url = new URL(req.url);
    const where = url.host;
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return Promise.reject(new HttpUnreachable(`${where}: unsupported URL scheme ${url.protocol}`));
    }
    const remaining = req.deadline - Date.now();
    if (remaining <= 0) return Promise.reject(new HttpUnreachable(`${where}: no time left for the request`));
    const protocol = url.protocol;
    const lib = process.getBuiltinModule(protocol === 'https:' ? 'node:https' : 'node:http');
    return new Promise<HttpResponse>((resolve, reject) => {
      const headers: Record<string, string | number> = { accept: 'application/json', ...req.headers };
      if (req.body !== undefined) headers['content-length'] = Buffer.byteLength(req.body);
      const request = lib.request(url, { method: req.method, headers, agent: this.agentFor(protocol) }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) {
            request.destroy(new HttpUnreachable(`${where} sent more than ${MAX_BODY_BYTES >> 20} MiB`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', (err) => {
          clearTimeout(timer);
          reject(classify(err, where));
        });
      });
      const timer = setTimeout(() => request.destroy(new HttpUnreachable(`${where} did not answer within ${remaining} ms`)), remaining);
      request.on('error', (err) => {
        clearTimeout(timer);
        reject(classify(err, where));
      });
      request.end(req.body);
    });
  }

  /** Closes the kept-alive sockets, so nothing holds the process open after the verb. */
  close(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }
}
