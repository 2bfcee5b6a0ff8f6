// A KubernetesStore on the simulated API server, as a test (or the store conformance suite) opens it.
import { KubernetesStore } from '../../ipam/store/kubernetes/store.ts';
import type { KubeApiServer } from './kube-apiserver.ts';

export function storeOn(server: KubeApiServer, options: { namespace?: string; token?: string } = {}): KubernetesStore {
  const token = options.token ?? 'admin-token';
  return new KubernetesStore({ server: server.url, namespace: options.namespace ?? 'kube-system', tls: { ca: server.pki.ca.cert }, token: () => token, source: 'test' });
}
