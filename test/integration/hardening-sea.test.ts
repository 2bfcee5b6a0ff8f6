// The BUILT executable runs as root on every node: Node's own ways of loading more code from the
// environment (NODE_OPTIONS) must not work on it.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cni, requireBuild } from '../helpers/exec.ts';

beforeAll(requireBuild);
const dir = mkdtempSync(join(tmpdir(), 'underlay-hardening-sea-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const VERSION_ANSWER = { cniVersion: '1.1.0', supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] };

/** A script that leaves `marker` behind if Node ever runs it. */
function markerScript(name: string): { script: string; marker: string } {
  const script = join(dir, `${name}.cjs`);
  const marker = join(dir, `${name}.ran`);
  writeFileSync(script, `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran');\n`);
  return { script, marker };
}

describe('Node options from the environment change nothing', () => {
  it('NODE_OPTIONS=--require <script> runs nothing, and VERSION still answers', async () => {
    const { script, marker } = markerScript('version');
    const out = await cni('macvlan', { command: 'VERSION', env: { NODE_OPTIONS: `--require ${script}` } });
    expect(out.exitCode).toBe(0);
    expect(out.json).toEqual(VERSION_ANSWER);
    expect(existsSync(marker)).toBe(false);
  });

  it('NODE_OPTIONS=--require on a real verb runs nothing either', async () => {
    const { script, marker } = markerScript('del');
    const config = { cniVersion: '1.0.0', name: 'sea', type: 'macvlan' };
    const out = await cni('macvlan', { command: 'DEL', containerId: 'sea', ifName: 'net1', config, env: { NODE_OPTIONS: `--require ${script}` } });
    expect(out.exitCode, out.stdout).toBe(0);
    expect(existsSync(marker)).toBe(false);
  });

  it('NODE_OPTIONS=--inspect opens no debugger port', async () => {
    const out = await cni('macvlan', { command: 'VERSION', env: { NODE_OPTIONS: '--inspect=127.0.0.1:0' } });
    expect(out.json).toEqual(VERSION_ANSWER);
    expect(out.stderr).not.toMatch(/Debugger listening/);
  });
});
