import { Histogram, Summary } from 'prom-client';
import type { Registry } from 'prom-client';

/** Percentiles of a timing over the sliding window, in seconds. */
export interface Percentiles {
  /** Observations since the start, like a Prometheus summary's `_count`. */
  count: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

/** Options for {@link WindowedTiming}. */
export interface WindowedTimingOptions {
  /** Prometheus name of the histogram; the summary takes the same name with `_window` added. */
  name: string;
  help: string;
  registry: Registry;
  /** Histogram bucket bounds in seconds. */
  buckets: number[];
  /** Seconds of observations the percentiles cover. @default 600 */
  windowSeconds?: number;
}

const QUANTILES = [0.5, 0.95, 0.99] as const;

/** Options for {@link WindowedQuantiles}. */
export interface WindowedQuantilesOptions {
  /** Seconds of observations the quantiles cover. @default 600 */
  windowSeconds?: number;
  /** Parts the window is cut into; the oldest part is dropped whole. @default 5 */
  slices?: number;
  /** Clock in milliseconds. @default Date.now */
  now?: () => number;
}

/** Smallest value distinguished from zero. */
const MIN_VALUE = 1e-6;
/** Ratio between the bounds of a bucket: values are kept within 1% of their true size. */
const GROWTH = 1.02;
/** Buckets from MIN_VALUE up to 1e9 (about 1,500). */
const BUCKETS = Math.ceil(Math.log(1e9 / MIN_VALUE) / Math.log(GROWTH));
const LOG_GROWTH = Math.log(GROWTH);

/**
 * Quantiles over a sliding time window, kept as counts in logarithmic buckets: recording a value
 * is one array increment with no allocation, and a quantile is read within 1% of the true value.
 * The window is cut into slices. When the clock enters a new slice, the oldest is cleared, so the
 * window covers between `windowSeconds * (slices - 1) / slices` and `windowSeconds` of data.
 * Values at or below zero count as zero; values above 1e9 count as 1e9.
 */
export class WindowedQuantiles {
  private readonly sliceMs: number;
  private readonly counts: Uint32Array[];
  private readonly zeros: Uint32Array;
  private readonly now: () => number;
  /** Number of the slice the clock was last in (time / sliceMs). */
  private currentSlice: number;
  /** Observations since the start. */
  count = 0;
  /** Sum of the observations since the start. */
  sum = 0;

  constructor(options: WindowedQuantilesOptions = {}) {
    const windowSeconds = options.windowSeconds ?? 600;
    const slices = options.slices ?? 5;
    if (!(windowSeconds > 0) || !Number.isInteger(slices) || slices < 1) {
      throw new RangeError(
        `Expected windowSeconds > 0 and an integer slices >= 1, got ${windowSeconds} and ${slices}.`,
      );
    }
    this.sliceMs = (windowSeconds * 1000) / slices;
    this.counts = Array.from({ length: slices }, () => new Uint32Array(BUCKETS));
    this.zeros = new Uint32Array(slices);
    this.now = options.now ?? Date.now;
    this.currentSlice = Math.floor(this.now() / this.sliceMs);
  }

  /** Records one value. Not-a-number values are ignored. */
  observe(value: number): void {
    if (Number.isNaN(value)) return;
    const slice = this.advance();
    this.count += 1;
    this.sum += value;
    if (value <= 0) {
      this.zeros[slice] += 1;
      return;
    }
    this.counts[slice][bucketOf(value)] += 1;
  }

  /** Returns the value below which a fraction `q` (0 to 1) of the window's values lie, or null when empty. */
  quantile(q: number): number | null {
    return this.quantiles([q])[0];
  }

