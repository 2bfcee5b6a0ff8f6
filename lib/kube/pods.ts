// Is a pod gone for good? What the IPAM asks the API before a pod re-created under its name (a
// StatefulSet's) takes over the address of the pod it replaces: only when the API has no pod of that
// name, or one with another UID. Any doubt (no permission, no answer) counts as "may still run": the new
// pod then gets another address, which costs an address, never a duplicate.
import { log } from '../log.ts';
import { KubeClient, type ResourceType } from './client.ts';
import { KubeError } from './errors.ts';
import { inClusterConnection, loadKubeconfig } from './kubeconfig.ts';

export const PODS: ResourceType = { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true };

export interface PodLiveness {
  /**
   * True only when the API says no pod `namespace/name` with `uid` exists; for `uid` undefined (a
   * lease that names no UID), when the API's pod of that name is `successor` or there is none.
   */
  gone(podref: string, uid: string | undefined, successor: string, deadline: number): Promise<boolean>;
  close(): void;
}

/** Asks the API of `kubeconfig` (the pod's service account without one); connects on the first question. */
export function podLiveness(kubeconfig: string | undefined): PodLiveness {
  let client: Promise<KubeClient> | undefined;
  const answers = new Map<string, Promise<boolean>>();
  const connect = () => (client ??= (kubeconfig ? loadKubeconfig(kubeconfig) : Promise.resolve(inClusterConnection())).then((c) => new KubeClient(c)));
  async function ask(podref: string, uid: string | undefined, successor: string, deadline: number): Promise<boolean> {
    const slash = podref.indexOf('/');
    if (slash <= 0) return false; // a container ID, not a pod: nothing to ask
    try {
      const pod = await (await connect()).get(PODS, podref.slice(slash + 1), deadline, podref.slice(0, slash));
      return uid === undefined ? pod.metadata.uid === successor : pod.metadata.uid !== uid;
    } catch (err) {
      if (err instanceof KubeError && err.outcome === 'notFound') return true;
      log.warn(`cannot tell whether pod ${podref} (uid ${uid ?? 'unknown'}) is gone, so its address is kept for it: ${err instanceof Error ? err.message : String(err)}`);
      return false;
    }
  }
  return {
    gone(podref, uid, successor, deadline) {
      const key = `${podref}\u0000${uid ?? ''}\u0000${successor}`;
      let answer = answers.get(key);
      if (!answer) answers.set(key, (answer = ask(podref, uid, successor, deadline)));
      return answer;
    },
    close() {
      void client?.then((c) => c.close(), () => undefined);
    },
  };
}
