// The three IPAM stores as test fixtures, so a property test of leases runs unchanged on each:
//
//   const stores = useStores();                       // at the top of a test file
//   for (const store of stores) {
//     describe(`ADD [${store.kind} store]`, () => {
//       store.startBeforeAll();
//       it('...', async () => {
//         const ipam = { type: 'whereabouts', range: '10.0.0.0/24', ...store.fresh() };
//         ...
//         const records = await store.open(ipam);        // the same store, through IpamStore
//
// Each fixture gives a fresh, isolated config fragment per call:
//   file        a new temp dir (file_store_dir);
//   etcd        one real etcd per test file (test/helpers/etcd.ts), a new etcd_prefix per call;
//   kubernetes  one in-test API server per test file (test/helpers/kube-apiserver.ts, with Underlay's
//               CRDs from deploy/crds), a new namespace per call, and a kubeconfig for it (server URL,
//               inline CA, a bearer token the server accepts) in a temp dir.
// The etcd and the API server start on the first beforeAll that needs them (a file or a `-t` filter
// that runs no test of a store starts nothing), and are stopped, and every temp dir removed, in the
// file's afterAll even when tests or a start failed. Stores opened with open() close after each test.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe } from 'vitest';
import type { IpamStore } from '../../ipam/store/types.ts';
import { startEtcd, type EtcdCluster } from './etcd.ts';
import { KubeApiServer } from './kube-apiserver.ts';
import { storeOf } from './store.ts';

export type StoreKind = 'file' | 'etcd' | 'kubernetes';
export const STORE_KINDS: ReadonlyArray<StoreKind> = ['file', 'etcd', 'kubernetes'];

/** The store fields of an IPAM config section (file_store_dir, etcd_endpoints + etcd_prefix, kubernetes). */
export type StoreFragment = Record<string, unknown>;

export interface StoreFixture {
  readonly kind: StoreKind;
  /** Starts what the store needs, once per test file; later calls wait for the same start. */
  start(): Promise<void>;
  /** Registers start() as a beforeAll of the enclosing describe. */
  startBeforeAll(): void;
  /** A fresh, isolated fragment: no record of any other test is visible through it. After start(). */
  fresh(): StoreFragment;
  /** The store an IPAM section (or just its fragment) names, through the IpamStore interface; closed after the test. */
  open(ipam: StoreFragment): Promise<IpamStore>;
  /**
   * `underlay ipam` options that show the store `ipam` names: --dir for the file store, --kubeconfig for
   * Kubernetes (the namespace is the kubeconfig's), and for etcd, whose CLI flag has no prefix, --config
   * with a network config holding `ipam` (so the CLI then counts free addresses of its ranges).
   */
  cliArgs(ipam: StoreFragment): string[];
  /** Stops what start() started and removes every temp dir; safe to call whatever happened. */
  stop(): Promise<void>;
}

const tag = (): string => randomBytes(4).toString('hex');

abstract class Base implements StoreFixture {
  abstract readonly kind: StoreKind;
  private starting: Promise<void> | undefined;
  private readonly dirs: string[] = [];
  protected count = 0;

  start(): Promise<void> {
    this.starting ??= this.launch();
    return this.starting;
  }

  startBeforeAll(): void {
    beforeAll(() => this.start());
  }

  protected started(): void {
    if (!this.starting) throw new Error(`the ${this.kind} store fixture is not started: call startBeforeAll() in the describe`);
  }

  protected tempDir(prefix: string): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.dirs.push(dir);
    return dir;
  }

  protected abstract launch(): Promise<void>;
  protected abstract shutdown(): Promise<void>;
  abstract fresh(): StoreFragment;

  async open(ipam: StoreFragment): Promise<IpamStore> {
    const store = await storeOf(ipam);
    opened.push(store);
    return store;
  }

  cliArgs(ipam: StoreFragment): string[] {
    if (typeof ipam.file_store_dir === 'string') return ['--dir', ipam.file_store_dir];
    const kubeconfig = (ipam.kubernetes as { kubeconfig?: string } | undefined)?.kubeconfig;
    if (kubeconfig) return ['--kubeconfig', kubeconfig];
    const file = join(this.tempDir('underlay-ipam-cli-'), 'net.conf');
    writeFileSync(file, JSON.stringify({ cniVersion: '1.1.0', name: 'testnet', type: 'whereabouts', ipam: { type: 'whereabouts', ...ipam } }));
    return ['--config', file];
  }

  async stop(): Promise<void> {
    const errors: unknown[] = [];
    if (this.starting) {
      // A start that failed cleaned up after itself; one that succeeded is stopped here.
      const ok = await this.starting.then(() => true, () => false);
      if (ok) await this.shutdown().catch((err: unknown) => errors.push(err));
    }
    for (const dir of this.dirs.splice(0)) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, `stopping the ${this.kind} store fixture`);
  }
}

