// The pods the reconciler judges leases by, read from the Kubernetes API: one LIST across every
// namespace, and one GET per pod it is about to free an address of. Only what the judgement needs is
// kept of a pod: its UID, whether it is being deleted, and the addresses its network-status annotation
// says it has (Multus writes it once the pod's networks are up; a Pending pod may have none yet).
import { formatAddr, parseAddr } from '../alloc/addr.ts';
import { KubeClient, type KubeObject } from '../../lib/kube/client.ts';
import { KubeError } from '../../lib/kube/errors.ts';
import type { KubeConnection } from '../../lib/kube/kubeconfig.ts';
import { PODS } from '../../lib/kube/pods.ts';

export interface PodState {
  /**
   * The UIDs the pod's sandboxes carry (CNI_ARGS K8S_POD_UID): its metadata.uid, and for the mirror of
   * a static pod the static pod's own UID, which the kubelet gives the runtime instead.
   */
  uids: ReadonlySet<string>;
  /** metadata.deletionTimestamp is set: the pod is Terminating, and live until its object is gone. */
  terminating: boolean;
  phase: string;
  /** The addresses of its network-status annotation, canonical ("10.0.0.5", "fd00::5"). */
  addresses: ReadonlySet<string>;
}

/** Where the reconciler reads pods; the Kubernetes API in production, anything in a test. */
export interface PodSource {
  readonly description: string;
  /** Every pod in the cluster, by "namespace/name". */
  list(deadline: number): Promise<Map<string, PodState>>;
  /** The pod now, or undefined when the API server says it does not exist. */
  get(podref: string, deadline: number): Promise<PodState | undefined>;
  /** Requests sent so far. */
  readonly requests: number;
  close(): void;
}

/** Multus' annotation, and the name it had before Multus 4. */
const NETWORK_STATUS = ['k8s.v1.cni.cncf.io/network-status', 'k8s.v1.cni.cncf.io/networks-status'];
/** On a mirror pod: the UID of the static pod the kubelet runs. */
const MIRROR = 'kubernetes.io/config.mirror';

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** A DNS-1123 label, a "/", then a DNS-1123 subdomain: what a podref looks like when a pod was named. */
const POD_REF = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$/;

/** Whether `podref` names a pod (and not a container ID standing in for one: podman, plain containerd). */
export const isPodRef = (podref: string, containerId?: string): boolean => podref !== containerId && POD_REF.test(podref);

export const canonicalAddress = (text: string): string | undefined => {
  const addr = parseAddr(text.split('/')[0]!.trim());
  return addr && formatAddr(addr.family, addr.value);
};

/** The addresses a pod's network-status annotation lists; a malformed annotation lists none. */
export function statusAddresses(annotations: Record<string, string> | undefined): Set<string> {
  const out = new Set<string>();
  for (const key of NETWORK_STATUS) {
    const text = annotations?.[key];
    if (!text) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      continue;
    }
    if (!Array.isArray(parsed)) continue;
    for (const network of parsed) {
      if (!isRecord(network) || !Array.isArray(network.ips)) continue;
      for (const ip of network.ips) {
        const addr = typeof ip === 'string' ? canonicalAddress(ip) : undefined;
        if (addr) out.add(addr);
      }
    }
  }
  return out;
}

export function podState(object: KubeObject): PodState {
  const status = isRecord(object.status) ? object.status : {};
  const uids = new Set<string>();
  if (object.metadata.uid) uids.add(object.metadata.uid);
  const mirror = object.metadata.annotations?.[MIRROR];
  if (mirror) uids.add(mirror);
  return {
    uids,
    terminating: typeof object.metadata.deletionTimestamp === 'string' && object.metadata.deletionTimestamp !== '',
    phase: typeof status.phase === 'string' ? status.phase : '',
    addresses: statusAddresses(object.metadata.annotations),
  };
}

/** Pods through lib/kube's client, on the connection the reconciler was given. */
export class KubernetesPods implements PodSource {
  readonly description: string;
  private readonly client: KubeClient;

  constructor(connection: KubeConnection) {
    this.client = new KubeClient(connection);
    this.description = `pods of the Kubernetes API at ${connection.server}`;
  }

  get requests(): number {
    return this.client.requests;
  }

  async list(deadline: number): Promise<Map<string, PodState>> {
    const pods = new Map<string, PodState>();
    for (const item of (await this.client.list(PODS, deadline, { namespace: null })).items) {
      const namespace = item.metadata.namespace;
      if (namespace) pods.set(`${namespace}/${item.metadata.name}`, podState(item));
    }
    return pods;
  }

  async get(podref: string, deadline: number): Promise<PodState | undefined> {
    const slash = podref.indexOf('/');
    try {
      return podState(await this.client.get(PODS, podref.slice(slash + 1), deadline, podref.slice(0, slash)));
    } catch (err) {
      // A 404 for the pod is the only answer that says "gone"; any other failure confirms nothing.
      if (err instanceof KubeError && err.outcome === 'notFound') return undefined;
      throw err;
    }
  }

  close(): void {
    this.client.close();
  }
}
