// Where one invocation's time goes, for the benchmarks: with UNDERLAY_TRACE set, marks and timed steps
// (each spawn, each store call, each fsync) are kept and printed as one JSON line on stderr at exit.
// Times are milliseconds since the process started, so Node's own start-up shows as the first mark.
// Off (the default), each call is one boolean test.
const enabled = Boolean(process.env.UNDERLAY_TRACE);

interface Step {
  what: string;
  at: number;
  ms?: number;
  /** Resident memory (MiB) after the step. */
  rss?: number;
}

const steps: Step[] = [];

export const tracing = (): boolean => enabled;

/** A point in time: "modules loaded", "result written". */
export function mark(what: string): void {
  if (enabled) steps.push({ what, at: performance.now(), rss: process.memoryUsage.rss() >> 20 });
}

/** Times a synchronous step. */
export function timed<T>(what: string, body: () => T): T {
  if (!enabled) return body();
  const at = performance.now();
  try {
    return body();
  } finally {
    steps.push({ what, at, ms: performance.now() - at, rss: process.memoryUsage.rss() >> 20 });
  }
}

/** Times an asynchronous step. */
export async function timedAsync<T>(what: string, body: () => Promise<T>): Promise<T> {
  if (!enabled) return body();
  const at = performance.now();
  try {
    return await body();
  } finally {
    steps.push({ what, at, ms: performance.now() - at, rss: process.memoryUsage.rss() >> 20 });
  }
}

if (enabled) {
  process.on('exit', () => {
    steps.push({ what: 'exit', at: performance.now() });
    const { rss, maxRss } = { rss: process.memoryUsage.rss(), maxRss: process.resourceUsage().maxRSS };
    process.stderr.write(`${JSON.stringify({ trace: steps.map((s) => ({ ...s, at: Math.round(s.at * 100) / 100, ...(s.ms !== undefined && { ms: Math.round(s.ms * 100) / 100 }) })), rssMiB: Math.round(rss / 1048576), maxRssMiB: Math.round(maxRss / 1024) })}\n`);
  });
}
