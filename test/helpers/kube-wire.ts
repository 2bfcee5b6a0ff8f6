// Raw requests to the simulated API server, for tests that check what goes over the wire (codes and
// Status bodies) without Underlay's REST client in between.
import { HttpClient, type HttpMethod } from '../../lib/http.ts';
import type { KubeApiServer } from './kube-apiserver.ts';

/** Whatever came back: a Status, an object or a list; tests read the fields they expect. */
export interface WireBody {
  kind?: string;
  apiVersion?: string;
  metadata: { name?: string; namespace?: string; resourceVersion?: string; uid?: string; generation?: number; continue?: string; deletionTimestamp?: string; [key: string]: unknown };
  spec?: Record<string, unknown>;
  items?: WireBody[];
  status?: unknown;
  message?: string;
  reason?: string;
  code?: number;
  details?: { name?: string; group?: string; kind?: string; uid?: string; causes?: Array<{ field?: string; message?: string; reason?: string }> };
}

export interface WireAnswer {
  code: number;
  body: WireBody;
}

export interface WireOptions {
  token?: string | null;
  contentType?: string;
  client?: HttpClient;
}

export const IPPOOLS = '/apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/kube-system/ippools';
export const RESERVATIONS = '/apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/kube-system/overlappingrangeipreservations';

export function wire(server: KubeApiServer): (method: HttpMethod, path: string, body?: unknown, options?: WireOptions) => Promise<WireAnswer> {
  const shared = new HttpClient({ ca: server.pki.ca.cert });
  return async (method, path, body, options = {}) => {
    const client = options.client ?? shared;
    const headers: Record<string, string> = {};
    const token = options.token === undefined ? 'admin-token' : options.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
    const res = await client.request({ method, url: server.url + path, headers, deadline: Date.now() + 5000, ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
    return { code: res.status, body: JSON.parse(res.body) as WireBody };
  };
}

export const ippool = (name: string, allocations: Record<string, unknown> = {}, range = '10.0.0.0/24'): Record<string, unknown> => ({
  apiVersion: 'whereabouts.cni.cncf.io/v1alpha1',
  kind: 'IPPool',
  metadata: { name },
  spec: { range, allocations },
});
