import { Histogram, Summary } from 'prom-client';
import type { Registry } from 'prom-client';

/** Percentiles of a timing over the sliding window, in seconds. */
export interface Percentiles {
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

const QUANTILES = [0.5, 0.95, 0.99];

/**
 * One timing recorded twice from the same observations: a cumulative histogram, which Prometheus
 * aggregates across instances, and a summary over a sliding window (prom-client's t-digest with
 * rotating age buckets, so memory stays flat), whose quantiles the `metrics` query reports.
 */
export class WindowedTiming {
  private readonly histogram: Histogram;
  private readonly summary: Summary;

  constructor(options: WindowedTimingOptions) {
    const registers = [options.registry];
    this.histogram = new Histogram({
      name: options.name,
      help: options.help,
      buckets: options.buckets,
      registers,
    });
    this.summary = new Summary({
      name: `${options.name}_window`,
      help: `${options.help} Quantiles over the last ${options.windowSeconds ?? 600} s.`,
      percentiles: QUANTILES,
      maxAgeSeconds: options.windowSeconds ?? 600,
      ageBuckets: 5,
      registers,
    });
  }

  /** Records one observation in seconds. */
  observe(seconds: number): void {
    this.histogram.observe(seconds);
    this.summary.observe(seconds);
  }

  /** The window's percentiles; null while the window is empty. */
  async percentiles(): Promise<Percentiles> {
    const { values } = await this.summary.get();
    const count = values.find((value) => value.metricName?.endsWith('_count'))?.value ?? 0;
    const quantile = (q: number) => {
      const value = values.find((item) => item.labels.quantile === q)?.value;
      return count === 0 || value === undefined || Number.isNaN(value) ? null : value;
    };
    return { count, p50: quantile(0.5), p95: quantile(0.95), p99: quantile(0.99) };
  }
}
