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

/** What test/setup.ts holds of the current test's stderr; on globalThis so every module copy shares it. */
interface StderrCapture {
  lines: string[];
  strict: boolean;
}

const CAPTURE = Symbol.for('underlay.test.stderr');

export function stderrCapture(): StderrCapture {
  const holder = globalThis as { [CAPTURE]?: StderrCapture };
  holder[CAPTURE] ??= { lines: [], strict: false };
  return holder[CAPTURE];
}

/** The lines this test's in-process code wrote to stderr so far; taking them is asserting on them. */
export function takeStderr(): string[] {
  const capture = stderrCapture();
  const lines = capture.lines;
  capture.lines = [];
  return lines;
}

/** From now on in this file, a stderr line no test took with takeStderr() fails its test. */
export function strictStderr(): void {
  stderrCapture().strict = true;
}
