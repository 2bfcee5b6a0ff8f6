// The store contract on the file store, in a private temporary directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../../ipam/store/file/store.ts';
import { describeStoreContract } from './conformance.ts';

const dir = mkdtempSync(join(tmpdir(), 'underlay-store-'));
describeStoreContract('file store', async () => new FileStore(dir), { cleanup: () => rmSync(dir, { recursive: true, force: true }) });
