// `underlay reconcile [--dry-run] [--json] [STORE] [--pool-namespace NS]`: the command the reconciler
// CronJob runs (deploy/reconciler-cronjob.yaml), and an operator may run by hand. Pods are always read
// from the Kubernetes API: through --kubeconfig FILE, else the kubeconfig a --config's IPAM names, else
// the service account of the pod it runs in. The pools are where the IPAM keeps them: the same
// Kubernetes API unless --etcd, --dir or a --config naming another store says otherwise.
import type { KubeConnection } from '../../lib/kube/kubeconfig.ts';
import type { IpamConfig } from '../config/load.ts';
import { ipamConfigFromFile } from '../config/network-file.ts';
import { operationDeadline } from '../lease/retry.ts';
import { openStore, type StoreChoice } from '../store/open.ts';
import type { IpamStore } from '../store/types.ts';
import { orphanGraceMs } from './collect.ts';
import { KubernetesPods, type PodSource } from './pods.ts';
import { reconcile, type Freed, type ReconcileOutcome } from './reconcile.ts';

export const USAGE = `usage: underlay reconcile [--dry-run] [--json] [STORE] [--pool-namespace NS]
Frees the addresses (leases and overlapping-range reservations) of pods that no longer exist, and
never one a live pod holds: a pod is freed only once a fresh read says it is gone (or re-created
under the same name with another UID that does not hold the address).
  --dry-run            print what would be freed; change nothing
  --json               one JSON object on stdout instead of lines
STORE is where the pools are (the default: the Kubernetes API of the pod's service account):
  --kubeconfig FILE    the Kubernetes API of this kubeconfig, for the pods and (by default) the pools
  --etcd ENDPOINTS     pools in etcd, e.g. https://10.0.0.1:2379,https://10.0.0.2:2379
  --dir DIR            pools in a file store
  --config FILE        pools where this network config's IPAM keeps them (.conf or .conflist)
  --pool-namespace NS  the namespace of the Kubernetes pools (default: the kubeconfig context's, or the
                       service account's): where whereabouts kept them, kube-system in its install
`;

interface Options {
  dryRun: boolean;
  json: boolean;
  kubeconfig?: string;
  /** Pools somewhere other than the pods' Kubernetes API. */
  store?: StoreChoice;
  poolNamespace?: string;
}

class UsageError extends Error {}

export function parseReconcileOptions(args: ReadonlyArray<string>): Options | 'help' {
  const options: Options = { dryRun: false, json: false };
  const none = { datastoreReason: '', fileStoreDir: '', etcd: { endpoints: [] } };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.indexOf('=');
    const [flag, inline] = arg.startsWith('--') && eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    const value = (): string => {
      const given = inline ?? args[++i];
      if (!given) throw new UsageError(`${flag} needs a value`);
      return given;
    };
    if (flag === '--help' || flag === '-h') return 'help';
    else if (flag === '--dry-run' && inline === undefined) options.dryRun = true;
    else if (flag === '--json' && inline === undefined) options.json = true;
    else if (flag === '--kubeconfig') options.kubeconfig = value();
    else if (flag === '--pool-namespace') options.poolNamespace = value();
    else if (flag === '--dir' || flag === '--etcd' || flag === '--config') {
      if (options.store) throw new UsageError('give one of --dir, --etcd and --config');
      const given = value();
      if (flag === '--dir') options.store = { ...none, datastore: 'file', datastoreReason: '--dir', fileStoreDir: given };
      else if (flag === '--etcd') options.store = { ...none, datastore: 'etcd', datastoreReason: '--etcd', etcd: { endpoints: given.split(',').filter(Boolean) } };
      else options.store = ipamConfigFromFile(given);
    } else throw new UsageError(`unknown ${flag.startsWith('-') ? 'option' : 'argument'} ${JSON.stringify(arg)}`);
  }
  if (options.poolNamespace !== undefined && options.store && options.store.datastore !== 'kubernetes') {
    throw new UsageError(`--pool-namespace is for pools in Kubernetes; these are in the ${options.store.datastore} store`);
  }
  return options;
}

