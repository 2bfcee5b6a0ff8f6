// Runs around every test file (vitest.config.ts: setupFiles).
//
// stderr: what code running in the test process writes there (lib/log.ts's warnings) is held per
// test instead of being printed, so a green run does not look like a failing one. A test reads what
// it expects with takeStderr() (test/helpers/fixture.ts); in a file that calls strictStderr(), a
// line no test took fails that test. Elsewhere untaken lines are counted, and the file ends with one
// line saying how many (UNDERLAY_TEST_STDERR=show prints them as they come).
//
// NODENAME: see below.
//
// /var/lib/cni: podman's CNI library keeps its result cache in /var/lib/cni/results, a path podman
// 4.3 does not let us move. When a file's run made that directory and left it empty, it goes.
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { stderrCapture } from './helpers/fixture.ts';

// The suite runs as one node (a test of several nodes sets NODENAME per call): CNI GC on a store the
// nodes share judges only the leases of the node it runs on.
process.env.NODENAME ??= 'test-node';

const capture = stderrCapture();
// A worker process may run several files: strictness is each file's own choice.
capture.strict = false;
const realWrite = process.stderr.write.bind(process.stderr);
const show = process.env.UNDERLAY_TEST_STDERR === 'show';
let untaken = 0;
let file = '';

beforeEach((context) => {
  file ||= context.task.file.name;
  capture.lines = [];
  let partial = '';
  process.stderr.write = (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
    const text = partial + (typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    const lines = text.split('\n');
    partial = lines.pop() ?? '';
    capture.lines.push(...lines);
    if (show) realWrite(chunk);
    const done = rest.find((arg) => typeof arg === 'function') as (() => void) | undefined;
    done?.();
    return true;
  };
});

afterEach(() => {
  process.stderr.write = realWrite;
  const left = capture.lines;
  capture.lines = [];
  if (left.length === 0) return;
  if (capture.strict) throw new Error(`stderr lines no assertion took:\n${left.join('\n')}`);
  untaken += left.length;
});

afterAll(() => {
  if (untaken > 0 && !show) realWrite(`[stderr] ${file}: ${untaken} line(s) its tests wrote to stderr were not asserted (UNDERLAY_TEST_STDERR=show prints them)\n`);
});

const CNI_STATE = '/var/lib/cni';
const RESULTS = `${CNI_STATE}/results`;
let hadCniState = true;

beforeAll(() => {
  hadCniState = existsSync(CNI_STATE);
});

afterAll(() => {
  if (hadCniState || !existsSync(CNI_STATE)) return;
  try {
    if (existsSync(RESULTS) && readdirSync(RESULTS).length === 0) rmdirSync(RESULTS);
    if (readdirSync(CNI_STATE).length === 0) rmdirSync(CNI_STATE);
  } catch {
    // Something else is using it now: not ours to remove.
  }
});
