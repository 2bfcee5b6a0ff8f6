// Which plugin a name means. Loaded only when there is work to do (see main.ts), and each plugin (and
// our IPAM, when a config delegates to it) only when it is the one called: a module's loading is paid
// on every call that loads it.
import { registerInProcessIpam } from './cni/delegate.ts';
import { Code, CniError, showValue } from './cni/errors.ts';
import { processIo, runPlugin, type Plugin } from './cni/skel.ts';
import { CURRENT_VERSION } from './cni/version.ts';
import { IPAM_TYPES, PLUGIN_NAMES } from './names.ts';

const ipam = async (): Promise<Plugin> => (await import('../ipam/plugin.ts')).ipamPlugin;
const macvlan = async (): Promise<Plugin> => (await import('../plugins/macvlan/main.ts')).macvlanPlugin;
const sriov = async (): Promise<Plugin> => (await import('../plugins/sriov/main.ts')).sriovPlugin;

const PLUGINS: Record<string, () => Promise<Plugin>> = {
  macvlan,
  'underlay-macvlan': macvlan,
  sriov,
  'underlay-sriov': sriov,
  whereabouts: ipam,
  'underlay-ipam': ipam,
};

export async function dispatch(name: string): Promise<number> {
  registerInProcessIpam(IPAM_TYPES, ipam);
  const load = PLUGINS[name];
  if (load) return runPlugin(await load(), processIo());
  if (process.env.CNI_COMMAND) {
    // A runtime exec'd us under a name that is no plugin (a conflist with "type": "underlay"): it must
    // get a CNI error, not the operator's help text on stdout and a success.
    const msg = `${showValue(name)} is not a CNI plugin name; use one of ${PLUGIN_NAMES.join(', ')} as "type"`;
    process.stdout.write(`${JSON.stringify(new CniError(Code.InvalidConfig, msg).toJSON(CURRENT_VERSION))}\n`);
    return 1;
  }
  return (await import('./cli.ts')).runCli(process.argv.slice(2));
}
