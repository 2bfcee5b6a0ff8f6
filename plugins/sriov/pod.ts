// The VF netdev in the pod after configurePodInterface: two things a macvlan never needs.
//  - The MAC may not have stuck: some VF drivers (iavf) apply a new admin MAC with a reset that lands
//    after the netdev MAC was set. Set it again until it holds, up to 2 s, as sriov-cni does.
//  - Altnames it brought from the host, or the kernel added on rename, are dropped: in the pod it is
//    known by its name alone, and a stale one would block the next pod's rename (#445).
import { Code, CniError } from '../../lib/cni/errors.ts';
import { ipBatch } from '../../lib/net/ip.ts';
import { findLink } from '../../lib/net/link.ts';
import type { Link } from '../../lib/net/schemas.ts';
import { altnameCommands, altnamesOf } from '../../lib/net/vf-netdev.ts';
import type { Attachment } from './state.ts';

const MAC_TRIES = 20;
const MAC_RETRY_MS = 100;

const sleep = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};

export async function settlePodInterface(att: Attachment, mac: string | undefined, configured: Link): Promise<Link> {
  const { netns, ifName } = att;
  let link = configured;
  for (let tries = 1; mac !== undefined && link.address?.toLowerCase() !== mac; tries++) {
    if (tries > MAC_TRIES) throw new CniError(Code.Internal, `${ifName} in ${netns} keeps MAC ${link.address} after ${MAC_TRIES} attempts to set ${mac}`);
    sleep(MAC_RETRY_MS);
    await ipBatch([['link', 'set', 'dev', ifName, 'address', mac]], netns);
    link = findLink(ifName, netns) ?? link;
  }
  const stale = altnameCommands(ifName, altnamesOf(link), []);
  if (stale.length > 0) await ipBatch(stale, netns);
  return link;
}
