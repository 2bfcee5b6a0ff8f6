// Picks the store a config names, and the only place that knows which stores exist. The file store is
// built in; the network stores are loaded only when a config names them. A config naming a store that
// is not in this build fails plainly instead of being served by a node-local store that would hand
// the same address out on two nodes.
import { isAbsolute } from 'node:path';
import { Code, CniError, showValue } from '../../lib/cni/errors.ts';
import type { IpamConfig } from '../config/load.ts';
import { FileStore } from './file/store.ts';
import type { IpamStore } from './types.ts';

export type StoreChoice = Pick<IpamConfig, 'datastore' | 'datastoreReason' | 'fileStoreDir' | 'etcd' | 'kubeconfig' | 'k8sApiRoot'>;

export async function openStore(config: StoreChoice): Promise<IpamStore> {
  if (config.datastore === 'kubernetes') {
    const { openKubernetesStore } = await import('./kubernetes/store.ts');
    return openKubernetesStore({ kubeconfig: config.kubeconfig, apiRoot: config.k8sApiRoot });
  }
  if (config.datastore !== 'file') {
    throw new CniError(
      Code.UnsupportedField,
      `ipam.datastore ${JSON.stringify(config.datastore)} (${config.datastoreReason}) is not available in this build; ` +
        'set "datastore": "file" for the node-local file store (addresses are then unique on this node only)',
    );
  }
  if (!isAbsolute(config.fileStoreDir)) {
    throw new CniError(Code.InvalidConfig, `invalid network config: ipam.file_store_dir = ${showValue(config.fileStoreDir)} must be an absolute path`);
  }
  return new FileStore(config.fileStoreDir);
}
