// The REST client against the simulated API server: each credential form of a kubeconfig really
// authenticates; each Status error becomes the outcome a caller branches on; transport failures may
// pass; a token never shows in a message, even when the server repeats it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, type KubeObject, type ResourceType } from '../../lib/kube/client.ts';
import { KubeError } from '../../lib/kube/errors.ts';
import { inClusterConnection, loadKubeconfig, type KubeConnection } from '../../lib/kube/kubeconfig.ts';
import { KubeApiServer } from '../helpers/kube-apiserver.ts';

const IPPOOL: ResourceType = { group: 'whereabouts.cni.cncf.io', version: 'v1alpha1', plural: 'ippools', kind: 'IPPool', namespaced: true };
const TOKEN = 'node-token-3f9a';
let server: KubeApiServer;
let dir: string;

beforeAll(async () => {
  server = await KubeApiServer.start({
    identities: [{ user: 'underlay', token: TOKEN }, { user: 'nobody', token: 'nobody-token' }],
    rules: [{ who: 'underlay', verbs: ['*'], resources: ['*'] }, { who: 'system:node:n1', verbs: ['*'], resources: ['*'] }],
  });
  dir = mkdtempSync(join(tmpdir(), 'underlay-kube-client-'));
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const soon = (): number => Date.now() + 5000;
const pool = (name: string, resourceVersion?: string): KubeObject => ({ metadata: { name, ...(resourceVersion && { resourceVersion }) }, spec: { range: '10.0.0.0/24', allocations: {} } });

async function connect(user: Record<string, unknown>, extraFiles: Record<string, string> = {}): Promise<KubeConnection> {
  const home = mkdtempSync(join(dir, 'cfg-'));
  for (const [name, text] of Object.entries(extraFiles)) writeFileSync(join(home, name), text);
  writeFileSync(join(home, 'kubeconfig'), server.kubeconfig(user));
  return loadKubeconfig(join(home, 'kubeconfig'));
}

async function outcome(promise: Promise<unknown>): Promise<KubeError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(KubeError);
  expect((err as Error).message).not.toContain(TOKEN);
  return err as KubeError;
}

describe('KubeClient credentials, against the simulated API server', () => {
  it('a bearer token, inline and from a tokenFile', async () => {
    for (const conn of [await connect({ token: TOKEN }), await connect({ tokenFile: 'token' }, { token: `${TOKEN}\n` })]) {
      const client = new KubeClient(conn);
      expect((await client.list(IPPOOL, soon())).items).toEqual([]);
      client.close();
    }
    expect(server.log.at(-1)?.user).toBe('underlay');
  });

  it('a client certificate, from files and as data', async () => {
    const cert = server.pki.client('system:node:n1');
    const fromFiles = await connect({ 'client-certificate': 'n1.crt', 'client-key': 'n1.key' }, { 'n1.crt': cert.cert, 'n1.key': cert.key });
    const fromData = await connect({ 'client-certificate-data': Buffer.from(cert.cert).toString('base64'), 'client-key-data': Buffer.from(cert.key).toString('base64') });
    for (const conn of [fromFiles, fromData]) {
      const client = new KubeClient(conn);
      await client.list(IPPOOL, soon());
      expect(server.log.at(-1)).toMatchObject({ user: 'system:node:n1', code: 200 });
      client.close();
    }
  });

  it('in-cluster: the service account directory and KUBERNETES_SERVICE_HOST/PORT', async () => {
    const sa = mkdtempSync(join(dir, 'sa-'));
    writeFileSync(join(sa, 'token'), TOKEN);
    writeFileSync(join(sa, 'ca.crt'), server.pki.ca.cert);
    writeFileSync(join(sa, 'namespace'), 'default');
    const url = new URL(server.url);
    const client = new KubeClient(inClusterConnection({ dir: sa, env: { KUBERNETES_SERVICE_HOST: url.hostname, KUBERNETES_SERVICE_PORT: url.port } }));
    await client.create(IPPOOL, pool('in-cluster-24'), soon());
    expect(server.object('ippools.whereabouts.cni.cncf.io', 'default', 'in-cluster-24')).toBeDefined();
    client.close();
  });

  it('a server certificate from another CA is a final TLS error; insecure-skip-tls-verify accepts it', async () => {
    const home = mkdtempSync(join(dir, 'tls-'));
    const other = server.pki.foreignClient('x');
    writeFileSync(join(home, 'kubeconfig'), JSON.stringify({
      'current-context': 'c', contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }], users: [{ name: 'u', user: { token: TOKEN } }],
      clusters: [{ name: 'k', cluster: { server: server.url, 'certificate-authority-data': Buffer.from(other.cert).toString('base64') } }],
    }));
    const untrusted = new KubeClient(await loadKubeconfig(join(home, 'kubeconfig')));
    const err = await outcome(untrusted.list(IPPOOL, soon()));
    expect(err).toMatchObject({ outcome: 'tls', mayPass: false, code: 5 });
    untrusted.close();
    const insecure = new KubeClient({ server: server.url, namespace: 'kube-system', tls: { insecureSkipVerify: true }, token: () => TOKEN, source: 'test' });
    expect((await insecure.list(IPPOOL, soon())).items).toBeDefined();
    insecure.close();
  });
});

