// The store contract on the Kubernetes store, against the in-test API server (no kube-apiserver can
// run here; test/helpers/kube-apiserver.ts says what it reproduces) with Underlay's CRDs.
import { KubeApiServer } from '../helpers/kube-apiserver.ts';
import { storeOn } from '../helpers/kube-store.ts';
import { describeStoreContract } from './conformance.ts';

const server = await KubeApiServer.start();
describeStoreContract('Kubernetes store', async () => storeOn(server), { cleanup: () => server.close() });
