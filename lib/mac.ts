// MAC addresses in configs: the form every plugin accepts, and the one precedence rule the reference
// macvlan and sriov-cni share for choosing one.
import * as z from 'zod/mini';
import { Code, CniError, showValue } from './cni/errors.ts';
import type { Invocation } from './cni/skel.ts';

const MAC_ADDRESS = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
const NOT_A_MAC = 'not a MAC address of the form aa:bb:cc:dd:ee:ff';

export const macString = z.string().check(z.regex(MAC_ADDRESS, NOT_A_MAC));

/** A group (multicast or broadcast) address: no NIC accepts one as its own. */
export const isGroupMac = (mac: string): boolean => (parseInt(mac.slice(0, 2), 16) & 1) === 1;

/**
 * runtimeConfig.mac > CNI_ARGS MAC= > the config's `mac`, lower-cased; undefined when none is given.
 * `cniArgs` is CNI_ARGS as the plugin parsed it (each plugin knows its own keys).
 */
export function chooseMac(inv: Invocation, configMac: string | undefined, cniArgs: Record<string, string>): string | undefined {
  const fromRuntime = inv.conf.runtimeConfig?.mac;
  const fromArgs = cniArgs.MAC;
  const [source, mac] =
    fromRuntime !== undefined ? ['runtimeConfig.mac', fromRuntime]
    : fromArgs !== undefined ? ['CNI_ARGS MAC', fromArgs]
    : ['mac', configMac];
  if (mac !== undefined && !MAC_ADDRESS.test(mac)) {
    throw new CniError(Code.InvalidConfig, `invalid network config: ${source} = ${showValue(mac)}: ${NOT_A_MAC}`);
  }
  return mac?.toLowerCase();
}