  /** Several quantiles in one pass over the buckets, in the order asked. */
  quantiles(qs: readonly number[]): (number | null)[] {
    this.advance();
    let total = 0;
    for (const zeros of this.zeros) total += zeros;
    const merged = new Float64Array(BUCKETS);
    for (const slice of this.counts) {
      for (let index = 0; index < BUCKETS; index += 1) merged[index] += slice[index];
    }
    for (let index = 0; index < BUCKETS; index += 1) total += merged[index];
    if (total === 0) return qs.map(() => null);
    return qs.map((q) => {
      // The rank of the wanted value, 1-based, as in the nearest-rank method.
      const rank = Math.max(1, Math.ceil(Math.min(Math.max(q, 0), 1) * total));
      let seen = 0;
      for (const zeros of this.zeros) seen += zeros;
      if (seen >= rank) return 0;
      for (let index = 0; index < BUCKETS; index += 1) {
        seen += merged[index];
        if (seen >= rank) return valueOf(index);
      }
      return valueOf(BUCKETS - 1);
    });
  }

  /** Moves to the slice of the current time, clearing the slices it passed; returns its index. */
  private advance(): number {
    const slices = this.counts.length;
    const slice = Math.floor(this.now() / this.sliceMs);
    if (slice > this.currentSlice) {
      const cleared = Math.min(slice - this.currentSlice, slices);
      for (let step = 1; step <= cleared; step += 1) {
        const index = (this.currentSlice + step) % slices;
        this.counts[index].fill(0);
        this.zeros[index] = 0;
      }
      this.currentSlice = slice;
    }
    return this.currentSlice % slices;
  }
}

function bucketOf(value: number): number {
  if (value <= MIN_VALUE) return 0;
  const index = Math.floor(Math.log(value / MIN_VALUE) / LOG_GROWTH);
  return index >= BUCKETS ? BUCKETS - 1 : index;
}

/** Returns the middle of a bucket, on the logarithmic scale. */
function valueOf(index: number): number {
  return MIN_VALUE * GROWTH ** (index + 0.5);
}

/**
 * A Prometheus summary whose quantiles come from {@link WindowedQuantiles}. prom-client's own
 * summary feeds every observation to one t-digest per age bucket, which allocates on each one and
 * showed up in profiles of the task path.
 */
class WindowedSummary extends Summary {
  constructor(
    options: { name: string; help: string; registers: Registry[] },
    private readonly window: WindowedQuantiles,
  ) {
    super({ ...options, percentiles: [...QUANTILES] });
  }

  override observe(value: number | object): void {
    if (typeof value === 'number') this.window.observe(value);
  }

  override async get(): ReturnType<Summary['get']> {
    // The base gives the name, help, type and aggregator; its own t-digest stays empty.
    const base = await super.get();
    const quantiles = this.window.quantiles(QUANTILES);
    return {
      ...base,
      values: [
        ...QUANTILES.map((quantile, index) => ({
          labels: { quantile },
          value: quantiles[index] ?? 0,
        })),
        { metricName: `${base.name}_sum`, labels: {}, value: this.window.sum },
        { metricName: `${base.name}_count`, labels: {}, value: this.window.count },
      ],
    };
  }
}

/**
 * One timing recorded twice from the same observations: a cumulative histogram, which Prometheus
 * aggregates across instances, and a summary over a sliding window, whose quantiles the `metrics`
 * query reports.
 */
export class WindowedTiming {
  private readonly histogram: Histogram;
  private readonly window: WindowedQuantiles;

  constructor(options: WindowedTimingOptions) {
    const registers = [options.registry];
    const windowSeconds = options.windowSeconds ?? 600;
    this.histogram = new Histogram({
      name: options.name,
      help: options.help,
      buckets: options.buckets,
      registers,
    });
    this.window = new WindowedQuantiles({ windowSeconds });
    new WindowedSummary(
      {
        name: `${options.name}_window`,
        help: `${options.help} Quantiles over the last ${windowSeconds} s.`,
        registers,
      },
      this.window,
    );
  }

  /** Records one observation in seconds. */
  observe(seconds: number): void {
    this.histogram.observe(seconds);
    this.window.observe(seconds);
  }

  /** The window's percentiles; null while the window is empty. */
  percentiles(): Promise<Percentiles> {
    const [p50, p95, p99] = this.window.quantiles(QUANTILES);
    return Promise.resolve({ count: this.window.count, p50, p95, p99 });
  }
}
