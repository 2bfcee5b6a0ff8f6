// The etcd store against a real etcd (Debian's etcd-server): the store contract over plain HTTP and over
// TLS with client certificates and users, then what is etcd's own: the key layout a user sees with
// etcdctl, requests per call, endpoints and failover, etcd's refusals, bad records, bad settings.
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { CniError } from '../../lib/cni/errors.ts';
import { EtcdError } from '../../ipam/store/etcd/errors.ts';
import { EtcdStore } from '../../ipam/store/etcd/store.ts';
import { StoreUnavailable, type PoolRecord } from '../../ipam/store/types.ts';
import { startEtcd } from '../helpers/etcd.ts';
import { describeStoreContract } from '../store/conformance.ts';

const plain = await startEtcd();
const secure = await startEtcd({ tls: true, clientCertAuth: true, auth: true });
afterAll(async () => {
  await plain.destroy();
  await secure.destroy();
});

const hostPort = (url: string): string => url.replace(/^https?:\/\//, '');
const secureSettings = () => ({
  endpoints: secure.endpoints,
  caCertFile: secure.tls!.caFile,
  certFile: secure.tls!.client.certFile,
  keyFile: secure.tls!.client.keyFile,
  username: secure.user!.name,
  password: secure.user!.password,
});

describeStoreContract('etcd over http', async () => new EtcdStore({ endpoints: plain.endpoints }));
describeStoreContract('etcd over TLS with client certificates and a user', async () => new EtcdStore(secureSettings()));

const soon = () => Date.now() + 10_000;
const pool = (allocations: PoolRecord['allocations'] = {}): PoolRecord => ({ range: '10.1.0.0/24', allocations });

describe('EtcdStore on a real etcd', () => {
  it('keeps each record under <prefix>pools/ or <prefix>reservations/ as JSON, its version the mod_revision', async () => {
    const store = new EtcdStore({ endpoints: plain.endpoints });
    try {
      const [v] = (await store.commit([
        { kind: 'pool', name: 'layout-10.1.0.0-24', expected: undefined, value: pool({ '7': { id: 'c1', podref: 'ns/a' } }) },
        { kind: 'reservation', name: 'layout-10.1.0.7', expected: undefined, value: { podref: 'ns/a', containerid: 'c1' } },
      ], soon()))!;
      const shown = JSON.parse(await plain.etcdctl(['get', '--prefix', '/underlay/ipam/', '-w', 'json'])) as { kvs: Array<{ key: string; value: string; mod_revision: number }> };
      const byKey = new Map(shown.kvs.map((kv) => [Buffer.from(kv.key, 'base64').toString(), kv]));
      const poolKv = byKey.get('/underlay/ipam/pools/layout-10.1.0.0-24')!;
      expect(JSON.parse(Buffer.from(poolKv.value, 'base64').toString())).toEqual(pool({ '7': { id: 'c1', podref: 'ns/a' } }));
      expect(String(poolKv.mod_revision)).toBe(v);
      expect(byKey.has('/underlay/ipam/reservations/layout-10.1.0.7')).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('uses the prefix it is given, apart from the default one', async () => {
    const custom = new EtcdStore({ endpoints: plain.endpoints, prefix: '/site-a/ipam' });
    const standard = new EtcdStore({ endpoints: plain.endpoints });
    try {
      await custom.commit([{ kind: 'pool', name: 'prefixed', expected: undefined, value: pool() }], soon());
      expect(await plain.etcdctl(['get', '/site-a/ipam/pools/prefixed', '--print-value-only'])).toContain('10.1.0.0/24');
      expect(await standard.readPool('prefixed', soon())).toBeUndefined();
      expect((await custom.listPools('', soon())).map((p) => p.name)).toEqual(['prefixed']);
    } finally {
      await custom.close();
      await standard.close();
    }
  });

  it('sends one request per read, listing, commit and ping, and authenticates once per store', async () => {
    for (const [store, auth] of [[new EtcdStore({ endpoints: plain.endpoints }), 0], [new EtcdStore(secureSettings()), 1]] as const) {
      try {
        const [v] = (await store.commit([{ kind: 'pool', name: `count-${auth}`, expected: undefined, value: pool() }], soon()))!;
        expect(store.requests).toBe(1 + auth);
        await store.readPool(`count-${auth}`, soon());
        await store.listReservations('', soon());
        await store.commit([{ kind: 'pool', name: `count-${auth}`, expected: v, value: pool() }], soon());
        await store.ping(soon());
        expect(store.requests).toBe(5 + auth);
      } finally {
        await store.close();
      }
    }
  });

  it('ping proves a write would pass, and writes nothing', async () => {
    const store = new EtcdStore({ endpoints: plain.endpoints });
    try {
      const revision = async () => (JSON.parse(await plain.etcdctl(['get', 'x', '-w', 'json'])) as { header: { revision: number } }).header.revision;
      const before = await revision();
      await store.ping(soon());
      expect(await revision()).toBe(before);
      expect(await plain.etcdctl(['get', '--prefix', '/underlay/ipam/ping'])).toBe('');
    } finally {
      await store.close();
    }
  });

  it('reads "host:port" as http, or as https when TLS files are set', async () => {
    const bare = new EtcdStore({ endpoints: [hostPort(plain.endpoints[0]!)] });
    const tls = new EtcdStore({ ...secureSettings(), endpoints: [hostPort(secure.endpoints[0]!)] });
    try {
      expect(bare.description).toBe(`etcd at ${plain.endpoints[0]}`);
      expect(tls.description).toBe(`etcd at ${secure.endpoints[0]}`);
      await bare.ping(soon());
      await tls.ping(soon());
    } finally {
      await bare.close();
      await tls.close();
    }
  });

  it('takes "" for a user name and password as none (config templates carry them)', async () => {
    const store = new EtcdStore({ endpoints: plain.endpoints, username: '', password: '' });
    try {
      await store.ping(soon());
      expect(store.requests).toBe(1);
    } finally {
      await store.close();
    }
  });

  it('skips an endpoint that cannot be reached, and names every endpoint tried when none can', async () => {
    const dead = 'http://127.0.0.1:9'; // the discard port: nothing listens there
    const store = new EtcdStore({ endpoints: [dead, plain.endpoints[0]!] }, { startAt: 0 });
    try {
      for (let i = 0; i < 4; i++) await store.readPool('anything', soon());
      // One request went to the dead endpoint: the one that answered is asked first after it.
      expect(store.requests).toBe(5);
    } finally {
      await store.close();
    }
    const none = new EtcdStore({ endpoints: [dead, 'http://127.0.0.1:7'] });
    const started = Date.now();
    const err = await none.readPool('anything', Date.now() + 3_000).catch((e: unknown) => e);
    await none.close();
    expect(err).toBeInstanceOf(StoreUnavailable);
    expect((err as Error).message).toContain('127.0.0.1:9 is unreachable: ECONNREFUSED');
    expect((err as Error).message).toContain('127.0.0.1:7 is unreachable: ECONNREFUSED');
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it("passes on etcd's refusal of a request too large as a final error that says so", async () => {
    const store = new EtcdStore({ endpoints: plain.endpoints });
    try {
      const allocations: PoolRecord['allocations'] = {};
      for (let i = 0; i < 15_000; i++) allocations[String(i)] = { id: `container-${'x'.repeat(64)}-${i}`, podref: `namespace/pod-${i}` };
      const err = await store.commit([{ kind: 'pool', name: 'huge', expected: undefined, value: pool(allocations) }], soon()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EtcdError);
      expect((err as CniError).code).toBe(5);
      expect((err as Error).message).toMatch(/request is too large.*1\.5 MiB/);
      expect(await store.readPool('huge', soon())).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('passes on "too many operations in txn request" from an etcd with a lower --max-txn-ops', async () => {
    const small = await startEtcd({ extraFlags: ['--max-txn-ops', '2'] });
    const store = new EtcdStore({ endpoints: small.endpoints });
    try {
      const writes = ['a', 'b', 'c'].map((name) => ({ kind: 'reservation' as const, name, expected: undefined, value: { podref: 'ns/a' } }));
      const err = await store.commit(writes, soon()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EtcdError);
      expect((err as Error).message).toMatch(/too many operations in txn request.*--max-txn-ops/);
      expect(await store.listReservations('', soon())).toEqual([]);
    } finally {
      await store.close();
      await small.destroy();
    }
  });

  it('refuses a record that is not one, names its key, and lists past keys that are not records', async () => {
    await plain.etcdctl(['put', '/underlay/ipam/pools/garbled', 'not json']);
    await plain.etcdctl(['put', '/underlay/ipam/reservations/nested/key', '{"podref":"ns/x"}']);
    const store = new EtcdStore({ endpoints: plain.endpoints });
    try {
      const err = await store.readPool('garbled', soon()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(5);
      expect((err as Error).message).toContain('/underlay/ipam/pools/garbled');
      expect((await store.listReservations('nested', soon())).map((r) => r.name)).toEqual([]);
    } finally {
      await store.close();
      await plain.etcdctl(['del', '/underlay/ipam/pools/garbled']);
    }
  });

  it('refuses settings it cannot use, without quoting a secret', () => {
    const password = 'hunter2-secret';
    const attempts: Array<[Parameters<typeof open>[0], number, RegExp]> = [
      [{ endpoints: [] }, 7, /etcd_host\/ipam\.etcd_endpoints must name at least one/],
      [{ endpoints: [`http://root:${password}@127.0.0.1:2379`] }, 7, /carries credentials/],
      [{ endpoints: ['ftp://127.0.0.1'] }, 7, /must use http or https/],
      [{ endpoints: ['http://127.0.0.1:2379/v3'] }, 7, /no path/],
      [{ endpoints: ['127.0.0.1:2379'], certFile: secure.tls!.client.certFile }, 7, /etcd_cert_file is set but ipam\.etcd_key_file is not/],
      [{ endpoints: ['127.0.0.1:2379'], username: 'u' }, 7, /etcd_password is missing/],
      [{ endpoints: ['127.0.0.1:2379'], username: 'u', password: '' }, 7, /etcd_password is missing/],
      [{ endpoints: ['127.0.0.1:2379'], username: '', password }, 7, /etcd_username is missing/],
      [{ endpoints: ['127.0.0.1:2379'], caCertFile: '/nonexistent/ca.pem' }, 5, /cannot read ipam\.etcd_ca_cert_file "\/nonexistent\/ca\.pem": ENOENT/],
      [{ endpoints: ['127.0.0.1:2379'], caCertFile: secure.tls!.client.keyFile }, 7, /etcd_ca_cert_file .* holds no PEM certificate/],
      [{ endpoints: ['127.0.0.1:2379'], certFile: secure.tls!.client.certFile, keyFile: secure.tls!.foreignClient.keyFile }, 7, /key values mismatch/],
    ];
    const key = readFileSync(secure.tls!.client.keyFile, 'utf8').split('\n')[1]!;
    for (const [settings, code, message] of attempts) {
      const err = (() => {
        try {
          open(settings);
          return undefined;
        } catch (e) {
          return e;
        }
      })();
      expect(err, JSON.stringify(settings)).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(code);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain(password);
      expect((err as Error).message).not.toContain(key);
    }
  });
});

function open(settings: ConstructorParameters<typeof EtcdStore>[0]): EtcdStore {
  return new EtcdStore(settings);
}
