// The example configs under deploy/ must work as shipped (only the master and the lease directory are
// pointed at the test's own): an operator copies them first.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { labWithMaster } from '../helpers/fixture.ts';
import { chainAdd, chainDel, type ConfList } from '../helpers/chain.ts';
import { ROOT } from '../helpers/exec.ts';

const { lab, dir, master } = labWithMaster('dx', 'deploy');

/** The JSON under `config: |` in a NetworkAttachmentDefinition. */
function nadConfig(file: string): Record<string, unknown> {
  const lines = readFileSync(file, 'utf8').split('\n');
  const start = lines.findIndex((line) => line.trim() === 'config: |') + 1;
  const indent = /^\s*/.exec(lines[start]!)![0].length;
  const body = lines.slice(start).filter((line) => line.trim() === '' || /^\s*/.exec(line)![0].length >= indent);
  return JSON.parse(body.join('\n')) as Record<string, unknown>;
}

function localize<T extends Record<string, unknown>>(plugin: T): T {
  return { ...plugin, master, ipam: { ...(plugin.ipam as object), file_store_dir: join(dir, 'leases') } };
}

describe('deploy/examples', () => {
  it('the NetworkAttachmentDefinition config attaches a pod', async () => {
    const config = localize(nadConfig(join(ROOT, 'deploy/examples/macvlan-nad.yaml')));
    const list: ConfList = { cniVersion: config.cniVersion as string, name: config.name as string, plugins: [config as ConfList['plugins'][number]] };
    const env = { containerId: 'nad', netns: lab.netns('nad'), ifName: 'net1', args: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=nad' };
    const { result, failed } = await chainAdd(list, env);
    expect(failed?.stdout).toBeUndefined();
    expect(result).toMatchObject({ ips: [{ address: '192.168.91.100/24', gateway: '192.168.91.1' }] });
    expect(await chainDel(list, env, result)).toBeUndefined();
  });

  it('the conflist attaches a pod', async () => {
    const list = JSON.parse(readFileSync(join(ROOT, 'deploy/examples/underlay.conflist'), 'utf8')) as ConfList;
    list.plugins = list.plugins.map(localize);
    const env = { containerId: 'conflist', netns: lab.netns('cl'), ifName: 'eth0' };
    const { result, failed } = await chainAdd(list, env);
    expect(failed?.stdout).toBeUndefined();
    expect(result).toMatchObject({ ips: [{ address: '192.168.91.100/24' }], routes: [{ dst: '0.0.0.0/0' }] });
    expect(await chainDel(list, env, result)).toBeUndefined();
  });
});
