// Which plugin a name means. Loaded only when there is work to do (see main.ts).
import { registerInProcessIpam } from './cni/delegate.ts';
import { processIo, runPlugin, type Plugin } from './cni/skel.ts';
import { runCli } from './cli.ts';
import { IPAM_TYPES } from './names.ts';
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
  return plugin ? runPlugin(plugin, processIo()) : runCli(process.argv.slice(2));
}
