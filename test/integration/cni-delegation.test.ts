// IPAM delegation by real exec: the BUILT macvlan runs Debian's host-local and static (found through
// CNI_PATH), and returns their results converted to every cniVersion they speak.
import { chmodSync, closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { labWithMaster } from '../helpers/fixture.ts';
import { cni, REFERENCE_BIN, BIN } from '../helpers/exec.ts';

const { lab, dir, master } = labWithMaster('dl', 'deleg');

const VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0'];
const ipams = {
  'host-local': (version: string) => ({ type: 'host-local', subnet: '10.78.0.0/24', dataDir: join(dir, version), routes: [{ dst: '0.0.0.0/0' }] }),
  static: () => ({ type: 'static', addresses: [{ address: '10.79.0.5/24', gateway: '10.79.0.1' }], routes: [{ dst: '0.0.0.0/0' }] }),
};

describe('delegation to reference IPAM plugins', () => {
  for (const [name, ipam] of Object.entries(ipams)) {
    for (const version of VERSIONS) {
      it(`${name} at ${version}`, async () => {
        const netns = lab.netns(`${name.slice(0, 2)}${version.replaceAll('.', '')}`);
        const config = { cniVersion: version, name: 'deleg', type: 'macvlan', master, ipam: ipam(version) };
        const env = { containerId: `d${version}`, netns, ifName: 'net1', path: `${BIN}:${REFERENCE_BIN}` };
        const add = await cni('macvlan', { ...env, command: 'ADD', config });
        expect(add.exitCode, add.stdout).toBe(0);
        expect(add.json?.cniVersion).toBe(version);
        const address = name === 'static' ? '10.79.0.5/24' : '10.78.0.2/24';
        if (version === '0.1.0' || version === '0.2.0') {
          expect(add.json).toMatchObject({ ip4: { ip: address, routes: [{ dst: '0.0.0.0/0' }] } });
        } else if (version.startsWith('0.')) {
          expect(add.json).toMatchObject({ ips: [{ version: '4', interface: 0, address }] });
        } else {
          expect(add.json).toMatchObject({ ips: [{ interface: 0, address }] });
          expect((add.json?.ips as object[])[0]).not.toHaveProperty('version');
        }
        expect((await cni('macvlan', { ...env, command: 'DEL', config })).exitCode).toBe(0);
      });
    }
  }

  it('an IPAM type missing from CNI_PATH is named in the error', async () => {
    const netns = lab.netns('miss');
    const config = { cniVersion: '1.0.0', name: 'deleg', type: 'macvlan', master, ipam: { type: 'no-such-ipam' } };
    const add = await cni('macvlan', { command: 'ADD', config, containerId: 'm', netns, ifName: 'net1' });
    expect(add.json).toMatchObject({ code: 7 });
    expect(add.json?.msg).toMatch(/ipam.type = "no-such-ipam"/);
  });

  it('the error of a failing IPAM comes back with its own code and message', async () => {
    const netns = lab.netns('fail');
    const config = { cniVersion: '1.0.0', name: 'deleg', type: 'macvlan', master, ipam: { type: 'static', addresses: [{ address: 'bogus' }] } };
    const direct = await cni(join(REFERENCE_BIN, 'static'), { command: 'ADD', config, containerId: 'f', netns, ifName: 'net1' });
    const viaUs = await cni('macvlan', { command: 'ADD', config, containerId: 'f', netns, ifName: 'net1' });
    expect(viaUs.exitCode).not.toBe(0);
    expect(viaUs.json).toEqual({ ...direct.json, cniVersion: '1.0.0' });
  });
});

describe('exec details', () => {
  it('a plugin binary that is busy being written (ETXTBSY) is retried, then runs', async () => {
    const pluginDir = mkdtempSync(join(tmpdir(), 'underlay-busy-'));
    const busy = join(pluginDir, 'host-local');
    copyFileSync(join(REFERENCE_BIN, 'host-local'), busy);
    chmodSync(busy, 0o755);
    const writer = openSync(busy, 'r+'); // an upgrade in progress holds it open for writing
    setTimeout(() => closeSync(writer), 300);
    const netns = lab.netns('busy');
    const config = { cniVersion: '1.0.0', name: 'deleg', type: 'macvlan', master, ipam: ipams['host-local']('busy') };
    const add = await cni('macvlan', { command: 'ADD', config, containerId: 'busy', netns, ifName: 'net1', path: `${BIN}:${pluginDir}` });
    expect(add.exitCode, add.stdout).toBe(0);
    expect(add.json).toMatchObject({ ips: [{ address: '10.78.0.2/24' }] });
    rmSync(pluginDir, { recursive: true, force: true });
  });

  it('logs go to logFile at the configured level; stdout carries only the CNI answer', async () => {
    const logFile = join(dir, 'macvlan.log');
    const netns = lab.netns('log');
    const config = { cniVersion: '1.0.0', name: 'deleg', type: 'macvlan', master, logFile, logLevel: 'debug', ipam: { type: 'whereabouts', range: '10.81.0.0/24', file_store_dir: join(dir, 'leases') } };
    const add = await cni('macvlan', { command: 'ADD', config, containerId: 'log', netns, ifName: 'net1', args: 'K8S_POD_NAMESPACE=d;K8S_POD_NAME=log' });
    expect(add.exitCode, add.stdout).toBe(0);
    expect(add.stdout.trim().split('\n')).toHaveLength(1);
    expect(add.stderr).toBe('');
    const log = readFileSync(logFile, 'utf8');
    expect(log).toMatch(/\[debug\] macvlan ADD log: IPAM ADD in-process \(whereabouts\)/);
    // One spawn per ADD: it makes the link and does everything inside the pod.
    expect(log.match(/\[debug\] macvlan ADD log: ran /g)).toHaveLength(1);
  });
});
