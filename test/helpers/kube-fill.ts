// Fills a pool on the simulated API server with the BUILT IPAM, as a busy cluster does: `workers`
// concurrent callers (kubelets), each running `perWorker` ADDs one after another, every ADD its own
// process of the `whereabouts` executable with a kubeconfig pointing at the server. Every process runs
// with UNDERLAY_IPAM_STATS=1, so its cost (time in the IPAM, requests, conflicts, outages) is known.
// Used by the contention stress test and by `npm run bench -- kubernetes`.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { BIN } from './exec.ts';

export interface IpamStats {
  ms: number;
  requests: number | null;
  conflicts: number;
  outages: number;
}

export interface FillRun {
  worker: number;
  index: number;
  containerId: string;
  code: number | null;
  /** The process's wall time, start to exit: what the kubelet waits for. */
  wallMs: number;
  address?: string;
  stats?: IpamStats;
  stdout: string;
  stderr: string;
}

export interface FillOptions {
  kubeconfig: string;
  workers: number;
  perWorker: number;
  /** The ipam section's range fields (range, range_start, range_end...). */
  range: Record<string, unknown>;
  network?: string;
}

export const fillConfig = (options: Pick<FillOptions, 'kubeconfig' | 'range' | 'network'>): object => ({
  cniVersion: '1.1.0', name: options.network ?? 'fill', type: 'whereabouts',
  ipam: { type: 'whereabouts', ...options.range, kubernetes: { kubeconfig: options.kubeconfig } },
});

/** One ADD (or other verb) in its own process. */
export function runIpam(verb: string, config: object, containerId: string, podref: string, uid: string): Promise<Omit<FillRun, 'worker' | 'index'>> {
  const [namespace, name] = podref.split('/');
  const started = performance.now();
  const child = spawn(join(BIN, 'whereabouts'), [], {
    env: {
      CNI_COMMAND: verb, CNI_CONTAINERID: containerId, CNI_NETNS: '/var/run/netns/fill', CNI_IFNAME: 'net1', CNI_PATH: BIN,
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name};K8S_POD_UID=${uid}`, UNDERLAY_IPAM_STATS: '1',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(JSON.stringify(config));
  return new Promise((resolve) => child.on('close', (code) => {
    const wallMs = performance.now() - started;
    let address: string | undefined;
    try {
      address = (JSON.parse(stdout) as { ips?: Array<{ address: string }> }).ips?.[0]?.address;
    } catch {
      address = undefined;
    }
    const line = stderr.split('\n').find((l) => l.startsWith('{"ipamStats"'));
    const stats = line ? (JSON.parse(line) as { ipamStats: IpamStats }).ipamStats : undefined;
    resolve({ containerId, code, wallMs, ...(address && { address }), ...(stats && { stats }), stdout, stderr });
  }));
}

/** Runs the fill; returns every ADD and the wall time of the whole fill. */
export async function fillPool(options: FillOptions): Promise<{ runs: FillRun[]; wallMs: number }> {
  const config = fillConfig(options);
  const started = performance.now();
  const worker = async (w: number): Promise<FillRun[]> => {
    const runs: FillRun[] = [];
    for (let i = 0; i < options.perWorker; i++) {
      const id = `${w.toString(16).padStart(4, '0')}${i.toString(16).padStart(4, '0')}${randomUUID().replace(/-/g, '')}${'0'.repeat(24)}`;
      runs.push({ worker: w, index: i, ...(await runIpam('ADD', config, id, `fill/pod-${w}-${i}`, randomUUID())) });
    }
    return runs;
  };
  const runs = (await Promise.all(Array.from({ length: options.workers }, (_, w) => worker(w)))).flat();
  return { runs, wallMs: performance.now() - started };
}
