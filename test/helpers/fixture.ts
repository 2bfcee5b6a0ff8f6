// The usual setup of a test file: the built executable, a lab of namespaces with one veth end as the
// macvlan master, and a temporary directory (leases, host-local data). Made when the file loads, so
// the names can be plain constants; removed after the file's tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { requireBuild } from './exec.ts';
import { Lab } from './netns.ts';

export function labWithMaster(vethTag: string, dirTag: string): { lab: Lab; dir: string; master: string } {
  requireBuild();
  const lab = new Lab();
  const dir = mkdtempSync(join(tmpdir(), `underlay-${dirTag}-`));
  const master = lab.veth(vethTag);
  afterAll(() => {
    lab.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  return { lab, dir, master };
}
