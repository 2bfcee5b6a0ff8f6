// `underlay install` as the DaemonSet runs it, against a temporary host root: the executable and its
// links land in the CNI plugin directory (a plugin of another origin kept unless --force), and the
// IPAM's kubeconfig carries the service account's token and CA, follows their rotation, and never
// shows up in a log. The service account directory is laid out as the kubelet does it.
import { execa, type ResultPromise } from 'execa';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { load } from 'js-yaml';
import { BIN, requireBuild } from '../helpers/exec.ts';

requireBuild();
const EXE = join(BIN, 'underlay');
const CA = '-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mtc2VydmVyLWNhQDE3MDAwMDAwMDAw\n-----END CERTIFICATE-----\n';
const ENV = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };

let root: string;
let bin: string;
let sa: string;
let kubeconfig: string;
let generation = 0;
const running: Array<ResultPromise> = [];

/** The kubelet's way to update a projected volume: a fresh hidden directory, then ..data swapped to it. */
function projectServiceAccount(token: string, ca = CA, namespace = 'underlay-system'): void {
  const version = `..${++generation}`;
  mkdirSync(join(sa, version), { recursive: true });
  writeFileSync(join(sa, version, 'token'), token);
  writeFileSync(join(sa, version, 'ca.crt'), ca);
  writeFileSync(join(sa, version, 'namespace'), namespace);
  const old = existsSync(join(sa, '..data')) ? readlinkSync(join(sa, '..data')) : undefined;
  symlinkSync(version, join(sa, '..data_tmp'));
  renameSync(join(sa, '..data_tmp'), join(sa, '..data'));
  for (const name of ['token', 'ca.crt', 'namespace']) if (!existsSync(join(sa, name))) symlinkSync(`..data/${name}`, join(sa, name));
  if (old) rmSync(join(sa, old), { recursive: true });
}

function install(args: string[], env: Record<string, string> = ENV) {
  const run = spawnSync(EXE, ['install', '--once', '--cni-bin-dir', bin, '--kubeconfig', kubeconfig, '--serviceaccount-dir', sa, ...args], { env, encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, log: run.stderr, stdout: run.stdout };
}

interface Kubeconfig {
  clusters: Array<{ cluster: { server: string; 'certificate-authority-data': string } }>;
  users: Array<{ user: { token: string } }>;
  contexts: Array<{ name: string; context: { namespace: string } }>;
  'current-context': string;
}
const readKubeconfig = (): Kubeconfig => load(readFileSync(kubeconfig, 'utf8')) as Kubeconfig;
const tokenOf = (): string | undefined => (existsSync(kubeconfig) ? readKubeconfig().users[0]?.user.token : undefined);

/** Polls until `check` holds, at most `ms`: the watcher's latency is bounded, not guessed. */
async function eventually(check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'underlay-install-cmd-'));
  bin = join(root, 'host/opt/cni/bin');
  sa = join(root, 'serviceaccount');
  kubeconfig = join(root, 'host/etc/cni/net.d/underlay.d/underlay.kubeconfig');
  mkdirSync(bin, { recursive: true });
  mkdirSync(sa);
  writeFileSync(join(bin, 'macvlan'), '#!/bin/sh\necho reference macvlan\n', { mode: 0o755 });
  projectServiceAccount('token-one');
});
afterEach(async () => {
  for (const child of running.splice(0)) {
    child.kill('SIGKILL');
    await child.catch(() => undefined);
  }
  rmSync(root, { recursive: true, force: true });
});

