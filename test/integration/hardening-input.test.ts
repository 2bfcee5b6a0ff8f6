// What the BUILT executable echoes of hostile input: no secret from the config, no unbounded value, no
// raw CNI_ARGS text.
import { describe, expect, it } from 'vitest';
import { cni } from '../helpers/exec.ts';
import { labWithMaster, strictStderr } from '../helpers/fixture.ts';

strictStderr();
const { master } = labWithMaster('hi', 'hardening-input');
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
