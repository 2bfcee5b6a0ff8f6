// Runs a conflist the way libcni does: ADD through the plugins in order, each given the previous
// result as prevResult; CHECK and DEL with the final result; DEL in reverse order.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, cni, REFERENCE_BIN, type CniCall, type CniRun } from './exec.ts';

/** The plugin file for `type`, searched in CNI_PATH order as libcni does. */
export function resolvePlugin(type: string, path = `${BIN}:${REFERENCE_BIN}`): string {
  for (const dir of path.split(':')) if (existsSync(join(dir, type))) return join(dir, type);
  throw new Error(`no plugin ${type} in ${path}`);
}

export interface ConfList {
  cniVersion: string;
  name: string;
  plugins: Array<Record<string, unknown> & { type: string }>;
}

type Env = Omit<CniCall, 'command' | 'config'>;

function pluginConfig(list: ConfList, plugin: ConfList['plugins'][number], prevResult: unknown): Record<string, unknown> {
  const config: Record<string, unknown> = { ...plugin, cniVersion: list.cniVersion, name: list.name };
  if (prevResult !== undefined) config.prevResult = prevResult;
  return config;
}

export async function chainAdd(list: ConfList, env: Env): Promise<{ result: unknown; failed?: CniRun }> {
  let result: unknown;
  for (const plugin of list.plugins) {
    const run = await cni(resolvePlugin(plugin.type, env.path), { ...env, command: 'ADD', config: pluginConfig(list, plugin, result) });
    if (run.exitCode !== 0) return { result, failed: run };
    result = run.json;
  }
  return { result };
}

export async function chainCheck(list: ConfList, env: Env, result: unknown): Promise<CniRun | undefined> {
  for (const plugin of list.plugins) {
    const run = await cni(resolvePlugin(plugin.type, env.path), { ...env, command: 'CHECK', config: pluginConfig(list, plugin, result) });
    if (run.exitCode !== 0) return run;
  }
  return undefined;
}

export async function chainDel(list: ConfList, env: Env, result: unknown): Promise<CniRun | undefined> {
  for (const plugin of [...list.plugins].reverse()) {
    const run = await cni(resolvePlugin(plugin.type, env.path), { ...env, command: 'DEL', config: pluginConfig(list, plugin, result) });
    if (run.exitCode !== 0) return run;
  }
  return undefined;
}
