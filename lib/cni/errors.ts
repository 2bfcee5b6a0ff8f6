// The one error type of the project. Every failure that reaches a caller is a CniError carrying the
// code the CNI spec assigns, so the runtime can tell "try again later" from "bad config".

export const Code = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodingFailure: 6,
  InvalidConfig: 7,
  InvalidNetns: 8,
  TryAgainLater: 11,
  NotAvailable: 50,
  LimitedConnectivity: 51,
  Internal: 999,
} as const;

export type CniCode = number;

export class CniError extends Error {
  readonly code: CniCode;
  readonly details: string;

  constructor(code: CniCode, msg: string, details = '') {
    super(msg);
    this.name = 'CniError';
    this.code = code;
    this.details = details;
  }

  /** The wire form the spec defines; printed on stdout with a non-zero exit. */
  toJSON(cniVersion: string): { cniVersion: string; code: number; msg: string; details?: string } {
    const out: { cniVersion: string; code: number; msg: string; details?: string } = {
      cniVersion,
      code: this.code,
      msg: this.message,
    };
    if (this.details) out.details = this.details;
    return out;
  }
}

/** Wraps anything thrown into a CniError without losing a code that is already there. */
export function asCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof Error) return new CniError(Code.Internal, err.message);
  return new CniError(Code.Internal, String(err));
}

/** How much of a value a message shows: enough to recognise it, never a whole blob. */
export const SHOWN_CHARS = 80;

/**
 * Field names whose values are secrets, or point at key material: passwords, tokens, client keys,
 * credentials. Matching a little too much (a key file's path) costs nothing; missing one leaks it.
 */
const SECRET_KEY = /pass|secret|token|key|cred|auth|bearer|private|cookie|session/i;
/** Values that are secrets whatever their field is called: PEM blocks and JSON web tokens. */
const SECRET_TEXT = /-----BEGIN [A-Z ]+-----|^eyJ[\w-]{8,}\.[\w-]{8,}\./;
const NOT_SHOWN = '(not shown)';

export const isSecretKey = (key: string): boolean => SECRET_KEY.test(key);

/**
 * Characters that must never reach a terminal or a log line as they are: controls (which forge lines
 * or drive a terminal), invisible and bidirectional marks (which make text read differently than it
 * is), and `$`, backtick and `!`, which a shell expands even inside double quotes.
 */
// eslint-disable-next-line no-control-regex -- control characters are what it is there to find
export const UNSAFE_CHARS = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb$`!]/g;

export const unicodeEscape = (char: string): string => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** A string as a JSON literal that is also inert in a shell and on a terminal. */
function quote(text: string): string {
  return JSON.stringify(text).replace(UNSAFE_CHARS, unicodeEscape);
}

/**
 * Shows a value in a message: as JSON (so a reader can tell "1" from 1), redacted where a field
 * name or the text says it is a secret, escaped so no shell or terminal acts on it, and cut to a
 * short prefix. The walk stops once the prefix is full, so a huge or deep value costs no more than
 * a small one. `key` is the field the value came from, when there is one.
 */
export function showValue(value: unknown, key?: string): string {
  if (key !== undefined && isSecretKey(key)) return NOT_SHOWN;
  let text = '';
  const full = (): boolean => text.length > SHOWN_CHARS;
  const walk = (node: unknown, depth: number): void => {
    if (typeof node === 'string') {
      text += SECRET_TEXT.test(node) ? quote(NOT_SHOWN) : quote(node.slice(0, SHOWN_CHARS + 1));
    } else if (node === null || typeof node !== 'object') {
      text += String(node).replace(UNSAFE_CHARS, unicodeEscape);
    } else if (depth > 16) {
      text += '...';
    } else if (Array.isArray(node)) {
      text += '[';
      for (let i = 0; i < node.length && !full(); i++) {
        if (i > 0) text += ',';
        walk(node[i], depth + 1);
      }
      text += ']';
    } else {
      text += '{';
      let first = true;
      for (const name in node) {
        if (full()) break;
        if (!Object.hasOwn(node, name)) continue;
        text += `${first ? '' : ','}${quote(name.slice(0, SHOWN_CHARS))}:`;
        first = false;
        if (isSecretKey(name)) text += quote(NOT_SHOWN);
        else walk((node as Record<string, unknown>)[name], depth + 1);
      }
      text += '}';
    }
  };
  walk(value, 0);
  if (!full()) return text;
  return `${cutWhole(text.slice(0, SHOWN_CHARS - 3))}...`;
}

/** Drops an escape sequence the cut split in two, so what is shown is still well-formed. */
function cutWhole(prefix: string): string {
  const cut = prefix.replace(/\\u[0-9a-f]{0,3}$/, '');
  const backslashes = /\\*$/.exec(cut)?.[0].length ?? 0;
  return backslashes % 2 === 1 ? cut.slice(0, -1) : cut;
}