describe('KubeClient outcomes', () => {
  let client: KubeClient;
  beforeAll(async () => {
    client = new KubeClient(await connect({ token: TOKEN }));
  });
  afterAll(() => client.close());

  it('alreadyExists, conflict, notFound, invalid and notServed from the Status the server answers', async () => {
    const created = await client.create(IPPOOL, pool('10.0.0.0-24'), soon());
    expect(created.metadata.resourceVersion).toMatch(/^\d+$/);
    expect(await outcome(client.create(IPPOOL, pool('10.0.0.0-24'), soon()))).toMatchObject({ outcome: 'alreadyExists', httpStatus: 409 });
    const replaced = await client.replace(IPPOOL, pool('10.0.0.0-24', created.metadata.resourceVersion), soon());
    const stale = await outcome(client.replace(IPPOOL, pool('10.0.0.0-24', created.metadata.resourceVersion), soon()));
    expect(stale).toMatchObject({ outcome: 'conflict', mayPass: false });
    expect(stale.message).toMatch(/^Kubernetes API at https:\/\/127\.0\.0\.1:\d+: replace ippools\.whereabouts\.cni\.cncf\.io "10\.0\.0\.0-24": Operation cannot be fulfilled .* \(HTTP 409 Conflict\)$/);
    expect(await outcome(client.delete(IPPOOL, '10.0.0.0-24', soon(), { resourceVersion: created.metadata.resourceVersion }))).toMatchObject({ outcome: 'conflict' });
    expect(await outcome(client.patch(IPPOOL, '10.0.0.0-24', [{ op: 'test', path: '/metadata/resourceVersion', value: created.metadata.resourceVersion }], soon()))).toMatchObject({ outcome: 'invalid', httpStatus: 422 });
    await client.patch(IPPOOL, '10.0.0.0-24', [{ op: 'test', path: '/metadata/resourceVersion', value: replaced.metadata.resourceVersion }, { op: 'add', path: '/spec/allocations/3', value: { id: 'c', podref: 'a/b' } }], soon());
    await client.delete(IPPOOL, '10.0.0.0-24', soon());
    expect(await outcome(client.get(IPPOOL, '10.0.0.0-24', soon()))).toMatchObject({ outcome: 'notFound', httpStatus: 404 });
    const invalid = await outcome(client.create(IPPOOL, { metadata: { name: 'x-24' }, spec: { range: '10.0.0.0/24', allocations: { 1: { id: 'c' } } } }, soon()));
    expect(invalid.outcome).toBe('invalid');
    expect(invalid.message).toContain('spec.allocations[1].podref: Required value');
    expect(await outcome(client.list({ ...IPPOOL, version: 'v9' }, soon()))).toMatchObject({ outcome: 'notServed' });
  });

  it('lists by label and field selector, in another namespace or in all of them', async () => {
    server.seed('pods', { metadata: { name: 'a', namespace: 'default', labels: { app: 'x' } }, spec: { nodeName: 'n1' }, status: { phase: 'Running' } });
    server.seed('pods', { metadata: { name: 'b', namespace: 'kube-system', labels: { app: 'x' } }, spec: { nodeName: 'n2' }, status: { phase: 'Running' } });
    const pods = { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true };
    expect((await client.list(pods, soon(), { namespace: null, labelSelector: 'app=x' })).items.map((p) => p.metadata.name)).toEqual(['a', 'b']);
    expect((await client.list(pods, soon(), { namespace: null, fieldSelector: 'spec.nodeName=n2' })).items.map((p) => p.metadata.name)).toEqual(['b']);
    expect((await client.list(pods, soon(), { namespace: 'default' })).items.map((p) => p.metadata.name)).toEqual(['a']);
    expect(await outcome(client.list(pods, soon(), { fieldSelector: 'spec.bogus=1' }))).toMatchObject({ outcome: 'badRequest' });
  });

  it('unauthorized and forbidden are final', async () => {
    const stranger = new KubeClient({ ...client.connection, token: () => 'wrong' });
    expect(await outcome(stranger.list(IPPOOL, soon()))).toMatchObject({ outcome: 'unauthorized', mayPass: false, code: 5 });
    stranger.close();
    const nobody = new KubeClient({ ...client.connection, token: () => 'nobody-token' });
    const denied = await outcome(nobody.create(IPPOOL, pool('y-24'), soon()));
    expect(denied).toMatchObject({ outcome: 'forbidden', httpStatus: 403 });
    expect(denied.message).toContain('User "nobody" cannot create resource "ippools"');
    nobody.close();
  });

  it('tooLarge for 413 and for etcd\'s "request is too large"', async () => {
    const allocations = (n: number): Record<string, unknown> => Object.fromEntries(Array.from({ length: n }, (_, i) => [String(i), { id: 'e'.repeat(64), podref: `ns/pod-${i}` }]));
    for (const [n, httpStatus] of [[20_000, 500], [40_000, 413]] as const) {
      const big = { metadata: { name: `big-${n}-16` }, spec: { range: '10.0.0.0/16', allocations: allocations(n) } };
      expect(await outcome(client.create(IPPOOL, big, soon()))).toMatchObject({ outcome: 'tooLarge', mayPass: false, httpStatus });
    }
  });

  it('no answer, a dropped connection, throttling and 5xx may pass (code 11); the deadline holds', async () => {
    for (const fault of [{ status: 503 }, { status: 429 }, { status: 504 }, { drop: true as const }]) {
      server.inject(fault);
      expect(await outcome(client.list(IPPOOL, soon()))).toMatchObject({ outcome: 'unavailable', mayPass: true, code: 11 });
    }
    server.inject({ hang: true });
    const started = Date.now();
    expect(await outcome(client.get(IPPOOL, 'x', Date.now() + 300))).toMatchObject({ outcome: 'unavailable' });
    expect(Date.now() - started).toBeLessThan(1500);
    expect(await outcome(client.get(IPPOOL, 'x', Date.now() - 1))).toMatchObject({ outcome: 'unavailable' });
  });

  it('a server that repeats the token in its answer does not get it into the message', async () => {
    server.inject({ status: 500, message: `internal error for request with Authorization: Bearer ${TOKEN}` });
    const err = await outcome(client.list(IPPOOL, soon()));
    expect(err.message).toContain('Bearer <redacted>');
  });
});
