/** Percentiles of a sample, in the sample's unit. */
export interface Percentiles {
  p50: number;
  p99: number;
  max: number;
  count: number;
}

/** Returns the nearest-rank percentile `q` (0 to 1) of `sorted`, or NaN for an empty sample. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

/** Computes p50, p99 and max of `values`. */
export function summarize(values: readonly number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1],
    count: sorted.length,
  };
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable between processes. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Starts `count` probes at `ratePerSecond` (open loop) and collects their results. */
export async function atFixedRate<T = number>(
  count: number,
  ratePerSecond: number,
  probe: (index: number) => Promise<T>,
): Promise<T[]> {
  const begin = now();
  const pending: Promise<T>[] = [];
  for (let i = 0; i < count; i += 1) {
    const due = begin + (i * 1000) / ratePerSecond;
    const wait = due - now();
    if (wait > 0) await sleep(wait);
    pending.push(probe(i));
  }
  return Promise.all(pending);
}
