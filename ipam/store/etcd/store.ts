// The etcd store: each pool and each reservation is one key, its value the record's JSON, its version
// the key's mod_revision. Keys: <prefix>pools/<name> and <prefix>reservations/<name>, prefix
// "/underlay/ipam/" unless the config says otherwise. A commit is one txn: per write a compare (the
// key's mod_revision is the one read, or for a create, the key does not exist) and a put or delete;
// every compare holds and all apply, or none does. No failure branch: a conflict only needs to be known.
//
// One request per read, listing and commit (plus one to authenticate, once per store, when the config
// names a user). Reads are linearizable (etcd's default): a read after a commit sees it.
//
// A commit whose answer is lost (the member died or timed out after the txn was sent) is sent again to
// the next endpoint. Its compares make that safe: at most one of the two applies. But if the first one
// did apply, the second finds its own writes and reports a conflict; and when no endpoint answers, the
// call throws StoreUnavailable though the txn may have applied. Either way the caller re-reads and finds
// its own write, as after any lost reply.
import { Code, CniError, showValue } from '../../../lib/cni/errors.ts';
import type { EtcdSettings } from '../../config/schema.ts';
import { SAFE_NAME } from '../../alloc/names.ts';
import type { IpamStore, Named, PoolRecord, Reservation, Versioned, Write } from '../types.ts';
import { StoreUnavailable } from '../types.ts';
import { EtcdError } from './errors.ts';
import { EtcdGateway } from './gateway.ts';
import { gatewaySettings } from './settings.ts';
import { compareFor, fromBase64, prefixEnd, RangeReplySchema, toBase64, TxnReplySchema, type KeyValue } from './wire.ts';

export const DEFAULT_ETCD_PREFIX = '/underlay/ipam/';
/** etcd's default --max-txn-ops (3.4 and 3.5): a txn may hold this many compares and this many operations. */
export const ETCD_MAX_TXN_OPS = 128;

export interface EtcdStoreOptions {
  /** The index of the endpoint asked first; by default a random one, so that nodes spread their load. */
  startAt?: number | undefined;
}

type Kind = 'pool' | 'reservation';
const FOLDER: Record<Kind, string> = { pool: 'pools/', reservation: 'reservations/' };
/** mod_revision as etcd sends it: a decimal int64 above zero. */
const REVISION = /^[1-9]\d{0,18}$/;

export class EtcdStore implements IpamStore {
  readonly description: string;
  readonly atomicWrites = ETCD_MAX_TXN_OPS;
  readonly sharedByNodes = true;
  readonly prefix: string;
  private readonly gateway: EtcdGateway;

  /**
   * Reads the certificate files now: a missing file fails the open, not every call. The key prefix is
   * the config's etcd_prefix, with a "/" added when it does not end with one.
   */
  constructor(settings: EtcdSettings, options: EtcdStoreOptions = {}) {
    const prefix = settings.prefix ?? DEFAULT_ETCD_PREFIX;
    if (prefix === '') throw new CniError(Code.InvalidConfig, 'invalid network config: ipam.etcd_prefix must not be empty');
    this.prefix = prefix.endsWith('/') ? prefix : `${prefix}/`;
    const gateway = gatewaySettings(settings);
    this.gateway = new EtcdGateway(gateway, options.startAt);
    this.description = `etcd at ${gateway.endpoints.join(', ')}`;
  }

  /** HTTP requests this store has sent, authentication included. */
  get requests(): number {
    return this.gateway.requests;
  }

  private key(kind: Kind, name: string): string {
    if (!SAFE_NAME.test(name)) throw new CniError(Code.InvalidConfig, `etcd store: ${kind} name ${showValue(name)} must start with a letter or digit and hold only letters, digits, "_", "." and "-"`);
    return `${this.prefix}${FOLDER[kind]}${name}`;
  }

  private async range(body: Record<string, unknown>, deadline: number): Promise<KeyValue[]> {
    const reply = RangeReplySchema.safeParse(await this.call('/v3/kv/range', body, deadline));
    if (!reply.success) throw this.malformed('/v3/kv/range');
    return reply.data.kvs ?? [];
  }

  private async call(path: string, body: Record<string, unknown>, deadline: number): Promise<unknown> {
    // Checked here too, so a late call fails at once even before any endpoint is chosen.
    if (Date.now() >= deadline) throw new StoreUnavailable(`${this.description}: the deadline passed before the request`);
    return this.gateway.post(path, body, deadline);
  }

  private malformed(path: string): CniError {
    return new EtcdError(Code.IoFailure, this.gateway.endpoints.join(', '), `answered ${path} with JSON that is not etcd's`);
  }

