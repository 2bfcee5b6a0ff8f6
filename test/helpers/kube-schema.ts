// CustomResourceDefinitions for the simulated API server: loaded from YAML, refused unless structural
// (as apiextensions.k8s.io/v1 refuses them), and applied to objects the way kube-apiserver does:
//   pruning: every field the schema does not list is dropped, except under
//            x-kubernetes-preserve-unknown-fields and apiVersion/kind/metadata at the root; it runs on
//            every write AND on every read (kube-apiserver's storage decoder prunes too), so an object
//            written under a wider schema is served without the extra fields once a narrower CRD is
//            applied over it;
//   validation: types, required fields and the object name (lowercase RFC 1123 subdomain), after
//            pruning, as 422 Invalid causes.
// Not reproduced: defaults, formats, enums, patterns, CEL rules, conversion between versions, status
// and scale subresources, printer columns.
import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';

export interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
  items?: Schema;
  required?: string[];
  nullable?: boolean;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
}

export interface CrdResource {
  group: string;
  version: string;
  plural: string;
  kind: string;
  listKind: string;
  namespaced: boolean;
  schema: Schema;
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The structural rules kube-apiserver enforces on a v1 CRD schema; throws naming the first broken node. */
function checkStructural(s: Schema, path: string): void {
  const preserves = s['x-kubernetes-preserve-unknown-fields'] === true || s['x-kubernetes-int-or-string'] === true;
  if (!s.type && !preserves) throw new Error(`${path}.type: Required value: must not be empty for specified fields`);
  if (s.properties && s.additionalProperties !== undefined) throw new Error(`${path}: additionalProperties and properties are mutual exclusive`);
  if (s.type === 'array' && !s.items) throw new Error(`${path}.items: Required value: must be specified`);
  for (const [key, child] of Object.entries(s.properties ?? {})) checkStructural(child, `${path}.properties[${key}]`);
  if (isRecord(s.additionalProperties)) checkStructural(s.additionalProperties, `${path}.additionalProperties`);
  if (s.items) checkStructural(s.items, `${path}.items`);
}

export function loadCrd(file: string): CrdResource {
  const crd = load(readFileSync(file, 'utf8'));
  if (!isRecord(crd) || crd.apiVersion !== 'apiextensions.k8s.io/v1' || crd.kind !== 'CustomResourceDefinition') {
    throw new Error(`${file}: not an apiextensions.k8s.io/v1 CustomResourceDefinition`);
  }
  const { metadata, spec } = crd as { metadata: { name: string }; spec: Record<string, unknown> };
  const names = spec.names as { kind: string; listKind?: string; plural: string };
  const group = spec.group as string;
  if (metadata.name !== `${names.plural}.${group}`) throw new Error(`${file}: metadata.name must be ${names.plural}.${group}`);
  const versions = spec.versions as Array<{ name: string; served: boolean; storage: boolean; schema?: { openAPIV3Schema?: Schema } }>;
  const stored = versions.filter((v) => v.storage);
  if (stored.length !== 1) throw new Error(`${file}: exactly one version must be the storage version`);
  const version = stored[0]!;
  const schema = version.schema?.openAPIV3Schema;
  if (!schema) throw new Error(`${file}: spec.versions[${version.name}].schema.openAPIV3Schema: Required value`);
  checkStructural(schema, `${file}: openAPIV3Schema`);
  if (schema.type !== 'object') throw new Error(`${file}: openAPIV3Schema.type must be object`);
  return {
    group,
    version: version.name,
    plural: names.plural,
    kind: names.kind,
    listKind: names.listKind ?? `${names.kind}List`,
    namespaced: spec.scope === 'Namespaced',
    schema,
  };
}

const ROOT_META = new Set(['apiVersion', 'kind', 'metadata']);

/** Drops, in place, what the schema does not list. */
export function prune(value: unknown, s: Schema, root = false): void {
  if (Array.isArray(value)) {
    if (s.items) for (const item of value) prune(item, s.items);
    return;
  }
  if (!isRecord(value)) return;
  const preserve = s['x-kubernetes-preserve-unknown-fields'] === true;
  for (const key of Object.keys(value)) {
    if (root && ROOT_META.has(key)) continue;
    const child = s.properties?.[key] ?? (isRecord(s.additionalProperties) ? (s.additionalProperties) : undefined);
    if (child) prune(value[key], child);
    else if (!preserve && s.additionalProperties !== true) delete value[key];
  }
}

export interface FieldError {
  field: string;
  reason: 'FieldValueRequired' | 'FieldValueTypeInvalid' | 'FieldValueInvalid';
  message: string;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function validateNode(value: unknown, s: Schema, path: string, out: FieldError[]): void {
  if (value === null && s.nullable) return;
  if (s.type && !s['x-kubernetes-int-or-string']) {
    const actual = typeOf(value);
    const ok = actual === s.type || (s.type === 'number' && actual === 'integer');
    if (!ok) {
      out.push({ field: path, reason: 'FieldValueTypeInvalid', message: `Invalid value: "${actual}": ${path} in body must be of type ${s.type}: "${actual}"` });
      return;
    }
  }
  if (isRecord(value)) {
    for (const key of s.required ?? []) {
      if (!(key in value)) out.push({ field: `${path}.${key}`, reason: 'FieldValueRequired', message: 'Required value' });
    }
    for (const [key, child] of Object.entries(value)) {
      const sub = s.properties?.[key] ?? (isRecord(s.additionalProperties) ? (s.additionalProperties) : undefined);
      if (sub) validateNode(child, sub, s.properties?.[key] ? `${path}.${key}` : `${path}[${key}]`, out);
    }
  } else if (Array.isArray(value) && s.items) {
    value.forEach((item, i) => validateNode(item, s.items!, `${path}[${i}]`, out));
  }
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function nameErrors(name: string): FieldError[] {
  if (name === '') return [{ field: 'metadata.name', reason: 'FieldValueRequired', message: 'Required value: name or generateName is required' }];
  const why: string[] = [];
  if (name.length > 253) why.push('must be no more than 253 characters');
  if (!DNS1123_SUBDOMAIN.test(name)) {
    why.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character");
  }
  return why.map((w) => ({ field: 'metadata.name', reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(name)}: ${w}` }));
}

/** Everything wrong with an object of this CRD, after pruning. */
export function validate(object: Record<string, unknown>, s: Schema): FieldError[] {
  const out: FieldError[] = [];
  for (const [key, child] of Object.entries(s.properties ?? {})) {
    if (ROOT_META.has(key)) continue;
    if (key in object) validateNode(object[key], child, key, out);
    else if (s.required?.includes(key)) out.push({ field: key, reason: 'FieldValueRequired', message: 'Required value' });
  }
  return out;
}
