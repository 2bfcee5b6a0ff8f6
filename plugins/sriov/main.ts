// The sriov plugin is not built yet (it has its own issue). Until then the `sriov` link answers VERSION,
// refuses ADD and CHECK with an explicit error instead of pretending, and lets DEL and GC succeed so that
// a runtime tearing down a pod is never blocked by it.
import { delegateIpam, wantsIpam } from '../../lib/cni/delegate.ts';
import { Code, CniError } from '../../lib/cni/errors.ts';
import type { Invocation, Plugin } from '../../lib/cni/skel.ts';

const unavailable = (): never => {
  throw new CniError(Code.NotAvailable, 'the sriov plugin is not available in this build of Underlay');
};

export const sriovPlugin: Plugin = {
  about: 'Underlay sriov: SR-IOV VF plugin (not available in this build)',
  add: async () => unavailable(),
  check: async () => unavailable(),
  status: async () => unavailable(),
  async del(inv: Invocation) {
    if (wantsIpam(inv)) await delegateIpam('DEL', inv);
  },
  async gc(inv: Invocation) {
    if (wantsIpam(inv)) await delegateIpam('GC', inv);
  },
};
