// Store access for IPAM tests, in the words the tests think in (read a pool, create a reservation),
// over the one store interface, so a property test runs unchanged on every store.
import { invocation } from './ipam-invocation.ts';
import { loadIpamConfig } from '../../ipam/config/load.ts';
import { openStore } from '../../ipam/store/open.ts';
import type { IpamStore, PoolRecord, Reservation } from '../../ipam/store/types.ts';

/** A deadline far enough for any test step. */
export const soon = (): number => Date.now() + 10_000;

/** The store an IPAM config section names (file_store_dir, etcd_endpoints, ...). */
export function storeOf(ipam: Record<string, unknown>): Promise<IpamStore> {
  return openStore(loadIpamConfig(invocation({ ipam: { type: 'whereabouts', range: '10.255.255.0/24', ...ipam } })));
}

export const readPool = (store: IpamStore, name: string) => store.readPool(name, soon());
export const readReservation = (store: IpamStore, name: string) => store.readReservation(name, soon());

const ok = async (pending: Promise<Array<string | undefined> | undefined>): Promise<boolean> => (await pending) !== undefined;

export const writePool = (store: IpamStore, name: string, value: PoolRecord, expected: string | undefined): Promise<boolean> =>
  ok(store.commit([{ kind: 'pool', name, expected, value }], soon()));
export const createReservation = (store: IpamStore, name: string, value: Reservation): Promise<boolean> =>
  ok(store.commit([{ kind: 'reservation', name, expected: undefined, value }], soon()));
export const replaceReservation = (store: IpamStore, name: string, expected: string, value: Reservation): Promise<boolean> =>
  ok(store.commit([{ kind: 'reservation', name, expected, value }], soon()));
export const deleteReservation = (store: IpamStore, name: string, expected: string): Promise<boolean> =>
  ok(store.commit([{ kind: 'reservation', name, expected, value: null }], soon()));

export const poolNames = async (store: IpamStore): Promise<string[]> => (await store.listPools('', soon())).map((r) => r.name);
export const reservationNames = async (store: IpamStore): Promise<string[]> => (await store.listReservations('', soon())).map((r) => r.name);
