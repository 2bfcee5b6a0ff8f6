// Names of pools and reservations, derived exactly as whereabouts derives its IPPool and
// OverlappingRangeIPReservation object names, so a store that speaks whereabouts' CRDs finds the objects
// a live whereabouts installation wrote. The same names are file names in the file store, which is why
// network_name is held to a safe alphabet.
import { Code, CniError, showValue } from '../../lib/cni/errors.ts';
import { formatAddr, parseAddr, type Family } from './addr.ts';

/** Letters, digits, "_", "." and "-": a Kubernetes-compatible name part and a safe path component. */
export const SAFE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,200}$/;

export function checkNetworkName(name: string, field = 'ipam.network_name'): void {
  if (name !== '' && !SAFE_NAME.test(name)) {
    throw new CniError(
      Code.InvalidConfig,
      `invalid network config: ${field} = ${showValue(name)} must start with a letter or digit and hold only letters, digits, "_", "." and "-"`,
    );
  }
}

/** whereabouts' normalizeRange: a trailing ":" gets a "0", then ":" and "/" become "-". */
export function normalizeForName(text: string): string {
  const padded = text.endsWith(':') ? `${text}0` : text;
  return padded.replace(/[:/]/g, '-');
}

const scoped = (networkName: string, name: string): string => (networkName ? `${networkName}-${name}` : name);

/** "192.168.2.0/24" → "192.168.2.0-24"; with network_name "blue", "blue-192.168.2.0-24". */
export const poolName = (networkName: string, cidr: string): string => scoped(networkName, normalizeForName(cidr));

/** One reservation per address, scoped by network_name: "blue-10.0.0.5", "fd00--5". */
export const reservationName = (networkName: string, family: Family, value: bigint): string =>
  scoped(networkName, normalizeForName(formatAddr(family, value)));

/**
 * The address a reservation name stands for, when it belongs to `networkName`'s scope. Used by GC to
 * find this network's reservations among all of them.
 */
export function reservationAddress(networkName: string, name: string): { family: Family; value: bigint } | undefined {
  let rest = name;
  if (networkName) {
    if (!name.startsWith(`${networkName}-`)) return undefined;
    rest = name.slice(networkName.length + 1);
  }
  const text = rest.includes('.') ? rest : rest.replace(/-/g, ':');
  const addr = parseAddr(text);
  if (!addr || normalizeForName(formatAddr(addr.family, addr.value)) !== rest) return undefined;
  return addr;
}
