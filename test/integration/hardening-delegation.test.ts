// Delegation loops in the BUILT executable. `ipam.type` naming one of our own network plugins made the
// plugin exec itself without end (30+ processes and 1.5 GB in 2 s, on DEL too); a foreign plugin that
// execs us back did the same through it. The first is refused before any process is spawned, the
// second once the chain is MAX_DELEGATION_DEPTH plugins deep.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { BIN, cni } from '../helpers/exec.ts';
import { labWithMaster, strictStderr } from '../helpers/fixture.ts';
import { linksIn } from '../helpers/netns.ts';
import { MAX_DELEGATION_DEPTH } from '../../lib/cni/delegate.ts';

strictStderr();
const { lab, dir, master } = labWithMaster('dg', 'hardening-deleg');
const COUNT = join(dir, 'runs');
/** Where a runaway chain is cut off by the test itself, so that today's build cannot fork-bomb the machine. */
const TEST_CAP = 6;

/** A plugin file named `name` in `dir` that counts its runs, then becomes our executable run as `as`. */
function countingPlugin(name: string, as: string): void {
  const file = join(dir, name);
  writeFileSync(file, [
    '#!/bin/bash',
    `echo "$$" >> ${COUNT}`,
    `if [ "$(wc -l < ${COUNT})" -gt ${TEST_CAP} ]; then echo '{"cniVersion":"1.0.0","code":11,"msg":"test cap reached"}'; exit 1; fi`,
    `exec -a ${as} ${join(BIN, 'underlay')}`,
    '',
  ].join('\n'));
  chmodSync(file, 0o755);
}

const runs = (): number => readFileSync(COUNT, 'utf8').split('\n').filter(Boolean).length;
beforeEach(() => writeFileSync(COUNT, ''));

const NETWORK_PLUGINS = ['macvlan', 'underlay-macvlan', 'sriov', 'underlay-sriov'];
for (const name of NETWORK_PLUGINS) countingPlugin(name, name);
// A foreign IPAM that calls our macvlan back with the same config and environment.
countingPlugin('bounce', 'macvlan');

const config = (ipamType: string) => ({ cniVersion: '1.1.0', name: 'deleg', type: 'macvlan', master, ipam: { type: ipamType } });
const call = (command: string, ipamType: string, netns?: string) =>
  cni('macvlan', { command, config: config(ipamType), containerId: 'loop', netns, ifName: 'net1', path: dir, timeoutMs: 20_000 });

describe('ipam.type naming one of our network plugins', () => {
  for (const type of NETWORK_PLUGINS) {
    it(`${type}: ADD, CHECK and STATUS get code 7 at once, and no plugin process is started`, async () => {
      const netns = lab.netns(`s${NETWORK_PLUGINS.indexOf(type)}`);
      for (const command of ['ADD', 'CHECK', 'STATUS']) {
        const out = await call(command, type, command === 'STATUS' ? undefined : netns);
        expect(out.json, command).toMatchObject({ code: 7, msg: expect.stringMatching(new RegExp(`ipam.type = "${type}" names a network plugin`)) as unknown });
        expect(runs(), command).toBe(0);
      }
      expect(linksIn(netns)).toEqual(['lo']);
    });
  }

  it('DEL and GC succeed with nothing to release (no ADD could lease through it), and start no plugin', async () => {
    for (const command of ['DEL', 'GC']) {
      const out = await call(command, 'sriov');
      expect(out.exitCode, `${command}: ${out.stdout}`).toBe(0);
      expect(out.stderr).toMatch(new RegExp(`\\[warning\\] macvlan ${command}.*IPAM ${command}: nothing to release: ipam.type = "sriov" names a network plugin`));
      expect(runs(), command).toBe(0);
    }
  });
});

describe('a foreign plugin that execs us back', () => {
  it(`is cut off ${MAX_DELEGATION_DEPTH} plugins deep: ADD gets code 7 and leaves no link`, async () => {
    const netns = lab.netns('bounce');
    const out = await call('ADD', 'bounce', netns);
    expect(out.json).toMatchObject({ code: 7, msg: expect.stringMatching(/ipam.type = "bounce" would take delegation 4 plugins deep/) as unknown });
    expect(runs()).toBe(MAX_DELEGATION_DEPTH);
    expect(linksIn(netns)).toEqual(['lo']);
  });

  it('DEL unwinds the same way and succeeds', async () => {
    const out = await call('DEL', 'bounce');
    expect(out.exitCode, out.stdout).toBe(0);
    expect(out.stderr).toMatch(/IPAM DEL: nothing to release: ipam.type = "bounce" would take delegation 4 plugins deep/);
    expect(runs()).toBe(MAX_DELEGATION_DEPTH);
  });
});
