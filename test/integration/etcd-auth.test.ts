// The etcd store against an etcd that serves TLS, requires client certificates signed by its CA, and has
// auth on with a user whose role may read and write the store's prefix. The store works with the right
// settings; each wrong one (password, missing or foreign client certificate, untrusted CA, a certificate
// with a CN, a user without rights) is a final CniError at once that says what to fix and quotes no
// secret. Also what etcd itself does with a certificate's CN, as test/helpers/etcd.ts describes it.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { CniError } from '../../lib/cni/errors.ts';
import type { EtcdSettings } from '../../ipam/config/schema.ts';
import { EtcdStore } from '../../ipam/store/etcd/store.ts';
import { StoreUnavailable, type PoolRecord } from '../../ipam/store/types.ts';
import { startEtcd, type CertPair } from '../helpers/etcd.ts';

const run = promisify(execFile);
// Tokens idle for a second expire, so a test can watch the store authenticate again.
const etcd = await startEtcd({ tls: true, clientCertAuth: true, auth: true, extraFlags: ['--auth-token-ttl', '1'] });
afterAll(() => etcd.destroy());

const tls = etcd.tls!;
const user = etcd.user!;
const good = (): EtcdSettings => ({
  endpoints: etcd.endpoints,
  caCertFile: tls.caFile,
  certFile: tls.client.certFile,
  keyFile: tls.client.keyFile,
  username: user.name,
  password: user.password,
});
const soon = () => Date.now() + 10_000;
const pool: PoolRecord = { range: '10.3.0.0/24', allocations: { '9': { id: 'c9', podref: 'ns/p9' } } };

/** Every secret the test knows: passwords and the lines of each private key. */
function secrets(): string[] {
  const keys = [tls.client.keyFile, tls.foreignClient.keyFile].flatMap((f) => readFileSync(f, 'utf8').split('\n').filter((l) => l.length > 20 && !l.startsWith('-----')));
  return [user.password, etcd.root!.password, 'wrong-password-42', ...keys];
}

/** Runs one read with `settings`: it must fail at once with a final CniError that quotes no secret. */
async function refusal(settings: EtcdSettings): Promise<CniError> {
  const store = new EtcdStore(settings);
  const started = Date.now();
  try {
    const err = await store.readPool('anything', soon()).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CniError);
    expect(err).not.toBeInstanceOf(StoreUnavailable);
    // Final: not retried until the deadline.
    expect(Date.now() - started).toBeLessThan(3_000);
    const { message, details } = err as CniError;
    for (const secret of secrets()) expect(`${message} ${details}`).not.toContain(secret);
    expect(message).toContain(etcd.endpoints[0]);
    return err as CniError;
  } finally {
    await store.close();
  }
}

