// Adversarial review of the lease protocols (ipam/lease, ipam/gc, the plugin's verbs): interleavings
// forced with the fault wrappers of test/store/faults.ts, on each store of test/helpers/stores.ts.
// Each test's comment tells the interleaving that once broke a promise (an address twice, a lease
// leaked or lost) and what must hold instead.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Claimant } from '../../ipam/alloc/allocator.ts';
import { poolName } from '../../ipam/alloc/names.ts';
import { resolveRange, type RangeInput } from '../../ipam/alloc/ranges.ts';
import { shardName } from '../../ipam/alloc/shards.ts';
import { opsFor } from '../../ipam/lease/pool.ts';
import type { PoolTarget } from '../../ipam/lease/target.ts';
import { collectGarbage } from '../../ipam/gc/collect.ts';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { openKubernetesStore } from '../../ipam/store/kubernetes/store.ts';
import type { IpamStore, Write } from '../../ipam/store/types.ts';
import { takeStderr } from '../helpers/fixture.ts';
import { type InvocationSpec, invocation } from '../helpers/ipam-invocation.ts';
import { crdFiles, KubeApiServer, UNDERLAY_CRDS, WHEREABOUTS_CRDS } from '../helpers/kube-apiserver.ts';
import { createPod, deletePod, kubeconfigFile } from '../helpers/kube-pods.ts';
import { readPool, readReservation, soon } from '../helpers/store.ts';
import { describeEachStore } from '../helpers/stores.ts';
import { flaky, pausing } from '../store/faults.ts';

function target(input: RangeInput | string, networkName = 'blue', overlapping = true): PoolTarget {
  const range = resolveRange(typeof input === 'string' ? { range: input } : input, 'ipam');
  return { name: poolName(networkName, range.cidr), range, networkName, overlapping };
}
const pod = (id: string, extra: Partial<Claimant> = {}): Claimant => ({ id, podref: `ns/${id}`, ifname: 'net1', network: 'n', ...extra });
type Ipam = Record<string, unknown>;
const addresses = async (ipam: Ipam, spec: Partial<InvocationSpec> = {}) => (await ipamPlugin.add(invocation({ ipam, ...spec }))).ips!.map((ip) => ip.address);
const isLeaseWrite = (w: Write) => w.kind === 'pool' && !w.name.endsWith('-index');
const isReservationDelete = (w: Write | undefined) => w?.kind === 'reservation' && w.value === null;
const ops = (t: PoolTarget, store: IpamStore) => opsFor(store, t, soon());
const take = async (t: PoolTarget, store: IpamStore, who: Claimant) => (await ops(t, store)).acquire(store, t, who, soon());

