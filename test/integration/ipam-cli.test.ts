// `underlay ipam ls` and `underlay ipam show`, over a store filled through the plugin.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runIpamCli } from '../../ipam/cli.ts';
import { ipamPlugin } from '../../ipam/plugin.ts';
import { invocation, tempStoreDir } from '../helpers/ipam-invocation.ts';
import { storeOf, writePool } from '../helpers/store.ts';

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((out += String(chunk)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((err += String(chunk)), true));
  const code = await runIpamCli(argv);
  vi.restoreAllMocks();
  return { code, out, err };
}

afterEach(() => vi.restoreAllMocks());

describe('underlay ipam', () => {
  it('lists pools with used and free counts, and shows leases', async () => {
    const dir = tempStoreDir();
    const ipam = { type: 'whereabouts', range: '10.20.0.0/24', file_store_dir: dir };
    await ipamPlugin.add(invocation({ ipam, containerId: 'aaaaaaaaaaaaaaaabbbb', pod: 'ns/web-0' }));
    await ipamPlugin.add(invocation({ ipam, containerId: 'c2', ifName: 'net2' }));

    const ls = await run(['ls', '--dir', dir]);
    expect(ls.code).toBe(0);
    expect(ls.out).toMatch(/POOL\s+RANGE\s+USED\s+FREE/);
    expect(ls.out).toMatch(/10\.20\.0\.0-24\s+10\.20\.0\.0\/24\s+2\s+252/);

    const json = JSON.parse((await run(['ls', '--json', `--dir=${dir}`])).out) as { pools: unknown };
    expect(json.pools).toEqual([{ name: '10.20.0.0-24', range: '10.20.0.0/24', used: 2, free: 252, version: '2' }]);

    const show = await run(['show', '10.20.0.0-24', '--dir', dir]);
    expect(show.out).toMatch(/ADDRESS\s+POD\s+CONTAINER\s+IFNAME\s+SINCE\s+NETWORK\s+NODE/);
    expect(show.out).toMatch(/10\.20\.0\.1\s+ns\/web-0\s+aaaaaaaaaaaa\s+net1\s+\d{4}-/);
    expect(show.out).toMatch(/10\.20\.0\.2\s+-\s+c2\s+net2/);

    const { leases } = JSON.parse((await run(['show', '10.20.0.0-24', '--json', '--dir', dir])).out) as { leases: unknown[] };
    expect(leases[0]).toMatchObject({ address: '10.20.0.1', pod: 'ns/web-0', containerID: 'aaaaaaaaaaaaaaaabbbb', ifName: 'net1', network: 'testnet', node: 'test-node' });
  });

  it('shows what a hand-written record says without passing its escapes to the terminal', async () => {
    const dir = tempStoreDir();
    const store = await storeOf({ file_store_dir: dir });
    try {
      const forged = { id: 'c1', podref: 'ns/\u001b]0;pwned\u0007x', ifname: 'net1', node: 'n\u001b[2J' };
      expect(await writePool(store, '10.21.0.0-24', { range: '10.21.0.0/24', allocations: { 1: forged } }, undefined)).toBe(true);
    } finally {
      await store.close();
    }
    const show = await run(['show', '10.21.0.0-24', '--dir', dir]);
    expect(show.code).toBe(0);
    const controls = [...show.out].filter((c) => c !== '\n' && (c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f));
    expect(controls).toEqual([]);
    expect(show.out).toContain('ns/\\x1b]0;pwned\\x07x');
    expect(show.out).toContain('n\\x1b[2J');
  });

  it('explains usage errors and missing pools', async () => {
    const dir = tempStoreDir();
    expect((await run(['ls', '--dir', dir])).out).toContain('no pools');
    expect((await run(['show', 'nope', '--dir', dir])).code).toBe(1);
    expect((await run(['show'])).code).toBe(2);
    expect((await run(['frobnicate'])).err).toContain('unknown command');
    expect((await run(['ls', '--bogus'])).err).toContain('unknown option');
  });
});
