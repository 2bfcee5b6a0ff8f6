// `underlay reconcile` against the in-test API server: pods in every state a cluster has (running,
// Pending without network status, Terminating, deleted, force-deleted from a lost node, StatefulSet
// pods re-created under the same name, pods created while the reconciler runs) with their leases
// written by ADDs of the IPAM, and whereabouts' own leases and reservations beside them. The
// reconciler must free exactly what belongs to pods that are gone, and a dry run must list the same
// and change nothing. The main case runs through the BUILT executable; the races run in-process, so
// the server can slip a pod and its ADD in between two of the reconciler's reads.
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { takeStderr } from '../helpers/fixture.ts';
import { formatAddr, parseAddr } from '../../ipam/alloc/addr.ts';
import { poolName } from '../../ipam/alloc/names.ts';
import { KubernetesPods } from '../../ipam/gc/pods.ts';
import { reconcile, type Freed, type ReconcileOutcome } from '../../ipam/gc/reconcile.ts';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { FileStore } from '../../ipam/store/file/store.ts';
import type { Allocation, Reservation } from '../../ipam/store/types.ts';
import { BIN, requireBuild } from '../helpers/exec.ts';
import { KubeApiServer, type LoggedRequest, type ServerOptions } from '../helpers/kube-apiserver.ts';
import { createPod, deletePod, kubeconfigFile, rulesOf, setNetworkStatus } from '../helpers/kube-pods.ts';
import { storeOn } from '../helpers/kube-store.ts';
import { invocation } from '../helpers/ipam-invocation.ts';
import { readPool } from '../helpers/store.ts';

const soon = (): number => Date.now() + 10_000;
const NAMESPACES = ['default', 'kube-system', 'apps', 'batch', 'underlay-system'];

interface Rig {
  server: KubeApiServer;
  kubeconfig: string;
  close(): Promise<void>;
}

let rig: Rig | undefined;
async function startRig(options: ServerOptions = {}, namespace = 'kube-system'): Promise<Rig> {
  const server = await KubeApiServer.start({ namespaces: NAMESPACES, ...options });
  const file = kubeconfigFile(server, namespace);
  rig = { server, kubeconfig: file.path, close: async () => { file.cleanup(); await server.close(); } };
  return rig;
}
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

type Ipam = Record<string, unknown>;
const ipamFor = (r: Rig, range: string, more: Ipam = {}): Ipam => ({ type: 'whereabouts', range, kubernetes: { kubeconfig: r.kubeconfig }, ...more });

/** An ADD as the kubelet runs it through Multus: the pod's namespace, name and UID in CNI_ARGS. */
async function add(ipam: Ipam, containerId: string, podref?: string, uid?: string, ifName = 'net1'): Promise<string> {
  const [namespace, name] = (podref ?? '').split('/');
  const args = podref ? `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name}${uid ? `;K8S_POD_UID=${uid}` : ''}` : '';
  const result = await ipamPlugin.add(invocation({ ipam, containerId, ifName, args }));
  return result.ips![0]!.address.split('/')[0]!;
}

/** A lease and its reservation exactly as whereabouts writes them (no UID, none of our fields). */
async function whereaboutsLease(r: Rig, range: string, address: string, lease: Allocation, networkName = '', reservation = true, namespace = 'kube-system'): Promise<void> {
  const store = storeOn(r.server, { namespace });
  const name = poolName(networkName, range);
  const cidr = range.split('/')[0]!;
  const offset = (parseAddr(address)!.value - parseAddr(cidr)!.value).toString();
  for (;;) {
    const current = await store.readPool(name, soon());
    const next = { range, allocations: { ...current?.value.allocations, [offset]: lease } };
    if (await store.commit([{ kind: 'pool', name, expected: current?.version, value: next }], soon())) break;
  }
  if (reservation) await orphanReservation(r, `${networkName ? `${networkName}-` : ''}${address}`, { containerid: lease.id, podref: lease.podref, ...(lease.ifname && { ifname: lease.ifname }) }, namespace);
  await store.close();
}

