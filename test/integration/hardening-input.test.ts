// What the BUILT executable echoes of hostile input: no secret from the config, no unbounded value, no
// raw CNI_ARGS text; and CNI_NETNS only as an absolute path, so there is one way to read it.
import { describe, expect, it } from 'vitest';
import { cni } from '../helpers/exec.ts';
import { labWithMaster, strictStderr } from '../helpers/fixture.ts';
import { leasesIn } from '../helpers/leases.ts';
import { linksIn } from '../helpers/netns.ts';

strictStderr();
const { lab, dir, master } = labWithMaster('hi', 'hardening-input');
const env = { containerId: 'input', netns: '/run/netns/underlay-hardening-none', ifName: 'net1' };

describe('error messages never repeat a secret or a huge value', () => {
  it('a malformed ipam section does not show its etcd_password', async () => {
    const config = { cniVersion: '1.0.0', name: 'n', type: 'macvlan', ipam: [{ type: 'whereabouts', etcd_password: 'hunter2-secret' }] };
    const out = await cni('macvlan', { ...env, command: 'ADD', config });
    expect(out.json).toMatchObject({ code: 7, msg: expect.stringMatching(/^invalid network config: ipam = .*etcd_password.*\(not shown\)/) as unknown });
    expect(out.stdout + out.stderr).not.toContain('hunter2');
  });

  it('undecodable JSON is reported without the piece of input around the fault', async () => {
    const out = await cni('macvlan', { ...env, command: 'ADD', config: '{"cniVersion":"1.0.0","name":"n","etcd_password": hunter2-secret}' });
    expect(out.json).toMatchObject({ code: 6, msg: expect.stringMatching(/^cannot decode network config from stdin: Unexpected token/) as unknown });
    expect(out.stdout + out.stderr).not.toMatch(/hunter2|password/);
  });

  it('a 50,000-character cniVersion comes back as a short prefix, and the answer speaks a version we know', async () => {
    const out = await cni('macvlan', { ...env, command: 'ADD', config: { cniVersion: '1'.repeat(50_000), name: 'n', type: 'macvlan' } });
    expect(out.json).toMatchObject({ cniVersion: '1.1.0', code: 6, msg: expect.stringMatching(/^cniVersion "1{20,}\.\.\. is not a semantic version$/) as unknown });
    expect(out.stdout.length).toBeLessThan(300);
  });

  it('CNI_ARGS text is shown escaped: no shell expansion, no terminal control', async () => {
    const out = await cni('macvlan', { ...env, command: 'ADD', args: 'IgnoreUnknown=1;$(reboot)\u001b[2J', config: { cniVersion: '1.0.0', name: 'n', type: 'macvlan', master } });
    expect(out.json).toMatchObject({ code: 4 });
    expect(out.json?.msg).toBe('CNI_ARGS: pair "\\u0024(reboot)\\u001b[2J" is not KEY=VALUE');
  });
});

describe('CNI_NETNS as a relative path', () => {
  const config = { cniVersion: '1.0.0', name: 'relns', type: 'macvlan', master, ipam: { type: 'whereabouts', range: '10.96.0.0/24', file_store_dir: dir } };

  it('ADD and CHECK refuse it with code 4 naming it, even where it would resolve to a netns', async () => {
    const netns = lab.netns('rel');
    const relative = netns.slice(1); // run/netns/..., a netns from "/"
    for (const command of ['ADD', 'CHECK']) {
      const out = await cni('macvlan', { ...env, command, netns: relative, config, cwd: '/' });
      expect(out.json, command).toMatchObject({ code: 4, msg: `CNI_NETNS "${relative}" is not an absolute path` });
    }
    expect(linksIn(netns)).toEqual(['lo']);
  });

  it('DEL acts on no netns by that name, still releases the lease, and succeeds', async () => {
    const netns = lab.netns('reldel');
    const add = await cni('macvlan', { ...env, command: 'ADD', netns, config });
    expect(add.exitCode, add.stdout).toBe(0);
    expect(leasesIn(dir)).toHaveLength(1);
    const del = await cni('macvlan', { ...env, command: 'DEL', netns: netns.slice(1), config, cwd: '/' });
    expect(del.exitCode, del.stdout).toBe(0);
    expect(leasesIn(dir)).toEqual([]);
    // What a relative path names depends on who reads it: the pod's link is the runtime's to remove.
    expect(linksIn(netns)).toEqual(['lo', 'net1']);
  });
});