describe('underlay install --once', () => {
  it('installs the executable and links, keeps a foreign plugin, and writes a 0600 kubeconfig', () => {
    const { status, log } = install([]);
    expect(status, log).toBe(0);
    expect(statSync(join(bin, 'underlay')).size).toBe(statSync(EXE).size);
    expect(statSync(join(bin, 'underlay')).mode & 0o777).toBe(0o755);
    for (const name of ['underlay-macvlan', 'underlay-sriov', 'underlay-ipam', 'sriov', 'whereabouts']) expect(readlinkSync(join(bin, name))).toBe('underlay');
    expect(readFileSync(join(bin, 'macvlan'), 'utf8')).toContain('reference macvlan');
    expect(log).toMatch(/macvlan is a plugin of another origin; kept it/);
    expect(execFileSync(join(bin, 'underlay-macvlan'), { env: { CNI_COMMAND: 'VERSION' }, encoding: 'utf8' })).toMatch(/"supportedVersions"/);

    const config = readKubeconfig();
    expect(config.clusters[0]?.cluster.server).toBe('https://10.96.0.1:443');
    expect(Buffer.from(config.clusters[0]!.cluster['certificate-authority-data'], 'base64').toString()).toBe(CA);
    expect(config.users[0]?.user.token).toBe('token-one');
    expect(config.contexts.find((c) => c.name === config['current-context'])?.context.namespace).toBe('underlay-system');
    expect(statSync(kubeconfig).mode & 0o777).toBe(0o600);
    expect(statSync(join(kubeconfig, '..')).mode & 0o777).toBe(0o700);
    expect(log).not.toContain('token-one');
    expect(readdirSync(bin).filter((name) => name.startsWith('.'))).toEqual([]);
  });

  it('replaces the foreign plugin only with --force, and always takes back an underlay-* name', () => {
    writeFileSync(join(bin, 'underlay-ipam'), 'an old copy', { mode: 0o755 });
    expect(install([]).status).toBe(0);
    expect(readlinkSync(join(bin, 'underlay-ipam'))).toBe('underlay');
    expect(lstatSync(join(bin, 'macvlan')).isSymbolicLink()).toBe(false);
    const forced = install(['--force']);
    expect(forced.log).toMatch(/replaced .*\/macvlan with a link to underlay \(--force\)/);
    expect(readlinkSync(join(bin, 'macvlan'))).toBe('underlay');
    expect(install([]).log).toMatch(/underlay is up to date[\s\S]*plugin links .* are in place/);
  });

  it('replaces a running executable by rename: the old process runs on, the new file is whole', async () => {
    copyFileSync('/bin/sleep', join(bin, 'underlay'));
    const oldInode = statSync(join(bin, 'underlay')).ino;
    const busy = spawn(join(bin, 'underlay'), ['30']);
    try {
      const { status, log } = install([]);
      expect(status, log).toBe(0);
      expect(log).toMatch(/replaced .*\/underlay \(underlay \d/);
      expect(statSync(join(bin, 'underlay')).ino).not.toBe(oldInode);
      expect(busy.exitCode).toBeNull();
      expect(execFileSync(join(bin, 'underlay'), ['version'], { encoding: 'utf8' })).toMatch(/^underlay /);
    } finally {
      busy.kill('SIGKILL');
    }
  });

  it('removes a stale temporary copy a killed installer left, and spares a young one', () => {
    writeFileSync(join(bin, '.underlay-install.0ld'), 'half a binary');
    utimesSync(join(bin, '.underlay-install.0ld'), new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000));
    writeFileSync(join(bin, '.underlay-install.y0ung'), 'being written');
    expect(install([]).log).toMatch(/removed .*\.underlay-install\.0ld/);
    expect(readdirSync(bin).filter((name) => name.startsWith('.'))).toEqual(['.underlay-install.y0ung']);
  });

  it('puts the pools namespace, an IPv6 API address and a --server in the kubeconfig as asked', () => {
    expect(install(['--pool-namespace', 'kube-system'], { KUBERNETES_SERVICE_HOST: 'fd00:10:96::1', KUBERNETES_SERVICE_PORT: '6443' }).status).toBe(0);
    expect(readKubeconfig().clusters[0]?.cluster.server).toBe('https://[fd00:10:96::1]:6443');
    expect(readKubeconfig().contexts[0]?.context.namespace).toBe('kube-system');
    expect(install(['--server', 'https://api.cluster.test:6443'], {}).status).toBe(0);
    expect(readKubeconfig().clusters[0]?.cluster.server).toBe('https://api.cluster.test:6443');
  });

  it('says plainly what is missing, and never prints the token', () => {
    const outside = install([], {});
    expect(outside.status).toBe(2);
    expect(outside.log).toMatch(/KUBERNETES_SERVICE_HOST is not set.*--skip-kubeconfig/);
    rmSync(join(sa, 'token'));
    const noToken = install([]);
    expect(noToken.status).toBe(1);
    expect(noToken.log).toContain(`service account file ${join(sa, 'token')}: it does not exist`);
    const badFlag = install(['--bogus']);
    expect(badFlag.status).toBe(2);
    expect(badFlag.log).toMatch(/unknown argument "--bogus"/);
    expect(install(['--skip-kubeconfig'], {}).status).toBe(0);
    for (const run of [outside, noToken, badFlag]) expect(run.stdout + run.log).not.toContain('token-one');
  });
});

describe('underlay install (kept running)', () => {
  it('rewrites the kubeconfig when the token rotates or the CA changes, and exits on SIGTERM', async () => {
    const child = execa(EXE, ['install', '--cni-bin-dir', bin, '--kubeconfig', kubeconfig, '--serviceaccount-dir', sa], { env: ENV, extendEnv: false, reject: false });
    running.push(child);
    await eventually(() => tokenOf() === 'token-one', 30_000);

    projectServiceAccount('token-two');
    await eventually(() => tokenOf() === 'token-two');
    writeFileSync(join(sa, readlinkSync(join(sa, '..data')), 'token'), 'token-three'); // a write in place
    await eventually(() => tokenOf() === 'token-three');
    const newCa = CA.replace('MIIB', 'MIIC');
    projectServiceAccount('token-three', newCa);
    await eventually(() => Buffer.from(readKubeconfig().clusters[0]!.cluster['certificate-authority-data'], 'base64').toString() === newCa);
    expect(statSync(kubeconfig).mode & 0o777).toBe(0o600);

    child.kill('SIGTERM');
    const done = await Promise.race([child, new Promise<undefined>((resolve) => setTimeout(resolve, 5_000))]);
    expect(done, 'still running 5 s after SIGTERM').toBeDefined();
    expect(done?.exitCode).toBe(0);
    expect(done?.stderr).toMatch(/rewrote .*underlay\.kubeconfig: the service account's token or CA changed/);
    expect(done?.stderr).toMatch(/stopping on SIGTERM/);
    for (const token of ['token-one', 'token-two', 'token-three']) expect(done?.stderr).not.toContain(token);
    expect(readdirSync(join(kubeconfig, '..'))).toEqual(['underlay.kubeconfig']);
  });
});
