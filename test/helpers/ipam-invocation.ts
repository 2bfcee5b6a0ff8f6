// Builds the Invocation a runtime would produce, to call ipamPlugin's verbs in-process in tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';
import { decodeConfig } from '../../lib/cni/config.ts';
import type { Verb } from '../../lib/cni/env.ts';
import { CniError } from '../../lib/cni/errors.ts';
import type { Invocation } from '../../lib/cni/skel.ts';
import { requireSupported } from '../../lib/cni/version.ts';

export interface InvocationSpec {
  verb?: Verb;
  ipam: Record<string, unknown>;
  containerId?: string;
  ifName?: string;
  /** CNI_ARGS as a runtime sends it, e.g. "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p". */
  args?: string;
  /** A pod, as Kubernetes names it in CNI_ARGS: "namespace/name". */
  pod?: string;
  name?: string;
  cniVersion?: string;
  /** More top-level keys: prevResult, runtimeConfig, args, cni.dev/valid-attachments. */
  extra?: Record<string, unknown>;
}

export function invocation(spec: InvocationSpec): Invocation {
  const raw = { cniVersion: spec.cniVersion ?? '1.1.0', name: spec.name ?? 'testnet', type: 'whereabouts', ipam: spec.ipam, ...spec.extra };
  const stdin = JSON.stringify(raw);
  const { conf, raw: decoded } = decodeConfig(stdin);
  const verb = spec.verb ?? 'ADD';
  let args = spec.args ?? '';
  if (spec.pod) {
    const [namespace, name] = spec.pod.split('/');
    args = [args, `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name}`].filter(Boolean).join(';');
  }
  return {
    verb,
    env: { command: verb, containerId: spec.containerId ?? 'c0', netns: '/var/run/netns/test', ifName: spec.ifName ?? 'net1', args, path: ['/opt/cni/bin'] },
    conf,
    raw: decoded,
    stdin,
    cniVersion: requireSupported(conf.cniVersion),
  };
}

/** A fresh, private directory for a file store, removed when the test ends (or the file, outside a test). */
export function tempStoreDir(prefix = 'underlay-ipam-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    onTestFinished(remove);
  } catch {
    afterAll(remove);
  }
  return dir;
}

/** The CniError `promise` rejects with; fails the test if it resolves or throws anything else. */
export async function failure(promise: Promise<unknown>): Promise<CniError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof CniError) return err;
    throw err;
  }
  throw new Error('expected a CniError');
}

/** The CniError `fn` throws; fails the test if it returns or throws anything else. */
export function thrown(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CniError) return err;
    throw err;
  }
  throw new Error('expected a CniError');
}
