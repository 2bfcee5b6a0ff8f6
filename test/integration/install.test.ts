// scripts/install.sh on a plugin directory that already holds a foreign plugin: kept unless --force.
import { execFileSync, spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuild, ROOT } from '../helpers/exec.ts';

let dir: string;

/** The script's report (it logs to stderr); fails the test when the script does. */
function install(...args: string[]): string {
  const run = spawnSync('bash', [join(ROOT, 'scripts/install.sh'), '--dir', dir, ...args], { encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  return run.stdout + run.stderr;
}

beforeAll(() => {
  requireBuild();
  dir = mkdtempSync(join(tmpdir(), 'underlay-install-'));
  writeFileSync(join(dir, 'macvlan'), '#!/bin/sh\necho reference macvlan\n', { mode: 0o755 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('install.sh', () => {
  it('installs the executable and links, keeping a plugin of another origin', () => {
    const out = install();
    expect(out).toMatch(/macvlan is a plugin of another origin; kept it/);
    expect(readFileSync(join(dir, 'macvlan'), 'utf8')).toContain('reference macvlan');
    for (const name of ['underlay-macvlan', 'underlay-ipam', 'underlay-sriov', 'whereabouts', 'sriov']) {
      expect(readlinkSync(join(dir, name))).toBe('underlay');
    }
    expect(execFileSync(join(dir, 'underlay-macvlan'), { env: { CNI_COMMAND: 'VERSION' }, encoding: 'utf8' })).toMatch(/"supportedVersions"/);
  });

  it('is idempotent, and --force replaces the foreign plugin', () => {
    const again = install();
    expect(again).not.toMatch(/replaced/);
    expect(again).toMatch(/underlay is up to date/);
    expect(install('--force')).toMatch(/replaced .*\/macvlan with a link to underlay \(--force\)/);
    expect(lstatSync(join(dir, 'macvlan')).isSymbolicLink()).toBe(true);
    expect(readdirSync(dir).filter((name) => name.startsWith('.'))).toEqual([]); // no temporary left behind
  });
});
