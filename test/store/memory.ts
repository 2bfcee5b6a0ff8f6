// An IpamStore in memory, for tests only: the contract with nothing else, so the conformance suite can
// be checked on its own (with atomicWrites 1 as the file and Kubernetes stores have, and more as etcd
// has), and the fault wrappers can be tested without a server. Instances made from one MemoryData share
// its records, as processes share a real store. Never a product store: it forgets everything on exit.
import { Code, CniError } from '../../lib/cni/errors.ts';
import { SAFE_NAME } from '../../ipam/alloc/names.ts';
import { StoreUnavailable, type IpamStore, type Named, type PoolRecord, type Reservation, type Versioned, type Write } from '../../ipam/store/types.ts';

export class MemoryData {
  revision = 0;
  readonly pools = new Map<string, Versioned<PoolRecord>>();
  readonly reservations = new Map<string, Versioned<Reservation>>();
}

export class MemoryStore implements IpamStore {
  readonly description = 'memory store (tests)';
  readonly atomicWrites: number;
  /** Like etcd's, its records are shared by every instance over the same data, as by nodes. */
  readonly sharedByNodes = true;
  private readonly data: MemoryData;

  constructor(data: MemoryData, atomicWrites = 1) {
    this.data = data;
    this.atomicWrites = atomicWrites;
  }

  /** Lets other callers run between any two calls, as a real store's round trip would. */
  private async turn(deadline: number, names: string[]): Promise<void> {
    if (Date.now() >= deadline) throw new StoreUnavailable('memory store: the deadline passed');
    for (const name of names) if (!SAFE_NAME.test(name)) throw new CniError(Code.InvalidConfig, `memory store: bad name ${JSON.stringify(name)}`);
    await new Promise((resolve) => setImmediate(resolve));
  }

  private table(kind: Write['kind']): Map<string, Versioned<PoolRecord | Reservation>> {
    return kind === 'pool' ? this.data.pools : this.data.reservations;
  }

  async readPool(name: string, deadline: number): Promise<Versioned<PoolRecord> | undefined> {
    await this.turn(deadline, [name]);
    return structuredClone(this.data.pools.get(name));
  }

  async readReservation(name: string, deadline: number): Promise<Versioned<Reservation> | undefined> {
    await this.turn(deadline, [name]);
    return structuredClone(this.data.reservations.get(name));
  }

  private static listed<T>(table: Map<string, Versioned<T>>, prefix: string): Array<Named<T>> {
    return [...table].filter(([name]) => name.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, v]) => ({ name, ...structuredClone(v) }));
  }

  async listPools(prefix: string, deadline: number): Promise<Array<Named<PoolRecord>>> {
    await this.turn(deadline, []);
    return MemoryStore.listed(this.data.pools, prefix);
  }

  async listReservations(prefix: string, deadline: number): Promise<Array<Named<Reservation>>> {
    await this.turn(deadline, []);
    return MemoryStore.listed(this.data.reservations, prefix);
  }

  async commit(writes: ReadonlyArray<Write>, deadline: number): Promise<Array<string | undefined> | undefined> {
    if (writes.length > this.atomicWrites) throw new CniError(Code.Internal, `memory store: ${writes.length} writes exceed ${this.atomicWrites}`);
    await this.turn(deadline, writes.map((w) => w.name));
    for (const w of writes) {
      if (this.table(w.kind).get(w.name)?.version !== w.expected) return undefined;
    }
    const version = String(++this.data.revision);
    for (const w of writes) {
      if (w.value === null) this.table(w.kind).delete(w.name);
      else this.table(w.kind).set(w.name, { value: structuredClone(w.value), version });
    }
    return writes.map((w) => (w.value === null ? undefined : version));
  }

  async ping(deadline: number): Promise<void> {
    await this.turn(deadline, []);
  }

  async tidy(_olderThanMs: number, deadline: number): Promise<number> {
    await this.turn(deadline, []);
    return 0;
  }

  async close(): Promise<void> {}
}
