// Which Kubernetes kind holds each record of the store, and how a record and an object map onto each
// other. The record IS the object's spec, field for field (see store.ts for why):
//   pools and shards      IPPool.whereabouts.cni.cncf.io/v1alpha1                   spec {range, allocations}
//   address reservations  OverlappingRangeIPReservation.whereabouts.cni.cncf.io     spec {containerid, podref, ifname, ...}
//   pool indexes          IPPoolIndex.ipam.underlay.io/v1alpha1   ("<pool>-index")  spec {range, allocations, hints}
//   claims                IPLeaseClaim.ipam.underlay.io/v1alpha1  ("<pool>.claim.<32 hex>")  spec {podref, ifname, offset, ...}
// The kind follows from the name alone, so every read, write and listing of a name agrees on it.
import { Code, CniError } from '../../../lib/cni/errors.ts';
import type { KubeObject, ResourceType } from '../../../lib/kube/client.ts';
import type { PoolRecord, Reservation } from '../types.ts';

const WHEREABOUTS = { group: 'whereabouts.cni.cncf.io', version: 'v1alpha1', namespaced: true } as const;
const UNDERLAY = { group: 'ipam.underlay.io', version: 'v1alpha1', namespaced: true } as const;

export const IPPOOL: ResourceType = { ...WHEREABOUTS, plural: 'ippools', kind: 'IPPool' };
export const ADDRESS_RESERVATION: ResourceType = { ...WHEREABOUTS, plural: 'overlappingrangeipreservations', kind: 'OverlappingRangeIPReservation' };
export const POOL_INDEX: ResourceType = { ...UNDERLAY, plural: 'ippoolindexes', kind: 'IPPoolIndex' };
export const LEASE_CLAIM: ResourceType = { ...UNDERLAY, plural: 'ipleaseclaims', kind: 'IPLeaseClaim' };

// As ipam/alloc/shards.ts names them: pool names end in "-<prefix length>", so a whereabouts pool never
// matches either pattern.
const INDEX_NAME = /-\d+-index$/;
const CLAIM_NAME = /\.claim\.[0-9a-f]{32}$/;

export const poolKind = (name: string): ResourceType => (INDEX_NAME.test(name) ? POOL_INDEX : IPPOOL);
export const reservationKind = (name: string): ResourceType => (CLAIM_NAME.test(name) ? LEASE_CLAIM : ADDRESS_RESERVATION);

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

const malformed = (kind: ResourceType, name: string, why: string): CniError =>
  new CniError(Code.IoFailure, `${kind.kind} ${JSON.stringify(name)} is not a record this store can read: ${why}`);

/**
 * A pool from its object. A hand check, not zod: it runs over every allocation of a shard on every
 * read. Allocations are optional only in the sense that an object without them reads as empty.
 */
export function poolOf(kind: ResourceType, object: KubeObject): PoolRecord {
  const { name } = object.metadata;
  const spec = object.spec;
  if (!isRecord(spec) || typeof spec.range !== 'string') throw malformed(kind, name, 'spec.range is missing');
  const allocations = spec.allocations ?? {};
  if (!isRecord(allocations)) throw malformed(kind, name, 'spec.allocations is not a map');
  for (const [key, a] of Object.entries(allocations)) {
    if (!isRecord(a) || typeof a.id !== 'string' || typeof a.podref !== 'string') throw malformed(kind, name, `spec.allocations[${key}] needs id and podref`);
  }
  return { ...spec, range: spec.range, allocations } as PoolRecord;
}

export function reservationOf(kind: ResourceType, object: KubeObject): Reservation {
  const { name } = object.metadata;
  const spec = object.spec;
  if (!isRecord(spec) || typeof spec.podref !== 'string') throw malformed(kind, name, 'spec.podref is missing');
  return spec as Reservation;
}

/** The metadata a replace must send back, or the server would drop it: PUT replaces the whole object. */
export type CarriedMeta = Pick<KubeObject['metadata'], 'labels' | 'annotations' | 'finalizers' | 'ownerReferences'>;

export function carriedMeta(object: KubeObject): CarriedMeta | undefined {
  const { labels, annotations, finalizers, ownerReferences } = object.metadata;
  if (!labels && !annotations && !finalizers && !ownerReferences) return undefined;
  return { ...(labels && { labels }), ...(annotations && { annotations }), ...(finalizers && { finalizers }), ...(ownerReferences && { ownerReferences }) };
}

export function objectFor(name: string, namespace: string, spec: PoolRecord | Reservation, resourceVersion?: string, carried?: CarriedMeta): KubeObject {
  return { metadata: { ...carried, name, namespace, ...(resourceVersion !== undefined && { resourceVersion }) }, spec };
}

const OURS_ON_LEASES = ['since', 'network', 'poduid', 'node'] as const;

/**
 * Whether the server dropped Underlay's fields from the leases it was sent: the sign of whereabouts'
 * own CRD in force instead of the one in deploy/crds.
 */
export function prunedLeaseFields(sent: PoolRecord, stored: KubeObject): boolean {
  const back = isRecord(stored.spec) && isRecord(stored.spec.allocations) ? stored.spec.allocations : {};
  for (const [key, lease] of Object.entries(sent.allocations)) {
    const field = OURS_ON_LEASES.find((f) => lease[f] !== undefined);
    if (field === undefined) continue;
    const got = back[key];
    return !isRecord(got) || got[field] === undefined;
  }
  return false;
}
