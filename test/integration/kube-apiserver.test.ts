// The simulated API server answers as kube-apiserver does, over the wire: codes, Status bodies,
// resourceVersions, pruning under each CRD set, authentication and authorization. The Kubernetes
// store's tests are only as good as this stand-in.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpClient, HttpUnreachable } from '../../lib/http.ts';
import { crdFiles, KubeApiServer, UNDERLAY_CRDS, WHEREABOUTS_CRDS } from '../helpers/kube-apiserver.ts';
import { loadCrd } from '../helpers/kube-schema.ts';
import { ippool, IPPOOLS, RESERVATIONS, wire } from '../helpers/kube-wire.ts';

const lease = { id: 'c1', podref: 'default/web-0', ifname: 'net1', since: '2025-01-01T00:00:00Z', network: 'blue', poduid: 'u-1' };

describe('kube-apiserver simulation: verbs and Status errors', () => {
  let server: KubeApiServer;
  let call: ReturnType<typeof wire>;
  beforeAll(async () => {
    server = await KubeApiServer.start();
    call = wire(server);
  });
  afterAll(() => server.close());

  it('POST creates with system metadata; a second POST is 409 AlreadyExists as a Status', async () => {
    const created = await call('POST', IPPOOLS, ippool('10.0.0.0-24'));
    expect(created.code).toBe(201);
    expect(created.body.metadata).toMatchObject({ name: '10.0.0.0-24', namespace: 'kube-system', generation: 1 });
    expect(created.body.metadata.resourceVersion).toMatch(/^\d+$/);
    expect(created.body.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    const again = await call('POST', IPPOOLS, ippool('10.0.0.0-24'));
    expect(again).toEqual({
      code: 409,
      body: {
        kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'AlreadyExists', code: 409,
        message: 'ippools.whereabouts.cni.cncf.io "10.0.0.0-24" already exists',
        details: { name: '10.0.0.0-24', group: 'whereabouts.cni.cncf.io', kind: 'ippools' },
      },
    });
  });

  it('GET of a missing object is 404 NotFound naming it; a path nothing is served at has empty details', async () => {
    const missing = await call('GET', `${IPPOOLS}/nope-24`);
    expect(missing.code).toBe(404);
    expect(missing.body).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'NotFound', message: 'ippools.whereabouts.cni.cncf.io "nope-24" not found', details: { name: 'nope-24', kind: 'ippools' } });
    const unserved = await call('GET', '/apis/whereabouts.cni.cncf.io/v1/namespaces/kube-system/ippools');
    expect(unserved.code).toBe(404);
    expect(unserved.body).toMatchObject({ reason: 'NotFound', details: {} });
    expect(unserved.body.details?.name).toBeUndefined();
    expect((await call('POST', '/apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/nowhere/ippools', ippool('x-24'))).body.message).toBe('namespaces "nowhere" not found');
  });

  it('PUT: a stale resourceVersion is 409 Conflict, none is 422 Invalid, the current one takes the next global version', async () => {
    const first = (await call('POST', IPPOOLS, ippool('10.0.1.0-24'))).body;
    const other = (await call('POST', RESERVATIONS, { apiVersion: 'whereabouts.cni.cncf.io/v1alpha1', kind: 'OverlappingRangeIPReservation', metadata: { name: '10.0.1.9' }, spec: { podref: 'default/a' } })).body;
    expect(Number(other.metadata.resourceVersion)).toBe(Number(first.metadata.resourceVersion) + 1);
    const updated = await call('PUT', `${IPPOOLS}/10.0.1.0-24`, { ...ippool('10.0.1.0-24', { 5: lease }), metadata: { name: '10.0.1.0-24', resourceVersion: first.metadata.resourceVersion } });
    expect(updated.code).toBe(200);
    expect(Number(updated.body.metadata.resourceVersion)).toBe(Number(other.metadata.resourceVersion) + 1);
    expect(updated.body.metadata).toMatchObject({ uid: first.metadata.uid, generation: 2 });
    const stale = await call('PUT', `${IPPOOLS}/10.0.1.0-24`, { ...ippool('10.0.1.0-24'), metadata: { name: '10.0.1.0-24', resourceVersion: first.metadata.resourceVersion } });
    expect(stale.code).toBe(409);
    expect(stale.body).toMatchObject({ reason: 'Conflict', message: expect.stringContaining('the object has been modified') as string, details: { name: '10.0.1.0-24' } });
    const unversioned = await call('PUT', `${IPPOOLS}/10.0.1.0-24`, ippool('10.0.1.0-24'));
    expect(unversioned.code).toBe(422);
    expect(unversioned.body).toMatchObject({ reason: 'Invalid', details: { kind: 'IPPool', causes: [{ field: 'metadata.resourceVersion' }] } });
    expect((await call('PUT', `${IPPOOLS}/absent-24`, { ...ippool('absent-24'), metadata: { name: 'absent-24', resourceVersion: '1' } })).code).toBe(404);
    expect((await call('PUT', `${IPPOOLS}/10.0.1.0-24`, { ...ippool('other-24'), metadata: { name: 'other-24', resourceVersion: '1' } })).code).toBe(400);
  });

  it('PATCH: JSON patch applies; a failed test op is 422 with the generic message; other patch types are 415', async () => {
    const created = (await call('POST', IPPOOLS, ippool('10.0.2.0-24'))).body;
    const rv = created.metadata.resourceVersion;
    const ok = await call('PATCH', `${IPPOOLS}/10.0.2.0-24`, [{ op: 'test', path: '/metadata/resourceVersion', value: rv }, { op: 'add', path: '/spec/allocations/7', value: lease }], { contentType: 'application/json-patch+json' });
    expect(ok.code).toBe(200);
    expect(ok.body.spec).toMatchObject({ allocations: { 7: { id: 'c1' } } });
    const failed = await call('PATCH', `${IPPOOLS}/10.0.2.0-24`, [{ op: 'test', path: '/metadata/resourceVersion', value: rv }], { contentType: 'application/json-patch+json' });
    expect(failed.code).toBe(422);
    expect(failed.body).toMatchObject({ reason: 'Invalid', message: 'the server rejected our request due to an error in our request', details: { causes: [{ message: expect.stringContaining('test failed') as string }] } });
    expect((await call('PATCH', `${IPPOOLS}/10.0.2.0-24`, [{ op: 'remove', path: '/spec/allocations/99' }], { contentType: 'application/json-patch+json' })).code).toBe(422);
    expect((await call('PATCH', `${IPPOOLS}/10.0.2.0-24`, { spec: {} }, { contentType: 'application/merge-patch+json' })).code).toBe(415);
    expect((await call('PATCH', `${IPPOOLS}/nope-24`, [], { contentType: 'application/json-patch+json' })).code).toBe(404);
  });

  it('DELETE honours preconditions (409 on a mismatch) and answers a custom resource with a Status of Success', async () => {
    const created = (await call('POST', IPPOOLS, ippool('10.0.3.0-24'))).body;
    const stale = await call('DELETE', `${IPPOOLS}/10.0.3.0-24`, { kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { resourceVersion: '1' } });
    expect(stale.code).toBe(409);
    expect(stale.body.message).toContain('the ResourceVersion in the precondition (1) does not match');
    const done = await call('DELETE', `${IPPOOLS}/10.0.3.0-24`, { kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { resourceVersion: created.metadata.resourceVersion } });
    expect(done).toMatchObject({ code: 200, body: { kind: 'Status', status: 'Success', details: { name: '10.0.3.0-24', uid: created.metadata.uid } } });
    expect((await call('GET', `${IPPOOLS}/10.0.3.0-24`)).code).toBe(404);
    expect((await call('DELETE', `${IPPOOLS}/10.0.3.0-24`)).code).toBe(404);
  });

  it('LIST: kind <Kind>List with the current resourceVersion, items in name order with their own versions; selectors', async () => {
    await call('POST', IPPOOLS, { ...ippool('b-10.9.0.0-24'), metadata: { name: 'b-10.9.0.0-24', labels: { tier: 'x' } } });
    await call('POST', IPPOOLS, ippool('a-10.9.0.0-24'));
    const list = await call('GET', IPPOOLS);
    expect(list.body).toMatchObject({ kind: 'IPPoolList', apiVersion: 'whereabouts.cni.cncf.io/v1alpha1' });
    const names = list.body.items!.map((i) => i.metadata.name!);
    expect(names).toEqual([...names].sort());
    expect(list.body.items![0]).toMatchObject({ kind: 'IPPool', apiVersion: 'whereabouts.cni.cncf.io/v1alpha1' });
    expect(Number(list.body.metadata.resourceVersion)).toBeGreaterThanOrEqual(Math.max(...list.body.items!.map((i) => Number(i.metadata.resourceVersion))));
    expect((await call('GET', `${IPPOOLS}?labelSelector=tier%3Dx`)).body.items!.map((i) => i.metadata.name)).toEqual(['b-10.9.0.0-24']);
    expect((await call('GET', `${IPPOOLS}?labelSelector=!tier`)).body.items!.map((i) => i.metadata.name)).not.toContain('b-10.9.0.0-24');
    expect((await call('GET', `${IPPOOLS}?fieldSelector=metadata.name%3Da-10.9.0.0-24`)).body.items).toHaveLength(1);
    const unsupported = await call('GET', `${IPPOOLS}?fieldSelector=spec.range%3D10.0.0.0/24`);
    expect(unsupported).toMatchObject({ code: 400, body: { reason: 'BadRequest', message: 'field label not supported: spec.range' } });
    const page = await call('GET', `${IPPOOLS}?limit=2`);
    expect(page.body.items).toHaveLength(2);
    const rest = await call('GET', `${IPPOOLS}?limit=100&continue=${page.body.metadata.continue}`);
    expect([...page.body.items!, ...rest.body.items!].map((i) => i.metadata.name)).toEqual(names);
  });

  it('pods: list by label and field selectors without kind in items; graceful DELETE leaves a deletionTimestamp', async () => {
    server.seed('pods', { metadata: { name: 'web-0', namespace: 'default', labels: { app: 'web' } }, spec: { nodeName: 'n1' }, status: { phase: 'Running' } });
    server.seed('pods', { metadata: { name: 'job-1', namespace: 'default', labels: { app: 'job' } }, spec: {}, status: { phase: 'Pending' } });
    server.seed('nodes', { metadata: { name: 'n1' }, spec: {} });
    const pods = await call('GET', '/api/v1/namespaces/default/pods?labelSelector=app%20in%20(web,db)&fieldSelector=spec.nodeName%3Dn1,status.phase!%3DFailed');
    expect(pods.body.kind).toBe('PodList');
    expect(pods.body.items!.map((p) => p.metadata.name)).toEqual(['web-0']);
    expect(pods.body.items![0]!.kind).toBeUndefined();
    expect((await call('GET', '/api/v1/pods?fieldSelector=status.phase%3DPending')).body.items!.map((p) => p.metadata.name)).toEqual(['job-1']);
    const terminating = await call('DELETE', '/api/v1/namespaces/default/pods/web-0');
    expect(terminating.body).toMatchObject({ kind: 'Pod', metadata: { name: 'web-0' } });
    expect((await call('GET', '/api/v1/namespaces/default/pods/web-0')).body.metadata.deletionTimestamp).toMatch(/Z$/);
    expect((await call('DELETE', '/api/v1/namespaces/default/pods/job-1')).code).toBe(200);
    expect((await call('GET', '/api/v1/namespaces/default/pods/job-1')).code).toBe(404);
    expect((await call('GET', '/api/v1/nodes/n1')).body).toMatchObject({ kind: 'Node', metadata: { name: 'n1' } });
    expect((await call('GET', '/api/v1/nodes')).body.items).toHaveLength(1);
  });

  it('validation: required fields and the object name are 422 Invalid with field causes', async () => {
    const missing = await call('POST', IPPOOLS, ippool('10.0.4.0-24', { 5: { id: 'c1' } }));
    expect(missing).toMatchObject({ code: 422, body: { reason: 'Invalid', details: { causes: [{ field: 'spec.allocations[5].podref', reason: 'FieldValueRequired' }] } } });
    const upper = await call('POST', IPPOOLS, ippool('Blue-10.0.4.0-24'));
    expect(upper).toMatchObject({ code: 422, body: { details: { causes: [{ field: 'metadata.name' }] } } });
    expect((await call('POST', IPPOOLS, { ...ippool('x-24'), metadata: { name: 'x-24', resourceVersion: '5' } })).code).toBe(500);
  });

  it('413 past 3 MiB of body, and etcd\'s 500 "request is too large" past 1.5 MiB of object', async () => {
    const allocations = (n: number): Record<string, unknown> => Object.fromEntries(Array.from({ length: n }, (_, i) => [String(i), { id: 'f'.repeat(64), podref: `default/pod-${i}`, ifname: 'net1' }]));
    const huge = await call('POST', IPPOOLS, ippool('10.1.0.0-16', allocations(30_000), '10.1.0.0/16'));
    expect(huge).toMatchObject({ code: 413, body: { reason: 'RequestEntityTooLarge' } });
    const big = await call('POST', IPPOOLS, ippool('10.2.0.0-16', allocations(15_000), '10.2.0.0/16'));
    expect(big).toMatchObject({ code: 500, body: { message: 'etcdserver: request is too large' } });
  });

  it('injected faults: a Status of any code, a dropped connection, an answer that never comes', async () => {
    server.inject({ path: /ippools/, status: 503 });
    expect(await call('GET', IPPOOLS)).toMatchObject({ code: 503, body: { reason: 'ServiceUnavailable' } });
    server.inject({ drop: true });
    await expect(call('GET', IPPOOLS)).rejects.toBeInstanceOf(HttpUnreachable);
    server.inject({ hang: true });
    const client = new HttpClient({ ca: server.pki.ca.cert });
    await expect(client.request({ method: 'GET', url: server.url + IPPOOLS, deadline: Date.now() + 200 })).rejects.toBeInstanceOf(HttpUnreachable);
    client.close();
  });
});

