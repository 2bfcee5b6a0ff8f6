// `underlay` run under its own name: the operator's command line.
import { runIpamCli } from '../ipam/cli.ts';
import { SUPPORTED_VERSIONS } from './cni/version.ts';

declare const UNDERLAY_VERSION: string;
export const VERSION = typeof UNDERLAY_VERSION === 'string' ? UNDERLAY_VERSION : 'dev';

const HELP = `Underlay ${VERSION}: CNI plugins that give pods interfaces on the physical network.

This one executable is every plugin. A container runtime (containerd, podman, or Multus in
Kubernetes) runs it through links named after the plugin type, found in /opt/cni/bin:

  macvlan, underlay-macvlan    a macvlan link on a host interface (the reference plugin's config)
  sriov, underlay-sriov        an SR-IOV virtual function (sriov-cni's config, or a PF in "master")
  whereabouts, underlay-ipam   cluster-wide IP addresses (whereabouts' config; file store by default)

You do not normally run those by hand: the runtime calls them with CNI_COMMAND and a JSON config on
stdin. Run as "underlay", it helps you look at what the plugins did:

  underlay ipam ls [--json] [STORE]          list address pools with used and free counts
  underlay ipam show POOL [--json] [STORE]   list the leases of one pool: address, pod, container
                                             STORE: --dir DIR (the file store), --etcd ENDPOINTS,
                                             --kubeconfig FILE, or --config FILE (a network config)
  underlay doctor [--json] [--state-dir DIR] each SR-IOV PF and VF of this node, the pod holding each VF,
                                             and VFs left dirty or lost (exits 1 if any)
  underlay reconcile [--dry-run] [--json] [--kubeconfig FILE] [--pool-namespace NS]
                                             free the addresses of pods that no longer exist
                                             (what the reconciler CronJob runs; pods and pools
                                             from the pod's service account by default; see
                                             "underlay reconcile --help")
  underlay install [--once] [--force] [--cni-bin-dir DIR] [--kubeconfig FILE] ...
                                             install the executable and plugin links on this
                                             node and keep the IPAM's kubeconfig current (what
                                             the DaemonSet runs; see "underlay install --help")
  underlay version                           print the Underlay and CNI spec versions
  underlay --help                            this text

Leases of the file store live in /var/lib/cni/underlay/ipam unless the IPAM config sets
file_store_dir. To install the plugins on a machine outside Kubernetes, run
"underlay install --once --skip-kubeconfig --cni-bin-dir /opt/cni/bin".
`;

export async function runCli(argv: ReadonlyArray<string>): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(HELP);
      return 0;
    case 'version':
    case '--version':
      process.stdout.write(`underlay ${VERSION}\nCNI spec versions: ${SUPPORTED_VERSIONS.join(', ')}\n`);
      return 0;
    case 'ipam':
      return runIpamCli([...rest]);
    case 'doctor':
      return (await import('../plugins/sriov/doctor.ts')).runDoctor(rest);
    case 'reconcile':
      return (await import('../ipam/gc/reconcile-cli.ts')).runReconcileCli(rest);
    case 'install':
      return (await import('./install/main.ts')).runInstall(rest);
    default:
      process.stderr.write(`underlay: unknown command "${command}". Run "underlay --help" to see what it can do.\n`);
      return 2;
  }
}
