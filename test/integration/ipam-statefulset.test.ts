// A StatefulSet pod deleted and re-created under its name (same namespace/name, a new UID) gets its
// address back, but only once the API has no pod of the old UID: while the old pod may still run (a
// pod being deleted on a node that does not answer still shows in the API, terminating), the new pod gets
// another address. On the Kubernetes store, and on the file store with a kubeconfig to ask the API;
// one-record pools and pools in shards. Without a kubeconfig nothing is taken over.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { KubeApiServer } from '../helpers/kube-apiserver.ts';
import { invocation, tempStoreDir } from '../helpers/ipam-invocation.ts';

let server: KubeApiServer;
let kubeconfig: string;
const dir = mkdtempSync(join(tmpdir(), 'underlay-sts-'));
beforeAll(async () => {
  server = await KubeApiServer.start({ namespaces: ['default', 'kube-system', 'apps'] });
  kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, server.kubeconfig({ token: 'admin-token' }, 'kube-system'), { mode: 0o600 });
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A running pod as the API shows it; its UID is the server's, as kube-apiserver assigns it. */
const pod = (name: string): string => server.seed('pods', { metadata: { namespace: 'apps', name }, spec: { nodeName: 'n1' }, status: { phase: 'Running' } }).metadata.uid!;
const forget = (name: string) => server.store.forget(server.resource('pods'), 'apps', name);
const add = async (ipam: Record<string, unknown>, name: string, uid: string, id: string) =>
  (await ipamPlugin.add(invocation({ ipam, containerId: id, args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=apps;K8S_POD_NAME=${name};K8S_POD_UID=${uid}` }))).ips![0]!.address;

const stores = {
  kubernetes: (range: string) => ({ type: 'whereabouts', range, kubernetes: { kubeconfig } }),
  'file with a kubeconfig': (range: string) => ({ type: 'whereabouts', range, datastore: 'file', file_store_dir: tempStoreDir(), kubernetes: { kubeconfig } }),
};

describe.each(Object.entries(stores))('a StatefulSet pod re-created under its name (%s)', (store, ipamFor) => {
  for (const [label, range, first] of [['one record', '10.77.0.0/24', '10.77.0.1/24'], ['in shards', '10.78.0.0/20', '10.78.0.1/20']] as const) {
    it(`gets its address back once the old pod is gone (${label})`, async () => {
      const ipam = ipamFor(range);
      const name = `web-${store.length}-${label.length}`;
      try {
        expect(await add(ipam, name, pod(name), 'c1')).toBe(first);
        forget(name); // deleted; its DEL never came (the node was lost), its lease is still there
        expect(await add(ipam, name, pod(name), 'c2')).toBe(first);
      } finally {
        forget(name);
      }
    });

    it(`gets another address while the old pod still exists (${label})`, async () => {
      const ipam = ipamFor(range.replace('10.7', '10.8'));
      const mine = first.replace('10.7', '10.8');
      const name = `db-${store.length}-${label.length}`;
      try {
        const old = pod(name);
        expect(await add(ipam, name, old, 'c1')).toBe(mine);
        // The old pod still shows in the API (terminating on a node that does not answer): it may still run.
        const other = await add(ipam, name, 'uid-of-the-successor', 'c2');
        expect(other).not.toBe(mine);
      } finally {
        forget(name);
      }
    });
  }
});

describe('without a kubeconfig to ask', () => {
  it('a re-created pod never takes over: another address', async () => {
    const ipam = { type: 'whereabouts', range: '10.79.0.0/24', file_store_dir: tempStoreDir() };
    expect(await add(ipam, 'db-0', 'uid-1', 'c1')).toBe('10.79.0.1/24');
    expect(await add(ipam, 'db-0', 'uid-2', 'c2')).toBe('10.79.0.2/24');
  });
});
