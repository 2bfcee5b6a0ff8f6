// RDMA devices and network namespaces (the `rdma` tool of iproute2). In "shared" mode (the kernel's
// default) every namespace sees every RDMA device and nothing moves. In "exclusive" mode a device
// belongs to one namespace and must follow its netdev into the pod, and back: what rdma-cni does as a
// separate plugin. `rdma dev set DEV netns NAME` (iproute2 6.1) takes only a name under /run/netns, so
// a namespace known by another path (/proc/PID/ns/net, our own) gets a temporary name for the move.
import { realpathSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import * as z from 'zod/mini';
import { IpError, parseIpJson, run } from './ip.ts';
import { escaped, log } from '../log.ts';

export type RdmaNetnsMode = 'shared' | 'exclusive';

/** The RDMA subsystem's netns mode; "shared" when it cannot be read (no rdma tool, no RDMA). */
export function rdmaNetnsMode(): RdmaNetnsMode {
  try {
    const mode = /netns (shared|exclusive)/.exec(run(['rdma', 'system', 'show']))?.[1];
    return mode === 'exclusive' ? 'exclusive' : 'shared';
  } catch (err) {
    log.warn(escaped`cannot read the RDMA netns mode, assuming shared: ${(err as Error).message}`);
    return 'shared';
  }
}

const RUN_NETNS = '/run/netns';

/** The name under /run/netns that `path` already has, if it is one of those files. */
function runNetnsName(path: string): string {
  try {
    return realpathSync(dirname(path)) === realpathSync(RUN_NETNS) ? basename(path) : '';
  } catch {
    return '';
  }
}

// A netns known by another path is bound to a temporary name for the move, and the name removed after.
const MOVE_SCRIPT = [
  'dev=$1 target=$2 name=$3',
  'if [ -z "$name" ]; then',
  '  name=ul-rdma-$$; mkdir -p /run/netns && : > "/run/netns/$name" && mount --bind "$target" "/run/netns/$name" || { rm -f "/run/netns/$name"; exit 1; }',
  '  trap \'umount "/run/netns/$name"; rm -f "/run/netns/$name"\' EXIT',
  'fi',
  'rdma dev set "$dev" netns "$name"',
].join('\n');

/**
 * Moves RDMA device `device` from the namespace we run it in (`from`, ours when undefined) to the
 * namespace at path `to`. Returns false when `device` is not in `from` (already moved, or gone).
 */
export function moveRdmaDevice(device: string, to: string, from?: string): boolean {
  try {
    run(['sh', '-c', MOVE_SCRIPT, 'sh', device, to, runNetnsName(to)], { netns: from });
    return true;
  } catch (err) {
    if (err instanceof IpError && /wrong device name|no such device/i.test(err.stderr)) return false;
    throw err;
  }
}

const RdmaDevListSchema = z.array(z.looseObject({ ifname: z.string() }));

/** The RDMA devices a namespace sees (all of them in shared mode). */
export const rdmaDevicesIn = (netns?: string): string[] =>
  parseIpJson(RdmaDevListSchema, run(['rdma', '-j', 'dev', 'show'], { netns }).trim() || '[]', ['rdma', 'dev', 'show']).map((d) => d.ifname);
