// What ADD would refuse about a config's pools, checked when the config is loaded so that DEL and GC,
// which tolerate a config error (there can be nothing to release), do not fail on it later. Linear in
// the number of ranges (after one sort): a config of thousands of ranges costs milliseconds, not seconds.
import { Code, CniError, showValue } from '../../lib/cni/errors.ts';
import { poolName, reservationName, SAFE_NAME } from '../alloc/names.ts';
import { spanOf, type IpRange } from '../alloc/ranges.ts';
import { claimName, indexName, isSharded, shardName, shardOf } from '../alloc/shards.ts';

const configError = (message: string): CniError => new CniError(Code.InvalidConfig, `invalid network config: ${message}`);

/** Two ranges of one config in one pool: a pod gets one lease per pool and interface. */
function checkOnePoolEach(networkName: string, ranges: ReadonlyArray<IpRange>): void {
  const byName = new Map<string, IpRange>();
  for (const range of ranges) {
    const name = poolName(networkName, range.cidr);
    const earlier = byName.get(name);
    if (earlier !== undefined) {
      throw configError(`${range.field}.range and ${earlier.field}.range are both in ${range.cidr}: a pod gets one address per pool and interface; use one range entry, or a network_name per network`);
    }
    byName.set(name, range);
  }
}

/**
 * Two ranges whose allocatable spans share an address: each is its own pool, and the pod's reservation
 * of that address would look like its own to the other. Sorted by start, any overlap shows between
 * neighbours (the one reaching furthest so far and the next).
 */
function checkDisjoint(ranges: ReadonlyArray<IpRange>): void {
  const spans = ranges.map((range, order) => ({ range, order, lo: range.network + range.first, hi: range.network + range.last }));
  spans.sort((a, b) => a.range.family - b.range.family || (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : a.order - b.order));
  let reach: (typeof spans)[number] | undefined;
  for (const span of spans) {
    if (reach && reach.range.family === span.range.family && span.lo <= reach.hi) {
      const [first, second] = reach.order < span.order ? [reach, span] : [span, reach];
      throw configError(
        `${second.range.field}.range = ${showValue(second.range.source)} (${spanOf(second.range)}) overlaps ${first.range.field}.range = ${showValue(first.range.source)} (${spanOf(first.range)}): one config's ranges must not share addresses`,
      );
    }
    if (!reach || reach.range.family !== span.range.family || span.hi > reach.hi) reach = span;
  }
}

/** Every record name a range makes (pool, shard, index, claim, reservation) must be one the stores can hold. */
function checkRecordNames(networkName: string, range: IpRange): void {
  const name = poolName(networkName, range.cidr);
  const names = [name, reservationName(networkName, range.family, range.network + range.last)];
  if (isSharded(range)) names.push(shardName(name, shardOf(range.last)), indexName(name), claimName(name, '', ''));
  const bad = names.find((n) => !SAFE_NAME.test(n));
  if (bad === undefined) return;
  if (bad.length > 201) {
    throw configError(`ipam.network_name = ${showValue(networkName)} is too long: the record name ${JSON.stringify(bad.slice(0, 60))}... for ${range.field}.range must be at most 201 characters`);
  }
  // "::/64" names its pool "---64", as whereabouts derives IPPool names: no store can hold that name.
  throw configError(
    `${range.field}.range = ${showValue(range.source)}: its record name ${JSON.stringify(bad)} (derived from the range as whereabouts names its pools) must start with a letter or digit; set a network_name to prefix it`,
  );
}

export function checkPools(networkName: string, ranges: ReadonlyArray<IpRange>): void {
  checkOnePoolEach(networkName, ranges);
  checkDisjoint(ranges);
  for (const range of ranges) checkRecordNames(networkName, range);
}