describe('etcd with TLS, client certificates and users', () => {
  it('works with the CA, a client certificate without CN, and the user and password', async () => {
    const store = new EtcdStore(good());
    try {
      const [v] = (await store.commit([{ kind: 'pool', name: 'auth-ok', expected: undefined, value: pool }], soon()))!;
      expect(await store.readPool('auth-ok', soon())).toEqual({ value: pool, version: v });
      expect((await store.listPools('auth-', soon())).map((p) => p.name)).toEqual(['auth-ok']);
      await store.ping(soon());
    } finally {
      await store.close();
    }
  });

  it('a wrong password: code 7 naming the user and the fields to check', async () => {
    const err = await refusal({ ...good(), password: 'wrong-password-42' });
    expect(err.code).toBe(7);
    expect(err.message).toMatch(/authentication of user "underlay" failed: check ipam\.etcd_username and ipam\.etcd_password/);
  });

  it('no user in the config: code 7 saying that authentication is on', async () => {
    const err = await refusal({ ...good(), username: undefined, password: undefined });
    expect(err.code).toBe(7);
    expect(err.message).toMatch(/authentication is enabled: set ipam\.etcd_username and ipam\.etcd_password/);
  });

  it('no client certificate: code 7 saying that one is required', async () => {
    const err = await refusal({ ...good(), certFile: undefined, keyFile: undefined });
    expect(err.code).toBe(7);
    expect(err.message).toMatch(/requires a client certificate: set ipam\.etcd_cert_file and ipam\.etcd_key_file/);
  });

  it('a client certificate from another CA: code 7 naming the certificate file', async () => {
    const err = await refusal({ ...good(), certFile: tls.foreignClient.certFile, keyFile: tls.foreignClient.keyFile });
    expect(err.code).toBe(7);
    expect(err.message).toContain(`refused the client certificate ipam.etcd_cert_file "${tls.foreignClient.certFile}"`);
  });

  it("a CA that did not sign the server's certificate: code 7 naming the CA file", async () => {
    const err = await refusal({ ...good(), caCertFile: tls.foreignCaFile });
    expect(err.code).toBe(7);
    expect(err.message).toContain(`not signed by the CA in ipam.etcd_ca_cert_file "${tls.foreignCaFile}"`);
    const system = await refusal({ ...good(), caCertFile: undefined });
    expect(system.message).toMatch(/not signed by a CA the system trusts: set ipam\.etcd_ca_cert_file/);
  });

  it('a client certificate with a CN: code 7 explaining that the gateway needs one without', async () => {
    const named: CertPair = await tls.clientWithCn(user.name);
    const err = await refusal({ ...good(), certFile: named.certFile, keyFile: named.keyFile });
    expect(err.code).toBe(7);
    expect(err.message).toMatch(/refuses a client certificate that has a Common Name .*use a certificate whose subject has no CN/);
  });

  it("a user without rights on the store's prefix: code 7 saying what to grant", async () => {
    const err = await refusal({ ...good(), prefix: '/elsewhere/' });
    expect(err.code).toBe(7);
    expect(err.message).toMatch(/user "underlay" may not read and write the store's keys: grant its role readwrite/);
  });

  it('authenticates again, once, when its token has expired', async () => {
    const store = new EtcdStore(good());
    try {
      await store.readPool('auth-ok', soon());
      expect(store.requests).toBe(2);
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(await store.readPool('auth-ok', soon())).toBeDefined();
      // The refused read, one authentication, the read again.
      expect(store.requests).toBe(5);
    } finally {
      await store.close();
    }
  });
});

describe("what etcd does with a client certificate's CN (as the harness documents it)", () => {
  const etcdctl = async (cert: CertPair, args: string[]) =>
    run('etcdctl', ['--endpoints', etcd.endpoints.join(','), '--cacert', tls.caFile, '--cert', cert.certFile, '--key', cert.keyFile, ...args])
      .then(({ stdout }) => stdout, (err: { stderr?: string }) => `failed: ${err.stderr ?? ''}`);

  it('over gRPC the CN is the user: a certificate named after the user reads its prefix and nothing else', async () => {
    const named = await tls.clientWithCn(user.name);
    expect(await etcdctl(named, ['get', '/underlay/x'])).toBe('');
    expect(await etcdctl(named, ['get', '/other'])).toMatch(/failed: .*permission denied/);
    expect(await etcdctl(tls.client, ['get', '/underlay/x'])).toMatch(/failed: .*(permission denied|user name is empty)/);
  });

  it('with auth off, a certificate with a CN is accepted by the gateway', async () => {
    const open = await startEtcd({ tls: true, clientCertAuth: true });
    const named = await open.tls!.clientWithCn('anyone');
    const store = new EtcdStore({ endpoints: open.endpoints, caCertFile: open.tls!.caFile, certFile: named.certFile, keyFile: named.keyFile });
    try {
      await store.ping(soon());
    } finally {
      await store.close();
      await open.destroy();
    }
  });

  it("the server certificate's CN is not a user for gateway requests, even when it is \"root\"", async () => {
    const rooted = await startEtcd({ tls: true, clientCertAuth: true, auth: true, serverCn: 'root' });
    const store = new EtcdStore({ endpoints: rooted.endpoints, caCertFile: rooted.tls!.caFile, certFile: rooted.tls!.client.certFile, keyFile: rooted.tls!.client.keyFile });
    try {
      await expect(store.readPool('x', soon())).rejects.toThrow(/authentication is enabled/);
    } finally {
      await store.close();
      await rooted.destroy();
    }
  });

  it('a server certificate without extendedKeyUsage clientAuth breaks the gateway: unavailable, with a hint', async () => {
    const broken = await startEtcd({ tls: true, clientCertAuth: true, serverCertClientAuth: false });
    const store = new EtcdStore({ endpoints: broken.endpoints, caCertFile: broken.tls!.caFile, certFile: broken.tls!.client.certFile, keyFile: broken.tls!.client.keyFile });
    try {
      const err = await store.readPool('x', Date.now() + 3_000).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailable);
      expect((err as Error).message).toMatch(/server certificate may lack extendedKeyUsage clientAuth/);
    } finally {
      await store.close();
      await broken.destroy();
    }
  });
});
