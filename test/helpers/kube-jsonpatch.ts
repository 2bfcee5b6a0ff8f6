// RFC 6902 JSON Patch for the simulated API server: add, remove, replace, move, copy and test over
// RFC 6901 pointers. A failing operation throws PatchFailure with the reason kube-apiserver's patch
// library gives ("testing value /x failed: test failed", "... missing value"), which the server turns
// into its 422 answer.

export class PatchFailure extends Error {}

export interface PatchOp {
  op: string;
  path: string;
  from?: string;
  value?: unknown;
}

type Container = Record<string, unknown> | unknown[];

const isContainer = (v: unknown): v is Container => v !== null && typeof v === 'object';

function tokens(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new PatchFailure(`invalid JSON pointer ${JSON.stringify(pointer)}`);
  return pointer.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** The container holding the pointer's last token, and that token. */
function parentOf(doc: unknown, pointer: string): { parent: Container; key: string } {
  const path = tokens(pointer);
  if (path.length === 0) throw new PatchFailure('the root cannot be patched');
  let node: unknown = doc;
  for (const t of path.slice(0, -1)) {
    if (!isContainer(node)) throw new PatchFailure(`doc is missing path: "${pointer}": missing value`);
    node = Array.isArray(node) ? node[Number(t)] : node[t];
  }
  if (!isContainer(node)) throw new PatchFailure(`doc is missing path: "${pointer}": missing value`);
  return { parent: node, key: path[path.length - 1]! };
}

function read(doc: unknown, pointer: string): unknown {
  let node: unknown = doc;
  for (const t of tokens(pointer)) {
    if (!isContainer(node)) return undefined;
    node = Array.isArray(node) ? node[Number(t)] : Object.hasOwn(node, t) ? node[t] : undefined;
  }
  return node;
}

function index(list: unknown[], key: string, forAdd: boolean): number {
  if (forAdd && key === '-') return list.length;
  const i = /^(0|[1-9]\d*)$/.test(key) ? Number(key) : NaN;
  if (!(i >= 0 && i <= list.length - (forAdd ? 0 : 1))) throw new PatchFailure(`index out of bounds: ${key}`);
  return i;
}

function add(doc: unknown, pointer: string, value: unknown): void {
  const { parent, key } = parentOf(doc, pointer);
  if (Array.isArray(parent)) parent.splice(index(parent, key, true), 0, value);
  else parent[key] = value;
}

function remove(doc: unknown, pointer: string): unknown {
  const { parent, key } = parentOf(doc, pointer);
  if (Array.isArray(parent)) return parent.splice(index(parent, key, false), 1)[0];
  if (!Object.hasOwn(parent, key)) throw new PatchFailure(`unable to remove nonexistent key: ${key}: missing value`);
  const old = parent[key];
  delete parent[key];
  return old;
}

function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (!isContainer(a) || !isContainer(b) || Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** Applies `ops` to a copy of `doc`; the copy, or a PatchFailure. */
export function applyPatch<T>(doc: T, ops: unknown): T {
  if (!Array.isArray(ops)) throw new PatchFailure('a JSON patch must be an array of operations');
  const out = structuredClone(doc);
  for (const raw of ops as PatchOp[]) {
    if (!isContainer(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') throw new PatchFailure('an operation needs "op" and "path"');
    switch (raw.op) {
      case 'add':
        add(out, raw.path, structuredClone(raw.value));
        break;
      case 'remove':
        remove(out, raw.path);
        break;
      case 'replace':
        remove(out, raw.path);
        add(out, raw.path, structuredClone(raw.value));
        break;
      case 'move':
        add(out, raw.path, remove(out, raw.from ?? ''));
        break;
      case 'copy': {
        const value = read(out, raw.from ?? '');
        if (value === undefined) throw new PatchFailure(`copy from a missing value: ${raw.from}`);
        add(out, raw.path, structuredClone(value));
        break;
      }
      case 'test':
        if (!equal(read(out, raw.path), raw.value)) throw new PatchFailure(`testing value ${raw.path} failed: test failed`);
        break;
      default:
        throw new PatchFailure(`unexpected operation ${JSON.stringify(raw.op)}`);
    }
  }
  return out;
}
