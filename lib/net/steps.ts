// Several `ip -batch` runs in several network namespaces, in one spawn: giving a VF back takes a batch
// on the PF (host), one in the pod that sends the netdev home, and one in the host that finishes it and
// reads the result. Each spawn costs ~2 ms; a DEL should pay one. The spawn does not block us: moving a
// netdev between namespaces waits ~20 ms for the kernel (RCU grace periods), time an ADD or DEL spends
// with its IPAM. Batch texts and paths reach the script only as arguments, after batchText has
// checked every token.
import { batchText, IpError, runAsync, type IpCommand, type RunOptions } from './ip.ts';

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
  /** The JSON the final read printed (`ip -j`), if one was asked for. */
  read: string;
}

type Step = IpStep & { reads?: boolean };

const HARD_FAILURE = 3;

// Per step three arguments: netns, batch, and "soft" (best effort), "read" (run with -j, its stdout is
// the read) or "". stdout: "@soft N" + what step N printed on stderr + "@end" for each best-effort step
// with refusals, then "@read" and the read's JSON. A hard failure exits 3 after "@step N" on stderr.
const SCRIPT = [
  'ipin() { ns=$1; shift; if [ -n "$ns" ]; then nsenter --net="$ns" -- ip "$@"; else ip "$@"; fi; }',
  'n=$1; shift; i=0',
  'while [ "$i" -lt "$n" ]; do',
  '  echo "@step $i" >&2',
  '  case "$3" in',
  '  soft) if ! err=$(printf %s "$2" | ipin "$1" -force -batch - 2>&1 >/dev/null); then printf "@soft %s\\n%s\\n@end\\n" "$i" "$err"; fi;;',
  `  read) echo "@read"; printf %s "$2" | ipin "$1" -j -batch - || exit ${HARD_FAILURE};;`,
  `  *) printf %s "$2" | ipin "$1" -batch - || exit ${HARD_FAILURE};;`,
  '  esac',
  '  shift 3; i=$((i+1))',
  'done',
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

/** The read joins the last step when that runs where the read does; otherwise it is a step of its own. */
function withRead(steps: ReadonlyArray<IpStep>, read?: { command: IpCommand; netns?: string }): Step[] {
  const active: Step[] = steps.filter((step) => step.commands.length > 0);
  if (!read) return active;
  const last = active.at(-1);
  if (last && !last.bestEffort && last.netns === read.netns) active[active.length - 1] = { ...last, commands: [...last.commands, read.command], reads: true };
  else active.push({ what: `ip -j ${read.command.join(' ')}`, netns: read.netns, commands: [read.command], reads: true });
  return active;
}

interface Spawned {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** lib/net/ip.ts's runAsync, with a failure's status and stderr as an outcome to read, not an error. */
async function spawned(argv: ReadonlyArray<string>, options: RunOptions): Promise<Spawned> {
  try {
    return { status: 0, stdout: await runAsync(argv, options), stderr: '' };
  } catch (err) {
    if (err instanceof IpError && err.status !== null) return { status: err.status, stdout: '', stderr: err.stderr };
    throw err;
  }
}

/** One step needs no script: ip (in nsenter for another netns) reads its batch on stdin. */
async function runOne(step: Step): Promise<StepsOutcome> {
  const flags = step.bestEffort ? ['-force'] : step.reads ? ['-j'] : [];
  const { status, stdout, stderr } = await spawned(['ip', ...flags, '-batch', '-'], { netns: step.netns, input: batchText(step.commands) });
  if (status === 0) return { refused: [], read: step.reads ? stdout : '' };
  if (step.bestEffort && status === 1) return { refused: [`${failedStep(step, stderr)}: ${said(stderr)}`], read: '' };
  throw new IpError(failedStep(step, stderr), stderr, status);
}

/**
 * Runs `steps` in order, then `read` (a show command such as ['link', 'show', 'dev', name], run with
 * -j in `read.netns`). A step that is not best effort stops everything when it fails: an IpError
 * naming it and its failing line.
 */
export async function runIpSteps(steps: ReadonlyArray<IpStep>, read?: { command: IpCommand; netns?: string }): Promise<StepsOutcome> {
  const active = withRead(steps, read);
  if (active.length === 0) return { refused: [], read: '' };
  if (active.length === 1) return runOne(active[0]!);
  const args = active.flatMap((step) => [step.netns ?? '', batchText(step.commands), step.bestEffort ? 'soft' : step.reads ? 'read' : '']);
  const { status, stdout, stderr } = await spawned(['sh', '-c', SCRIPT, 'sh', String(active.length), ...args], {});
  if (status !== 0) {
    const last = [...stderr.matchAll(/^@step (\d+)$/gm)].map((m) => Number(m[1])).at(-1);
    const tail = stderr.split(/^@step \d+$/m).at(-1) ?? '';
    throw new IpError(last === undefined ? 'ip steps' : failedStep(active[last]!, tail), tail, status);
  }
  const [report = '', readOut = ''] = stdout.split(/^@read\n/m);
  const refused = [...report.matchAll(/^@soft (\d+)\n([\s\S]*?)\n@end$/gm)].map((m) => `${failedStep(active[Number(m[1])]!, m[2] ?? '')}: ${said(m[2] ?? '')}`);
  return { refused, read: readOut };
}
