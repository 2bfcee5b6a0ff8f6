// Optimistic concurrency needs retries: a compare-and-swap that lost to another node's write re-reads
// and tries again. They live here, once, rather than in each store: full-jitter exponential back-off
// (so losers spread out instead of colliding again in step), bounded by a deadline that ends in the
// CNI's "try again later" (code 11) instead of a hang.
import { setTimeout as sleep } from 'node:timers/promises';
import { Code, CniError } from '../../lib/cni/errors.ts';
import { StoreUnavailable } from '../store/types.ts';

/** Returned by an attempt that lost a compare-and-swap and should be retried. */
export const CONFLICT = Symbol('conflict');
export type Attempt<T> = () => Promise<T | typeof CONFLICT>;

const BASE_DELAY_MS = 4;
const MAX_DELAY_MS = 250;

/** Milliseconds an IPAM operation may take; UNDERLAY_IPAM_DEADLINE_MS overrides it (tests). */
export function operationDeadline(env: NodeJS.ProcessEnv = process.env): number {
  const override = Number(env.UNDERLAY_IPAM_DEADLINE_MS);
  return Date.now() + (Number.isFinite(override) && override > 0 ? override : 60_000);
}

/** What the retries of this process met: the benchmark reports them per allocation. */
export const retryStats = { conflicts: 0, outages: 0 };

/**
 * Runs `attempt` until it returns something other than CONFLICT. CONFLICT and StoreUnavailable are
 * retried after a jittered back-off; when `deadline` (epoch ms) passes, a code 11 error names `what`.
 */
export async function withRetries<T>(what: string, deadline: number, attempt: Attempt<T>): Promise<T> {
  let conflicts = 0;
  let lastOutage: string | undefined;
  for (let round = 0; ; round++) {
    try {
      const outcome = await attempt();
      if (outcome !== CONFLICT) return outcome;
      conflicts++;
      retryStats.conflicts++;
    } catch (err) {
      if (!(err instanceof StoreUnavailable)) throw err;
      lastOutage = err.message;
      retryStats.outages++;
    }
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** Math.min(round, 16));
    const delay = Math.random() * ceiling;
    if (Date.now() + delay >= deadline) {
      const why = lastOutage ? `the store is unavailable (${lastOutage})` : `${conflicts} conflicting concurrent updates`;
      throw new CniError(Code.TryAgainLater, `${what}: try again later: gave up after ${round + 1} attempts: ${why}`);
    }
    await sleep(delay);
  }
}
