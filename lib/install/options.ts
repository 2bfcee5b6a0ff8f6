// The flags of `underlay install`. The defaults are the paths the DaemonSet mounts: the host's CNI
// directories under /host, the pod's own service account where Kubernetes puts it.

export const DEFAULT_CNI_BIN_DIR = '/host/opt/cni/bin';
export const DEFAULT_KUBECONFIG = '/host/etc/cni/net.d/underlay.d/underlay.kubeconfig';
export const DEFAULT_SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export const USAGE = `usage: underlay install [--once] [--force] [--cni-bin-dir DIR] [--kubeconfig FILE]
                        [--serviceaccount-dir DIR] [--pool-namespace NS] [--server URL]
                        [--skip-kubeconfig]

Installs this executable and its plugin links (macvlan, sriov, whereabouts and the underlay-*
names) into the node's CNI plugin directory, and writes the kubeconfig that Underlay's IPAM reads
("kubernetes": {"kubeconfig": ...}) from the pod's service account. Then it keeps running and
rewrites the kubeconfig whenever Kubernetes rotates the token or the CA; SIGTERM stops it.

  --once                   install and write the kubeconfig once, then exit
  --force                  replace a plugin of another origin (say the reference macvlan) that has
                           one of our names; without it, that plugin is kept and the underlay-*
                           name serves instead
  --cni-bin-dir DIR        the CNI plugin directory (default ${DEFAULT_CNI_BIN_DIR})
  --kubeconfig FILE        where to write the kubeconfig (default ${DEFAULT_KUBECONFIG});
                           it is written 0600 in a 0700 directory
  --serviceaccount-dir DIR where the pod's token, ca.crt and namespace are
                           (default ${DEFAULT_SERVICE_ACCOUNT_DIR})
  --pool-namespace NS      the namespace the IPAM keeps its IPPools in (default: this pod's
                           namespace; when taking over from whereabouts, the namespace whereabouts
                           ran in, usually kube-system)
  --server URL             the API server the plugins reach from the node (default
                           https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)
  --skip-kubeconfig        install the plugins only (outside Kubernetes, or with the file store)
`;

export interface InstallOptions {
  once: boolean;
  force: boolean;
  cniBinDir: string;
  kubeconfig: string;
  serviceAccountDir: string;
  poolNamespace?: string;
  server?: string;
  skipKubeconfig: boolean;
  help: boolean;
}

/** A mistake in how the command was called: exit 2 with the message and a pointer to --help. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const VALUE_FLAGS = {
  '--cni-bin-dir': 'cniBinDir',
  '--kubeconfig': 'kubeconfig',
  '--serviceaccount-dir': 'serviceAccountDir',
  '--pool-namespace': 'poolNamespace',
  '--server': 'server',
} as const;
type ValueFlag = keyof typeof VALUE_FLAGS;
const isValueFlag = (flag: string): flag is ValueFlag => Object.hasOwn(VALUE_FLAGS, flag);

// What Kubernetes accepts as a namespace name (DNS-1123 label).
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function parseInstallOptions(argv: ReadonlyArray<string>): InstallOptions {
  const options: InstallOptions = {
    once: false,
    force: false,
    cniBinDir: DEFAULT_CNI_BIN_DIR,
    kubeconfig: DEFAULT_KUBECONFIG,
    serviceAccountDir: DEFAULT_SERVICE_ACCOUNT_DIR,
    skipKubeconfig: false,
    help: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (flag === '--once') options.once = true;
    else if (flag === '--force') options.force = true;
    else if (flag === '--skip-kubeconfig') options.skipKubeconfig = true;
    else if (flag === '-h' || flag === '--help') options.help = true;
    else if (isValueFlag(flag)) {
      const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined || value === '') throw new UsageError(`${flag} needs a value`);
      options[VALUE_FLAGS[flag]] = value;
    } else throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
  }
  if (options.poolNamespace !== undefined && !NAMESPACE.test(options.poolNamespace)) {
    throw new UsageError(`--pool-namespace ${JSON.stringify(options.poolNamespace)} is not a namespace name (lower-case letters, digits and "-", at most 63)`);
  }
  if (options.server !== undefined && !/^https:\/\/[^/\s]+/.test(options.server)) {
    throw new UsageError(`--server ${JSON.stringify(options.server)} must be an https:// URL`);
  }
  return options;
}
