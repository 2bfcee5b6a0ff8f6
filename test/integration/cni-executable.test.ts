// The BUILT executable as a CNI caller sees it: VERSION on every link name, and a property test that
// feeds it thousands of malformed environments and configs. Each must get one CNI error JSON on stdout
// with a known code, a non-zero exit, and no stack trace anywhere.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { cni, requireBuild, type CniCall } from '../helpers/exec.ts';
import { strictStderr } from '../helpers/fixture.ts';

strictStderr();

const LINKS = ['macvlan', 'sriov', 'whereabouts', 'underlay-macvlan', 'underlay-sriov', 'underlay-ipam'];
const ALL_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

beforeAll(requireBuild);

describe('VERSION', () => {
  for (const link of LINKS) {
    it(`${link} answers with every supported version`, async () => {
      const out = await cni(link, { command: 'VERSION' });
      expect(out.exitCode).toBe(0);
      expect(out.json).toEqual({ cniVersion: '1.1.0', supportedVersions: ALL_VERSIONS });
    });
  }

  it('run under a name that is no plugin, a CNI call gets a CNI error, not the help text', async () => {
    const out = await cni('underlay', { command: 'ADD', containerId: 'x', netns: '/run/netns/x', ifName: 'net1', config: { cniVersion: '1.0.0', name: 'n', type: 'underlay' } });
    expect(out.exitCode).toBe(1);
    expect(out.json).toMatchObject({ code: 7 });
    expect(out.json?.msg).toMatch(/"underlay" is not a CNI plugin name/);
  });

  it('run as underlay, --help explains the plugins to a newcomer', async () => {
    const out = await cni('underlay', { command: '', env: {} });
    expect(out.stdout).toMatch(/macvlan[\s\S]*whereabouts[\s\S]*underlay ipam ls/);
  });
});

const goodEnv = { containerId: 'fuzz', netns: '/run/netns/underlay-fuzz-none', ifName: 'net1', path: '/opt/cni/bin' };
const goodConfig = { cniVersion: '1.0.0', name: 'fuzz', type: 'macvlan', master: 'lo' };

const badContainerId = fc.oneof(
  fc.constantFrom('../../etc/passwd', '-leading-dash', '.hidden', 'a b', 'a/b', 'x;rm -rf /', '$(id)', 'é'),
  fc.string({ minLength: 1, maxLength: 20 }).map((s) => `_${s}/`),
);
const badIfName = fc.oneof(
  fc.constantFrom('.', '..', 'a/b', 'eth:0', 'eth 0', 'way-too-long-ifname-x', '\tx'),
  fc.string({ minLength: 16, maxLength: 40 }).filter((s) => !/\s/.test(s)),
);
const anyJson = fc.jsonValue({ maxDepth: 3 });

/** A CNI call with at least one defect the executable must refuse before touching anything. */
const malformedCall: fc.Arbitrary<{ plugin: string; call: CniCall }> = fc.oneof(
  // Environment defects.
  fc.record({
    plugin: fc.constantFrom(...LINKS),
    call: fc.oneof(
      fc.record({ command: fc.constantFrom('ADDD', 'add', 'DELETE', 'check', 'UP', 'ADD;DEL', '1'), config: fc.constant(goodConfig) }),
      fc.record({ command: fc.constantFrom('ADD', 'DEL', 'CHECK'), containerId: badContainerId, config: fc.constant(goodConfig) }),
      fc.record({ command: fc.constantFrom('ADD', 'DEL', 'CHECK'), ifName: badIfName, config: fc.constant(goodConfig) }),
      fc.record({ command: fc.constantFrom('ADD', 'CHECK'), netns: fc.constant(''), config: fc.constant(goodConfig) }),
      fc.record({ command: fc.constantFrom('ADD', 'DEL', 'CHECK', 'GC', 'STATUS'), path: fc.constant(''), config: fc.constant(goodConfig) }),
    ).map((call) => ({ ...goodEnv, ...call })),
  }),
  // stdin that is not a network config.
  fc.record({
    plugin: fc.constantFrom(...LINKS),
    call: fc.record({
      command: fc.constantFrom('ADD', 'DEL', 'CHECK', 'GC', 'STATUS'),
      config: fc.oneof(
        fc.string().filter((s) => { try { const v: unknown = JSON.parse(s); return v === null || typeof v !== 'object' || Array.isArray(v); } catch { return true; } }),
        anyJson.filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)).map((v) => JSON.stringify(v)),
        fc.constant(JSON.stringify(goodConfig).slice(0, 20)),
        fc.record({ cniVersion: fc.constant('1.0.0') }, { requiredKeys: [] }),
        fc.record({ cniVersion: fc.constant('1.0.0'), name: fc.oneof(fc.constant(''), fc.integer(), fc.constantFrom('-x', 'a b', 'ü')) }),
        fc.record({ cniVersion: fc.oneof(fc.constantFrom('2.0.0', '0.5.0', '1', 'latest', ''), fc.integer(), fc.boolean()), name: fc.constant('n') }),
      ),
    }).map((call) => ({ ...goodEnv, ...call })),
  }),
  // macvlan fields of the wrong type or out of range.
  fc.record({
    plugin: fc.constantFrom('macvlan', 'underlay-macvlan'),
    call: fc.record({
      command: fc.constantFrom('ADD', 'CHECK'),
      config: fc.oneof(
        fc.record({ mtu: fc.oneof(fc.string(), fc.integer({ max: -1 }), fc.double({ min: 0.1, max: 100, noNaN: true })) }),
        fc.record({ mode: fc.string().filter((s) => !['', 'bridge', 'private', 'vepa', 'passthru', 'source'].includes(s)) }),
        fc.record({ mac: fc.string().filter((s) => !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(s)) }),
        fc.record({ master: fc.oneof(fc.integer(), fc.boolean(), fc.array(fc.string())) }),
        fc.record({ linkInContainer: fc.oneof(fc.string(), fc.integer()) }),
        fc.record({ bcqueuelen: fc.oneof(fc.integer({ max: -1 }), fc.string()) }),
      ).map((fields) => ({ ...goodConfig, ...fields })),
    }).map((call) => ({ ...goodEnv, ...call })),
  }),
);

