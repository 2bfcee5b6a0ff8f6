// Logs go to the configured file or to stderr; stdout belongs to the CNI protocol alone.
// sriov-cni names the fields logFile/logLevel, whereabouts log_file/log_level: both are accepted.
//
// The log file's path comes from the network config, which people who are not node admins write, and
// we run as root: so the file must be one a log can be (see openLogFile), and no line may carry a
// config string as it is (see the escaping below).
import { closeSync, constants, fstatSync, openSync, readlinkSync, realpathSync, writeSync } from 'node:fs';
import { basename, dirname, isAbsolute, normalize } from 'node:path';
import { showValue, UNSAFE_CHARS } from './cni/errors.ts';

const LEVELS = { panic: 0, error: 1, warning: 2, info: 3, verbose: 3, debug: 4 } as const;
export type LogLevel = keyof typeof LEVELS;

interface LogSettings {
  /** The configured log file and its descriptor; no descriptor when it was refused: lines go to stderr. */
  file?: { path: string; fd: number | undefined };
  level: number;
  context: string;
}

const settings: LogSettings = { level: LEVELS.warning, context: '' };

export function isLogLevel(value: string): value is LogLevel {
  return Object.hasOwn(LEVELS, value);
}

/**
 * Picks up the log fields from anywhere a user may have put them: top level, inside `ipam`, or a flat
 * file merged later (whereabouts' configuration_path): a later call only overrides what it names.
 */
export function configureLog(sources: ReadonlyArray<Record<string, unknown> | undefined>, context?: string): void {
  if (context !== undefined) settings.context = context;
  let file: string | undefined;
  for (const source of sources) {
    if (!source) continue;
    const path = source.logFile ?? source.log_file;
    const level = source.logLevel ?? source.log_level;
    if (typeof path === 'string' && path !== '') file = path;
    if (typeof level === 'string' && isLogLevel(level.toLowerCase())) settings.level = LEVELS[level.toLowerCase() as LogLevel];
  }
  if (file !== undefined && file !== settings.file?.path) useLogFile(file);
}

function useLogFile(path: string): void {
  if (settings.file?.fd !== undefined) closeSync(settings.file.fd);
  const opened = openLogFile(path);
  settings.file = { path, fd: typeof opened === 'number' ? opened : undefined };
  // Said once, on stderr (the runtime's log), and the verb goes on: a bad log file must not fail a
  // DEL. The lines go to stderr instead.
  if (typeof opened === 'string') process.stderr.write(`underlay: log file ${showValue(path)} refused: ${opened}; logging to stderr\n`);
}

/**
 * Opens `path` for appending, or says why not. Only an absolute, normal path ending in ".log" whose
 * directories are no symbolic links; the file itself opened with O_NOFOLLOW (and O_NONBLOCK, so a
 * FIFO cannot hang us), and kept only if it is a regular file of ours with one link. What was opened
 * is checked through /proc/self/fd, so a directory swapped for a link between the checks is caught.
 */
export function openLogFile(path: string): number | string {
  if (!isAbsolute(path)) return 'it is not an absolute path';
  if (normalize(path) !== path) return 'it is not a normal path (no ".", ".." or repeated "/")';
  if (!path.endsWith('.log') || basename(path) === '.log') return 'its name does not end in ".log"';
  try {
    if (realpathSync(dirname(path)) !== dirname(path)) return 'its directory path goes through a symbolic link';
  } catch (err) {
    return `its directory cannot be resolved (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
  }
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') return 'it is a symbolic link';
    if (code === 'ENXIO') return 'it is not a regular file';
    return `it cannot be opened (${code ?? 'error'})`;
  }
  const why = refusalOf(fd, path);
  if (why === undefined) return fd;
  closeSync(fd);
  return why;
}

function refusalOf(fd: number, path: string): string | undefined {
  const stat = fstatSync(fd);
  if (!stat.isFile()) return 'it is not a regular file';
  const uid = process.geteuid?.() ?? 0;
  if (stat.uid !== uid) return `it is owned by uid ${stat.uid}, not by ${uid === 0 ? 'root' : `uid ${uid}`}`;
  if (stat.nlink !== 1) return `it has ${stat.nlink} hard links`;
  try {
    if (readlinkSync(`/proc/self/fd/${fd}`) !== path) return 'its path changed while it was opened';
  } catch {
    return 'what was opened cannot be checked through /proc/self/fd';
  }
  return undefined;
}

export const debugEnabled = (): boolean => settings.level >= LEVELS.debug;

/** Shell metacharacters other than those `neutralize` already turns into \xNN ($, backtick, !). */
const SHELL_SPECIAL = /[\\;&|<>(){}[\]*?#~'"]/g;

/**
 * A value as it goes into a log line: text with every shell metacharacter escaped, so a line pasted
 * into (or sourced by) a shell runs nothing; anything else as showValue shows it.
 */
export function logValue(value: unknown): string {
  return typeof value === 'string' ? neutralize(value.replace(SHELL_SPECIAL, (char) => `\\${char}`)) : showValue(value);
}

/**
 * The last pass over every line, whoever built it: no control character (a forged line, a terminal
 * escape), no invisible mark, no `$` or backtick (a shell expansion) survives as it is. Also for text
 * of records shown on a terminal (`underlay ipam show`).
 */
export function neutralize(text: string): string {
  return text.replace(UNSAFE_CHARS, (char) => {
    const code = char.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * Builds a log message from a template whose values are escaped with logValue:
 * log.warn(escaped`pool ${name} of ${podref} is full`). A plain string is logged as it is, but for
 * the last pass of `neutralize`, which every line gets.
 */
export function escaped(parts: TemplateStringsArray, ...values: unknown[]): string {
  return parts.reduce((text, part, i) => text + (i > 0 ? logValue(values[i - 1]) : '') + part, '');
}

function write(level: LogLevel, message: string): void {
  if (LEVELS[level] > settings.level) return;
  const context = settings.context ? `${settings.context}: ` : '';
  const line = `${new Date().toISOString()} [${level}] ${neutralize(context + message)}\n`;
  const fd = settings.file?.fd;
  if (fd !== undefined) {
    try {
      writeSync(fd, line);
      return;
    } catch {
      // An unwritable log file (a full disk) must not fail the ADD; fall back to stderr.
    }
  }
  process.stderr.write(line);
}

export const log = {
  error: (message: string) => write('error', message),
  warn: (message: string) => write('warning', message),
  info: (message: string) => write('info', message),
  debug: (message: string) => write('debug', message),
};
