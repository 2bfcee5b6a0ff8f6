// Wrappers over any IpamStore that inject the faults a real store shows, for the IPAM's tests: a call
// that stalls (a slow disk, a lock holder, a member between leaders) until the test lets it go, and
// calls that fail with StoreUnavailable a given number of times, before or after they took effect.
// Plus a counter of calls. Nothing here knows which store it wraps.
import { StoreUnavailable, type IpamStore, type Write } from '../../ipam/store/types.ts';

export type StoreMethod = 'readPool' | 'readReservation' | 'listPools' | 'listReservations' | 'commit' | 'ping' | 'tidy';

export interface StoreCall {
  method: StoreMethod;
  /** The record name (reads) or the prefix (listings). */
  name?: string;
  /** The writes of a commit. */
  writes?: ReadonlyArray<Write>;
}

export type CallPredicate = (call: StoreCall) => boolean;

/**
 * 'before': the fault happens before the wrapped store sees the call (nothing was done);
 * 'after': the call took effect in the store, then the fault hides its answer (a lost reply).
 */
export type FaultPoint = 'before' | 'after';

type Around = (call: StoreCall, proceed: () => Promise<unknown>) => Promise<unknown>;

/** A store that passes each call through `around`; close() goes straight to the wrapped store. */
function intercept(store: IpamStore, around: Around): IpamStore {
  const via = <T>(call: StoreCall, proceed: () => Promise<T>): Promise<T> => around(call, proceed) as Promise<T>;
  return {
    get description() {
      return store.description;
    },
    get atomicWrites() {
      return store.atomicWrites;
    },
    get sharedByNodes() {
      return store.sharedByNodes;
    },
    readPool: (name, deadline) => via({ method: 'readPool', name }, () => store.readPool(name, deadline)),
    readReservation: (name, deadline) => via({ method: 'readReservation', name }, () => store.readReservation(name, deadline)),
    listPools: (prefix, deadline) => via({ method: 'listPools', name: prefix }, () => store.listPools(prefix, deadline)),
    listReservations: (prefix, deadline) => via({ method: 'listReservations', name: prefix }, () => store.listReservations(prefix, deadline)),
    commit: (writes, deadline) => via({ method: 'commit', writes }, () => store.commit(writes, deadline)),
    ping: (deadline) => via({ method: 'ping' }, () => store.ping(deadline)),
    tidy: (olderThanMs, deadline) => via({ method: 'tidy' }, () => store.tidy(olderThanMs, deadline)),
    close: () => store.close(),
  };
}

export interface PausingStore extends IpamStore {
  /** Resolves with the first matching call once it is held. */
  readonly reached: Promise<StoreCall>;
  /** Lets the held call go on (and any later one through). */
  resume(): void;
}

/** Holds the first call that matches `predicate` until resume(); every other call passes. */
export function pausing(store: IpamStore, predicate: CallPredicate, at: FaultPoint = 'before'): PausingStore {
  let reach!: (call: StoreCall) => void;
  const reached = new Promise<StoreCall>((resolve) => (reach = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let armed = true;
  const wrapped = intercept(store, async (call, proceed) => {
    if (!armed || !predicate(call)) return proceed();
    armed = false;
    if (at === 'before') {
      reach(call);
      await released;
      return proceed();
    }
    const outcome = await proceed().then((value) => ({ value }), (error: unknown) => ({ error }));
    reach(call);
    await released;
    if ('error' in outcome) throw outcome.error;
    return outcome.value;
  });
  return Object.assign(wrapped, { reached, resume: () => release() });
}

export interface FlakyStore extends IpamStore {
  /** How many calls it failed so far. */
  readonly failed: number;
}

/** The first `times` calls that match `predicate` throw StoreUnavailable. */
export function flaky(store: IpamStore, predicate: CallPredicate, times: number, at: FaultPoint = 'before'): FlakyStore {
  let failed = 0;
  const wrapped = intercept(store, async (call, proceed) => {
    if (failed >= times || !predicate(call)) return proceed();
    failed++;
    if (at === 'after') await proceed().catch(() => undefined);
    throw new StoreUnavailable(`injected fault ${failed}/${times} on ${call.method}${at === 'after' ? ' (after it took effect)' : ''}`);
  });
  return Object.defineProperty(wrapped, 'failed', { get: () => failed }) as FlakyStore;
}

export interface CountingStore extends IpamStore {
  /** Calls per method. */
  readonly counts: Record<StoreMethod, number>;
  /** Every call, in order. */
  readonly calls: StoreCall[];
  /** Writes committed (attempted), summed over commits. */
  readonly writes: number;
}

export function counting(store: IpamStore): CountingStore {
  const counts: Record<StoreMethod, number> = { readPool: 0, readReservation: 0, listPools: 0, listReservations: 0, commit: 0, ping: 0, tidy: 0 };
  const calls: StoreCall[] = [];
  let writes = 0;
  const wrapped = intercept(store, (call, proceed) => {
    counts[call.method]++;
    calls.push(call);
    writes += call.writes?.length ?? 0;
    return proceed();
  });
  return Object.defineProperties(wrapped, {
    counts: { value: counts },
    calls: { value: calls },
    writes: { get: () => writes },
  }) as CountingStore;
}
