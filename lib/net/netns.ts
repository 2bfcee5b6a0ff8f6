// Whether a network namespace path still names a namespace. A pod's netns outlives the pod's processes
// only while something holds it (a bind mount under /run/netns, a process), and a path that once named
// one may now be a plain file or nothing at all.
import { statSync } from 'node:fs';

/** True when `path` is a network namespace file (nsfs), as /proc/self/ns/net is. */
export function netnsAlive(path: string): boolean {
  if (!path) return false;
  try {
    return statSync(path).dev === statSync('/proc/self/ns/net').dev;
  } catch {
    return false;
  }
}

/** Our own network namespace as a path other processes can open: where a VF goes home to. */
export const ownNetns = (): string => `/proc/${process.pid}/ns/net`;