  private decode<T>(kind: Kind, kv: KeyValue, check: (record: Record<string, unknown>) => boolean): Versioned<T> {
    const key = fromBase64(kv.key);
    let record: unknown;
    try {
      record = JSON.parse(fromBase64(kv.value));
    } catch (err) {
      throw new CniError(Code.IoFailure, `etcd store: key ${showValue(key)} does not hold JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (record === null || typeof record !== 'object' || Array.isArray(record) || !check(record as Record<string, unknown>)) {
      throw new CniError(Code.IoFailure, `etcd store: key ${showValue(key)} does not hold a ${kind} record`);
    }
    if (kv.mod_revision === undefined || !REVISION.test(kv.mod_revision)) throw this.malformed('/v3/kv/range');
    return { value: record as T, version: kv.mod_revision };
  }

  private async read<T>(kind: Kind, name: string, deadline: number, check: (r: Record<string, unknown>) => boolean): Promise<Versioned<T> | undefined> {
    const kvs = await this.range({ key: toBase64(this.key(kind, name)) }, deadline);
    return kvs[0] ? this.decode<T>(kind, kvs[0], check) : undefined;
  }

  private async list<T>(kind: Kind, prefix: string, deadline: number, check: (r: Record<string, unknown>) => boolean): Promise<Array<Named<T>>> {
    const folder = `${this.prefix}${FOLDER[kind]}`;
    const start = `${folder}${prefix}`;
    // Keys come back in byte order, which is name order for names of SAFE_NAME's alphabet.
    const kvs = await this.range({ key: toBase64(start), range_end: prefixEnd(start) }, deadline);
    const out: Array<Named<T>> = [];
    for (const kv of kvs) {
      const name = fromBase64(kv.key).slice(folder.length);
      // A key another tool put under our prefix is not a record of ours.
      if (!SAFE_NAME.test(name)) continue;
      out.push({ name, ...this.decode<T>(kind, kv, check) });
    }
    return out;
  }

  readPool(name: string, deadline: number): Promise<Versioned<PoolRecord> | undefined> {
    return this.read<PoolRecord>('pool', name, deadline, isPoolRecord);
  }

  readReservation(name: string, deadline: number): Promise<Versioned<Reservation> | undefined> {
    return this.read<Reservation>('reservation', name, deadline, isReservation);
  }

  listPools(prefix: string, deadline: number): Promise<Array<Named<PoolRecord>>> {
    return this.list<PoolRecord>('pool', prefix, deadline, isPoolRecord);
  }

  listReservations(prefix: string, deadline: number): Promise<Array<Named<Reservation>>> {
    return this.list<Reservation>('reservation', prefix, deadline, isReservation);
  }

  async commit(writes: ReadonlyArray<Write>, deadline: number): Promise<Array<string | undefined> | undefined> {
    if (writes.length > this.atomicWrites) {
      throw new CniError(Code.Internal, `etcd store: a commit of ${writes.length} writes exceeds the ${this.atomicWrites} one txn applies together`);
    }
    if (writes.length === 0) return [];
    const compare: Array<Record<string, string>> = [];
    const success: Array<Record<string, unknown>> = [];
    const keys = new Set<string>();
    for (const write of writes) {
      const key = this.key(write.kind, write.name);
      if (keys.has(key)) throw new CniError(Code.Internal, `etcd store: one commit writes ${write.kind} ${showValue(write.name)} twice`);
      keys.add(key);
      if (write.expected !== undefined && !REVISION.test(write.expected)) {
        throw new CniError(Code.Internal, `etcd store: version ${showValue(write.expected)} of ${write.kind} ${showValue(write.name)} is not an etcd revision`);
      }
      if (write.value === null && write.expected === undefined) throw new CniError(Code.Internal, `etcd store: a delete of ${showValue(write.name)} needs the version read`);
      const key64 = toBase64(key);
      compare.push(compareFor(key64, write.expected));
      success.push(write.value === null ? { request_delete_range: { key: key64 } } : { request_put: { key: key64, value: toBase64(JSON.stringify(write.value)) } });
    }
    const reply = TxnReplySchema.safeParse(await this.call('/v3/kv/txn', { compare, success }, deadline));
    if (!reply.success) throw this.malformed('/v3/kv/txn');
    if (reply.data.succeeded !== true) return undefined;
    // Every put of one txn gets the txn's revision as its mod_revision.
    const revision = reply.data.header.revision;
    if (revision === undefined || !REVISION.test(revision)) throw this.malformed('/v3/kv/txn');
    return writes.map((w) => (w.value === null ? undefined : revision));
  }

  /**
   * A write txn whose compare never holds ("version < 0") and whose put is never applied: it goes
   * through consensus and the write permission check, so it proves the store takes writes now without
   * writing anything.
   */
  async ping(deadline: number): Promise<void> {
    const key = toBase64(`${this.prefix}ping`);
    const reply = TxnReplySchema.safeParse(await this.call('/v3/kv/txn', {
      compare: [{ key, target: 'VERSION', result: 'LESS', version: '0' }],
      success: [{ request_put: { key, value: '' } }],
    }, deadline));
    if (!reply.success) throw this.malformed('/v3/kv/txn');
  }

  /** etcd keeps nothing a dead writer could leave half-done: a txn applies whole or not at all. */
  async tidy(_olderThanMs: number, _deadline: number): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {
    this.gateway.close();
  }
}

/** A hand check, not zod: a pool may hold tens of thousands of allocations. */
function isPoolRecord(record: Record<string, unknown>): boolean {
  const { range, allocations } = record;
  if (typeof range !== 'string' || allocations === null || typeof allocations !== 'object' || Array.isArray(allocations)) return false;
  for (const a of Object.values(allocations) as Array<{ id?: unknown; podref?: unknown } | null>) {
    if (a === null || typeof a !== 'object' || typeof a.id !== 'string' || typeof a.podref !== 'string') return false;
  }
  return true;
}

const isReservation = (record: Record<string, unknown>): boolean => typeof record.podref === 'string';
