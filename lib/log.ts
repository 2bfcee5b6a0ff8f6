// Logs go to the configured file or to stderr; stdout belongs to the CNI protocol alone.
// sriov-cni names the fields logFile/logLevel, whereabouts log_file/log_level: both are accepted.
import { appendFileSync } from 'node:fs';

const LEVELS = { panic: 0, error: 1, warning: 2, info: 3, verbose: 3, debug: 4 } as const;
export type LogLevel = keyof typeof LEVELS;

interface LogSettings {
  file?: string;
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
  for (const source of sources) {
    if (!source) continue;
    const file = source.logFile ?? source.log_file;
    const level = source.logLevel ?? source.log_level;
    if (typeof file === 'string' && file !== '') settings.file = file;
    if (typeof level === 'string' && isLogLevel(level.toLowerCase())) settings.level = LEVELS[level.toLowerCase() as LogLevel];
  }
}

export const debugEnabled = (): boolean => settings.level >= LEVELS.debug;

function write(level: LogLevel, message: string): void {
  if (LEVELS[level] > settings.level) return;
  const line = `${new Date().toISOString()} [${level}] ${settings.context}${settings.context ? ': ' : ''}${message}\n`;
  if (settings.file) {
    try {
      appendFileSync(settings.file, line, { mode: 0o600 });
      return;
    } catch {
      // An unwritable log file must not fail the ADD; fall back to stderr.
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
