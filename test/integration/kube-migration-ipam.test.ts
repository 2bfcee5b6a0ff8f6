// Taking over a live whereabouts installation through the IPAM itself: whereabouts' IPPools and
// OverlappingRangeIPReservations (test/fixtures/whereabouts, its exact format) on the in-test API
// server, and the BUILT `whereabouts` executable run as Multus runs it (CNI_ARGS with the pod's
// namespace, name and UID; a kubeconfig pointing at the server). ADD of every fixture pod and
// interface returns the address whereabouts gave it; DEL releases it and its reservation; every lease
// Underlay writes stays readable to whereabouts v0.9 (the IPPool entry {id, podref, ifname} under the
// decimal offset, and the reservation named after the address). Run twice: with Underlay's CRDs
// applied over whereabouts' (the migration the deploy component does), and with whereabouts' own
// pruning CRDs still in force.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatAddr, parseCidr } from '../../ipam/alloc/addr.ts';
import { poolName, reservationName } from '../../ipam/alloc/names.ts';
import { isSharded, SHARD_SPAN } from '../../ipam/alloc/shards.ts';
import type { Allocation, PoolRecord, Reservation } from '../../ipam/store/types.ts';
import { cni, requireBuild } from '../helpers/exec.ts';
import { crdFiles, KubeApiServer, UNDERLAY_CRDS, WHEREABOUTS_CRDS } from '../helpers/kube-apiserver.ts';
import { kubeconfigFile } from '../helpers/kube-pods.ts';
import { loadCrd, validate } from '../helpers/kube-schema.ts';