describe('kube-apiserver simulation: pruning under each CRD set', () => {
  let server: KubeApiServer;
  let call: ReturnType<typeof wire>;
  beforeAll(async () => {
    server = await KubeApiServer.start({ crds: crdFiles(WHEREABOUTS_CRDS) });
    call = wire(server);
  });
  afterAll(() => server.close());

  it("whereabouts' CRDs drop every field they do not list; id, podref and ifname stay", async () => {
    const created = await call('POST', IPPOOLS, { ...ippool('10.0.0.0-24', { 5: lease }), status: { x: 1 }, spec: { range: '10.0.0.0/24', allocations: { 5: lease }, extra: 1 } });
    expect(created.code).toBe(201);
    expect(created.body.spec).toEqual({ range: '10.0.0.0/24', allocations: { 5: { id: 'c1', podref: 'default/web-0', ifname: 'net1' } } });
    expect(created.body.status).toBeUndefined();
    const reservation = await call('POST', RESERVATIONS, { apiVersion: 'whereabouts.cni.cncf.io/v1alpha1', kind: 'OverlappingRangeIPReservation', metadata: { name: '10.0.0.5' }, spec: { containerid: 'c1', podref: 'default/web-0', ifname: 'net1', since: 'x', poduid: 'u', networkname: '' } });
    expect(reservation.body.spec).toEqual({ containerid: 'c1', podref: 'default/web-0', ifname: 'net1' });
    expect((await call('GET', '/apis/ipam.underlay.io/v1alpha1/namespaces/kube-system/ipleaseclaims')).code).toBe(404);
  });

  it("Underlay's CRDs keep our fields; applying whereabouts' CRDs over them hides the fields on read, as etcd still holds them", async () => {
    server.loadCrds(crdFiles(UNDERLAY_CRDS));
    const created = await call('POST', IPPOOLS, ippool('10.0.9.0-24', { 5: lease }));
    expect(created.body.spec).toEqual({ range: '10.0.0.0/24', allocations: { 5: lease } });
    server.loadCrds(crdFiles(WHEREABOUTS_CRDS));
    expect((await call('GET', `${IPPOOLS}/10.0.9.0-24`)).body.spec).toEqual({ range: '10.0.0.0/24', allocations: { 5: { id: 'c1', podref: 'default/web-0', ifname: 'net1' } } });
    server.loadCrds(crdFiles(UNDERLAY_CRDS));
    expect((await call('GET', `${IPPOOLS}/10.0.9.0-24`)).body.spec).toEqual({ range: '10.0.0.0/24', allocations: { 5: lease } });
    server.loadCrds(crdFiles(WHEREABOUTS_CRDS));
  });
});