/**
 * Configs beyond any real one's size: arrays of 10,001 to 200,000 (bad) items where the schemas look,
 * nesting 65 to 200,000 deep, stdin over 4 MiB. Each used to overflow the stack (code 999, which DEL
 * does not tolerate); each must be refused by its size with code 7 before a schema walks it.
 */
const arrayHomes = [['cni.dev/valid-attachments'], ['ipam', 'ipRanges'], ['ipam', 'exclude'], ['args', 'cni', 'ips'], ['runtimeConfig', 'ips'], ['dns', 'nameservers'], ['unknownKey']];
const badItem = fc.constantFrom<unknown>(1, 'x', null, true, {}, [], { range: 5 }, { containerID: 1 });
function nestAt(path: ReadonlyArray<string>, leaf: unknown): Record<string, unknown> {
  return path.reduceRight<Record<string, unknown>>((inner, key, i) => (i === path.length - 1 ? { [key]: leaf } : { [key]: inner }), {});
}
const oversizedConfig: fc.Arbitrary<string> = fc.oneof(
  fc.record({ path: fc.constantFrom(...arrayHomes), count: fc.integer({ min: 10_001, max: 200_000 }), item: badItem })
    .map(({ path, count, item }) => {
      const home = nestAt(path, Array.from({ length: count }, () => item));
      const ipam = { type: 'whereabouts', range: '10.0.0.0/24', ...(home.ipam as object | undefined) };
      return JSON.stringify({ ...goodConfig, ...home, ipam });
    }),
  fc.record({ depth: fc.integer({ min: 65, max: 200_000 }), open: fc.constantFrom('[', '{"a":'), home: fc.constantFrom('args', 'ipam', 'prevResult', 'runtimeConfig', 'x') })
    .map(({ depth, open, home }) => `${JSON.stringify(goodConfig).slice(0, -1)},"${home}":${open.repeat(depth)}1${(open === '[' ? ']' : '}').repeat(depth)}}`),
  fc.integer({ min: 4 * 1024 * 1024, max: 6 * 1024 * 1024 }).map((size) => JSON.stringify({ ...goodConfig, padding: 'x'.repeat(size) })),
);
const oversizedCall: fc.Arbitrary<{ plugin: string; call: CniCall }> = fc.record({
  plugin: fc.constantFrom(...LINKS),
  call: fc.record({ command: fc.constantFrom('ADD', 'DEL', 'CHECK', 'GC', 'STATUS'), config: oversizedConfig }).map((call) => ({ ...goodEnv, ...call })),
});

const KNOWN_CODES = [1, 2, 3, 4, 5, 6, 7];

/** Runs the cases four at a time; returns those whose answer is not one CNI error JSON with a known code. */
async function badAnswers(cases: Array<{ plugin: string; call: CniCall }>, codes = KNOWN_CODES): Promise<string[]> {
  const failures: string[] = [];
  const worker = async () => {
    for (let next = cases.shift(); next; next = cases.shift()) {
      const out = await cni(next.plugin, { ...next.call, timeoutMs: 10_000 });
      const lines = out.stdout.trim().split('\n');
      const error = out.json as { code?: unknown; msg?: unknown } | undefined;
      const ok = out.exitCode !== 0 && lines.length === 1 && error !== undefined &&
        codes.includes(error.code as number) && typeof error.msg === 'string' &&
        !/\n\s+at /.test(out.stdout + out.stderr);
      const shown = JSON.stringify(next.call).slice(0, 300);
      if (!ok) failures.push(`${next.plugin} ${shown} -> exit ${out.exitCode}: ${out.stdout.slice(0, 300)}${out.stderr.slice(0, 300)}`);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return failures;
}

describe('malformed input never gets a stack trace, a hang, or a success', () => {
  it('2,000 generated cases each get one CNI error JSON with a known code', async () => {
    const failures = await badAnswers(fc.sample(malformedCall, { numRuns: 2000, seed: 20261121 }));
    expect(failures.slice(0, 5)).toEqual([]);
  }, 600_000);

  it('60 oversized or deeply nested configs are each refused with code 7, on every verb', async () => {
    const failures = await badAnswers(fc.sample(oversizedCall, { numRuns: 60, seed: 20261122 }), [7]);
    expect(failures.slice(0, 5)).toEqual([]);
  }, 600_000);
});