interface Item<S> { metadata: { name: string; namespace: string }; spec: S }
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'whereabouts');
const fixture = <S>(file: string): Array<Item<S>> => (JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')) as { items: Array<Item<S>> }).items;
const POOLS = fixture<PoolRecord>('ippools.json');
const RESERVATIONS = fixture<Reservation>('overlappingrangeipreservations.json');
const IPPOOLS = 'ippools.whereabouts.cni.cncf.io';
const ORIPS = 'overlappingrangeipreservations.whereabouts.cni.cncf.io';
const schemaOf = (plural: string) => crdFiles(WHEREABOUTS_CRDS).map(loadCrd).find((c) => c.plural === plural)!.schema;

/** One attachment: a pod's interface on one pool, with the address it has (or is expected to get). */
interface Attachment {
  pool: string;
  range: string;
  networkName: string;
  offset: bigint;
  podref: string;
  ifname: string;
  /** The whereabouts lease it takes over, if any. */
  previous?: Allocation;
}

const networkOf = (pool: Item<PoolRecord>): string => pool.metadata.name.slice(0, pool.metadata.name.length - poolName('', pool.spec.range).length).replace(/-$/, '');
const addressOf = (a: Pick<Attachment, 'range' | 'offset'>): string => {
  const cidr = parseCidr(a.range)!;
  return formatAddr(cidr.family, cidr.network + a.offset);
};
const reservationOf = (a: Attachment): string => {
  const cidr = parseCidr(a.range)!;
  return reservationName(a.networkName, cidr.family, cidr.network + a.offset);
};
/** Whether the attachment's lease lives beyond shard 0 of a big pool (another record than whereabouts' IPPool). */
const beyondShard0 = (a: Attachment): boolean => isSharded(parseCidr(a.range)!) && a.offset >= SHARD_SPAN;

/** Every lease in the fixtures, as the attachment whose ADD must get it back. */
const FIXTURE_ATTACHMENTS: Attachment[] = POOLS.flatMap((pool) => Object.entries(pool.spec.allocations).map(([offset, lease]) => ({
  pool: pool.metadata.name, range: pool.spec.range, networkName: networkOf(pool), offset: BigInt(offset), podref: lease.podref, ifname: lease.ifname ?? 'net1', previous: lease,
})));

/** New pods: the lowest free address of each pool. */
const NEW_ATTACHMENTS: Attachment[] = [
  { pool: '192.168.2.0-24', range: '192.168.2.0/24', networkName: '', offset: 3n, podref: 'default/new-0', ifname: 'net1' },
  { pool: '10.20.0.0-24', range: '10.20.0.0/24', networkName: '', offset: 1n, podref: 'default/new-1', ifname: 'net1' },
  { pool: '10.10.0.0-20', range: '10.10.0.0/20', networkName: '', offset: 2n, podref: 'batch/new-2', ifname: 'net1' },
  { pool: 'fd00---64', range: 'fd00::/64', networkName: '', offset: 1n, podref: 'default/new-3', ifname: 'net3' },
];

const uids = new Map<string, string>();
const uidOf = (podref: string): string => uids.get(podref) ?? (uids.set(podref, randomUUID()), uids.get(podref)!);

function call(verb: 'ADD' | 'DEL', a: Attachment, kubeconfig: string, containerId: string) {
  const [namespace, name] = a.podref.split('/');
  const ipam = { type: 'whereabouts', range: a.range, ...(a.networkName && { network_name: a.networkName }), kubernetes: { kubeconfig } };
  return cni('whereabouts', {
    command: verb, containerId, netns: '/var/run/netns/migrated', ifName: a.ifname,
    args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=${containerId};K8S_POD_UID=${uidOf(a.podref)}`,
    config: { cniVersion: '1.1.0', name: 'migrated', type: 'whereabouts', ipam },
  });
}

const containerOf = (a: Attachment): string => `${a.podref.replace('/', '-')}-${a.ifname}-sandbox2`;

/** A fresh server holding whereabouts' objects, with Underlay's CRDs applied over whereabouts' or not. */
async function whereaboutsCluster(underlayCrds: boolean): Promise<{ server: KubeApiServer; kubeconfig: string; close: () => Promise<void> }> {
  const server = await KubeApiServer.start({ crds: crdFiles(WHEREABOUTS_CRDS), namespaces: ['default', 'kube-system', 'apps', 'batch'] });
  const as = (i: Item<unknown>) => ({ metadata: { name: i.metadata.name, namespace: i.metadata.namespace }, spec: i.spec });
  for (const p of POOLS) server.seed(IPPOOLS, as(p));
  for (const r of RESERVATIONS) server.seed(ORIPS, as(r));
  if (underlayCrds) server.loadCrds(crdFiles(UNDERLAY_CRDS));
  const file = kubeconfigFile(server, 'kube-system');
  return { server, kubeconfig: file.path, close: async () => { file.cleanup(); await server.close(); } };
}

/** What whereabouts v0.9 reads of the address: its IPPool's entry and its reservation, in its own format. */
function expectTakenForWhereabouts(server: KubeApiServer, a: Attachment, id: string, exact: boolean): void {
  const pool = server.object(IPPOOLS, 'kube-system', a.pool);
  expect(pool, a.pool).toBeDefined();
  expect(validate(pool!, schemaOf('ippools'))).toEqual([]);
  const entry = (pool!.spec as PoolRecord).allocations[a.offset.toString()];
  const mine = { id, podref: a.podref, ifname: a.ifname };
  if (exact) expect(entry, `${addressOf(a)} in ${a.pool}`).toEqual(mine);
  else expect(entry, `${addressOf(a)} in ${a.pool}`).toMatchObject(mine);
  const reservation = server.object(ORIPS, 'kube-system', reservationOf(a));
  expect(reservation, reservationOf(a)).toBeDefined();
  expect(validate(reservation!, schemaOf('overlappingrangeipreservations'))).toEqual([]);
  expect(reservation!.spec).toMatchObject({ containerid: id, podref: a.podref, ifname: a.ifname });
}

const resultAddress = (run: { json: Record<string, unknown> | undefined }): string | undefined => (run.json?.ips as Array<{ address: string }> | undefined)?.[0]?.address;

describe("taking over whereabouts' leases through the IPAM, with Underlay's CRDs applied", () => {
  let cluster: Awaited<ReturnType<typeof whereaboutsCluster>>;
  beforeAll(async () => {
    requireBuild();
    cluster = await whereaboutsCluster(true);
  });
  afterAll(() => cluster.close());
  const all = [...FIXTURE_ATTACHMENTS, ...NEW_ATTACHMENTS];

  it('ADD of every fixture pod and interface returns the address it already has; new pods get the lowest free one', async () => {
    for (const a of all) {
      const run = await call('ADD', a, cluster.kubeconfig, containerOf(a));
      expect([run.exitCode, run.stdout], `${a.podref} ${a.ifname} in ${a.pool}`).toEqual([0, expect.any(String) as unknown]);
      expect(resultAddress(run)).toBe(`${addressOf(a)}/${a.range.split('/')[1]}`);
    }
  });

  it('every address leased in whereabouts\' IPPool is still there for whereabouts, now under the new container, with its reservation', () => {
    for (const a of all) expectTakenForWhereabouts(cluster.server, a, containerOf(a), false);
  });

  // A big pool whereabouts wrote stays its one IPPool (lease/pool.ts): leases beyond its first 1,024
  // addresses, old and new, are where a whereabouts still running beside Underlay reads them.
  it('leases of a big pool beyond its first 1,024 addresses stay in the IPPool whereabouts reads', () => {
    const beyond = all.filter(beyondShard0);
    expect(beyond.map(addressOf).sort()).toEqual(['10.10.15.254', '10.10.5.220', 'fd00::1:0']);
    for (const a of beyond) expectTakenForWhereabouts(cluster.server, a, containerOf(a), false);
  });

  it('DEL releases each lease and its reservation (and a big pool\'s claim): nothing is left', async () => {
    for (const a of all) {
      const run = await call('DEL', a, cluster.kubeconfig, containerOf(a));
      expect([run.exitCode, run.stdout], `${a.podref} ${a.ifname}`).toEqual([0, '']);
      expect(cluster.server.object(ORIPS, 'kube-system', reservationOf(a)), reservationOf(a)).toBeUndefined();
    }
    const pools = cluster.server.store.list(cluster.server.resource(IPPOOLS), 'kube-system', { labelSelector: null, fieldSelector: null, limit: undefined, continueToken: null });
    for (const p of pools.items as Array<{ metadata: { name: string }; spec: PoolRecord }>) expect(p.spec.allocations, p.metadata.name).toEqual({});
    const left = cluster.server.store.list(cluster.server.resource(ORIPS), 'kube-system', { labelSelector: null, fieldSelector: null, limit: undefined, continueToken: null });
    expect(left.items).toEqual([]);
    const claims = cluster.server.store.list(cluster.server.resource('ipleaseclaims.ipam.underlay.io'), 'kube-system', { labelSelector: null, fieldSelector: null, limit: undefined, continueToken: null });
    expect(claims.items).toEqual([]);
  });
});

describe("taking over whereabouts' leases through the IPAM, with whereabouts' own pruning CRDs in force", () => {
  let cluster: Awaited<ReturnType<typeof whereaboutsCluster>>;
  beforeAll(async () => {
    requireBuild();
    cluster = await whereaboutsCluster(false);
  });
  afterAll(() => cluster.close());
  // Big pools that whereabouts wrote stay one IPPool each, so they need none of Underlay's own kinds.
  const small = [...FIXTURE_ATTACHMENTS, ...NEW_ATTACHMENTS];

  it('ADD returns each address it already has, and every lease is exactly whereabouts\' format', async () => {
    for (const a of small) {
      const run = await call('ADD', a, cluster.kubeconfig, containerOf(a));
      expect(run.exitCode, `${a.podref} ${a.ifname} in ${a.pool}: ${run.stdout}`).toBe(0);
      expect(resultAddress(run)).toBe(`${addressOf(a)}/${a.range.split('/')[1]}`);
      expect(run.stderr).toMatch(/drops Underlay's lease fields|^$/);
    }
    for (const a of small) expectTakenForWhereabouts(cluster.server, a, containerOf(a), true);
  });

  it("a big pool Underlay would create in shards is refused with a message that names Underlay's CRDs", async () => {
    const fresh: Attachment = { pool: '10.30.0.0-20', range: '10.30.0.0/20', networkName: '', offset: 1n, podref: 'default/fresh', ifname: 'net1' };
    const run = await call('ADD', fresh, cluster.kubeconfig, containerOf(fresh));
    expect(run.exitCode).not.toBe(0);
    expect(String(run.json?.msg)).toMatch(/is not served: apply Underlay's CRDs \(deploy\/crds\)/);
    expect(cluster.server.object(IPPOOLS, 'kube-system', fresh.pool)).toBeUndefined();
  });

  it('DEL releases each lease and its reservation', async () => {
    for (const a of small) {
      const run = await call('DEL', a, cluster.kubeconfig, containerOf(a));
      expect([run.exitCode, run.stdout]).toEqual([0, '']);
      expect((cluster.server.object(IPPOOLS, 'kube-system', a.pool)!.spec as PoolRecord).allocations[a.offset.toString()]).toBeUndefined();
      expect(cluster.server.object(ORIPS, 'kube-system', reservationOf(a))).toBeUndefined();
    }
  });
});
