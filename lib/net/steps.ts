// Several `ip -batch` runs in several network namespaces, in one spawn: giving a VF back takes a batch
// on the PF (host), one in the pod that sends the netdev home, and one in the host that finishes it.
// Each spawn costs ~2 ms; a DEL should pay one. Batch texts and paths reach the script only as
// arguments, after batchText has checked every token.
import { batchText, IpError, run, type IpCommand } from './ip.ts';

export interface IpStep {
  /** What the step does, for error messages ("restore VF 2 on ens1f0"). */
  what: string;
  /** The network namespace (a path) to run in; ours when undefined. */
  netns?: string;
  commands: ReadonlyArray<IpCommand>;
  /** Try every line (ip -force) and go on when some are refused; the refusals are returned. */
  bestEffort?: boolean;
}

export interface StepsOutcome {
  /** What best-effort steps had refused, one message per step. */
  refused: string[];
  /** stdout of the final read, if one was asked for. */
  read: string;
}

const HARD_FAILURE = 3;

// stdout: "@soft N" + what step N printed on stderr + "@end" for each best-effort step with refusals,
// then "@read" and the read's output. A hard failure exits 3 after "@step N" on stderr.
const SCRIPT = [
  'ipin() { ns=$1; shift; if [ -n "$ns" ]; then nsenter --net="$ns" -- ip "$@"; else ip "$@"; fi; }',
  'n=$1; shift; i=0',
  'while [ "$i" -lt "$n" ]; do',
  '  echo "@step $i" >&2',
  '  if [ "$3" = 1 ]; then',
  '    if ! err=$(printf %s "$2" | ipin "$1" -force -batch - 2>&1 >/dev/null); then printf "@soft %s\\n%s\\n@end\\n" "$i" "$err"; fi',
  `  else printf %s "$2" | ipin "$1" -batch - || exit ${HARD_FAILURE}; fi`,
  '  shift 3; i=$((i+1))',
  'done',
  'echo "@read"',
  '[ $# -eq 0 ] || { ns=$1; shift; ipin "$ns" "$@"; }',
].join('\n');

/** The step that failed, and its failing lines from iproute2's "Command failed -:N". */
function failedStep(step: IpStep, stderr: string): string {
  const lines = [...stderr.matchAll(/Command failed -:(\d+)/g)].map((m) => step.commands[Number(m[1]) - 1]).filter((c) => c !== undefined);
  const where = step.netns ? ` in ${step.netns}` : '';
  return `${step.what}${lines.length ? ` (${lines.map((c) => `ip ${c.join(' ')}`).join(', ')}${where})` : where}`;
}

/** What ip said, without its line numbers, on one line. */
const said = (stderr: string): string =>
  stderr.replace(/Command failed -:\d+/g, '').split('\n').map((l) => l.trim()).filter(Boolean).join('; ') || 'failed';

/**
 * Runs `steps` in order, then `read` (ip arguments such as ['-j', 'link', 'show', 'dev', name]) in
 * `readNetns`. A step that is not best-effort stops everything when it fails: an IpError naming it.
 */
export function runIpSteps(steps: ReadonlyArray<IpStep>, read?: ReadonlyArray<string>, readNetns?: string): StepsOutcome {
  const active = steps.filter((step) => step.commands.length > 0);
  const args = active.flatMap((step) => [step.netns ?? '', batchText(step.commands), step.bestEffort ? '1' : '']);
  let out: string;
  try {
    out = run(['sh', '-c', SCRIPT, 'sh', String(active.length), ...args, ...(read ? [readNetns ?? '', ...read] : [])]);
  } catch (err) {
    if (!(err instanceof IpError)) throw err;
    const started = [...err.stderr.matchAll(/^@step (\d+)$/gm)].map((m) => Number(m[1]));
    const last = started.at(-1);
    const stderr = err.stderr.split(/^@step \d+$/m).at(-1) ?? '';
    if (err.status === HARD_FAILURE && last !== undefined) throw new IpError(failedStep(active[last]!, stderr), stderr, err.status);
    throw new IpError(`ip ${read?.join(' ') ?? ''}${readNetns ? ` in ${readNetns}` : ''}`, stderr, err.status);
  }
  const [report = '', readOut = ''] = out.split(/^@read\n/m);
  const refused = [...report.matchAll(/^@soft (\d+)\n([\s\S]*?)\n@end$/gm)].map((m) => `${failedStep(active[Number(m[1])]!, m[2] ?? '')}: ${said(m[2] ?? '')}`);
  return { refused, read: readOut };
}