describeEachStore((store) => {
  describe('choosing one record or shards (lease/pool.ts opsFor)', () => {
    // opsFor reads the index, then the pool record. Two first ADDs of a new big pool whose shard 0 holds
    // one allocatable address (range_start 10.0.3.255 = offset 1023, the last of shard 0), with
    // enable_overlapping_ranges false, so no reservation stands between them:
    //   B: opsFor reads "blue-10.0.0.0-21-index": absent.
    //   A: opsFor (no index, no pool: sharded), creates the index, leases 1023 in shard 0
    //      ("blue-10.0.0.0-21" = {1023: A}).
    //   B: opsFor reads "blue-10.0.0.0-21": present. Were it taken for a one-record pool, B's ADD would
    //      take 1024 (the lowest free offset of the whole /21) into shard 0's record, where a sharded
    //      ADD (C) never looks for it: C would get 10.0.4.0 too.
    it('two concurrent first ADDs of a big pool never take it for one record and one sharded', async () => {
      const records = await store.open(store.fresh());
      const T = target({ range: '10.0.0.0/21', range_start: '10.0.3.255' }, 'blue', false);
      const paused = pausing(records, (call) => call.method === 'readPool' && call.name === T.name);
      const b = opsFor(paused, T, soon());
      await Promise.race([paused.reached, b]); // B has read the index (absent) and is about to read the pool record
      expect((await take(T, records, pod('A'))).offset).toBe(1023n);
      paused.resume();
      const leaseB = await (await b).acquire(records, T, pod('B'), soon());
      const leaseC = await take(T, records, pod('C'));
      expect([leaseB.offset, leaseC.offset]).toEqual([1024n, 1025n]);
      expect(Object.keys((await readPool(records, T.name))!.value.allocations)).toEqual(['1023']);
      expect((await readPool(records, shardName(T.name, 1n)))!.value.allocations).toMatchObject({ 1024: { id: 'B' }, 1025: { id: 'C' } });
    });
  });

  describe("a new sandbox's ADD of a sharded lease racing the old sandbox's DEL", () => {
    // Pod ns/sts-0 (one instance) holds 10.34.0.1 in a sharded /21 under container O, with claim
    // {containerid O, offset 1}. Its sandbox is re-created: ADD N (reuse in sharded.ts) writes, one by
    // one, the reservation (-> N), the shard ({1: O} -> {1: N}), then the claim (-> N). Between the
    // last two, the old sandbox's DEL O runs: the claim names O, but offset 1 is N's now, so it
    // releases nothing, scans, and "finishes an earlier DEL" by deleting the claim (still O's). N's
    // claim swap then conflicts though its lease write applied. A retry that allocated afresh would
    // leave N two leases, {1: N} and {2: N}, one of them never released by DEL N; the retry must
    // know {1: N} as its own work and give it its claim. On etcd the three writes are one txn: the
    // DEL releases O's lease before any of N's applies, and N's retry allocates once.
    it('leaves the pod one lease, the one its claim names', async () => {
      const records = await store.open(store.fresh());
      const T = target('10.34.0.0/21');
      const O = pod('O', { podref: 'ns/sts-0', uid: 'u1' });
      const N = { ...O, id: 'N' };
      expect((await take(T, records, O)).offset).toBe(1n);
      const isClaimSwap = (w: Write) => w.kind === 'reservation' && w.name.includes('.claim.') && w.expected !== undefined;
      const paused = pausing(records, (call) => call.method === 'commit' && call.writes!.some(isClaimSwap));
      const adding = take(T, paused, N);
      await paused.reached;
      await (await opsFor(records, T, soon())).release(records, T, O, soon()); // DEL O: on etcd N's one txn has not applied, so O's lease goes
      paused.resume();
      const lease = await adding;
      const shards = await records.listPools(T.name, soon());
      const held = shards.flatMap((s) => Object.entries(s.value.allocations).filter(([, a]) => a.id === 'N').map(([k]) => k));
      expect(held).toEqual([lease.offset.toString()]);
      expect(await ops(T, records).then((o) => o.find(records, T, N, soon()))).toBe(lease.offset);
    });
  });

  describe('CNI GC on a store that more than one node shares', () => {
    // The runtime's cni.dev/valid-attachments lists the attachments of ITS node. Were every lease of
    // the network not in that list doomed, node 1's GC would free node 2's live lease of 10.30.0.2, and
    // the next ADD anywhere would get 10.30.0.2 again. The file store is node-local: its GC judges all.
    const gcOn = async (node: string | undefined, ipam: Ipam, valid: string[]) => {
      if (node === undefined) delete process.env.NODENAME;
      else process.env.NODENAME = node;
      await ipamPlugin.gc(invocation({ ipam, verb: 'GC', extra: { 'cni.dev/valid-attachments': valid.map((containerID) => ({ containerID, ifname: 'net1' })) } }));
    };
    const addOn = (node: string, ipam: Ipam, id: string) => {
      process.env.NODENAME = node;
      return addresses(ipam, { containerId: id, pod: `ns/${id}` });
    };
    const holders = async (ipam: Ipam) =>
      Object.values((await readPool(await store.open(ipam), '10.30.0.0-24'))!.value.allocations).map((a) => a.id).sort();

    it(store.kind === 'file' ? 'GC frees every lease not in the list: the store is this node\'s alone' : 'GC of one node frees its own dead leases and none of another node', async () => {
      const ipam = { type: 'whereabouts', range: '10.30.0.0/24', ...store.fresh() };
      expect(await addOn('node-1', ipam, 'n1-pod')).toEqual(['10.30.0.1/24']);
      expect(await addOn('node-2', ipam, 'n2-pod')).toEqual(['10.30.0.2/24']);
      expect(await addOn('node-1', ipam, 'n1-dead')).toEqual(['10.30.0.3/24']);
      await gcOn('node-1', ipam, ['n1-pod']);
      expect(await holders(ipam)).toEqual(store.kind === 'file' ? ['n1-pod'] : ['n1-pod', 'n2-pod']);
      expect(await addOn('node-1', ipam, 'n3-pod')).toEqual([store.kind === 'file' ? '10.30.0.2/24' : '10.30.0.3/24']);
    });

    const local = store.kind === 'file';
    it(local ? 'GC without a node name still frees dead leases: the store is this node\'s alone' : 'GC on a node whose name is unknown releases nothing, and says why', async () => {
      const ipam = { type: 'whereabouts', range: '10.30.0.0/24', ...store.fresh() };
      expect(await addOn('node-1', ipam, 'n1-dead')).toEqual(['10.30.0.1/24']);
      takeStderr();
      await gcOn(undefined, ipam, []);
      const warnings = takeStderr().join('');
      if (local) expect(warnings).not.toMatch(/node's name is unknown/);
      else expect(warnings).toMatch(/this node's name is unknown \(set NODENAME/);
      expect(await holders(ipam)).toEqual(local ? [] : ['n1-dead']);
    });
  });

  describe('an ADD whose pool write applied but whose answer was lost', () => {
    // A two-range ADD (ipRanges): the first range's commit applies, its reply is lost (flaky 'after');
    // the retry re-reads the pool and finds the lease it just wrote. Taken for one the pod "had
    // before" (existing), it would survive the rollback when the second range turns out exhausted:
    // 10.31.0.1 leased to a container whose ADD failed. A failed ADD keeps nothing it granted.
    for (const cidr of ['10.31.0.0/24', '10.31.0.0/21']) {
      it(`is reported as a new lease, so a failed ADD gives it back (${cidr})`, async () => {
        const records = await store.open(store.fresh());
        const T = target(cidr);
        const who = pod('c1');
        const lossy = flaky(records, (call) => call.method === 'commit' && (call.writes ?? []).some(isLeaseWrite), 1, 'after');
        const ops = await opsFor(lossy, T, soon());
        const lease = await ops.acquire(lossy, T, who, soon());
        expect(lossy.failed).toBe(1);
        expect(lease.offset).toBe(1n);
        await ops.rollback(records, T, lease, who, soon()); // the second range failed
        const ops2 = await opsFor(records, T, soon());
        expect(lease.existing).toBe(false);
        expect(await ops2.find(records, T, who, soon())).toBeUndefined();
      });
    }
  });
});

// whereabouts' own CRDs applied over Underlay's (a whereabouts upgrade re-applying its manifests):
// IPPool and OverlappingRangeIPReservation prune since/network/poduid and since/poduid/networkname on
// write and on read; Underlay's own kinds (claims, indexes) are still served.
describe("the Kubernetes store under whereabouts' pruning CRDs", () => {
  let server: KubeApiServer;
  let kubeconfig: { path: string; cleanup: () => void };
  beforeAll(async () => {
    server = await KubeApiServer.start({ crds: [...crdFiles(UNDERLAY_CRDS), ...crdFiles(WHEREABOUTS_CRDS)], namespaces: ['default', 'kube-system', 'apps'] });
    kubeconfig = kubeconfigFile(server, 'kube-system');
  });
  afterAll(async () => {
    kubeconfig.cleanup();
    await server.close();
  });
  const opened: IpamStore[] = [];
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()));
  });
  const open = async () => {
    const s = await openKubernetesStore({ kubeconfig: kubeconfig.path });
    opened.push(s);
    return s;
  };

  // GC spares an orphaned reservation younger than the grace period "because it may be an ADD's in
  // flight", judged by `since`, which this CRD prunes (so the store reads the object's creation time).
  // Pools 10.32.0.0/24 (A) and 10.32.0.0/25 (B) overlap in scope "blue":
  //   P (ADD in A): creates reservation blue-10.32.0.1 {containerid P}; about to write pool A.
  //   GC (any node; P's attachment is valid): lists the pools (no lease of .1), lists the
  //      reservations: blue-10.32.0.1. Judged old for want of `since`, it would be deleted, after P
  //      wrote pool A {1: P} and its ADD returned 10.32.0.1, and Q (ADD in B, where .1 is free and
  //      now unreserved) would get 10.32.0.1 too.
  it('a GC next to an ADD in flight never deletes the reservation of the lease that ADD returns', async () => {
    const records = await open();
    const A = target('10.32.0.0/24');
    const B = target('10.32.0.0/25');
    const P = pod('P');
    const paused = pausing(records, (call) => call.method === 'commit' && call.writes!.some(isLeaseWrite));
    const adding = take(A, paused, P);
    await paused.reached;
    const gcStore = pausing(records, (call) => call.method === 'commit' && isReservationDelete(call.writes?.[0]));
    const gc = collectGarbage(gcStore, [A], 'n', [{ containerID: 'P', ifname: 'net1' }], soon(), 'n1');
    await Promise.race([gcStore.reached, gc]); // a GC that deletes nothing never gets there
    paused.resume();
    expect((await adding).offset).toBe(1n);
    gcStore.resume();
    await gc;
    expect((await readReservation(records, 'blue-10.32.0.1'))?.value.containerid).toBe('P'); // fails: deleted
    expect((await take(B, records, pod('Q'))).offset).not.toBe(1n);
  });

  // With poduid pruned from the IPPool, a lease no longer says which pod instance holds it. Matched by
  // name alone, a StatefulSet pod re-created while the old one still shows in the API (terminating on a
  // lost node: it may still run) would take the old lease over at once, and two pods would run with
  // 10.33.0.1. So such a lease is the new pod's only when the API's pod of that name is the new one.
  // The claim of a sharded pool keeps its poduid (Underlay's own kind): only one-record pools are concerned.
  describe('a lease whose pod UID the CRD dropped', () => {
    const ipam = () => ({ type: 'whereabouts', range: '10.33.0.0/24', kubernetes: { kubeconfig: kubeconfig.path } });
    const args = (uid: string) => `IgnoreUnknown=1;K8S_POD_NAMESPACE=apps;K8S_POD_NAME=db-0;K8S_POD_UID=${uid}`;
    it('is not taken over by a pod re-created under its name while the old pod still exists, then is once it is gone', async () => {
      const old = createPod(server, 'apps/db-0', { nodeName: 'n1' });
      expect(await addresses(ipam(), { containerId: 'c1', args: args(old) })).toEqual(['10.33.0.1/24']);
      expect(await addresses(ipam(), { containerId: 'c2', args: args('uid-of-the-successor') })).toEqual(['10.33.0.2/24']);
      deletePod(server, 'apps/db-0', { force: true });
      const successor = createPod(server, 'apps/db-0', { nodeName: 'n2' });
      expect(await addresses(ipam(), { containerId: 'c3', args: args(successor) })).toEqual(['10.33.0.1/24']);
      deletePod(server, 'apps/db-0', { force: true });
    });
    it("goes back to the same pod's new sandbox, which the API shows as that pod", async () => {
      const pod = createPod(server, 'apps/db-0', { nodeName: 'n1' });
      const [address] = await addresses(ipam(), { containerId: 's1', args: args(pod) });
      expect(await addresses(ipam(), { containerId: 's2', args: args(pod) })).toEqual([address]);
      deletePod(server, 'apps/db-0', { force: true });
    });
  });
});
