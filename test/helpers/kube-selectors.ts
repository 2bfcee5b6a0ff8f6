// labelSelector and fieldSelector as kube-apiserver parses and matches them. Labels: "k=v", "k==v",
// "k!=v", "k in (a,b)", "k notin (a,b)", "k", "!k", joined by commas. Fields: "f=v", "f==v", "f!=v"
// over the field labels a resource supports; any other field is a 400 ("field label not supported").
import { badRequest } from './kube-status.ts';

type Labels = Record<string, string>;
type Requirement = (labels: Labels) => boolean;

/** Splits on commas outside parentheses. */
function terms(selector: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(current);
      current = '';
    } else current += ch;
  }
  out.push(current);
  return out.map((t) => t.trim()).filter((t) => t !== '');
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

function requirement(term: string): Requirement {
  const set = /^(\S+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
  if (set) {
    const [, key, op, list] = set as unknown as [string, string, string, string];
    const values = new Set(list.split(',').map((v) => v.trim()));
    return op === 'in' ? (l) => key in l && values.has(l[key]!) : (l) => !(key in l) || !values.has(l[key]!);
  }
  const eq = /^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(term);
  if (eq) {
    const [, key, op, value] = eq as unknown as [string, string, string, string];
    if (!LABEL_KEY.test(key)) throw badRequest(`unable to parse requirement: invalid label key "${key}"`);
    return op === '!=' ? (l) => l[key] !== value : (l) => l[key] === value;
  }
  const not = /^!\s*(\S+)$/.exec(term);
  if (not) return (l) => !(not[1]! in l);
  if (LABEL_KEY.test(term)) return (l) => term in l;
  throw badRequest(`unable to parse requirement: ${JSON.stringify(term)}`);
}

export function labelMatcher(selector: string | null): (labels: Labels | undefined) => boolean {
  if (!selector) return () => true;
  const reqs = terms(selector).map(requirement);
  return (labels) => reqs.every((r) => r(labels ?? {}));
}

/** The value a field label names in an object, as kube-apiserver's field sets render it (strings). */
function fieldValue(object: Record<string, unknown>, field: string): string {
  let node: unknown = object;
  for (const part of field.split('.')) node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined;
  if (typeof node === 'boolean') return String(node);
  return typeof node === 'string' ? node : '';
}

export function fieldMatcher(selector: string | null, supported: ReadonlySet<string>): (object: Record<string, unknown>) => boolean {
  if (!selector) return () => true;
  const reqs = terms(selector).map((term) => {
    const m = /^([^!=\s]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (!m) throw badRequest(`invalid selector: '${term}'; can't understand '${term}'`);
    const [, field, op, value] = m as unknown as [string, string, string, string];
    if (!supported.has(field)) throw badRequest(`field label not supported: ${field}`);
    return op === '!=' ? (o: Record<string, unknown>) => fieldValue(o, field) !== value : (o: Record<string, unknown>) => fieldValue(o, field) === value;
  });
  return (object) => reqs.every((r) => r(object));
}
