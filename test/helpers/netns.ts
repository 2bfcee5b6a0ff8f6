// Real network namespaces and veth links for tests, with names unique per test file so files can run
// side by side, and a cleanup that removes everything even after a failed assertion.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export function sh(cmd: string): string {
  return execFileSync('sh', ['-c', cmd], { encoding: 'utf8' });
}

export function tryRun(cmd: string): { status: number; stdout: string; stderr: string } {
  const out = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  return { status: out.status ?? -1, stdout: out.stdout, stderr: out.stderr };
}

/** A short random tag: link names are limited to 15 characters. */
export const tag = (): string => randomBytes(3).toString('hex');

export class Lab {
  readonly id = tag();
  private readonly namespaces: string[] = [];
  private readonly hostLinks: string[] = [];

  /** A named netns under /run/netns; returns its path. */
  netns(name: string): string {
    const full = `u${this.id}${name}`;
    sh(`ip netns add ${full} && ip -n ${full} link set lo up`);
    this.namespaces.push(full);
    return `/run/netns/${full}`;
  }

  /** A veth pair in the host (or in `netnsName`), both ends up; returns the end to use as a master. */
  veth(name: string, netnsName?: string): string {
    const a = `v${this.id}${name}`;
    const b = `w${this.id}${name}`;
    const n = netnsName ? `ip -n ${netnsName} ` : 'ip ';
    sh(`${n}link add ${a} type veth peer name ${b} && ${n}link set ${a} up && ${n}link set ${b} up`);
    if (!netnsName) this.hostLinks.push(a);
    return a;
  }

  nameOf(path: string): string {
    return path.replace('/run/netns/', '');
  }

  cleanup(): void {
    for (const link of this.hostLinks) tryRun(`ip link del ${link}`);
    for (const ns of this.namespaces) tryRun(`ip netns del ${ns}`);
  }
}

export function linksIn(netnsPath: string): string[] {
  const out = tryRun(`nsenter --net=${netnsPath} ip -j link show`);
  if (out.status !== 0) return [];
  return (JSON.parse(out.stdout) as Array<{ ifname: string }>).map((l) => l.ifname);
}
