// deploy/ as an operator applies it (kubectl apply -k deploy/): every manifest is a Kubernetes object
// that validates against the Kubernetes OpenAPI schemas (offline, kubernetes-models), the
// kustomization lists them all, the RBAC grants what the plugins and the reconciler need and no more,
// and the DaemonSet and CronJob do what their comments say.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { DaemonSet, type IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { CronJob, type ICronJob } from 'kubernetes-models/batch/v1/CronJob';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role, type IRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding, type IRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { load, loadAll } from 'js-yaml';
import { DEFAULT_CNI_BIN_DIR, DEFAULT_KUBECONFIG } from '../../lib/install/options.ts';
import { ROOT } from '../helpers/exec.ts';

const DEPLOY = join(ROOT, 'deploy');
const NAMESPACE = 'underlay-system';
const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [key: string]: unknown;
}

type Model = new (data: never) => { validate(): void };
const MODELS: Record<string, Model> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'apps/v1/DaemonSet': DaemonSet,
  'batch/v1/CronJob': CronJob,
  'apiextensions.k8s.io/v1/CustomResourceDefinition': CustomResourceDefinition,
};
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function objectsIn(file: string): K8sObject[] {
  // js-yaml throws, naming the file's line, on a document it cannot parse.
  return (loadAll(readFileSync(file, 'utf8'), null, { filename: file }) as Array<K8sObject | null>).flatMap((value) => (value === null ? [] : [value]));
}

const kustomization = load(readFileSync(join(DEPLOY, 'kustomization.yaml'), 'utf8')) as { resources: string[]; images?: Array<{ name: string; newName?: string; newTag?: string }> };

const resourceFile = (entry: string): string => join(DEPLOY, entry);

const objects = kustomization.resources.flatMap((entry) => objectsIn(resourceFile(entry)));
const find = <T>(kind: string, name: string): T => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  expect(found, `${kind} ${name}`).toBeDefined();
  return found as T;
};

