// Picks the store a config names, and the only place that knows which stores exist. The file store is
// the default; the network stores (and node:https under them) are loaded only when a config names
// them. A config that names a cluster store never falls back to the node-local one, which would hand
// the same address out on two nodes.
import { isAbsolute } from 'node:path';
import { Code, CniError, showValue } from '../../lib/cni/errors.ts';
import type { IpamConfig } from '../config/load.ts';
import { FileStore } from './file/store.ts';
import { timedAsync, tracing } from '../../lib/trace.ts';
import type { IpamStore } from './types.ts';

export type StoreChoice = Pick<IpamConfig, 'datastore' | 'datastoreReason' | 'fileStoreDir' | 'etcd' | 'kubeconfig' | 'k8sApiRoot'>;

/** With UNDERLAY_TRACE, every store call is timed (lib/trace.ts). */
export async function openStore(config: StoreChoice): Promise<IpamStore> {
  const store = await openChosen(config);
  return tracing() ? traced(store) : store;
}

function traced(store: IpamStore): IpamStore {
  return new Proxy(store, {
    get(real, prop, receiver) {
      const value: unknown = Reflect.get(real, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => timedAsync(`store ${String(prop)} ${typeof args[0] === 'string' ? args[0] : ''}`.trim(), () => (value as (...a: unknown[]) => Promise<unknown>).apply(real, args));
    },
  });
}

async function openChosen(config: StoreChoice): Promise<IpamStore> {
  if (config.datastore === 'kubernetes') {
    const { openKubernetesStore } = await import('./kubernetes/store.ts');
    return openKubernetesStore({ kubeconfig: config.kubeconfig, apiRoot: config.k8sApiRoot });
  }
  if (config.datastore === 'etcd') {
    if (config.etcd.endpoints.length === 0) {
      throw new CniError(Code.InvalidConfig, `invalid network config: ipam.datastore "etcd" (${config.datastoreReason}) needs ipam.etcd_host or ipam.etcd_endpoints`);
    }
    const { EtcdStore } = await import('./etcd/store.ts');
    return new EtcdStore(config.etcd);
  }
  if (!isAbsolute(config.fileStoreDir)) {
    throw new CniError(Code.InvalidConfig, `invalid network config: ipam.file_store_dir = ${showValue(config.fileStoreDir)} must be an absolute path`);
  }
  return new FileStore(config.fileStoreDir);
}
