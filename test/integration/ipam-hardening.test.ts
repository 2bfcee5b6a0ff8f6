// The IPAM against configs written by someone who is not a node admin, and against hand-edited stores,
// through the BUILT executable: a flat file path that is a device, a FIFO or someone's secrets; ranges
// and exclusions by the thousand; a range whose record name no store can hold; and `underlay ipam`
// reading what a person edited by hand.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, cni, requireBuild } from '../helpers/exec.ts';
import { tempStoreDir } from '../helpers/ipam-invocation.ts';

requireBuild();
const whereabouts = join(BIN, 'whereabouts');
const call = (command: string, ipam: Record<string, unknown>, containerId = 'c1') =>
  cni(whereabouts, { command, containerId, netns: '/run/netns/none', ifName: 'net1', config: { cniVersion: '1.1.0', name: 'hard', type: 'whereabouts', ipam: { type: 'whereabouts', ...ipam } } });

describe('a file store on a disk that fills', () => {
  it('fails the write with code 5 and leaves the pool file valid, with every lease', async () => {
    const dir = tempStoreDir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', dir]);
    try {
      await fillsUp(dir);
    } finally {
      execFileSync('umount', [dir]); // before tempStoreDir's own cleanup removes the mount point
    }
  });
});

/** Leases 200 addresses, fills the disk, then a DEL (which rewrites the pool) must fail and lose nothing. */
async function fillsUp(dir: string): Promise<void> {
  const ipam = { range: '10.2.0.0/24', file_store_dir: dir, enable_overlapping_ranges: false };
  for (let i = 0; i < 200; i++) expect((await call('ADD', ipam, `c${i}`)).exitCode).toBe(0);
  const before = readFileSync(join(dir, 'pools', '10.2.0.0-24.json'), 'utf8');
  // Take the rest of the space, as another tenant of the disk would.
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${join(dir, 'filler')}`, 'bs=4k'], { stdio: 'ignore' });
  } catch {
    // dd stops with an error when the disk is full: that is the point.
  }
  const out = await call('DEL', ipam, 'c7');
  expect(out.json?.code).toBe(5);
  expect(out.json?.msg).toMatch(/10\.2\.0\.0-24\.(json: ENOSPC|lock: database or disk is full)/);
  const after = readFileSync(join(dir, 'pools', '10.2.0.0-24.json'), 'utf8');
  expect(after).toBe(before);
  expect(Object.keys((JSON.parse(after) as { allocations: object }).allocations)).toHaveLength(200);
  expect(readdirSync(join(dir, 'pools')).filter((f) => f.includes('.tmp-'))).toEqual([]);
}

describe('a file_store_dir that others could write', () => {
  it('is refused with code 5 naming it: a symlink, a dir of another user, one writable by others, and a symlinked pools/', async () => {
    const real = tempStoreDir();
    const link = `${real}-link`;
    symlinkSync(real, link);
    const theirs = tempStoreDir();
    chownSync(theirs, 1000, 1000);
    const open = tempStoreDir();
    chmodSync(open, 0o777);
    const planted = tempStoreDir();
    const elsewhere = tempStoreDir();
    symlinkSync(elsewhere, join(planted, 'pools'));
    try {
      for (const [dir, why] of [[link, /symbolic link/], [theirs, /owned by uid 1000/], [open, /writable by others/], [planted, /pools.*symbolic link/]] as const) {
        const out = await call('ADD', { range: '10.1.0.0/24', file_store_dir: dir });
        expect(out.json?.code).toBe(5);
        expect(out.json?.msg).toMatch(why);
      }
      expect(readdirSync(real)).toEqual([]);
      expect(readdirSync(elsewhere)).toEqual([]);
    } finally {
      execFileSync('rm', ['-f', link]);
    }
  });
});

describe('configuration_path', () => {
  it('refuses /dev/zero and a FIFO within a second, with a clear error', async () => {
    const dir = tempStoreDir();
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    for (const path of ['/dev/zero', fifo]) {
      const started = Date.now();
      const out = await call('ADD', { range: '10.20.0.0/24', file_store_dir: dir, configuration_path: path });
      expect(Date.now() - started).toBeLessThan(1000);
      expect(out.json).toMatchObject({ code: 5, msg: `refusing to read ${path}: not a regular file` });
    }
  });

  it("never shows a value of the file it read, only the field's name", async () => {
    const dir = tempStoreDir();
    const secret = join(dir, 'root-only.json');
    writeFileSync(secret, JSON.stringify({ range: 'TOPSECRET-ROOT-VALUE', gateway: 'hunter2-gateway' }), { mode: 0o600 });
    for (const ipam of [{ configuration_path: secret }, { range: '10.21.0.0/24', configuration_path: secret }]) {
      const out = await call('ADD', { file_store_dir: dir, ...ipam });
      expect(out.json?.code).toBe(7);
      expect(out.stdout + out.stderr).not.toMatch(/TOPSECRET|hunter2/);
      expect(out.json?.msg).toMatch(/ipam\.(range|gateway).*value from the flat file, not shown.*flat file .*root-only\.json/);
    }
  });
});

describe('configs of thousands of entries', () => {
  it('warn once for thousands of exclusions outside the range, not once each', async () => {
    const exclude = Array.from({ length: 5000 }, (_, i) => `10.99.${i >> 8}.${i & 255}`);
    const out = await call('ADD', { range: '10.22.0.0/24', file_store_dir: tempStoreDir(), exclude });
    expect(out.exitCode).toBe(0);
    const warnings = out.stderr.split('\n').filter((line) => line.includes('exclude nothing'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/ipam\.exclude\[0\] = "10\.99\.0\.0", .* and 4997 more exclude nothing/);
  });

  it('find two overlapping ranges among thousands, wherever they stand', async () => {
    const ipRanges = Array.from({ length: 2000 }, (_, i) => ({ range: `10.${100 + (i >> 8)}.${i & 255}.0/24` }));
    ipRanges.push({ range: '10.100.7.128/25' }); // inside entry 7
    const out = await call('ADD', { ipRanges, file_store_dir: tempStoreDir() });
    expect(out.json).toMatchObject({ code: 7 });
    expect(out.json?.msg).toMatch(/ipam\.ipRanges\[2000\]\.range = "10\.100\.7\.128\/25" .* overlaps ipam\.ipRanges\[7\]\.range/);
  });
});

describe('a range whose pool name no store can hold', () => {
  it('is blamed on the range, with what to do, not on network_name', async () => {
    const out = await call('ADD', { range: '::/64', file_store_dir: tempStoreDir() });
    expect(out.json?.code).toBe(7);
    expect(out.json?.msg).toMatch(/ipam\.range = "::\/64": its record name "---64" .* set a network_name/);
    const named = await call('ADD', { range: '::/64', network_name: 'v6', file_store_dir: tempStoreDir() });
    expect(named.json).toMatchObject({ ips: [{ address: '::1/64' }] });
  });
});

describe('underlay ipam on a hand-edited store', () => {
  it('shows the leases and skips keys that are no offsets ("__proto__", "-5")', async () => {
    const dir = tempStoreDir();
    mkdirSync(join(dir, 'pools'), { recursive: true, mode: 0o700 });
    const lease = { id: 'c1', podref: 'ns/a', ifname: 'net1' };
    writeFileSync(join(dir, 'pools', '10.23.0.0-24.json'), `{"version":"3","range":"10.23.0.0/24","allocations":{"__proto__":${JSON.stringify(lease)},"-5":${JSON.stringify(lease)},"7":${JSON.stringify(lease)}}}\n`);
    const show = execFileSync(join(BIN, 'underlay'), ['ipam', 'show', '10.23.0.0-24', '--dir', dir], { encoding: 'utf8' });
    expect(show).toMatch(/^pool 10\.23\.0\.0-24: range 10\.23\.0\.0\/24, 1 leased, 253 free/);
    expect(show).toMatch(/10\.23\.0\.7\s+ns\/a\s+c1/);
    const ls = execFileSync(join(BIN, 'underlay'), ['ipam', 'ls', '--dir', dir], { encoding: 'utf8' });
    expect(ls).toMatch(/10\.23\.0\.0-24\s+10\.23\.0\.0\/24\s+1\s+253/);
  });

  it('counts free addresses in the span the config can allocate', async () => {
    const dir = tempStoreDir();
    const ipam = { range: '192.168.91.100-192.168.91.110/24', gateway: '192.168.91.1', file_store_dir: dir };
    for (const id of ['a', 'b', 'c']) expect((await call('ADD', ipam, id)).exitCode).toBe(0);
    const ls = execFileSync(join(BIN, 'underlay'), ['ipam', 'ls', '--dir', dir], { encoding: 'utf8' });
    expect(ls).toMatch(/192\.168\.91\.0-24\s+192\.168\.91\.0\/24\s+3\s+8\n/);
  });
});
