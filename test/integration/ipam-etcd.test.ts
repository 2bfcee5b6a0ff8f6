// The BUILT `whereabouts` executable (dist/bin, test/helpers/exec.ts) on a real etcd, as a runtime runs
// it: the demo's config (scripts/demo.sh) with `etcd_host` in place of the file store, five pods in
// order and their DELs; then an etcd with TLS, client certificates and users, where the right settings
// work and each wrong one is a clear CNI error that quotes neither the password nor the key.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cni, requireBuild, type CniRun } from '../helpers/exec.ts';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.ts';
import { poolNames, readPool, reservationNames, storeOf } from '../helpers/store.ts';
import type { IpamStore } from '../../ipam/store/types.ts';

/** Runs `check` on the store `ipam` names, read through the store interface, and closes it. */
async function withStore(ipam: Record<string, unknown>, check: (store: IpamStore) => Promise<void>): Promise<void> {
  const store = await storeOf(ipam);
  try {
    await check(store);
  } finally {
    await store.close();
  }
}

const hostPort = (url: string): string => url.replace(/^https?:\/\//, '');
const demo = (ipam: Record<string, unknown>) => ({
  cniVersion: '1.1.0',
  name: 'demo-underlay',
  type: 'macvlan',
  master: 'eth0',
  mode: 'bridge',
  ipam: { type: 'whereabouts', range: '192.168.91.100-192.168.91.110/24', gateway: '192.168.91.1', ...ipam },
});
/** The IPAM plugin as macvlan delegates to it, for pod `demo/<pod>`. */
const run = (command: string, pod: string, config: unknown): Promise<CniRun> => cni('whereabouts', {
  command,
  config,
  containerId: `demo-${pod}`,
  netns: `/run/netns/underlay-demo-${pod}`,
  ifName: 'net1',
  args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=${pod}`,
  // Bounded, so that a refusal retried by mistake fails the test instead of hanging it.
  env: { UNDERLAY_IPAM_DEADLINE_MS: '10000' },
});
const PODS = ['pod-1', 'pod-2', 'pod-3', 'pod-4', 'pod-5'];

beforeAll(requireBuild);

describe('the demo config on etcd (etcd_host), through the built executable', () => {
  let etcd: EtcdCluster | undefined;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.destroy();
  });

  it('gives five pods .100 to .104 in order; their DELs empty the pool', async () => {
    const ipam = { etcd_host: hostPort(etcd!.endpoints[0]!) };
    const config = demo(ipam);
    for (const [i, pod] of PODS.entries()) {
      const out = await run('ADD', pod, config);
      expect(out.exitCode, out.stdout + out.stderr).toBe(0);
      expect(out.json).toMatchObject({ cniVersion: '1.1.0', ips: [{ address: `192.168.91.${100 + i}/24`, gateway: '192.168.91.1' }] });
    }
    // Where the demo's config puts them: etcd_prefix's default, /underlay/ipam/.
    expect(await etcd!.etcdctl(['get', '--prefix', '--keys-only', '/underlay/ipam/pools/'])).toContain('/underlay/ipam/pools/192.168.91.0-24');
    await withStore(ipam, async (store) => {
      const leases = (await readPool(store, '192.168.91.0-24'))!.value.allocations;
      expect(Object.entries(leases).map(([offset, a]) => [offset, a.id, a.podref])).toEqual(
        PODS.map((pod, i) => [String(100 + i), `demo-${pod}`, `demo/${pod}`]),
      );
    });

    for (const pod of PODS) {
      const out = await run('DEL', pod, config);
      expect(out.exitCode, out.stdout + out.stderr).toBe(0);
      expect(out.stdout).toBe('');
    }
    await withStore(ipam, async (store) => {
      expect((await readPool(store, '192.168.91.0-24'))!.value.allocations).toEqual({});
      expect(await reservationNames(store)).toEqual([]);
      expect(await poolNames(store)).toEqual(['192.168.91.0-24']);
    });
  });
});

describe('etcd with TLS, client certificates and users, through the built executable', () => {
  let etcd: EtcdCluster | undefined;
  beforeAll(async () => {
    etcd = await startEtcd({ tls: true, clientCertAuth: true, auth: true });
  });
  afterAll(async () => {
    await etcd?.destroy();
  });

  /** The settings that work: the CA, a client certificate with an empty CN (the gateway needs that), the user. */
  const good = (): Record<string, unknown> => {
    const { tls, user } = etcd!;
    return {
      etcd_host: hostPort(etcd!.endpoints[0]!),
      etcd_username: user!.name,
      etcd_password: user!.password,
      etcd_ca_cert_file: tls!.caFile,
      etcd_cert_file: tls!.client.certFile,
      etcd_key_file: tls!.client.keyFile,
    };
  };

  /** Every secret the test knows: the passwords, and each line of each private key. */
  const secrets = (): string[] => {
    const { tls, user, root } = etcd!;
    const keys = [tls!.client.keyFile, tls!.foreignClient.keyFile].flatMap((f) => readFileSync(f, 'utf8').split('\n').filter((l) => l.length > 20 && !l.startsWith('-----')));
    return [user!.password, root!.password, WRONG, ...keys];
  };
  const WRONG = 'wrong-password-7f3a9c';

  /** An ADD that must fail at once with a CNI error JSON naming `cause`, and quote no secret. */
  async function refused(ipam: Record<string, unknown>, pod: string): Promise<{ code: number; msg: string }> {
    const started = Date.now();
    const out = await run('ADD', pod, demo(ipam));
    expect(out.exitCode, out.stdout + out.stderr).not.toBe(0);
    expect(out.json?.cniVersion, out.stdout).toBe('1.1.0');
    expect(typeof out.json?.code, out.stdout).toBe('number');
    expect(typeof out.json?.msg, out.stdout).toBe('string');
    // A final error: not retried until the deadline.
    expect(Date.now() - started).toBeLessThan(8_000);
    for (const secret of secrets()) {
      expect(out.stdout).not.toContain(secret);
      expect(out.stderr).not.toContain(secret);
    }
    return out.json as { code: number; msg: string };
  }

  it('an ADD with etcd_username/password and the CA, client certificate and key files succeeds', async () => {
    const out = await run('ADD', 'pod-1', demo(good()));
    expect(out.exitCode, out.stdout + out.stderr).toBe(0);
    expect(out.json).toMatchObject({ ips: [{ address: '192.168.91.100/24', gateway: '192.168.91.1' }] });
    for (const secret of secrets()) expect(out.stdout + out.stderr).not.toContain(secret);
    await withStore(good(), async (store) => {
      expect((await readPool(store, '192.168.91.0-24'))!.value.allocations['100']).toMatchObject({ id: 'demo-pod-1', podref: 'demo/pod-1' });
    });
  });

  it('a wrong password: a CNI error naming the user and the fields to check', async () => {
    const err = await refused({ ...good(), etcd_password: WRONG }, 'pod-2');
    expect(err.code).toBe(7);
    expect(err.msg).toMatch(/authentication of user "underlay" failed: check ipam\.etcd_username and ipam\.etcd_password/);
  });

  it('no client certificate: a CNI error saying that etcd requires one', async () => {
    const { etcd_cert_file: _c, etcd_key_file: _k, ...without } = good();
    const err = await refused(without, 'pod-3');
    expect(err.code).toBe(7);
    expect(err.msg).toMatch(/requires a client certificate: set ipam\.etcd_cert_file and ipam\.etcd_key_file/);
  });

  it("an untrusted CA (one that did not sign etcd's certificate): a CNI error naming the CA file", async () => {
    const foreign = etcd!.tls!.foreignCaFile;
    const err = await refused({ ...good(), etcd_ca_cert_file: foreign }, 'pod-4');
    expect(err.code).toBe(7);
    expect(err.msg).toContain(`not signed by the CA in ipam.etcd_ca_cert_file "${foreign}"`);
  });
});
