// The leases a file store holds, read the way an operator would: `underlay ipam ls/show --json`.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { BIN } from './exec.ts';

export interface LeaseRow {
  pool: string;
  address: string;
  containerID: string;
  pod: string;
  ifName: string;
}

function ipamJson(args: string[]): unknown {
  return JSON.parse(execFileSync(join(BIN, 'underlay'), ['ipam', ...args, '--json'], { encoding: 'utf8' }));
}

export function leasesIn(dir: string): LeaseRow[] {
  const { pools } = ipamJson(['ls', '--dir', dir]) as { pools: Array<{ name: string }> };
  return pools.flatMap(({ name }) => {
    const { leases } = ipamJson(['show', name, '--dir', dir]) as { leases: Array<Omit<LeaseRow, 'pool'>> };
    return leases.map((lease) => ({ pool: name, ...lease }));
  });
}