async function connect(kubeconfig: string | undefined, apiRoot: string | undefined): Promise<KubeConnection> {
  const { inClusterConnection, loadKubeconfig } = await import('../../lib/kube/kubeconfig.ts');
  return kubeconfig ? loadKubeconfig(kubeconfig, { apiRoot }) : inClusterConnection();
}

async function open(options: Options): Promise<{ store: IpamStore; pods: PodSource }> {
  const config = options.store && 'ranges' in options.store ? (options.store as IpamConfig) : undefined;
  const podConnection = await connect(options.kubeconfig ?? config?.kubeconfig, options.kubeconfig ? undefined : config?.k8sApiRoot);
  const pods = new KubernetesPods(podConnection);
  if (options.store && options.store.datastore !== 'kubernetes') return { store: await openStore(options.store), pods };
  const { KubernetesStore } = await import('../store/kubernetes/store.ts');
  const poolConnection = config ? await connect(config.kubeconfig, config.k8sApiRoot) : podConnection;
  return { store: new KubernetesStore({ ...poolConnection, namespace: options.poolNamespace ?? poolConnection.namespace }), pods };
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

function line(f: Freed, dryRun: boolean): string {
  const verb = dryRun ? 'would free' : 'freed';
  const holder = [f.poduid && `uid ${f.poduid}`, f.containerID && `container ${f.containerID.slice(0, 12)}`, f.ifname].filter(Boolean).join(', ');
  const where = f.kind === 'lease' ? `lease ${f.address} in pool ${f.pool}` : `reservation ${f.name}${f.name === f.address ? '' : ` (${f.address})`}`;
  return `${verb} ${where} of ${f.podref}${holder ? ` (${holder})` : ''}: ${f.reason}\n`;
}

function report(outcome: ReconcileOutcome, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(outcome, null, 2)}\n`);
    return;
  }
  for (const f of outcome.freed) process.stdout.write(line(f, outcome.dryRun));
  const leases = outcome.freed.filter((f) => f.kind === 'lease').length;
  const reservations = outcome.freed.length - leases;
  const read = `${plural(outcome.pools, 'pool')} (${plural(outcome.leases, 'lease')}), ${plural(outcome.reservations, 'reservation')} and ${plural(outcome.pods, 'pod')} read`;
  const freed = `${outcome.dryRun ? 'would free' : 'freed'} ${plural(leases, 'lease')} and ${plural(reservations, 'reservation')}`;
  const spared = outcome.spared.length > 0 ? `; ${plural(outcome.spared.length, 'candidate')} found live on re-read` : '';
  process.stdout.write(`reconcile${outcome.dryRun ? ' (dry run, nothing changed)' : ''}: ${read}; ${freed}${spared}\n`);
  for (const s of outcome.spared) process.stderr.write(`underlay reconcile: kept ${s.podref}${s.poduid ? ` (uid ${s.poduid})` : ''}: ${s.reason}\n`);
  for (const s of outcome.skipped) process.stderr.write(`underlay reconcile: not judged: ${s}\n`);
  for (const e of outcome.errors) process.stderr.write(`underlay reconcile: ${e}\n`);
}

/** `underlay reconcile ...`; argv is what follows "reconcile". Returns the exit code. */
export async function runReconcileCli(argv: ReadonlyArray<string>): Promise<number> {
  let options;
  try {
    options = parseReconcileOptions(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`underlay reconcile: ${err.message}\n${USAGE}`);
      return 2;
    }
    process.stderr.write(`underlay reconcile: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  if (options === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  let opened: { store: IpamStore; pods: PodSource } | undefined;
  try {
    opened = await open(options);
    const outcome = await reconcile(opened.store, opened.pods, { dryRun: options.dryRun, graceMs: orphanGraceMs(), deadline: () => operationDeadline() });
    report(outcome, options.json);
    return outcome.errors.length > 0 ? 1 : 0;
  } catch (err) {
    process.stderr.write(`underlay reconcile: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    await opened?.store.close();
    opened?.pods.close();
  }
}