describe('deploy/kustomization.yaml', () => {
  it('lists every manifest of deploy/, CRDs included, and each one exists', () => {
    const manifests = readdirSync(DEPLOY).filter((name) => name.endsWith('.yaml') && name !== 'kustomization.yaml');
    const crds = readdirSync(join(DEPLOY, 'crds')).filter((name) => name.endsWith('.yaml')).map((name) => `crds/${name}`);
    expect(crds).toHaveLength(4);
    expect([...kustomization.resources].sort()).toEqual([...manifests, ...crds].sort());
    for (const entry of kustomization.resources) expect(existsSync(resourceFile(entry)), entry).toBe(true);
  });

  it('names the image the manifests use, at the package version', () => {
    const images = objects.flatMap((o) => JSON.stringify(o).match(/"image":"[^"]+"/g) ?? []);
    expect(images.length).toBeGreaterThanOrEqual(2);
    for (const image of images) expect(image).toBe(`"image":"localhost/underlay:${version}"`);
    expect(kustomization.images).toEqual([{ name: 'localhost/underlay', newName: 'localhost/underlay', newTag: version }]);
  });
});

describe('the manifests', () => {
  it('validate against the Kubernetes OpenAPI schemas, with sound names and namespaces', () => {
    for (const object of objects) {
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      expect(Model, `${object.apiVersion} ${object.kind} has no schema here`).toBeDefined();
      expect(() => new Model!(object as never).validate(), `${object.kind} ${object.metadata.name}`).not.toThrow();
      expect(object.metadata.name).toMatch(DNS_SUBDOMAIN);
      if (CLUSTER_SCOPED.has(object.kind)) expect(object.metadata.namespace).toBeUndefined();
      else expect(object.metadata.namespace, `${object.kind} ${object.metadata.name}`).toBe(NAMESPACE);
    }
    const names = objects.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
    expect(new Set(names).size).toBe(names.length);
  });

  it("include whereabouts' two CRDs, namespaced, in whereabouts.cni.cncf.io/v1alpha1", () => {
    const crds = objects.filter((o) => o.kind === 'CustomResourceDefinition') as Array<K8sObject & { spec: { group: string; scope: string; names: { kind: string }; versions: Array<{ name: string; served: boolean; storage: boolean }> } }>;
    const byKind = new Map(crds.map((crd) => [crd.spec.names.kind, crd]));
    for (const kind of ['IPPool', 'OverlappingRangeIPReservation']) {
      const crd = byKind.get(kind);
      expect(crd, kind).toBeDefined();
      expect(crd!.spec.group).toBe('whereabouts.cni.cncf.io');
      expect(crd!.spec.scope).toBe('Namespaced');
      expect(crd!.spec.versions).toContainEqual(expect.objectContaining({ name: 'v1alpha1', served: true, storage: true }));
    }
  });
});

/** Every rule a service account of ours gets, through any binding, as "group/resource:verb" strings. */
function grantsOf(serviceAccount: string): string[] {
  const grants: string[] = [];
  for (const binding of objects.filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding') as Array<K8sObject & IRoleBinding>) {
    if (!binding.subjects?.some((s) => s.kind === 'ServiceAccount' && s.name === serviceAccount && s.namespace === NAMESPACE)) continue;
    const role = find<IRole>(binding.roleRef.kind, binding.roleRef.name);
    for (const rule of role.rules ?? []) {
      for (const group of rule.apiGroups ?? []) for (const resource of rule.resources ?? []) for (const verb of rule.verbs) grants.push(`${group}/${resource}:${verb}`);
    }
  }
  return grants.sort();
}

const expand = (groupResources: string[], verbs: string[]): string[] => groupResources.flatMap((gr) => verbs.map((verb) => `${gr}:${verb}`)).sort();
const POOLS = ['whereabouts.cni.cncf.io/ippools', 'whereabouts.cni.cncf.io/overlappingrangeipreservations', 'ipam.underlay.io/ipleaseclaims', 'ipam.underlay.io/ippoolindexes'];

describe('RBAC', () => {
  it('gives the nodes the pools and reservations and GET of a pod, and nothing else: no pod lists, no leases', () => {
    expect(grantsOf('underlay-node')).toEqual([...expand(POOLS, ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']), '/pods:get'].sort());
  });

  it('gives the reconciler what it reads and repairs: pools, reservations and pods, never create', () => {
    expect(grantsOf('underlay-reconciler')).toEqual([...expand(POOLS, ['get', 'list', 'watch', 'update', 'patch', 'delete']), ...expand(['/pods'], ['get', 'list', 'watch'])].sort());
  });

  it('has no wildcard, no lease and no secret anywhere', () => {
    const rules = objects.flatMap((o) => (o.kind === 'Role' || o.kind === 'ClusterRole' ? ((o as IRole).rules ?? []) : []));
    expect(rules.flatMap((r) => [...(r.apiGroups ?? []), ...(r.resources ?? []), ...r.verbs])).not.toContain('*');
    expect(rules.flatMap((r) => r.apiGroups ?? [])).not.toContain('coordination.k8s.io');
    expect(rules.flatMap((r) => r.resources ?? [])).not.toEqual(expect.arrayContaining(['leases']));
    expect(rules.flatMap((r) => r.resources ?? [])).not.toEqual(expect.arrayContaining(['secrets']));
  });
});

describe('the node DaemonSet', () => {
  const ds = find<IDaemonSet>('DaemonSet', 'underlay-node');
  const pod = ds.spec!.template.spec!;
  const container = pod.containers[0]!;
  const flag = (name: string) => container.args?.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];

  it('runs `underlay install` on every node, whatever its taints', () => {
    expect(container.args?.[0]).toBe('install');
    expect(container.args).not.toContain('--once');
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(pod.serviceAccountName).toBe('underlay-node');
  });

  it("mounts the host's CNI plugin directory and Underlay's own config directory where install writes", () => {
    expect(flag('cni-bin-dir')).toBe(DEFAULT_CNI_BIN_DIR);
    expect(flag('kubeconfig')).toBe(DEFAULT_KUBECONFIG);
    const mountOf = (path: string) => {
      const volume = pod.volumes?.find((v) => v.hostPath?.path === path);
      return container.volumeMounts?.find((m) => m.name === volume?.name)?.mountPath;
    };
    expect(mountOf('/opt/cni/bin')).toBe(DEFAULT_CNI_BIN_DIR);
    expect(mountOf('/etc/cni/net.d/underlay.d')).toBe(dirname(DEFAULT_KUBECONFIG));
    expect(pod.volumes?.map((v) => v.hostPath?.path).sort()).toEqual(['/etc/cni/net.d/underlay.d', '/opt/cni/bin']);
  });

  it('is confined as tightly as writing those host paths allows, with small requests', () => {
    expect(pod.hostNetwork ?? false).toBe(false);
    expect(pod.hostPID ?? false).toBe(false);
    expect(container.securityContext).toMatchObject({ privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(container.securityContext?.capabilities?.add).toBeUndefined();
    expect(pod.securityContext?.seccompProfile?.type).toBe('RuntimeDefault');
    expect(container.resources?.requests).toEqual({ cpu: '5m', memory: '64Mi' });
  });
});

describe('the reconciler CronJob', () => {
  const cron = find<ICronJob>('CronJob', 'underlay-reconciler');
  const pod = cron.spec.jobTemplate.spec!.template.spec!;

  it('runs `underlay reconcile` every few minutes, never two at once, as a non-root user', () => {
    expect(cron.spec.schedule).toMatch(/^\*\/([1-9]|10) \* \* \* \*$/);
    expect(cron.spec.concurrencyPolicy).toBe('Forbid');
    expect(pod.containers[0]!.args).toEqual(['reconcile']);
    expect(pod.serviceAccountName).toBe('underlay-reconciler');
    expect(pod.securityContext?.runAsNonRoot).toBe(true);
    expect(pod.containers[0]!.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(pod.volumes).toBeUndefined();
  });
});

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;

describe.skipIf(!kubectl)('kubectl kustomize (where kubectl is installed)', () => {
  /** A copy of deploy/ in a scratch dir (a kustomization of one's own sits next to it). */
  function withDeployCopy<T>(run: (root: string) => T): T {
    const root = mkdtempSync(join(tmpdir(), 'underlay-kustomize-'));
    try {
      cpSync(DEPLOY, join(root, 'deploy'), { recursive: true });
      return run(root);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }
  const build = (dir: string): K8sObject[] => (loadAll(execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8' })) as K8sObject[]);

  it('builds deploy/ into the same objects, each valid', () => {
    const built = withDeployCopy((root) => build(join(root, 'deploy')));
    expect(built.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort());
    for (const object of built) new MODELS[`${object.apiVersion}/${object.kind}`]!(object as never).validate();
  });

  it("with the migration component, keeps the pools where whereabouts has them (kube-system)", () => {
    const built = withDeployCopy((root) => {
      mkdirSync(join(root, 'mine'));
      writeFileSync(join(root, 'mine/kustomization.yaml'), 'resources: [../deploy]\ncomponents: [../deploy/components/migrate-from-whereabouts]\n');
      return build(join(root, 'mine'));
    });
    const at = (kind: string, name: string) => built.find((o) => o.kind === kind && o.metadata.name === name)?.metadata.namespace;
    for (const [kind, name] of [['Role', 'underlay-ipam'], ['RoleBinding', 'underlay-node-ipam'], ['Role', 'underlay-reconciler'], ['RoleBinding', 'underlay-reconciler']] as const) expect(at(kind, name), `${kind} ${name}`).toBe('kube-system');
    const ds = built.find((o) => o.kind === 'DaemonSet') as unknown as IDaemonSet;
    expect(ds.spec!.template.spec!.containers[0]!.args).toContain('--pool-namespace=kube-system');
    const cron = built.find((o) => o.kind === 'CronJob') as unknown as ICronJob;
    expect(cron.spec.jobTemplate.spec!.template.spec!.containers[0]!.args).toEqual(['reconcile', '--pool-namespace=kube-system']);
    expect(at('DaemonSet', 'underlay-node')).toBe(NAMESPACE);
  });
});
