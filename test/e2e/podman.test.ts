// podman 4.3 (Debian, CNI backend, runc) as a real runtime: two busybox containers on a conflist whose
// plugins are our macvlan and our IPAM ping each other; stop and rm run DEL; nothing is left behind.
import { execa } from 'execa';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, requireBuild } from '../helpers/exec.ts';
import { leasesIn } from '../helpers/leases.ts';
import { Lab, sh } from '../helpers/netns.ts';

const lab = new Lab();
let dir: string;
let master: string;
const NETWORK = 'underlay-e2e';

function podman(...args: string[]) {
  return execa('podman', ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), ...args], {
    env: { CONTAINERS_CONF: join(dir, 'containers.conf') },
    reject: false,
    timeout: 120_000,
  });
}

function busyboxRootfs(root: string): void {
  mkdirSync(join(root, 'bin'), { recursive: true });
  for (const sub of ['proc', 'sys', 'dev', 'etc', 'tmp']) mkdirSync(join(root, sub), { recursive: true });
  copyFileSync('/usr/bin/busybox', join(root, 'bin', 'busybox'));
  for (const tool of ['sh', 'ping', 'ip', 'sleep']) symlinkSync('busybox', join(root, 'bin', tool));
}

beforeAll(() => {
  requireBuild();
  dir = mkdtempSync(join(tmpdir(), 'underlay-podman-'));
  master = lab.veth('pm');
  busyboxRootfs(join(dir, 'rootfs'));
  mkdirSync(join(dir, 'net.d'));
  writeFileSync(join(dir, 'containers.conf'), [
    '[containers]',
    'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
    '[engine]',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    'runtime = "runc"',
    '[network]',
    'network_backend = "cni"',
    `cni_plugin_dirs = ["${BIN}", "/usr/lib/cni"]`,
    `network_config_dir = "${join(dir, 'net.d')}"`,
    '',
  ].join('\n'));
  writeFileSync(join(dir, 'net.d', `${NETWORK}.conflist`), JSON.stringify({
    cniVersion: '1.0.0',
    name: NETWORK,
    plugins: [{ type: 'macvlan', master, mode: 'bridge', ipam: { type: 'whereabouts', range: '10.80.0.0/24', gateway: '10.80.0.1', file_store_dir: join(dir, 'leases') } }],
  }));
});

afterAll(async () => {
  await podman('rm', '-f', '-a');
  lab.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe('podman with our macvlan and IPAM', () => {
  it('runs two containers that ping each other, and DEL on stop/rm leaves nothing', async () => {
    for (const name of ['e2e-a', 'e2e-b']) {
      const run = await podman('run', '-d', '--name', name, '--network', NETWORK, '--rootfs', join(dir, 'rootfs'), 'sleep', '300');
      expect(run.exitCode, run.stderr).toBe(0);
    }
    const addressOf = async (name: string) =>
      (await podman('inspect', name, '--format', `{{(index .NetworkSettings.Networks "${NETWORK}").IPAddress}}`)).stdout.trim();
    const a = await addressOf('e2e-a');
    const b = await addressOf('e2e-b');
    expect(a).toMatch(/^10\.80\.0\.\d+$/);
    expect(b).toMatch(/^10\.80\.0\.\d+$/);
    expect(a).not.toBe(b);
    expect(leasesIn(join(dir, 'leases')).map((l) => l.address).sort()).toEqual([a, b].sort());

    const sandboxes = await Promise.all(['e2e-a', 'e2e-b'].map(async (name) => (await podman('inspect', name, '--format', '{{.NetworkSettings.SandboxKey}}')).stdout.trim()));
    for (const sandbox of sandboxes) expect(sh(`nsenter --net=${sandbox} ip -d link show eth0`)).toMatch(new RegExp(`eth0@[\\s\\S]*macvlan mode bridge`));
    const ping = await podman('exec', 'e2e-a', 'ping', '-c', '1', '-W', '2', b);
    expect(ping.exitCode, ping.stdout + ping.stderr).toBe(0);
    expect((await podman('exec', 'e2e-b', 'ip', '-o', 'link', 'show', 'eth0')).stdout).toMatch(/eth0@/);

    expect((await podman('stop', '-t', '0', 'e2e-a', 'e2e-b')).exitCode).toBe(0);
    expect((await podman('rm', 'e2e-a', 'e2e-b')).exitCode).toBe(0);
    expect(leasesIn(join(dir, 'leases'))).toEqual([]);
    for (const sandbox of sandboxes) expect(existsSync(sandbox), sandbox).toBe(false);
  });
});
