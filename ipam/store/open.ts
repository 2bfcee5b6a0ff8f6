// Picks the store a config names. Only the file store is in this build; the etcd and Kubernetes stores
// come with their own issues, and until then a config naming them fails plainly instead of being
// served by a node-local store that would hand the same address out on two nodes.
import { isAbsolute } from 'node:path';
import { Code, CniError, showValue } from '../../lib/cni/errors.ts';
import type { IpamConfig } from '../config/load.ts';
import { FileStore } from './file/store.ts';
import type { LegacyIpamStore } from './types.ts';

export function openStore(config: Pick<IpamConfig, 'datastore' | 'datastoreReason' | 'fileStoreDir'>): LegacyIpamStore {
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
