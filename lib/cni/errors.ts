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

/** Shows a config value in an error message: short, and never a secret. */
export function showValue(value: unknown): string {
  let text: string;
  try {
    text = typeof value === 'string' ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
