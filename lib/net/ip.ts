// iproute2 is our netlink: `ip -j` to read, `ip -batch -` to write many changes in one spawn.
// `ip -n` only takes names under /run/netns, and CNI_NETNS is any path (/proc/PID/ns/net, a bind
// mount), so work inside a pod's namespace goes through `nsenter --net=PATH`.
import * as z from 'zod/mini';
import { Code, CniError, showValue } from '../cni/errors.ts';
import { escaped, log } from '../log.ts';
import { timed, timedAsync } from '../trace.ts';

/** A failed iproute2 (or nsenter) run: what ran, and what it said on stderr. */
export class IpError extends CniError {
  readonly stderr: string;
  readonly status: number | null;
  constructor(what: string, stderr: string, status: number | null = null) {
    super(Code.Internal, `${what}: ${stderr.replace(/Command failed -:\d+/, '').trim().replace(/\s*\n\s*/g, '; ') || 'failed'}`);
    this.stderr = stderr;
    this.status = status;
  }
  /** iproute2's words for "no such link", in its several phrasings. */
  get linkMissing(): boolean {
    return /Cannot find device|does not exist|No such device/i.test(this.stderr);
  }
}

export interface RunOptions {
  /** Run inside this network namespace (a path). Omit for our own namespace. */
  netns?: string;
  input?: string;
}

const commandOf = (argv: ReadonlyArray<string>, options: RunOptions): string[] => (options.netns ? ['nsenter', `--net=${options.netns}`, '--', ...argv] : [...argv]);

/** Runs argv (ip, or sh for a scripted visit) in the namespace; returns stdout or throws IpError. */
export function run(argv: ReadonlyArray<string>, options: RunOptions = {}): string {
  const full = commandOf(argv, options);
  const started = Date.now();
  // Loaded on first use: node:child_process (with node:net under it) costs ~7 ms to load, which an
  // invocation that never spawns (our IPAM exec'd by another plugin) should not pay.
  const out = timed(`spawn ${full.slice(0, 4).join(' ')}`, () => process.getBuiltinModule('node:child_process').spawnSync(full[0]!, full.slice(1), { input: options.input ?? '', encoding: 'utf8', maxBuffer: 64 << 20 }));
  log.debug(escaped`ran ${full.join(' ')} (${Date.now() - started} ms, status ${out.status})`);
  if (out.error) throw new IpError(`cannot run ${full[0]}`, out.error.message);
  if (out.status !== 0) throw new IpError(describe(argv, options, out.stderr), out.stderr || out.stdout, out.status);
  return out.stdout;
}

/**
 * As run(), without waiting: the process works while this one goes on (the kernel tearing a link down
 * while the IPAM releases its lease). Resolves with stdout, rejects with IpError.
 */
export function runAsync(argv: ReadonlyArray<string>, options: RunOptions = {}): Promise<string> {
  const full = commandOf(argv, options);
  const at = Date.now();
  return timedAsync(`spawn ${full.slice(0, 4).join(' ')}`, () => new Promise<string>((resolve, reject) => {
    const child = process.getBuiltinModule('node:child_process').spawn(full[0]!, full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.stdin.on('error', () => undefined); // a command that exits without reading its input
    child.on('error', (error) => reject(new IpError(`cannot run ${full[0]}`, error.message)));
    child.on('close', (status) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      log.debug(escaped`ran ${full.join(' ')} (${Date.now() - at} ms, status ${status})`);
      if (status === 0) resolve(stdout);
      else reject(new IpError(describe(argv, options, stderr), stderr || stdout, status));
    });
    child.stdin.end(options.input ?? '');
  }));
}

/** Names the command that failed; for a batch, the failing line ("Command failed -:N"), not "-batch". */
function describe(argv: ReadonlyArray<string>, options: RunOptions, stderr: string): string {
  const where = options.netns ? ` in ${options.netns}` : '';
  const failedLine = /Command failed -:(\d+)/.exec(stderr);
  const batchLine = failedLine ? options.input?.split('\n')[Number(failedLine[1]) - 1] : undefined;
  const what = batchLine ? `ip ${batchLine}` : argv[0] === 'ip' ? `ip ${argv.slice(1).join(' ')}` : argv[0];
  return `${what}${where}`;
}

/** `ip -j ARGS`, parsed with `schema`. */
export function ipJson<S extends z.ZodMiniType>(schema: S, args: ReadonlyArray<string>, netns?: string): z.infer<S> {
  const text = run(['ip', '-j', ...args], { netns });
  return parseIpJson(schema, text.trim() || '[]', args);
}

export function parseIpJson<S extends z.ZodMiniType>(schema: S, text: string, args: ReadonlyArray<string>): z.infer<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CniError(Code.Internal, `ip -j ${args.join(' ')} printed something that is not JSON`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new CniError(Code.Internal, `ip -j ${args.join(' ')}: unexpected output: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

/** One iproute2 command as tokens, e.g. ['link', 'del', 'dev', name]. */
export type IpCommand = ReadonlyArray<string | number>;

// `ip -batch` splits lines on white space and honours quotes, backslashes and "#" comments: a token
// holding any of them (an interface name from a config, an address from a foreign IPAM) could smuggle
// in a second command. Refused here, once, for every caller.
const SAFE_TOKEN = /^[^\s"'\\#]+$/;

/** Throws, naming the token, unless each can go into an `ip -batch` line as one plain word. */
export function assertBatchSafe(...tokens: ReadonlyArray<string | number>): void {
  for (const token of tokens) {
    const text = String(token);
    if (!SAFE_TOKEN.test(text)) {
      throw new CniError(Code.InvalidConfig, `refusing to pass ${showValue(text)} to iproute2: it is empty or holds white space, a quote, "\\" or "#"`);
    }
  }
}

/** The text `ip -batch -` reads for `commands`. */
export function batchText(commands: ReadonlyArray<IpCommand>): string {
  for (const tokens of commands) assertBatchSafe(...tokens);
  return commands.map((tokens) => `${tokens.join(' ')}\n`).join('');
}



/** Applies several changes with one spawn; stops at the first failing line, as `ip -batch` does. */
export async function ipBatch(commands: ReadonlyArray<IpCommand>, netns?: string): Promise<void> {
  if (commands.length === 0) return;
  await runAsync(['ip', '-batch', '-'], { netns, input: batchText(commands) });
}