async function orphanReservation(r: Rig, name: string, value: Reservation, namespace = 'kube-system'): Promise<void> {
  const store = storeOn(r.server, { namespace });
  expect(await store.commit([{ kind: 'reservation', name, expected: undefined, value }], soon())).toHaveLength(1);
  await store.close();
}

/** Every lease of the pools whose names start with `prefix`, shards merged, by address. */
async function leases(r: Rig, prefix = ''): Promise<Map<string, Allocation>> {
  const store = storeOn(r.server);
  const out = new Map<string, Allocation>();
  for (const record of await store.listPools(prefix, soon())) {
    const network = parseAddr(record.value.range.split('/')[0]!)!;
    for (const [key, a] of Object.entries(record.value.allocations)) {
      const value = network.value + BigInt(key);
      out.set(`${record.name.replace(/-s\d+$/, '')} ${formatAddr(network.family, value)}`, a);
    }
  }
  await store.close();
  return out;
}

async function reservationNames(r: Rig): Promise<string[]> {
  const store = storeOn(r.server);
  const names = (await store.listReservations('', soon())).map((x) => x.name).filter((n) => !n.includes('.claim.'));
  await store.close();
  return names;
}

const summary = (freed: ReadonlyArray<Freed>): string[] => freed.map((f) => `${f.kind} ${f.kind === 'lease' ? `${f.pool} ${f.address}` : f.name} ${f.podref}`).sort();

const writes = (log: ReadonlyArray<LoggedRequest>): LoggedRequest[] => log.filter((e) => e.method !== 'GET');

async function reconcileCli(r: Rig, args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const run = await execa(join(BIN, 'underlay'), ['reconcile', ...args], { reject: false, env: { PATH: process.env.PATH ?? '', ...env }, extendEnv: false, timeout: 60_000 });
  return { code: run.exitCode ?? -1, out: run.stdout, err: run.stderr };
}

function inProcess(r: Rig, dryRun = false, as: { token: string; namespace: string } = { token: 'admin-token', namespace: 'kube-system' }): Promise<ReconcileOutcome> {
  const connection = { server: r.server.url, namespace: as.namespace, tls: { ca: r.server.pki.ca.cert }, token: () => as.token, source: 'test' };
  const store = storeOn(r.server, as);
  const pods = new KubernetesPods(connection);
  return reconcile(store, pods, { dryRun, graceMs: 0, deadline: soon }).finally(async () => {
    await store.close();
    pods.close();
  });
}

