// The Kubernetes store: the IPAM's records as objects in the kubeconfig context's namespace, in
// whereabouts' own CRDs wherever whereabouts reads them, so a live whereabouts installation can be
// taken over (and given back) without re-addressing a pod.
//
// Where each record lives (records.ts):
//   - Pools and their shards are IPPools, spec {range, allocations} exactly as whereabouts v0.9 writes
//     it: allocations keyed by the decimal offset from the network address, each {id, podref, ifname}.
//     Shard 0 of a big pool carries the pool's own whereabouts name, and every shard's offsets are
//     global, so whereabouts sees every address we lease there as taken.
//   - Address reservations are OverlappingRangeIPReservations named after the address, as whereabouts
//     names them, spec {containerid, podref, ifname}.
//   - Our extra fields stay in those specs, next to whereabouts' fields: since/network/poduid on a
//     lease, since/poduid/networkname on a reservation. deploy/crds installs whereabouts' two CRDs as
//     SUPERSET schemas (same group, kinds, names, required fields; our fields added as optional, and
//     x-kubernetes-preserve-unknown-fields so fields of a later Underlay or whereabouts survive too).
//     Not annotations: a lease's fields would then live apart from the lease, one map per pool that
//     every change must keep in step with the allocations, for no gain in safety: one PUT writes a
//     whole object either way.
//   - Claims and pool indexes are kinds of our own (group ipam.underlay.io): whereabouts never reads
//     them, their meaning hangs on fields (offset, hints) that whereabouts' schemas would prune, and
//     whereabouts' reconciler would take a claim stored as a reservation for the reservation of an
//     address no pod has, and delete it.
// Under whereabouts' own CRDs (deploy/crds not applied, or re-applied over by a whereabouts upgrade)
// kube-apiserver prunes our fields on write and on read: records then read back without them, which
// the IPAM must (and does) treat as "unknown"; the first write that loses them logs a warning. Our
// own kinds are then not served: reads and listings find no claims or indexes, and writing one fails
// with a message that names the missing CRD.
//
// version = metadata.resourceVersion. One object per write, so atomicWrites = 1: create is a POST
// (409 AlreadyExists: a conflict), replace a PUT carrying the resourceVersion read (409 Conflict, or
// 404: a conflict), delete a DELETE with preconditions.resourceVersion (409 or 404: a conflict). A PUT
// replaces metadata too, so labels, annotations, finalizers and owner references seen at that version
// are sent back. Object names must be lowercase RFC 1123 subdomains: checked before any request.
import { Code, CniError } from '../../../lib/cni/errors.ts';
import { KubeClient, resourceName, type KubeObject, type ResourceType } from '../../../lib/kube/client.ts';
import { KubeError } from '../../../lib/kube/errors.ts';
import { inClusterConnection, loadKubeconfig, type InClusterOptions, type KubeConnection } from '../../../lib/kube/kubeconfig.ts';
import { objectNameProblem } from '../../../lib/kube/names.ts';
import { log } from '../../../lib/log.ts';
import { StoreUnavailable, type IpamStore, type Named, type PoolRecord, type Reservation, type Versioned, type Write } from '../types.ts';
import * as R from './records.ts';

export interface KubernetesStoreOptions {
  /** A kubeconfig file (whereabouts' kubernetes.kubeconfig); without one, the pod's service account. */
  kubeconfig?: string | undefined;
  /** whereabouts' kubernetes.k8s_api_root. */
  apiRoot?: string | undefined;
  inCluster?: InClusterOptions;
}

export async function openKubernetesStore(options: KubernetesStoreOptions): Promise<KubernetesStore> {
  const connection = options.kubeconfig ? await loadKubeconfig(options.kubeconfig, { apiRoot: options.apiRoot }) : inClusterConnection(options.inCluster);
  return new KubernetesStore(connection);
}

/** The object ping() dry-runs: a name no whereabouts pool can have (those end in "-<prefix>"). */
const PING_NAME = 'underlay-ping';
let warnedPruning = false;

