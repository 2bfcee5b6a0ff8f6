// The image as an operator builds and runs it: deploy/build-image.sh builds deploy/Containerfile with
// podman, offline; the image holds the executable and exactly the libraries ldd names; and the
// DaemonSet's own command, run in it with the DaemonSet's confinement (read-only root, no capability),
// installs plugins that run on the host. podman's storage is private and removed afterwards.
import { execa } from 'execa';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAll } from 'js-yaml';
import { BIN, requireBuild, ROOT } from '../helpers/exec.ts';

const TAG = `localhost/underlay:e2e-${process.pid}`;
// containers/image keeps a blob-info cache for root here whatever --root says: made by us, removed by us.
const SHARED_CACHE = '/var/lib/containers';
const sharedCacheWasThere = existsSync(SHARED_CACHE);
let dir: string;
let env: Record<string, string>;

function podman(...args: string[]) {
  return execa('podman', ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), ...args], { env, reject: false, timeout: 180_000 });
}

/** The libraries the built executable loads, as ldd names them (the vDSO is the kernel's). */
function linkedLibraries(): string[] {
  const out = execFileSync('ldd', [join(BIN, 'underlay')], { encoding: 'utf8' });
  return [...out.matchAll(/(?:=> )?(\/\S+) \(0x/g)].map((m) => m[1]!).sort();
}

interface Container {
  args: string[];
  volumeMounts: Array<{ name: string; mountPath: string }>;
}
interface DaemonSetDoc {
  spec: { template: { spec: { containers: Container[]; volumes: Array<{ name: string; hostPath: { path: string } }> } } };
}

function shippedDaemonSet(): DaemonSetDoc {
  return (loadAll(readFileSync(join(ROOT, 'deploy/daemonset.yaml'), 'utf8')) as DaemonSetDoc[])[0]!;
}

beforeAll(async () => {
  requireBuild();
  dir = mkdtempSync(join(tmpdir(), 'underlay-image-'));
  for (const sub of ['net.d', 'tmp', 'host']) mkdirSync(join(dir, sub));
  writeFileSync(join(dir, 'containers.conf'), [
    '[containers]',
    'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
    '[engine]',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    `events_logfile_path = "${join(dir, 'events.log')}"`,
    'runtime = "runc"',
    `tmp_dir = "${join(dir, 'tmp')}"`,
    '[network]',
    'network_backend = "cni"',
    `network_config_dir = "${join(dir, 'net.d')}"`,
    '',
  ].join('\n'));
  env = { CONTAINERS_CONF: join(dir, 'containers.conf'), TMPDIR: join(dir, 'tmp') };
  const build = await execa('bash', [join(ROOT, 'deploy/build-image.sh'), '-t', TAG], {
    env: { ...env, PODMAN: `podman --root ${join(dir, 'root')} --runroot ${join(dir, 'runroot')}`, UNDERLAY_BIN: BIN },
    reject: false,
    timeout: 300_000,
  });
  expect(build.exitCode, build.stderr).toBe(0);
}, 320_000);

afterAll(async () => {
  if (!dir) return;
  await podman('rm', '-a', '-f');
  await podman('rmi', '-a', '-f');
  rmSync(dir, { recursive: true, force: true });
  if (!sharedCacheWasThere) rmSync(SHARED_CACHE, { recursive: true, force: true });
});

describe('the image', () => {
  it('holds the executable and exactly the libraries it links, nothing else', async () => {
    const create = await podman('create', '--name', 'underlay-files', TAG);
    expect(create.exitCode, create.stderr).toBe(0);
    const tar = join(dir, 'files.tar');
    expect((await podman('export', '-o', tar, 'underlay-files')).exitCode).toBe(0);
    await podman('rm', 'underlay-files');
    // What podman itself puts in every container (mount points, /etc/hosts and friends) is not ours.
    const runtime = /^(dev|proc|sys|run|etc|tmp|var)(\/|$)/;
    const files = execFileSync('tar', ['-tf', tar], { encoding: 'utf8' })
      .split('\n')
      .filter((name) => name !== '' && !name.endsWith('/') && !runtime.test(name))
      .map((name) => `/${name}`)
      .sort();
    expect(files).toEqual([...linkedLibraries(), '/usr/bin/underlay'].sort());
  });

  it('answers --help and version as the operator command line', async () => {
    const help = await podman('run', '--rm', '--network', 'none', TAG, '--help');
    expect(help.exitCode, help.stderr).toBe(0);
    expect(help.stdout).toContain('underlay install');
    const version = await podman('run', '--rm', '--network', 'none', TAG, 'version');
    expect(version.stdout).toMatch(/^underlay \d+\.\d+\.\d+/);
  });

  it("runs the DaemonSet's install command confined as the DaemonSet is, and the plugins run on the host", async () => {
    const podSpec = shippedDaemonSet().spec.template.spec;
    const container = podSpec.containers[0]!;
    const host = join(dir, 'host');
    const sa = join(dir, 'serviceaccount');
    mkdirSync(sa);
    writeFileSync(join(sa, 'token'), 'image-test-token');
    writeFileSync(join(sa, 'ca.crt'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    writeFileSync(join(sa, 'namespace'), 'underlay-system');
    const mounts = container.volumeMounts.flatMap(({ name, mountPath }) => {
      const hostPath = join(host, podSpec.volumes.find((v) => v.name === name)!.hostPath.path);
      mkdirSync(hostPath, { recursive: true });
      return ['-v', `${hostPath}:${mountPath}`];
    });
    const run = await podman('run', '--rm', '--network', 'none', '--read-only', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
      ...mounts, '-v', `${sa}:/var/run/secrets/kubernetes.io/serviceaccount:ro`,
      '-e', 'KUBERNETES_SERVICE_HOST=10.96.0.1', '-e', 'KUBERNETES_SERVICE_PORT=443',
      TAG, ...container.args, '--once');
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stderr).not.toContain('image-test-token');

    const bin = join(host, 'opt/cni/bin');
    expect(readlinkSync(join(bin, 'whereabouts'))).toBe('underlay');
    expect(execFileSync(join(bin, 'macvlan'), { env: { CNI_COMMAND: 'VERSION' }, encoding: 'utf8' })).toMatch(/"supportedVersions"/);
    const kubeconfig = join(host, 'etc/cni/net.d/underlay.d/underlay.kubeconfig');
    expect(statSync(kubeconfig).mode & 0o777).toBe(0o600);
    expect(readFileSync(kubeconfig, 'utf8')).toContain('token: "image-test-token"');
  });
});
