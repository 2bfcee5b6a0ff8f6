// `underlay install`: what the DaemonSet runs on every node. It copies the executable it runs from
// (the single executable, process.execPath) and its plugin links into the host's CNI plugin
// directory, writes the IPAM's kubeconfig from the pod's service account, then keeps that kubeconfig
// current as Kubernetes rotates the token: bound tokens expire, so a kubeconfig written once would
// stop working within hours. Loaded only when the command runs: CNI calls never pay for it.
import { isSea } from 'node:sea';
import { dirname, join } from 'node:path';
import { writeFileDurably } from '../fs.ts';
import { apiServer, ConfigurationError, readServiceAccount, renderKubeconfig, writeKubeconfig } from './kubeconfig.ts';
import { parseInstallOptions, USAGE, UsageError, type InstallOptions } from './options.ts';
import { installPlugins } from './plugins.ts';
import { watchServiceAccount } from './watch.ts';

/** The slow pass behind the directory watch: a lost event is repaired within this. */
const RESYNC_MS = 60_000;

const say = (line: string): void => {
  process.stderr.write(`underlay install: ${line}\n`);
};

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** One pass over the kubeconfig; true when it is in place and current. Repeats a problem only once. */
function kubeconfigKeeper(options: InstallOptions, server: string): () => boolean {
  let lastProblem = '';
  let passes = 0;
  return () => {
    const first = passes++ === 0;
    try {
      const account = readServiceAccount(options.serviceAccountDir);
      const namespace = options.poolNamespace ?? account.namespace;
      const wrote = writeKubeconfig(options.kubeconfig, renderKubeconfig({ server, account, namespace }));
      if (wrote && first) say(`wrote ${options.kubeconfig} (server ${server}, IP pools in namespace ${namespace}, token and CA from ${options.serviceAccountDir})`);
      else if (wrote) say(`rewrote ${options.kubeconfig}: the service account's token or CA changed`);
      else if (first) say(`${options.kubeconfig} is up to date (server ${server}, IP pools in namespace ${namespace})`);
      if (lastProblem) say('the kubeconfig is current again');
      lastProblem = '';
      return true;
    } catch (err) {
      const problem = messageOf(err);
      if (problem !== lastProblem) say(`cannot write the kubeconfig: ${problem}${options.once ? '' : '; will try again when the files change'}`);
      lastProblem = problem;
      return false;
    }
  };
}

function keepUntilStopped(options: InstallOptions, keep: () => boolean): Promise<number> {
  return new Promise((resolve) => {
    const watch = watchServiceAccount({ dir: options.serviceAccountDir, files: ['token', 'ca.crt'], onChange: () => void keep(), resyncMs: RESYNC_MS, say });
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      watch.stop();
      say(`stopping on ${signal}; the plugins and the kubeconfig stay in place`);
      resolve(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    say(`watching ${options.serviceAccountDir}: the kubeconfig follows the token and CA as they rotate`);
  });
}

export async function runInstall(argv: ReadonlyArray<string>): Promise<number> {
  let options: InstallOptions;
  try {
    options = parseInstallOptions(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`underlay install: ${err.message}. Run "underlay install --help" to see the options.\n`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (!isSea()) {
    say('this command copies the executable it runs from, so it must run as the built underlay executable, not under node');
    return 2;
  }
  try {
    await installPlugins({ source: process.execPath, binDir: options.cniBinDir, force: options.force, say });
  } catch (err) {
    say(`cannot install the plugins into ${options.cniBinDir}: ${messageOf(err)}`);
    return 1;
  }
  if (options.skipKubeconfig) {
    say('--skip-kubeconfig: no kubeconfig written; done');
    return 0;
  }
  let server: string;
  try {
    server = apiServer(process.env, options.server);
  } catch (err) {
    if (!(err instanceof ConfigurationError)) throw err;
    say(err.message);
    return 2;
  }
  const keep = kubeconfigKeeper(options, server);
  const current = keep();
  // The node's name (the DaemonSet gives it from spec.nodeName) beside the kubeconfig: the IPAM starts
  // this node's allocations in big pools at shards of its own, so nodes do not race for one record.
  const node = process.env.NODE_NAME;
  if (node && /^[a-z0-9.-]{1,253}$/.test(node)) {
    const file = join(dirname(options.kubeconfig), 'nodename');
    if (writeFileDurably(file, `${node}\n`, { mode: 0o644 })) say(`wrote ${file} (${node})`);
  }
  if (options.once) return current ? 0 : 1;
  return keepUntilStopped(options, keep);
}
