// Builds dist/bin/underlay: one Node 24 single-executable application holding every plugin, plus a link
// per plugin name (the executable dispatches on the name it was run as).
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeSea } from './scripts/sea.mjs';
import { PLUGIN_NAMES } from './lib/names.ts';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');
const bin = join(dist, 'bin');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

const started = Date.now();
rmSync(bin, { recursive: true, force: true });
mkdirSync(bin, { recursive: true });

const bundle = join(dist, 'underlay.cjs');
await build({
  entryPoints: [join(root, 'lib', 'main.ts')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node24',
  minify: true,
  legalComments: 'none',
  define: { UNDERLAY_VERSION: JSON.stringify(version) },
  logLevel: 'warning',
});

const exe = join(bin, 'underlay');
makeSea(bundle, exe);
for (const name of PLUGIN_NAMES) symlinkSync('underlay', join(bin, name));

const mb = (file) => `${(statSync(file).size / 1048576).toFixed(1)} MB`;
console.log(`build: ${exe} (${mb(exe)}, bundle ${(statSync(bundle).size / 1024).toFixed(0)} KiB) and links ${PLUGIN_NAMES.join(', ')} in ${Date.now() - started} ms`);
