// scripts/install.sh on a plugin directory that already holds a foreign plugin: kept unless --force.
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuild, ROOT } from '../helpers/exec.ts';

let dir: string;
const install = (...args: string[]) => execFileSync('bash', [join(ROOT, 'scripts/install.sh'), '--dir', dir, ...args], { encoding: 'utf8' });

beforeAll(() => {
  requireBuild();
  dir = mkdtempSync(join(tmpdir(), 'underlay-install-'));
  writeFileSync(join(dir, 'macvlan'), '#!/bin/sh\necho reference macvlan\n', { mode: 0o755 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('install.sh', () => {
  it('installs the executable and links, keeping a plugin of another origin', () => {
    const out = install();
    expect(out).toMatch(/macvlan exists and is not Underlay's; kept it/);
    expect(readFileSync(join(dir, 'macvlan'), 'utf8')).toContain('reference macvlan');
    for (const name of ['underlay-macvlan', 'underlay-ipam', 'underlay-sriov', 'whereabouts', 'sriov']) {
      expect(readlinkSync(join(dir, name))).toBe('underlay');
    }
    expect(execFileSync(join(dir, 'underlay-macvlan'), { env: { CNI_COMMAND: 'VERSION' }, encoding: 'utf8' })).toMatch(/"supportedVersions"/);
  });

  it('is idempotent, and --force replaces the foreign plugin', () => {
    expect(install()).not.toMatch(/replacing/);
    expect(install('--force')).toMatch(/replacing .*\/macvlan/);
    expect(lstatSync(join(dir, 'macvlan')).isSymbolicLink()).toBe(true);
    expect(readdirSync(dir).filter((name) => name.startsWith('.'))).toEqual([]); // no temporary left behind
  });
});
