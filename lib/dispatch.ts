// Which plugin a name means. Loaded only when there is work to do (see main.ts).
import { registerInProcessIpam } from './cni/delegate.ts';
import { processIo, runPlugin, type Plugin } from './cni/skel.ts';
import { runCli } from './cli.ts';
import { Code, CniError, showValue } from './cni/errors.ts';
import { CURRENT_VERSION } from './cni/version.ts';
import { IPAM_TYPES, PLUGIN_NAMES } from './names.ts';
import { ipamPlugin } from '../ipam/plugin.ts';
import { macvlanPlugin } from '../plugins/macvlan/main.ts';
import { sriovPlugin } from '../plugins/sriov/main.ts';

const PLUGINS: Record<string, Plugin> = {
  macvlan: macvlanPlugin,
  'underlay-macvlan': macvlanPlugin,
  sriov: sriovPlugin,
  'underlay-sriov': sriovPlugin,
  whereabouts: ipamPlugin,
  'underlay-ipam': ipamPlugin,
};

export async function dispatch(name: string): Promise<number> {
  registerInProcessIpam(IPAM_TYPES, ipamPlugin);
  const plugin = PLUGINS[name];
  if (plugin) return runPlugin(plugin, processIo());
  if (process.env.CNI_COMMAND) {
    // A runtime exec'd us under a name that is no plugin (a conflist with "type": "underlay"): it must
    // get a CNI error, not the operator's help text on stdout and a success.
    const msg = `${showValue(name)} is not a CNI plugin name; use one of ${PLUGIN_NAMES.join(', ')} as "type"`;
    process.stdout.write(`${JSON.stringify(new CniError(Code.InvalidConfig, msg).toJSON(CURRENT_VERSION))}\n`);
    return 1;
  }
  return runCli(process.argv.slice(2));
}
