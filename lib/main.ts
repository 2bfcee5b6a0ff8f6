// The single executable's entry point. It is every plugin at once and dispatches on the name it was
// run as: a runtime execs /opt/cni/bin/macvlan (a link to underlay) and gets the macvlan plugin.
//
// Start-up is paid on every CNI call, so this file stays tiny: VERSION (which runtimes such as podman
// send for every network, every time) is answered before any other module is initialised, and the
// plugins are loaded only when there is real work.
import { basename } from 'node:path';
import { versionInfo } from './cni/version.ts';
import { PLUGIN_NAMES } from './names.ts';
import { mark } from './trace.ts';

mark('main');

/** The name we were run as: argv0 keeps a symlink's own name, which is what dispatch needs. */
function invokedAs(): string {
  const name = basename(process.argv0 || '');
  if (name.startsWith('node')) return basename(process.argv[1] ?? '').replace(/\.c?js$/, '');
  return name;
}

function failHard(err: unknown): void {
  // Last line of defence: a CNI caller must always get the error JSON, never a stack trace.
  const msg = err instanceof Error ? err.message : String(err);
  process.stdout.write(`${JSON.stringify({ cniVersion: '1.1.0', code: 999, msg })}\n`);
  process.exit(1);
}

process.on('uncaughtException', failHard);
process.on('unhandledRejection', failHard);
const name = invokedAs();
if (PLUGIN_NAMES.includes(name) && process.env.CNI_COMMAND === 'VERSION') {
  process.stdout.write(`${versionInfo()}\n`);
} else {
  void import('./dispatch.ts').then(async ({ dispatch }) => {
    mark('modules loaded');
    const code = await dispatch(name);
    // A CNI call is over once its answer is written (stdout to a pipe or file is synchronous here):
    // exit now rather than wait for kept-alive sockets and timers to wind down. The operator's
    // commands (some run until signalled) end as they choose.
    if (process.env.CNI_COMMAND) process.exit(code);
    process.exitCode = code;
  });
}
