// Pods on the simulated API server in the states a reconciler must tell apart, a kubeconfig file for
// it, and the grants of deploy/'s RBAC as its rules, for tests that run the IPAM or `underlay
// reconcile` against it.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';
import type { KubeApiServer, Rule } from './kube-apiserver.ts';

export interface PodSpec {
  phase?: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  /** The node it is scheduled to; none: not scheduled yet (deleting it is then immediate). */
  nodeName?: string;
  /** Addresses for Multus' network-status annotation; none: no annotation (networks not up yet). */
  addresses?: string[];
  annotations?: Record<string, string>;
}

const NETWORK_STATUS = 'k8s.v1.cni.cncf.io/network-status';

export const networkStatus = (addresses: ReadonlyArray<string>): string =>
  JSON.stringify([
    { name: 'default/cluster', interface: 'eth0', ips: ['10.244.0.9'], default: true },
    { name: 'default/macvlan', interface: 'net1', ips: addresses },
  ]);

/** Creates the pod and returns its UID (the server makes one, as kube-apiserver does). */
export function createPod(server: KubeApiServer, podref: string, spec: PodSpec = {}): string {
  const [namespace, name] = podref.split('/') as [string, string];
  const annotations = { ...spec.annotations, ...(spec.addresses && { [NETWORK_STATUS]: networkStatus(spec.addresses) }) };
  const pod = server.seed('pods', {
    metadata: { name, namespace, ...(Object.keys(annotations).length > 0 && { annotations }) },
    spec: { containers: [{ name: 'app', image: 'busybox' }], ...(spec.nodeName !== undefined && { nodeName: spec.nodeName }) },
    status: { phase: spec.phase ?? (spec.nodeName ? 'Running' : 'Pending') },
  });
  return pod.metadata.uid!;
}

/** What Multus does once the pod's networks are up: writes the network-status annotation. */
export function setNetworkStatus(server: KubeApiServer, podref: string, addresses: ReadonlyArray<string>): void {
  const [namespace, name] = podref.split('/') as [string, string];
  const pods = server.resource('pods');
  const pod = server.store.get(pods, namespace, name);
  pod.metadata.annotations = { ...pod.metadata.annotations, [NETWORK_STATUS]: networkStatus(addresses) };
  server.store.replace(pods, namespace, name, pod);
}

/**
 * kubectl delete: a scheduled pod becomes Terminating (deletionTimestamp) until the kubelet is done
 * (`finished`: then its object goes); with `force` (--grace-period=0 --force, a lost node's pods) the
 * object goes at once.
 */
export function deletePod(server: KubeApiServer, podref: string, how: { force?: boolean; finished?: boolean } = {}): void {
  const [namespace, name] = podref.split('/') as [string, string];
  const pods = server.resource('pods');
  server.store.delete(pods, namespace, name, how.force ? { gracePeriodSeconds: 0 } : {});
  if (how.finished) server.store.forget(pods, namespace, name);
}

export const podExists = (server: KubeApiServer, podref: string): boolean => {
  const [namespace, name] = podref.split('/') as [string, string];
  return server.object('pods', namespace, name) !== undefined;
};

/** A kubeconfig file for the server (admin token), in a temp dir removed by `cleanup`. */
export function kubeconfigFile(server: KubeApiServer, namespace = 'kube-system', user: Record<string, unknown> = { token: 'admin-token' }): { path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'underlay-kubeconfig-'));
  const path = join(dir, 'kubeconfig');
  writeFileSync(path, server.kubeconfig(user, namespace), { mode: 0o600 });
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

interface RbacDoc {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>;
}

/**
 * The grants of a manifest's Roles and ClusterRoles (deploy/rbac-*.yaml) as the server's rules for
 * user `who`: a Role's in its namespace (or `roleNamespace`, as a kustomize component moves it), a
 * ClusterRole's everywhere. The bindings are taken as given: every role of the file is `who`'s.
 */
export function rulesOf(manifest: string, who: string, roleNamespace?: string): Rule[] {
  const docs = loadAll(readFileSync(manifest, 'utf8')) as RbacDoc[];
  return docs.filter((d) => d.kind === 'Role' || d.kind === 'ClusterRole').flatMap((d) => (d.rules ?? []).map((rule): Rule => ({
    who,
    verbs: rule.verbs,
    resources: rule.resources.flatMap((r) => rule.apiGroups.map((g) => (g ? `${r}.${g}` : r))),
    ...(d.kind === 'Role' && { namespaces: [roleNamespace ?? d.metadata.namespace!] }),
  })));
}