class FileFixture extends Base {
  readonly kind = 'file';
  protected async launch(): Promise<void> {}
  protected async shutdown(): Promise<void> {}

  fresh(): StoreFragment {
    return { file_store_dir: this.tempDir('underlay-ipam-') };
  }
}

class EtcdFixture extends Base {
  readonly kind = 'etcd';
  private etcd: EtcdCluster | undefined;

  protected async launch(): Promise<void> {
    this.etcd = await startEtcd();
  }

  protected async shutdown(): Promise<void> {
    await this.etcd?.destroy();
    this.etcd = undefined;
  }

  fresh(): StoreFragment {
    this.started();
    if (!this.etcd) throw new Error('etcd is not running: its start failed or has not finished');
    return { etcd_endpoints: this.etcd.endpoints, etcd_prefix: `/underlay-test/t${++this.count}-${tag()}/` };
  }
}

class KubernetesFixture extends Base {
  readonly kind = 'kubernetes';
  private server: KubeApiServer | undefined;
  private dir = '';

  protected async launch(): Promise<void> {
    this.dir = this.tempDir('underlay-kubeconfig-');
    this.server = await KubeApiServer.start();
  }

  protected async shutdown(): Promise<void> {
    await this.server?.close();
    this.server = undefined;
  }

  fresh(): StoreFragment {
    this.started();
    if (!this.server) throw new Error('the API server is not running: its start failed or has not finished');
    const namespace = `t${++this.count}-${tag()}`;
    // The in-test server serves the namespaces it was given; a new one is one more entry.
    this.server.store.namespaces.add(namespace);
    const kubeconfig = join(this.dir, `${namespace}.kubeconfig`);
    const token = this.server.identities[0]!.token!;
    writeFileSync(kubeconfig, this.server.kubeconfig({ token }, namespace), { mode: 0o600 });
    return { kubernetes: { kubeconfig } };
  }
}

const opened: IpamStore[] = [];
const scratch: string[] = [];

/** A private temp dir for a test, removed in the file's afterAll (useStores registers it). */
export function scratchDir(prefix = 'underlay-ipam-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

const make = (kind: StoreKind): StoreFixture => (kind === 'file' ? new FileFixture() : kind === 'etcd' ? new EtcdFixture() : new KubernetesFixture());

/**
 * The fixtures of `kinds` (default all three) for one test file: call it once at the file's top level.
 * Registers an afterEach that closes the stores open() gave and an afterAll that stops every fixture
 * and removes every scratchDir().
 */
export function useStores(kinds: ReadonlyArray<StoreKind> = STORE_KINDS): StoreFixture[] {
  const fixtures = kinds.map(make);
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    const results = await Promise.allSettled([
      ...fixtures.map((f) => f.stop()),
      ...scratch.splice(0).map(async (dir) => rmSync(dir, { recursive: true, force: true })),
    ]);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) throw new AggregateError(failed.map((r): unknown => r.reason), 'stopping the store fixtures');
  });
  return fixtures;
}

/**
 * describe(`on the <kind> store`) once per store of `kinds`, each started before its tests, for one
 * test file (it calls useStores); process.env is restored after every test, which may set NODENAME or
 * the IPAM's knobs.
 */
export function describeEachStore(body: (store: StoreFixture) => void, kinds: ReadonlyArray<StoreKind> = STORE_KINDS): void {
  const env = { ...process.env };
  afterEach(() => {
    process.env = { ...env };
  });
  for (const store of useStores(kinds)) {
    describe(`on the ${store.kind} store`, () => {
      store.startBeforeAll();
      body(store);
    });
  }
}
