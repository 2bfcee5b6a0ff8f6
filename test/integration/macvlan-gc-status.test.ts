// GC and STATUS through the macvlan plugin (spec 1.1): both are delegated to the IPAM, and STATUS also
// reports a master that has gone away.
import { describe, expect, it } from 'vitest';
import { labWithMaster } from '../helpers/fixture.ts';
import { cni } from '../helpers/exec.ts';
import { leasesIn } from '../helpers/leases.ts';
import { sh } from '../helpers/netns.ts';

const { lab, dir: store, master } = labWithMaster('gc', 'gc');

const conf = (extra: Record<string, unknown> = {}, range = '10.82.0.0/29') => ({
  cniVersion: '1.1.0', name: 'gcnet', type: 'macvlan', master, ipam: { type: 'whereabouts', range, file_store_dir: store }, ...extra,
});
const add = (id: string, config = conf()) =>
  cni('macvlan', { command: 'ADD', config, containerId: id, netns: lab.netns(id), ifName: 'net1', args: `K8S_POD_NAMESPACE=gc;K8S_POD_NAME=${id}` });

describe('GC', () => {
  it('keeps exactly the valid attachments and releases the rest of this network\'s leases', async () => {
    for (const id of ['keep', 'drop']) expect((await add(id)).exitCode).toBe(0);
    expect(leasesIn(store).map((l) => l.containerID).sort()).toEqual(['drop', 'keep']);
    const gc = await cni('macvlan', { command: 'GC', config: conf({ 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'net1' }] }) });
    expect(gc.exitCode, gc.stdout).toBe(0);
    expect(gc.stdout).toBe('');
    expect(leasesIn(store).map((l) => l.containerID)).toEqual(['keep']);
  });
});

describe('STATUS', () => {
  it('is ready while the pool has room, and says 50 once it is exhausted', async () => {
    const small = conf({}, '10.83.0.0/30'); // two usable addresses
    expect((await cni('macvlan', { command: 'STATUS', config: small })).exitCode).toBe(0);
    for (const id of ['s1', 's2']) expect((await add(id, small)).exitCode).toBe(0);
    const full = await cni('macvlan', { command: 'STATUS', config: small });
    expect(full.json).toMatchObject({ code: 50 });
  });

  it('says 50 when the master is gone', async () => {
    const gone = lab.veth('gs');
    sh(`ip link del ${gone}`);
    const out = await cni('macvlan', { command: 'STATUS', config: conf({ master: gone }) });
    expect(out.json).toMatchObject({ code: 50 });
    expect(out.json?.msg).toContain(gone);
  });

  it('is refused below cniVersion 1.1.0', async () => {
    const out = await cni('macvlan', { command: 'STATUS', config: conf({ cniVersion: '1.0.0' }) });
    expect(out.json).toMatchObject({ code: 1 });
  });
});
