// Kubeconfig files and in-cluster credentials resolve into the server, TLS material, token and
// namespace a user expects, in every credential form client-go accepts; what we refuse is refused by
// name; no message ever shows a token.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { dump } from 'js-yaml';
import { CniError } from '../../lib/cni/errors.ts';
import { inClusterConnection, loadKubeconfig } from '../../lib/kube/kubeconfig.ts';
import { thrown } from '../helpers/ipam-invocation.ts';

const dir = mkdtempSync(join(tmpdir(), 'underlay-kubeconfig-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.useRealTimers());

const CA = '-----BEGIN CERTIFICATE-----\nMIIBcA==\n-----END CERTIFICATE-----\n';
const CERT = '-----BEGIN CERTIFICATE-----\nMIIBcB==\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN EC PRIVATE KEY-----\nMHcC==\n-----END EC PRIVATE KEY-----\n';
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const SECRET = 'sEcReT-t0ken-value';

let serial = 0;
function kubeconfig(user: Record<string, unknown> | null, cluster: Record<string, unknown> = { server: 'https://10.0.0.1:6443' }, context: Record<string, unknown> = {}, sub = ''): string {
  const home = join(dir, sub || `k${serial++}`);
  mkdirSync(home, { recursive: true });
  const file = join(home, 'whereabouts.kubeconfig');
  writeFileSync(file, dump({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'ctx',
    clusters: [{ name: 'local', cluster }],
    users: user === null ? [] : [{ name: 'sa', user }],
    contexts: [{ name: 'ctx', context: { cluster: 'local', ...(user !== null && { user: 'sa' }), ...context } }],
  }));
  return file;
}

async function refused(file: string): Promise<CniError> {
  const err = await loadKubeconfig(file).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(CniError);
  expect((err as CniError).message).not.toContain(SECRET);
  return err as CniError;
}

describe('kubeconfig', () => {
  it('a token and inline CA (what the whereabouts DaemonSet writes); namespace from the context', async () => {
    const c = await loadKubeconfig(kubeconfig({ token: SECRET }, { server: 'https://10.0.0.1:6443/', 'certificate-authority-data': b64(CA) }, { namespace: 'whereabouts' }));
    expect(c.server).toBe('https://10.0.0.1:6443');
    expect(c.token()).toBe(SECRET);
    expect(c.tls).toEqual({ ca: CA });
    expect(c.namespace).toBe('whereabouts');
    expect(c.source).not.toContain(SECRET);
  });

  it('namespace defaults to kube-system, as whereabouts does; a server without a scheme is https; a path prefix is kept', async () => {
    const c = await loadKubeconfig(kubeconfig(null, { server: 'rancher.example:443/k8s/clusters/c-1' }));
    expect(c.namespace).toBe('kube-system');
    expect(c.server).toBe('https://rancher.example:443/k8s/clusters/c-1');
    expect(c.token()).toBeUndefined();
  });

  it('relative file paths are resolved against the kubeconfig directory: tokenFile, client certificate and key, CA', async () => {
    const file = kubeconfig({ tokenFile: 'sa/token', 'client-certificate': 'tls/client.crt', 'client-key': 'tls/client.key' }, { server: 'https://api:6443', 'certificate-authority': 'tls/ca.crt' }, {}, 'rel');
    mkdirSync(join(dir, 'rel', 'sa'));
    mkdirSync(join(dir, 'rel', 'tls'));
    writeFileSync(join(dir, 'rel', 'sa', 'token'), `${SECRET}\n`);
    writeFileSync(join(dir, 'rel', 'tls', 'client.crt'), CERT);
    writeFileSync(join(dir, 'rel', 'tls', 'client.key'), KEY);
    writeFileSync(join(dir, 'rel', 'tls', 'ca.crt'), CA);
    const c = await loadKubeconfig(file);
    expect(c.token()).toBe(SECRET);
    expect(c.tls).toEqual({ ca: CA, cert: CERT, key: KEY });
  });

  it('a readable tokenFile wins over token and is read again after a minute (a rotated token)', async () => {
    const file = kubeconfig({ token: 'old', tokenFile: 'token' }, undefined, {}, 'rotate');
    writeFileSync(join(dir, 'rotate', 'token'), 'first');
    vi.useFakeTimers({ toFake: ['Date'] });
    const c = await loadKubeconfig(file);
    expect(c.token()).toBe('first');
    writeFileSync(join(dir, 'rotate', 'token'), 'second');
    expect(c.token()).toBe('first');
    vi.setSystemTime(Date.now() + 61_000);
    expect(c.token()).toBe('second');
  });

  it('*-data fields win over file fields and must be base64 PEM; a certificate needs its key', async () => {
    const c = await loadKubeconfig(kubeconfig({ 'client-certificate-data': b64(CERT), 'client-key-data': b64(KEY), 'client-certificate': '/nonexistent' }));
    expect(c.tls).toEqual({ cert: CERT, key: KEY });
    expect((await refused(kubeconfig({ 'client-key-data': b64(SECRET), 'client-certificate-data': b64(CERT) }))).message).toMatch(/user "sa": client-key-data is not base64-encoded PEM/);
    expect((await refused(kubeconfig({ 'client-certificate-data': b64(CERT) }))).message).toMatch(/needs both a certificate and a key/);
  });

  it('insecure-skip-tls-verify alone is honoured; with a CA it is refused, as client-go refuses it', async () => {
    expect((await loadKubeconfig(kubeconfig(null, { server: 'https://a', 'insecure-skip-tls-verify': true }))).tls).toEqual({ insecureSkipVerify: true });
    const err = await refused(kubeconfig(null, { server: 'https://a', 'insecure-skip-tls-verify': true, 'certificate-authority-data': b64(CA) }));
    expect(err.code).toBe(7);
    expect(err.message).toMatch(/insecure-skip-tls-verify cannot be combined with a certificate authority/);
  });

  it('tls-server-name is passed on; k8s_api_root replaces the server', async () => {
    const c = await loadKubeconfig(kubeconfig(null, { server: 'https://10.0.0.1', 'tls-server-name': 'kubernetes.default' }), { apiRoot: 'https://lb.example:6443' });
    expect(c.tls.serverName).toBe('kubernetes.default');
    expect(c.server).toBe('https://lb.example:6443');
  });

  it('refuses what it cannot use, naming the entry and the field', async () => {
    expect((await refused(kubeconfig({ exec: { command: 'aws' } }))).message).toMatch(/user "sa": exec credential plugins are not supported/);
    expect((await refused(kubeconfig({ 'auth-provider': { name: 'gcp' } }))).message).toMatch(/auth-provider plugins are not supported/);
    expect((await refused(kubeconfig({ username: 'admin', password: SECRET }))).message).toMatch(/basic authentication/);
    expect((await refused(kubeconfig(null, { server: 'https://a', 'proxy-url': 'http://proxy:3128' }))).message).toMatch(/proxy-url is not supported/);
    expect((await refused(kubeconfig({ tokenFile: '/nonexistent/token' }))).message).toMatch(/cannot read token file \/nonexistent\/token: ENOENT/);
    expect((await refused(kubeconfig(null, { server: 'ftp://a' }))).message).toMatch(/must be an https:\/\/ URL/);
  });

  it('refuses a broken structure, naming the field, and a missing context, cluster or user', async () => {
    const f = join(dir, 'typed.kubeconfig');
    writeFileSync(f, dump({ 'current-context': 'ctx', clusters: [{ name: 'local', cluster: { server: 1 } }], contexts: [{ name: 'ctx', context: { cluster: 'local' } }] }));
    expect((await refused(f)).message).toMatch(/clusters\[0\]\.cluster\.server: Invalid input: expected string/);
    writeFileSync(f, dump({ 'current-context': 'other', contexts: [] }));
    expect((await refused(f)).message).toMatch(/current-context "other" names no entry of contexts/);
    writeFileSync(f, dump({ 'current-context': 'ctx', contexts: [{ name: 'ctx', context: { cluster: 'gone' } }] }));
    expect((await refused(f)).message).toMatch(/names cluster "gone", which is not in clusters/);
    writeFileSync(f, dump({ 'current-context': 'ctx', clusters: [{ name: 'local', cluster: { server: 'https://a' } }], contexts: [{ name: 'ctx', context: { cluster: 'local', user: 'ghost' } }] }));
    expect((await refused(f)).message).toMatch(/names user "ghost", which is not in users/);
    writeFileSync(f, 'apiVersion: v1\nclusters: []\n');
    expect((await refused(f)).message).toMatch(/current-context is not set/);
    expect((await refused(join(dir, 'absent'))).code).toBe(5);
  });

  it('a YAML syntax error gives the line, never the line itself (it may hold a token)', async () => {
    const f = join(dir, 'broken.kubeconfig');
    writeFileSync(f, `apiVersion: v1\nusers:\n- name: sa\n  user:\n    token: "${SECRET}\n`);
    const err = await refused(f);
    expect(err.code).toBe(7);
    expect(err.message).toMatch(/is not valid YAML at line \d+/);
  });
});

describe('in-cluster credentials', () => {
  const sa = join(dir, 'serviceaccount');
  mkdirSync(sa);

  it('KUBERNETES_SERVICE_HOST/PORT and the mounted token, CA and namespace', () => {
    writeFileSync(join(sa, 'token'), `${SECRET}\n`);
    writeFileSync(join(sa, 'ca.crt'), CA);
    writeFileSync(join(sa, 'namespace'), 'whereabouts');
    const c = inClusterConnection({ dir: sa, env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' } });
    expect(c).toMatchObject({ server: 'https://10.96.0.1:443', namespace: 'whereabouts', tls: { ca: CA } });
    expect(c.token()).toBe(SECRET);
    expect(inClusterConnection({ dir: sa, env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' } }).server).toBe('https://[fd00::1]:443');
  });

  it('without a namespace file: kube-system; outside a pod: refused, saying why', () => {
    const bare = join(dir, 'bare-sa');
    mkdirSync(bare);
    writeFileSync(join(bare, 'token'), 't');
    expect(inClusterConnection({ dir: bare, env: { KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '1' } })).toMatchObject({ namespace: 'kube-system', tls: {} });
    const err = thrown(() => inClusterConnection({ dir: bare, env: {} }));
    expect(err).toBeInstanceOf(CniError);
    expect(err.message).toMatch(/KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set/);
    expect(thrown(() => inClusterConnection({ dir: join(dir, 'none'), env: { KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '1' } }))).toMatchObject({ code: 5 });
  });
});
