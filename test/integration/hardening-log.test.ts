// The log file of the BUILT executable, set by the network config (logFile / log_file), which people
// who are not node admins write while the plugin runs as root. A path that is not a plain, root-owned
// ".log" file is refused with one note on stderr and the verb still answers; an accepted file gets
// config strings only in escaped form.
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cni, requireBuild } from '../helpers/exec.ts';
import { strictStderr } from '../helpers/fixture.ts';

strictStderr();
beforeAll(requireBuild);
const dir = mkdtempSync(join(tmpdir(), 'underlay-hardening-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A DEL through the in-process IPAM at debug level: it always has a line to log. */
function del(logFile: string, type = 'macvlan') {
  const config = {
    cniVersion: '1.0.0', name: 'hardlog', type, logFile, logLevel: 'debug',
    ipam: { type: 'whereabouts', range: '10.97.0.0/24', file_store_dir: join(dir, 'leases') },
  };
  return cni('macvlan', { command: 'DEL', containerId: 'logtest', ifName: 'net1', config, cwd: dir, timeoutMs: 15_000 });
}

/** The verb answered, the refusal was said once on stderr, and the log lines went to stderr instead. */
async function expectRefused(logFile: string, reason: RegExp): Promise<string> {
  const out = await del(logFile);
  expect(out.exitCode, out.stdout).toBe(0);
  expect(out.stdout).toBe('');
  const notes = out.stderr.split('\n').filter((line) => line.includes('refused'));
  expect(notes).toHaveLength(1);
  expect(notes[0]).toMatch(/^underlay: log file ".*refused: /);
  expect(notes[0]).toMatch(reason);
  expect(out.stderr).toMatch(/\[debug\] macvlan DEL logtest: IPAM DEL in-process \(whereabouts\)/);
  return out.stderr;
}

describe('a log file the config names is refused unless it is a plain root-owned .log file', () => {
  it('a symbolic link planted at the log path: its target is left untouched', async () => {
    const target = join(dir, 'target-of-link');
    writeFileSync(target, 'original\n');
    symlinkSync(target, join(dir, 'planted.log'));
    await expectRefused(join(dir, 'planted.log'), /symbolic link/);
    expect(readFileSync(target, 'utf8')).toBe('original\n');
  });

  it('a symbolic link in the directory path: nothing is created where it points', async () => {
    mkdirSync(join(dir, 'real'));
    symlinkSync(join(dir, 'real'), join(dir, 'linked'));
    await expectRefused(join(dir, 'linked', 'x.log'), /symbolic link/);
    expect(existsSync(join(dir, 'real', 'x.log'))).toBe(false);
  });

  it('a name that does not end in .log (a shell profile, say) is not created', async () => {
    await expectRefused(join(dir, 'profile'), /does not end in "\.log"/);
    expect(existsSync(join(dir, 'profile'))).toBe(false);
  });

  it('a relative path is not created in the working directory', async () => {
    await expectRefused('relative.log', /not an absolute path/);
    expect(existsSync(join(dir, 'relative.log'))).toBe(false);
  });

  it('a file owned by another user is not appended to', async () => {
    const file = join(dir, 'other-user.log');
    writeFileSync(file, 'theirs\n');
    chownSync(file, 65534, 65534);
    await expectRefused(file, /owned by uid 65534, not by root/);
    expect(readFileSync(file, 'utf8')).toBe('theirs\n');
  });

  it('a FIFO is refused at once, not waited on', async () => {
    execFileSync('mkfifo', [join(dir, 'fifo.log')]);
    await expectRefused(join(dir, 'fifo.log'), /not a regular file/);
  });

  it('a second name (hard link) of a root-owned file is not appended to', async () => {
    const file = join(dir, 'precious');
    writeFileSync(file, 'precious\n');
    linkSync(file, join(dir, 'hardlink.log'));
    await expectRefused(join(dir, 'hardlink.log'), /2 hard links/);
    expect(readFileSync(file, 'utf8')).toBe('precious\n');
  });

  it('the stderr note shows a hostile path escaped: no terminal escape, no shell expansion', async () => {
    const stderr = await expectRefused(join(dir, 'a$(touch marker)`id`\u001b[2J.txt'), /does not end in "\.log"/);
    expect(stderr).not.toMatch(/\$\(|`/);
    expect(stderr).not.toContain('\u001b');
    expect(stderr).toContain('a\\u0024(touch marker)\\u0060id\\u0060');
  });
});

describe('an accepted log file', () => {
  it('is created 0600 by root and carries config strings escaped, one line per message', async () => {
    const file = join(dir, 'good.log');
    const hostileType = 'macvlan;touch /tmp/x;$(touch /tmp/y)`touch /tmp/z`\n2026-01-01T00:00:00.000Z [error] forged';
    const out = await del(file, hostileType);
    expect(out.exitCode, out.stdout).toBe(0);
    expect(out.stderr).toBe('');
    const stat = statSync(file);
    expect(stat.mode & 0o777).toBe(0o600);
    expect(stat.uid).toBe(0);
    const text = readFileSync(file, 'utf8');
    const lines = text.trimEnd().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z \[(debug|info|warning|error)\] macvlan\\;touch /);
    // No shell expansion, no unescaped command separator, no forged line.
    expect(text).not.toMatch(/[$`]|(?<!\\);|^2026-01-01T00:00:00\.000Z/m);
    expect(text).toContain('macvlan\\;touch /tmp/x\\;\\x24\\(touch /tmp/y\\)\\x60touch /tmp/z\\x60\\x0a2026');
    expect(text).toMatch(/IPAM DEL in-process \(whereabouts\)/);
  });
});