export class KubernetesStore implements IpamStore {
  readonly description: string;
  readonly atomicWrites = 1;
  readonly sharedByNodes = true;
  private readonly client: KubeClient;
  private readonly namespace: string;
  /** Metadata a PUT must send back, by kind and name, with the resourceVersion it was seen at. */
  private readonly carried = new Map<string, { version: string; meta: R.CarriedMeta }>();

  constructor(connection: KubeConnection) {
    this.client = new KubeClient(connection);
    this.namespace = connection.namespace;
    this.description = `Kubernetes API at ${connection.server} (namespace ${connection.namespace})`;
  }

  /** HTTP requests sent so far. */
  get requests(): number {
    return this.client.requests;
  }

  private checkName(kind: ResourceType, name: string): void {
    const problem = objectNameProblem(name);
    if (problem === undefined) return;
    throw new CniError(
      Code.InvalidConfig,
      `Kubernetes store: ${JSON.stringify(name)} cannot be the name of ${kind.kind} object: ${problem}. ` +
        'The name is made of ipam.network_name and the range or address: with the Kubernetes store, network_name must be lowercase letters, digits, "-" and ".", and short enough',
    );
  }

  /** Runs one API call: a failure that may pass becomes StoreUnavailable, as the interface asks. */
  private async call<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof KubeError && err.mayPass) throw new StoreUnavailable(err.message);
      throw err;
    }
  }

  private remember(kind: ResourceType, object: KubeObject): void {
    const key = `${kind.plural}/${object.metadata.name}`;
    const meta = R.carriedMeta(object);
    if (meta && object.metadata.resourceVersion) this.carried.set(key, { version: object.metadata.resourceVersion, meta });
    else this.carried.delete(key);
  }

  private versionOf(kind: ResourceType, object: KubeObject): string {
    const version = object.metadata.resourceVersion;
    if (!version) throw new CniError(Code.IoFailure, `${this.description}: ${kind.kind} ${JSON.stringify(object.metadata.name)} has no resourceVersion`);
    return version;
  }

  private async read<T>(kind: ResourceType, name: string, deadline: number, decode: (k: ResourceType, o: KubeObject) => T): Promise<Versioned<T> | undefined> {
    this.checkName(kind, name);
    try {
      const object = await this.call(() => this.client.get(kind, name, deadline));
      this.remember(kind, object);
      return { value: decode(kind, object), version: this.versionOf(kind, object) };
    } catch (err) {
      // A kind that is not served holds no objects (see the header): absent, like a missing object.
      if (err instanceof KubeError && (err.outcome === 'notFound' || err.outcome === 'notServed')) return undefined;
      throw err;
    }
  }

  readPool(name: string, deadline: number): Promise<Versioned<PoolRecord> | undefined> {
    return this.read(R.poolKind(name), name, deadline, R.poolOf);
  }

  readReservation(name: string, deadline: number): Promise<Versioned<Reservation> | undefined> {
    return this.read(R.reservationKind(name), name, deadline, R.reservationOf);
  }

  /** One LIST per kind; only the names each kind is for (as reads route them), by prefix, in name order. */
  private async listKinds<T>(
    kinds: ResourceType[], route: (name: string) => ResourceType, prefix: string, deadline: number, decode: (k: ResourceType, o: KubeObject) => T, withCreated = false,
  ): Promise<Array<Named<T>>> {
    const lists = await Promise.all(kinds.map(async (kind) => {
      try {
        return { kind, items: (await this.call(() => this.client.list(kind, deadline))).items };
      } catch (err) {
        if (err instanceof KubeError && err.outcome === 'notServed') return { kind, items: [] };
        throw err;
      }
    }));
    const out: Array<Named<T>> = [];
    for (const { kind, items } of lists) {
      for (const object of items) {
        const { name } = object.metadata;
        if (!name.startsWith(prefix) || route(name) !== kind) continue;
        this.remember(kind, object);
        const created = withCreated ? object.metadata.creationTimestamp : undefined;
        out.push({ name, value: decode(kind, object), version: this.versionOf(kind, object), ...(typeof created === 'string' && { created }) });
      }
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  listPools(prefix: string, deadline: number): Promise<Array<Named<PoolRecord>>> {
    return this.listKinds([R.IPPOOL, R.POOL_INDEX], R.poolKind, prefix, deadline, R.poolOf);
  }

  listReservations(prefix: string, deadline: number): Promise<Array<Named<Reservation>>> {
    return this.listKinds([R.ADDRESS_RESERVATION, R.LEASE_CLAIM], R.reservationKind, prefix, deadline, R.reservationOf, true);
  }

  async commit(writes: ReadonlyArray<Write>, deadline: number): Promise<Array<string | undefined> | undefined> {
    if (writes.length === 0) return [];
    if (writes.length > this.atomicWrites) {
      throw new CniError(Code.Internal, `${this.description}: commit of ${writes.length} writes, but this store applies at most ${this.atomicWrites} at once`);
    }
    const write = writes[0]!;
    const kind = write.kind === 'pool' ? R.poolKind(write.name) : R.reservationKind(write.name);
    this.checkName(kind, write.name);
    try {
      if (write.value === null) {
        await this.call(() => this.client.delete(kind, write.name, deadline, { resourceVersion: write.expected }));
        this.carried.delete(`${kind.plural}/${write.name}`);
        return [undefined];
      }
      const stored = await this.call(() => this.put(kind, write.name, write.value, write.expected, deadline));
      if (write.kind === 'pool' && kind === R.IPPOOL && !warnedPruning && R.prunedLeaseFields(write.value, stored)) {
        warnedPruning = true;
        log.warn(`${this.description}: the IPPool CRD in force drops Underlay's lease fields (since, network, poduid, node); apply Underlay's deploy/crds to keep them`);
      }
      this.remember(kind, stored);
      return [this.versionOf(kind, stored)];
    } catch (err) {
      if (!(err instanceof KubeError)) throw err;
      switch (err.outcome) {
        case 'alreadyExists':
        case 'conflict':
          return undefined;
        case 'notFound':
          // Gone since it was read: the expectation no longer holds. (A create never gets here.)
          return undefined;
        case 'tooLarge':
          throw this.tooLarge(kind, write, err);
        case 'notServed':
          throw new CniError(Code.IoFailure, `${this.description}: ${resourceName(kind)} is not served: apply Underlay's CRDs (deploy/crds) to the cluster (${err.message})`);
        default:
          throw err;
      }
    }
  }

  private put(kind: ResourceType, name: string, value: PoolRecord | Reservation, expected: string | undefined, deadline: number): Promise<KubeObject> {
    if (expected === undefined) return this.client.create(kind, R.objectFor(name, this.namespace, value), deadline);
    const seen = this.carried.get(`${kind.plural}/${name}`);
    const carried = seen?.version === expected ? seen.meta : undefined;
    return this.client.replace(kind, R.objectFor(name, this.namespace, value, expected, carried), deadline);
  }

  private tooLarge(kind: ResourceType, write: Write, err: KubeError): CniError {
    const bytes = Buffer.byteLength(JSON.stringify(write.value));
    const leases = write.kind === 'pool' && write.value ? ` with ${Object.keys(write.value.allocations).length} allocations` : '';
    return new CniError(
      Code.IoFailure,
      `${this.description}: ${kind.kind} ${JSON.stringify(write.name)}${leases} is ${Math.round(bytes / 1024)} KiB of JSON, too large for the API server ` +
        `(etcd takes at most 1.5 MiB per object): ${err.message}`,
    );
  }

  async ping(deadline: number): Promise<void> {
    // A dry-run create is authorized, admitted and checked against etcd like a real one, and stores nothing.
    const probe = R.objectFor(PING_NAME, this.namespace, { range: '0.0.0.0/32', allocations: {} });
    try {
      await this.call(() => this.client.create(R.IPPOOL, probe, deadline, { dryRun: true }));
    } catch (err) {
      if (err instanceof KubeError && err.outcome === 'alreadyExists') return;
      throw err;
    }
  }

  async tidy(_olderThanMs: number, _deadline: number): Promise<number> {
    // Nothing is left behind by a dead writer: every write is one request, applied whole or not at all.
    return 0;
  }

  async close(): Promise<void> {
    this.client.close();
  }
}
