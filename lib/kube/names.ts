// Kubernetes object names: most kinds, custom resources included, need a lowercase RFC 1123 subdomain
// (letters a-z, digits, "-" and ".", starting and ending with a letter or digit, at most 253
// characters). Checked before a request is sent, so a bad name fails with a message that says what is
// wrong with it instead of the server's 422.

const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const MAX_NAME_LENGTH = 253;

/** Why `name` is not a valid object name, or undefined when it is. */
export function objectNameProblem(name: string): string | undefined {
  if (name === '') return 'it is empty';
  if (name.length > MAX_NAME_LENGTH) return `it is ${name.length} characters long, more than ${MAX_NAME_LENGTH}`;
  if (SUBDOMAIN.test(name)) return undefined;
  const upper = name.match(/[A-Z]/g);
  if (upper) return `it has uppercase letters (${[...new Set(upper)].join('')}); names are lowercase`;
  const bad = name.match(/[^a-z0-9.-]/g);
  if (bad) return `it has characters a name cannot hold (${[...new Set(bad)].map((c) => JSON.stringify(c)).join(' ')}); only a-z, 0-9, "-" and "." are allowed`;
  return 'each dot-separated part must start and end with a letter or digit';
}
