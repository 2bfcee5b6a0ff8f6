// Runs the BUILT executable the way a runtime does: CNI_* in the environment, the config on stdin.
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');
/** The built executable's directory; UNDERLAY_BIN points the tests at another build. */
export const BIN = process.env.UNDERLAY_BIN ?? join(ROOT, 'dist', 'bin');
export const REFERENCE_BIN = '/usr/lib/cni';

export function requireBuild(): void {
  if (!existsSync(join(BIN, 'underlay'))) throw new Error(`${BIN}/underlay is missing: run \`node build.mjs\` first`);
}

export interface CniRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, or undefined when it is not JSON. */
  json: Record<string, unknown> | undefined;
}

export interface CniCall {
  command: string;
  config?: unknown;
  containerId?: string;
  netns?: string;
  ifName?: string;
  args?: string;
  path?: string;
  env?: Record<string, string>;
  /** Run inside this named netns (the plugin's "host"), with `ip netns exec`. */
  hostNetns?: string;
  timeoutMs?: number;
  /** The plugin's working directory (default: the test's). */
  cwd?: string;
}

export async function cni(plugin: string, call: CniCall): Promise<CniRun> {
  const env: Record<string, string> = { CNI_COMMAND: call.command, CNI_PATH: call.path ?? `${BIN}:${REFERENCE_BIN}` };
  if (call.containerId !== undefined) env.CNI_CONTAINERID = call.containerId;
  if (call.netns !== undefined) env.CNI_NETNS = call.netns;
  if (call.ifName !== undefined) env.CNI_IFNAME = call.ifName;
  if (call.args !== undefined) env.CNI_ARGS = call.args;
  // scripts/test.sh finds the processes a run left behind by this variable: plugins get it too.
  if (process.env.UNDERLAY_TEST_RUN) env.UNDERLAY_TEST_RUN = process.env.UNDERLAY_TEST_RUN;
  Object.assign(env, call.env);
  const file = plugin.includes('/') ? plugin : join(BIN, plugin);
  const argv = call.hostNetns ? ['ip', ['netns', 'exec', call.hostNetns, file]] as const : [file, []] as const;
  const input = call.config === undefined ? '' : typeof call.config === 'string' ? call.config : JSON.stringify(call.config);
  const out = await execa(argv[0], [...argv[1]], { env, extendEnv: false, input, reject: false, timeout: call.timeoutMs ?? 30_000, cwd: call.cwd });
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(out.stdout) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { exitCode: out.exitCode ?? -1, stdout: out.stdout, stderr: out.stderr, json };
}
