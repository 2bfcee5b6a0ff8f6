// The protocol core, driven in-process with a recording plugin: env and config errors and their codes.
import { describe, expect, it } from 'vitest';
import { runPlugin, type Invocation, type Plugin } from '../../lib/cni/skel.ts';
import { parseCniArgs } from '../../lib/cni/env.ts';
import { strictStderr, takeStderr } from '../helpers/fixture.ts';

strictStderr();

function recorder(): Plugin & { calls: Invocation[] } {
  const calls: Invocation[] = [];
  return {
    calls,
    about: 'test plugin',
    add: async (inv) => (calls.push(inv), { ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1' }] }),
    del: async (inv) => void calls.push(inv),
    check: async (inv) => void calls.push(inv),
    gc: async (inv) => void calls.push(inv),
    status: async (inv) => void calls.push(inv),
  };
}

const goodEnv = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: '/run/netns/none', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
const goodConf = { cniVersion: '1.0.0', name: 'net', type: 'test' };

async function invoke(env: Record<string, string>, stdin: unknown, plugin: Plugin = recorder()) {
  let stdout = '';
  let stderr = '';
  const code = await runPlugin(plugin, {
    env,
    readStdin: () => (typeof stdin === 'string' ? stdin : JSON.stringify(stdin)),
    stdout: (t) => void (stdout += t),
    stderr: (t) => void (stderr += t),
  });
  return { code, stdout, stderr, json: stdout ? (JSON.parse(stdout) as { code?: number; msg?: string; cniVersion?: string }) : undefined };
}

describe('environment errors', () => {
  const cases: Array<[string, Record<string, string>, number, RegExp]> = [
    ['unknown command', { ...goodEnv, CNI_COMMAND: 'ATTACH' }, 4, /CNI_COMMAND "ATTACH"/],
    ['missing container id', { ...goodEnv, CNI_CONTAINERID: '' }, 4, /CNI_CONTAINERID/],
    ['container id with a slash', { ...goodEnv, CNI_CONTAINERID: '../etc' }, 4, /CNI_CONTAINERID "..\/etc"/],
    ['missing netns on ADD', { ...goodEnv, CNI_NETNS: '' }, 4, /CNI_NETNS/],
    ['missing ifname', { ...goodEnv, CNI_IFNAME: '' }, 4, /CNI_IFNAME/],
    ['ifname too long', { ...goodEnv, CNI_IFNAME: 'a234567890123456' }, 4, /longer than 15/],
    ['ifname with a slash', { ...goodEnv, CNI_IFNAME: 'a/b' }, 4, /CNI_IFNAME "a\/b"/],
    ['ifname ..', { ...goodEnv, CNI_IFNAME: '..' }, 4, /relative/],
    ['ifname with a space', { ...goodEnv, CNI_IFNAME: 'a b' }, 4, /white space/],
    ['missing CNI_PATH', { ...goodEnv, CNI_PATH: '' }, 4, /CNI_PATH/],
    ['relative netns on ADD', { ...goodEnv, CNI_NETNS: 'run/netns/x' }, 4, /^CNI_NETNS "run\/netns\/x" is not an absolute path$/],
    ['relative netns on CHECK', { ...goodEnv, CNI_COMMAND: 'CHECK', CNI_NETNS: 'x' }, 4, /^CNI_NETNS "x" is not an absolute path$/],
  ];
  for (const [what, env, code, msg] of cases) {
    it(`${what} -> code ${code}`, async () => {
      const out = await invoke(env, goodConf);
      expect(out.code).toBe(1);
      expect(out.json?.code).toBe(code);
      expect(out.json?.msg).toMatch(msg);
    });
  }

  it('stdin that cannot be read -> code 5', async () => {
    let stdout = '';
    const code = await runPlugin(recorder(), {
      env: goodEnv,
      readStdin: () => { throw new Error('EIO: i/o error, read'); },
      stdout: (t) => void (stdout += t),
      stderr: () => {},
    });
    expect(code).toBe(1);
    expect(JSON.parse(stdout) as unknown).toMatchObject({ code: 5, msg: expect.stringMatching(/stdin.*EIO/) as unknown });
  });

  it('CNI_NETNS naming the plugin\'s own namespace -> code 8, unless CNI_NETNS_OVERRIDE', async () => {
    const plugin = recorder();
    const refused = await invoke({ ...goodEnv, CNI_NETNS: '/proc/self/ns/net' }, goodConf, plugin);
    expect(refused.json).toMatchObject({ code: 8 });
    expect(plugin.calls).toHaveLength(0);
    const allowed = await invoke({ ...goodEnv, CNI_NETNS: '/proc/self/ns/net', CNI_NETNS_OVERRIDE: '1' }, goodConf, plugin);
    expect(allowed.code).toBe(0);
  });

  it('DEL with a relative CNI_NETNS runs with no netns: nothing to clean there, the rest goes on', async () => {
    const plugin = recorder();
    const out = await invoke({ ...goodEnv, CNI_COMMAND: 'DEL', CNI_NETNS: 'run/netns/x' }, goodConf, plugin);
    expect(out).toMatchObject({ code: 0, stdout: '' });
    expect(plugin.calls.map((inv) => inv.env.netns)).toEqual(['']);
  });

  it('DEL does not need CNI_NETNS', async () => {
    const out = await invoke({ ...goodEnv, CNI_COMMAND: 'DEL', CNI_NETNS: '' }, goodConf);
    expect(out).toMatchObject({ code: 0, stdout: '' });
  });

  it('no CNI_COMMAND prints the about text on stderr and exits 0', async () => {
    const out = await invoke({}, '');
    expect(out.code).toBe(0);
    expect(out.stdout).toBe('');
    expect(out.stderr).toMatch(/test plugin[\s\S]*1\.1\.0/);
  });
});

describe('config errors', () => {
  const cases: Array<[string, unknown, number, RegExp]> = [
    ['undecodable JSON', '{"name":', 6, /cannot decode/],
    ['a JSON array', '[1]', 6, /must be a JSON object/],
    ['missing name', { cniVersion: '1.0.0' }, 7, /name is missing/],
    ['bad name', { cniVersion: '1.0.0', name: '-x' }, 7, /name = "-x"/],
    ['unsupported version', { cniVersion: '2.0.0', name: 'n' }, 1, /"2.0.0"/],
    ['not a version', { cniVersion: 'one', name: 'n' }, 6, /"one"/],
    ['wrong type for dns', { cniVersion: '1.0.0', name: 'n', dns: 'x' }, 7, /dns = "x"/],
  ];
  for (const [what, conf, code, msg] of cases) {
    it(`${what} -> code ${code}`, async () => {
      const out = await invoke(goodEnv, conf);
      expect(out.json?.code).toBe(code);
      expect(out.json?.msg).toMatch(msg);
    });
  }
});

describe('verbs gated by cniVersion', () => {
  const gates: Array<[string, string, boolean]> = [
    ['CHECK', '0.3.1', false], ['CHECK', '0.4.0', true],
    ['GC', '1.0.0', false], ['GC', '1.1.0', true],
    ['STATUS', '1.0.0', false], ['STATUS', '1.1.0', true],
  ];
  for (const [verb, version, allowed] of gates) {
    it(`${verb} at ${version} is ${allowed ? 'allowed' : 'refused with code 1'}`, async () => {
      const plugin = recorder();
      const out = await invoke({ ...goodEnv, CNI_COMMAND: verb }, { ...goodConf, cniVersion: version }, plugin);
      if (allowed) {
        expect(out.code).toBe(0);
        expect(plugin.calls).toHaveLength(1);
      } else {
        expect(out.json).toMatchObject({ code: 1, cniVersion: version });
        expect(plugin.calls).toHaveLength(0);
      }
    });
  }

  it('ADD prints the result in the config version', async () => {
    const out = await invoke(goodEnv, { ...goodConf, cniVersion: '0.2.0' });
    expect(out.json).toEqual({ cniVersion: '0.2.0', ip4: { ip: '10.0.0.2/24', gateway: '10.0.0.1' }, dns: {} });
  });

  it('a config without cniVersion is 0.1.0', async () => {
    const out = await invoke(goodEnv, { name: 'n' });
    expect(out.json?.cniVersion).toBe('0.1.0');
  });

  it('a plugin error keeps its code and never prints a stack', async () => {
    const plugin = { ...recorder(), add: async () => { throw new TypeError('boom'); } };
    const out = await invoke(goodEnv, goodConf, plugin);
    expect(out.json).toEqual({ cniVersion: '1.0.0', code: 999, msg: 'boom' });
    const logged = takeStderr();
    expect(logged).toEqual([expect.stringMatching(/ \[error\] test ADD abc: boom$/)]);
    expect(out.stdout + out.stderr + logged.join('\n')).not.toMatch(/at .*\.ts:\d+/);
  });
});

describe('CNI_ARGS', () => {
  it('parses pairs and Kubernetes keys', () => {
    expect(parseCniArgs('K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;MAC=aa:bb:cc:dd:ee:ff', ['MAC'])).toEqual({
      K8S_POD_NAMESPACE: 'ns', K8S_POD_NAME: 'p', MAC: 'aa:bb:cc:dd:ee:ff',
    });
  });
  it('refuses an unknown key unless IgnoreUnknown', () => {
    expect(() => parseCniArgs('FOO=1')).toThrow(/unknown key "FOO"/);
    expect(parseCniArgs('IgnoreUnknown=1;FOO=1')).toMatchObject({ FOO: '1' });
  });
  it('refuses a pair without =', () => {
    expect(() => parseCniArgs('IgnoreUnknown=1;junk')).toThrow(/"junk" is not KEY=VALUE/);
  });
});