describe('underlay reconcile (the built executable)', () => {
  beforeAll(requireBuild);

  it('frees exactly the leases and reservations of pods that are gone; --dry-run lists the same and changes nothing', async () => {
    const r = await startRig();
    const { server } = r;
    const plain = ipamFor(r, '10.60.0.0/24');
    const blue = ipamFor(r, '10.61.0.0/24', { network_name: 'blue' });
    // A pool in shards: its range crosses from shard 0 into shard 1.
    const big = ipamFor(r, '10.62.0.0/21', { range_start: '10.62.3.254' });

    // Live pods, each with a lease written by its ADD.
    const runUid = createPod(server, 'default/run-0', { nodeName: 'node-1' });
    setNetworkStatus(server, 'default/run-0', [await add(plain, 'c-run-0', 'default/run-0', runUid)]);
    const pendUid = createPod(server, 'default/pend-0', { nodeName: 'node-1', phase: 'Pending' });
    await add(plain, 'c-pend-0', 'default/pend-0', pendUid); // Multus has not written its network-status yet
    const termUid = createPod(server, 'default/term-0', { nodeName: 'node-1' });
    await add(plain, 'c-term-0', 'default/term-0', termUid);
    deletePod(server, 'default/term-0'); // Terminating: the kubelet has not stopped it yet

    // Pods that are gone.
    const goneUid = createPod(server, 'default/gone-0', { nodeName: 'node-1' });
    const goneAddr = await add(plain, 'c-gone-0', 'default/gone-0', goneUid);
    deletePod(server, 'default/gone-0', { finished: true }); // deleted, and its DEL never came
    const lostUid = createPod(server, 'default/lost-0', { nodeName: 'node-lost' });
    const lostAddr = await add(plain, 'c-lost-0', 'default/lost-0', lostUid);
    const lostBlue = await add(blue, 'c-lost-0', 'default/lost-0', lostUid, 'net2');
    deletePod(server, 'default/lost-0', { force: true }); // force-deleted: its node is lost

    // A StatefulSet pod re-created under the same name, whose ADD could not tell that the old pod is
    // gone (the API did not answer its GET), so it got another address: the old UID's lease goes, the
    // new pod's stays.
    const db1 = createPod(server, 'apps/db-0', { nodeName: 'node-lost' });
    const dbOld = await add(plain, 'c-db-0-a', 'apps/db-0', db1);
    deletePod(server, 'apps/db-0', { force: true });
    const db2 = createPod(server, 'apps/db-0', { nodeName: 'node-2' });
    server.inject({ method: 'GET', path: /\/namespaces\/apps\/pods\/db-0$/, status: 403, message: 'pods "db-0" is forbidden' });
    const dbNew = await add(plain, 'c-db-0-b', 'apps/db-0', db2);
    expect(dbNew).not.toBe(dbOld);
    expect(takeStderr()).toEqual([expect.stringMatching(/\[warning\] .*cannot tell whether pod apps\/db-0 .* is gone, so its address is kept for it: .*forbidden/)]);
    setNetworkStatus(server, 'apps/db-0', [dbNew]);
    // Re-created, and the new pod holds the old lease: its ADD took it over (the lease carries the new UID) ...
    const cache1 = createPod(server, 'apps/cache-0', { nodeName: 'node-1' });
    const cacheAddr = await add(plain, 'c-cache-0-a', 'apps/cache-0', cache1);
    deletePod(server, 'apps/cache-0', { force: true });
    const cache2 = createPod(server, 'apps/cache-0', { nodeName: 'node-2' });
    expect(await add(plain, 'c-cache-0-b', 'apps/cache-0', cache2)).toBe(cacheAddr);
    setNetworkStatus(server, 'apps/cache-0', [cacheAddr]);
    // ... or still under the old UID, but the new pod's network-status says it has the address.
    const kv1 = createPod(server, 'apps/kv-0', { nodeName: 'node-1' });
    const kvAddr = await add(plain, 'c-kv-0-a', 'apps/kv-0', kv1);
    deletePod(server, 'apps/kv-0', { force: true });
    createPod(server, 'apps/kv-0', { nodeName: 'node-2', addresses: [kvAddr] });

    // Whereabouts' own leases (no UID): judged by name.
    createPod(server, 'default/wa-live', { nodeName: 'node-1' });
    await whereaboutsLease(r, '10.60.0.0/24', '10.60.0.100', { id: 'w'.repeat(64), podref: 'default/wa-live', ifname: 'net1' });
    await whereaboutsLease(r, '10.60.0.0/24', '10.60.0.101', { id: 'x'.repeat(64), podref: 'default/wa-gone', ifname: 'net1' });
    await whereaboutsLease(r, '10.61.0.0/24', '10.61.0.100', { id: 'y'.repeat(64), podref: 'default/wa-gone', ifname: 'net2' }, 'blue');
    // No pod was named (podman): the podref is the container ID, never judged.
    const loneAddr = await add(plain, 'c-lone');

    // Orphaned reservations: a gone pod's with no lease goes; a live pod's stays; a gone pod's whose
    // address a live pod's lease holds stays; a young one of ours stays (an ADD may be in flight).
    await orphanReservation(r, '10.60.0.200', { containerid: 'o'.repeat(64), podref: 'default/orphan-0', ifname: 'net1' });
    await orphanReservation(r, '10.60.0.201', { containerid: 'c-run-0', podref: 'default/run-0', ifname: 'net9' });
    await whereaboutsLease(r, '10.60.0.0/24', '10.60.0.202', { id: 'c-run-0', podref: 'default/run-0', ifname: 'net2' }, '', false);
    await orphanReservation(r, '10.60.0.202', { podref: 'default/gone-x' });
    await orphanReservation(r, '10.60.0.203', { containerid: 'c-young', podref: 'default/young-0', ifname: 'net1', since: new Date().toISOString(), networkname: '' });

    // The big pool: two of four pods gone.
    const bigUids = ['b0', 'b1', 'b2', 'b3'].map((n) => createPod(server, `batch/${n}`, { nodeName: 'node-1' }));
    const bigAddrs: string[] = [];
    for (const [i, uid] of bigUids.entries()) bigAddrs.push(await add(big, `c-b${i}`, `batch/b${i}`, uid));
    deletePod(server, 'batch/b1', { force: true });
    deletePod(server, 'batch/b2', { force: true });

    const expected = [
      `lease 10.60.0.0-24 ${goneAddr} default/gone-0`,
      `lease 10.60.0.0-24 ${lostAddr} default/lost-0`,
      `lease blue-10.61.0.0-24 ${lostBlue} default/lost-0`,
      `lease 10.60.0.0-24 ${dbOld} apps/db-0`,
      'lease 10.60.0.0-24 10.60.0.101 default/wa-gone',
      'lease blue-10.61.0.0-24 10.61.0.100 default/wa-gone',
      `lease 10.62.0.0-21 ${bigAddrs[1]} batch/b1`,
      `lease 10.62.0.0-21 ${bigAddrs[2]} batch/b2`,
      'reservation 10.60.0.200 default/orphan-0',
    ].sort();
    const before = await leases(r);
    const reservationsBefore = await reservationNames(r);

    // The dry run: the same list, and not one write.
    server.log.length = 0;
    const dry = await reconcileCli(r, ['--dry-run', '--json', '--kubeconfig', r.kubeconfig]);
    expect(dry.code, dry.err).toBe(0);
    const dryOutcome = JSON.parse(dry.out) as ReconcileOutcome;
    expect(summary(dryOutcome.freed)).toEqual(expected);
    expect(writes(server.log)).toEqual([]);
    expect(await leases(r)).toEqual(before);
    const human = await reconcileCli(r, ['--dry-run', '--kubeconfig', r.kubeconfig]);
    expect(human.out).toContain(`would free lease ${goneAddr} in pool 10.60.0.0-24 of default/gone-0 (uid ${goneUid}, container c-gone-0, net1): pod default/gone-0 no longer exists`);
    expect(human.out).toMatch(/reconcile \(dry run, nothing changed\): 3 pools .* would free 8 leases and 1 reservation/);

    // The real run.
    server.log.length = 0;
    const real = await reconcileCli(r, ['--json', '--kubeconfig', r.kubeconfig]);
    expect(real.code, real.err).toBe(0);
    const outcome = JSON.parse(real.out) as ReconcileOutcome;
    expect(summary(outcome.freed)).toEqual(expected);

    // Reads in order: pools and reservations, then ONE pod listing, then one GET per candidate pod.
    const log = server.log;
    const podList = log.findIndex((e) => e.path === '/api/v1/pods');
    expect(log.filter((e) => e.path.startsWith('/api/v1/pods'))).toHaveLength(1);
    for (const plural of ['ippools', 'overlappingrangeipreservations']) {
      expect(log.findIndex((e) => e.path.endsWith(`/namespaces/kube-system/${plural}`))).toBeLessThan(podList);
    }
    const gets = log.filter((e) => /^\/api\/v1\/namespaces\/[^/]+\/pods\//.test(e.path)).map((e) => e.path.replace(/^\/api\/v1\/namespaces\/([^/]+)\/pods\//, '$1/')).sort();
    expect(gets).toEqual(['apps/db-0', 'apps/kv-0', 'batch/b1', 'batch/b2', 'default/gone-0', 'default/gone-x', 'default/lost-0', 'default/orphan-0', 'default/wa-gone', 'default/young-0']);
    const firstWrite = log.findIndex((e) => e.method !== 'GET');
    expect(log.findLastIndex((e) => /\/pods\//.test(e.path))).toBeLessThan(firstWrite);

    // What is left: every live pod's lease, nothing of the gone ones.
    const after = await leases(r);
    const gone = new Set(expected.filter((e) => e.startsWith('lease')).map((e) => e.split(' ').slice(1, 3).join(' ')));
    expect([...after.keys()].sort()).toEqual([...before.keys()].filter((k) => !gone.has(k)).sort());
    expect(after.get(`10.60.0.0-24 ${dbNew}`)).toMatchObject({ podref: 'apps/db-0', poduid: db2 });
    expect(after.get(`10.60.0.0-24 ${cacheAddr}`)).toMatchObject({ id: 'c-cache-0-b', poduid: cache2 });
    expect(after.get(`10.60.0.0-24 ${kvAddr}`)).toMatchObject({ id: 'c-kv-0-a', poduid: kv1 });
    expect(after.get(`10.60.0.0-24 ${loneAddr}`)).toMatchObject({ id: 'c-lone', podref: 'c-lone' });
    for (const [pod, uid] of [['default/pend-0', pendUid], ['default/term-0', termUid]]) expect([...after.values()].some((a) => a.podref === pod && a.poduid === uid)).toBe(true);
    // Reservations: those of freed leases went with them, the orphan of a gone pod too.
    const freedReservations = [goneAddr, lostAddr, `blue-${lostBlue}`, dbOld, '10.60.0.101', 'blue-10.61.0.100', ...bigAddrs.slice(1, 3), '10.60.0.200'];
    expect((await reservationNames(r)).sort()).toEqual(reservationsBefore.filter((n) => !freedReservations.includes(n)).sort());
    // The claims of the big pool's freed leases are gone too.
    const claims = (await storeOn(server).listReservations('10.62.0.0-21.claim.', soon())).map((c) => c.value.podref).sort();
    expect(claims).toEqual(['batch/b0', 'batch/b3']);

    // Once more: nothing left to free.
    const again = await reconcileCli(r, ['--kubeconfig', r.kubeconfig]);
    expect(again.code, again.err).toBe(0);
    expect(again.out).toMatch(/^reconcile: 3 pools .* freed 0 leases and 0 reservations/m);
  });

  it('finds the pools in --pool-namespace, whatever the kubeconfig context says, or in a file store with --dir', async () => {
    const r = await startRig();
    const uid = createPod(r.server, 'default/p-0', { nodeName: 'node-1' });
    const address = await add(ipamFor(r, '10.63.0.0/24'), 'c-p-0', 'default/p-0', uid);
    deletePod(r.server, 'default/p-0', { force: true });
    const elsewhere = kubeconfigFile(r.server, 'default');
    try {
      const there = await reconcileCli(r, ['--dry-run', '--json', '--kubeconfig', elsewhere.path]);
      expect((JSON.parse(there.out) as ReconcileOutcome).pools).toBe(0);
      const here = await reconcileCli(r, ['--json', '--kubeconfig', elsewhere.path, '--pool-namespace=kube-system']);
      expect(here.code, here.err).toBe(0);
      expect(summary((JSON.parse(here.out) as ReconcileOutcome).freed)).toEqual([`lease 10.63.0.0-24 ${address} default/p-0`]);
    } finally {
      elsewhere.cleanup();
    }
    // Pools in a file store, pods from the kubeconfig.
    const dir = mkdtempSync(join(tmpdir(), 'underlay-reconcile-'));
    try {
      const fileIpam = { type: 'whereabouts', range: '10.65.0.0/24', file_store_dir: dir };
      const live = createPod(r.server, 'default/f-0', { nodeName: 'node-1' });
      await add(fileIpam, 'c-f-0', 'default/f-0', live);
      const gone = await add(fileIpam, 'c-f-1', 'default/f-1', 'uid-of-a-pod-long-gone');
      const run = await reconcileCli(r, ['--json', '--kubeconfig', r.kubeconfig, '--dir', dir]);
      expect(run.code, run.err).toBe(0);
      expect(summary((JSON.parse(run.out) as ReconcileOutcome).freed)).toEqual([`lease 10.65.0.0-24 ${gone} default/f-1`]);
      expect(Object.values((await readPool(new FileStore(dir), '10.65.0.0-24'))!.value.allocations).map((a) => a.id)).toEqual(['c-f-0']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect((await reconcileCli(r, ['--dir', '/tmp', '--pool-namespace', 'x'])).code).toBe(2);
    const usage = await reconcileCli(r, ['--help']);
    expect(usage.out).toContain('--pool-namespace NS');
    const outside = await reconcileCli(r, []);
    expect([outside.code, outside.err]).toEqual([1, expect.stringContaining('KUBERNETES_SERVICE_HOST') as unknown]);
  });
});

describe('underlay reconcile while pods come and go', () => {
  it('spares a pod created between the pool listing and the pod listing', async () => {
    const r = await startRig();
    const ipam = ipamFor(r, '10.70.0.0/24');
    // A StatefulSet pod whose earlier incarnation whereabouts addressed; it is gone for now.
    await whereaboutsLease(r, '10.70.0.0/24', '10.70.0.9', { id: 'a'.repeat(64), podref: 'default/sts-a', ifname: 'net1' });
    expect(summary((await inProcess(r, true)).freed)).toEqual(['lease 10.70.0.0-24 10.70.0.9 default/sts-a']);

    // Right before the pods are listed: sts-a comes back and its ADD takes its address over, and a
    // new pod is created and addressed.
    let added: string[] = [];
    r.server.inject({
      method: 'GET', path: /^\/api\/v1\/pods$/, before: async () => {
        const uid = createPod(r.server, 'default/sts-a', { nodeName: 'node-1', phase: 'Pending' });
        const fresh = createPod(r.server, 'default/new-a', { nodeName: 'node-1', phase: 'Pending' });
        added = [await add(ipam, 'c-sts-a-2', 'default/sts-a', uid), await add(ipam, 'c-new-a', 'default/new-a', fresh)];
      },
    });
    const outcome = await inProcess(r);
    expect(outcome.freed).toEqual([]);
    expect(added[0]).toBe('10.70.0.9');
    const after = await leases(r);
    expect(after.get('10.70.0.0-24 10.70.0.9')).toMatchObject({ id: 'c-sts-a-2', podref: 'default/sts-a' });
    expect(after.get(`10.70.0.0-24 ${added[1]}`)).toMatchObject({ id: 'c-new-a', podref: 'default/new-a' });
    expect(await reservationNames(r)).toEqual(expect.arrayContaining(['10.70.0.9', added[1]!]));
  });

  it('spares a pod created between the pod listing and its re-read; frees only the old UID of one re-created', async () => {
    const r = await startRig();
    const ipam = ipamFor(r, '10.71.0.0/24');
    await whereaboutsLease(r, '10.71.0.0/24', '10.71.0.9', { id: 'b'.repeat(64), podref: 'default/sts-b', ifname: 'net1' });
    const old = createPod(r.server, 'default/sts-c', { nodeName: 'node-lost' });
    const oldAddr = await add(ipam, 'c-sts-c-1', 'default/sts-c', old);
    deletePod(r.server, 'default/sts-c', { force: true });

    let stsB = '';
    let stsC = { uid: '', address: '' };
    r.server.inject({
      method: 'GET', path: /\/namespaces\/default\/pods\/sts-b$/, before: async () => {
        stsB = await add(ipam, 'c-sts-b-2', 'default/sts-b', createPod(r.server, 'default/sts-b', { nodeName: 'node-1', phase: 'Pending' }));
      },
    });
    r.server.inject({
      method: 'GET', path: /\/namespaces\/default\/pods\/sts-c$/, before: async () => {
        const uid = createPod(r.server, 'default/sts-c', { nodeName: 'node-2', phase: 'Pending' });
        stsC = { uid, address: await add(ipam, 'c-sts-c-2', 'default/sts-c', uid) };
        setNetworkStatus(r.server, 'default/sts-c', [stsC.address]);
      },
    });
    const outcome = await inProcess(r);
    expect(stsB).toBe('10.71.0.9');
    const after = await leases(r);
    expect(after.get('10.71.0.0-24 10.71.0.9')).toMatchObject({ id: 'c-sts-b-2', podref: 'default/sts-b' });
    // The new sts-c keeps what its ADD gave it; the old one's lease is freed unless that is the same one.
    expect(after.get(`10.71.0.0-24 ${stsC.address}`)).toMatchObject({ id: 'c-sts-c-2', poduid: stsC.uid });
    expect([...after.values()].filter((a) => a.poduid === old)).toEqual([]);
    expect(summary(outcome.freed)).toEqual(stsC.address === oldAddr ? [] : [`lease 10.71.0.0-24 ${oldAddr} default/sts-c`]);
    expect(outcome.spared.map((s) => s.podref)).toContain('default/sts-b');
  });

  it('keeps a lease that moved to a new pod between the re-read and the freeing', async () => {
    const r = await startRig();
    const ipam = ipamFor(r, '10.72.0.0/24');
    await whereaboutsLease(r, '10.72.0.0/24', '10.72.0.9', { id: 'd'.repeat(64), podref: 'default/sts-d', ifname: 'net1' });
    // The re-read says sts-d is gone; then, before the pool is read to free its lease, it is back and
    // an ADD without K8S_POD_UID (whereabouts' own, from a config Multus cached before the switch) has
    // taken the address over. Same pod name, same (no) UID: only the container ID tells the lease
    // judged (dddd...) from the one there now.
    let taken = '';
    r.server.inject({
      method: 'GET', path: /\/ippools\/10\.72\.0\.0-24$/, before: async () => {
        createPod(r.server, 'default/sts-d', { nodeName: 'node-1' });
        taken = await add(ipam, 'c-sts-d-2', 'default/sts-d');
      },
    });
    const outcome = await inProcess(r);
    expect(taken).toBe('10.72.0.9');
    expect(outcome.freed).toEqual([]);
    expect((await leases(r)).get('10.72.0.0-24 10.72.0.9')).toMatchObject({ id: 'c-sts-d-2', podref: 'default/sts-d' });
    expect(await reservationNames(r)).toContain('10.72.0.9');
  });

  it('frees an IPv6 lease of a /64 (a pool in shards) and its reservation and claim, and nothing else', async () => {
    const r = await startRig();
    const ipam = ipamFor(r, 'fd00:10::/64', { network_name: 'v6' });
    const live = createPod(r.server, 'default/six-0', { nodeName: 'node-1' });
    const kept = await add(ipam, 'c-six-0', 'default/six-0', live);
    const lost = createPod(r.server, 'default/six-1', { nodeName: 'node-lost' });
    const freed = await add(ipam, 'c-six-1', 'default/six-1', lost);
    deletePod(r.server, 'default/six-1', { force: true });
    const reservationOf = (address: string) => `v6-${address.replace(/:/g, '-')}`;
    expect(await reservationNames(r)).toEqual([reservationOf(kept), reservationOf(freed)].sort());
    const outcome = await inProcess(r);
    expect(summary(outcome.freed)).toEqual([`lease v6-fd00-10---64 ${freed} default/six-1`]);
    expect([...(await leases(r)).keys()]).toEqual([`v6-fd00-10---64 ${kept}`]);
    expect(await reservationNames(r)).toEqual([reservationOf(kept)]);
    const claims = (await storeOn(r.server).listReservations('v6-fd00-10---64.claim.', soon())).map((c) => c.value.podref);
    expect(claims).toEqual(['default/six-0']);
  });

  it('frees nothing of a pod it cannot read again, and says so', async () => {
    const r = await startRig();
    const ipam = ipamFor(r, '10.73.0.0/24');
    const uid = createPod(r.server, 'default/flaky', { nodeName: 'node-1' });
    const address = await add(ipam, 'c-flaky', 'default/flaky', uid);
    deletePod(r.server, 'default/flaky', { force: true });
    r.server.inject({ method: 'GET', path: /\/pods\/flaky$/, status: 403, message: 'pods "flaky" is forbidden' });
    const outcome = await inProcess(r);
    expect(outcome.freed).toEqual([]);
    expect(outcome.errors.join('\n')).toMatch(/pod default\/flaky could not be read again, nothing of it is freed/);
    expect((await leases(r)).get(`10.73.0.0-24 ${address}`)).toMatchObject({ id: 'c-flaky' });
    // A failure that may pass is tried again.
    r.server.inject({ method: 'GET', path: /\/pods\/flaky$/, status: 503, times: 2 });
    expect(summary((await inProcess(r)).freed)).toEqual([`lease 10.73.0.0-24 ${address} default/flaky`]);
  });
});

describe("underlay reconcile with the reconciler's RBAC (deploy/rbac-reconciler.yaml)", () => {
  const RBAC = join(import.meta.dirname, '..', '..', 'deploy', 'rbac-reconciler.yaml');
  const reconciler = { token: 'reconciler-token', namespace: 'underlay-system' };
  const options = (): ServerOptions => ({
    identities: [{ user: 'admin', token: 'admin-token' }, { user: 'reconciler', token: reconciler.token }],
    rules: [{ who: 'admin', verbs: ['*'], resources: ['*'] }, ...rulesOf(RBAC, 'reconciler')],
  });

  it('frees a gone pod\'s lease with no more than the grants of its service account', async () => {
    requireBuild();
    const r = await startRig(options(), 'underlay-system');
    const uid = createPod(r.server, 'default/p-0', { nodeName: 'node-lost' });
    const address = await add(ipamFor(r, '10.64.0.0/24'), 'c-p-0', 'default/p-0', uid);
    deletePod(r.server, 'default/p-0', { force: true });
    const own = kubeconfigFile(r.server, 'underlay-system', { token: reconciler.token });
    try {
      const run = await reconcileCli(r, ['--json', '--kubeconfig', own.path]);
      expect(run.code, run.err).toBe(0);
      expect(summary((JSON.parse(run.out) as ReconcileOutcome).freed)).toEqual([`lease 10.64.0.0-24 ${address} default/p-0`]);
      expect(r.server.log.filter((e) => e.code === 403)).toEqual([]);
    } finally {
      own.cleanup();
    }
  });

  // A big pool whereabouts wrote stays its one IPPool (lease/pool.ts): freeing a lease there creates
  // nothing, so the reconciler's grants (no create) are enough.
  it("frees a gone pod's lease in a big pool whereabouts wrote, with the reconciler's grants", async () => {
    const r = await startRig(options(), 'underlay-system');
    await whereaboutsLease(r, '10.10.0.0/20', '10.10.5.220', { id: 'e'.repeat(64), podref: 'batch/worker-b', ifname: 'net1' }, '', true, 'underlay-system');
    const outcome = await inProcess(r, false, reconciler);
    expect(outcome.errors).toEqual([]);
    expect(summary(outcome.freed)).toEqual(['lease 10.10.0.0-20 10.10.5.220 batch/worker-b']);
  });
});