describe('kube-apiserver simulation: authentication and authorization', () => {
  let server: KubeApiServer;
  let call: ReturnType<typeof wire>;
  beforeAll(async () => {
    server = await KubeApiServer.start({
      identities: [{ user: 'admin', token: 'admin-token' }, { user: 'system:serviceaccount:kube-system:reader', token: 'reader-token' }],
      rules: [
        { who: 'admin', verbs: ['*'], resources: ['*'] },
        { who: 'system:serviceaccount:kube-system:reader', verbs: ['get', 'list'], resources: ['ippools.whereabouts.cni.cncf.io'], namespaces: ['kube-system'] },
        { who: 'group:underlay-nodes', verbs: ['get', 'list', 'create'], resources: ['ippools.whereabouts.cni.cncf.io'] },
      ],
    });
    call = wire(server);
  });
  afterAll(() => server.close());

  it('401 Unauthorized without credentials or with an unknown token', async () => {
    const unauthorized = { code: 401, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 } };
    expect(await call('GET', IPPOOLS, undefined, { token: null })).toEqual(unauthorized);
    expect(await call('GET', IPPOOLS, undefined, { token: 'guess' })).toEqual(unauthorized);
  });

  it('403 Forbidden for what the table does not allow, naming user, verb, resource, group and namespace', async () => {
    expect((await call('GET', IPPOOLS, undefined, { token: 'reader-token' })).code).toBe(200);
    const denied = await call('POST', IPPOOLS, ippool('10.0.0.0-24'), { token: 'reader-token' });
    expect(denied).toEqual({
      code: 403,
      body: {
        kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Forbidden', code: 403,
        message: 'ippools.whereabouts.cni.cncf.io is forbidden: User "system:serviceaccount:kube-system:reader" cannot create resource "ippools" in API group "whereabouts.cni.cncf.io" in the namespace "kube-system"',
        details: { group: 'whereabouts.cni.cncf.io', kind: 'ippools' },
      },
    });
    expect((await call('GET', '/apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/default/ippools/x-24', undefined, { token: 'reader-token' })).body.message).toContain('"x-24" is forbidden');
  });

  it('a client certificate signed by the cluster CA authenticates as its CN with its O groups; another CA is anonymous', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'underlay-kube-sim-'));
    try {
      const node = server.pki.client('system:node:n1', ['underlay-nodes']);
      const client = new HttpClient({ ca: server.pki.ca.cert, cert: node.cert, key: node.key });
      const call2 = (method: 'GET' | 'DELETE'): Promise<{ status: number; body: string }> => client.request({ method, url: `${server.url}${IPPOOLS}${method === 'DELETE' ? '/x-24' : ''}`, deadline: Date.now() + 5000 });
      expect((await call2('GET')).status).toBe(200);
      const denied = JSON.parse((await call2('DELETE')).body) as { code: number; message: string };
      expect(denied.code).toBe(403);
      expect(denied.message).toContain('User "system:node:n1" cannot delete');
      client.close();
      const foreign = server.pki.foreignClient('intruder');
      const stranger = new HttpClient({ ca: server.pki.ca.cert, cert: foreign.cert, key: foreign.key });
      expect((await stranger.request({ method: 'GET', url: server.url + IPPOOLS, deadline: Date.now() + 5000 })).status).toBe(401);
      stranger.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('CRD loading', () => {
  it("loads Underlay's and whereabouts' CRDs as structural; refuses a non-structural one", () => {
    for (const file of [...crdFiles(UNDERLAY_CRDS), ...crdFiles(WHEREABOUTS_CRDS)]) expect(loadCrd(file).namespaced).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'underlay-kube-crd-'));
    try {
      const file = join(dir, 'bad.yaml');
      writeFileSync(file, JSON.stringify({
        apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: 'things.example.com' },
        spec: { group: 'example.com', scope: 'Namespaced', names: { kind: 'Thing', plural: 'things' }, versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', properties: { spec: { properties: { a: { type: 'string' } } } } } } }] },
      }));
      expect(() => loadCrd(file)).toThrow(/properties\[spec\]\.type: Required value/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
