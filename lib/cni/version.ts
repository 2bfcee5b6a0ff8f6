import { Code, CniError, showValue } from './errors.ts';

export const SUPPORTED_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type SpecVersion = (typeof SUPPORTED_VERSIONS)[number];
export const CURRENT_VERSION: SpecVersion = '1.1.0';

/** A config without cniVersion decodes as 0.1.0, as libcni does. */
export const DEFAULT_CONFIG_VERSION: SpecVersion = '0.1.0';

export function isSupported(version: string): version is SpecVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(version);
}

function parts(version: string): [number, number, number] {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  if (!m) throw new CniError(Code.DecodingFailure, `cniVersion ${showValue(version)} is not a semantic version`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

export function compareVersions(a: string, b: string): number {
  const pa = parts(a);
  const pb = parts(b);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export const atLeast = (version: string, floor: string): boolean => compareVersions(version, floor) >= 0;

export function requireSupported(version: string): SpecVersion {
  parts(version);
  if (!isSupported(version)) {
    throw new CniError(
      Code.IncompatibleVersion,
      `incompatible CNI versions: config is ${showValue(version)}, plugin supports [${SUPPORTED_VERSIONS.join(' ')}]`,
    );
  }
  return version;
}

/** The VERSION answer: the same whatever the config, as the Go library's. */
export function versionInfo(): string {
  return JSON.stringify({ cniVersion: CURRENT_VERSION, supportedVersions: SUPPORTED_VERSIONS });
}
