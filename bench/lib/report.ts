/** A target from the requirements, checked against a measured figure. */
export interface TargetCheck {
  /** The target as stated, for example `≥ 1.5× stock yoga`. */
  text: string;
  met: boolean;
  /** By how much it is met or missed. */
  detail: string;
}

/** One measured figure and the baseline it is compared with, measured in the same run. */
export interface Figure {
  scenario: string;
  name: string;
  value: number;
  unit: string;
  baseline: string;
  baselineValue: number;
  /** value / baselineValue. */
  ratio: number;
  target?: TargetCheck;
  note?: string;
}

/** How long and how large a run is. */
export interface BenchSettings {
  mode: 'quick' | 'default' | 'full';
  /** Milliseconds of load per closed-loop measurement. */
  loadMs: number;
  /** Milliseconds of unmeasured load before each closed-loop measurement. */
  warmupMs: number;
  /** Concurrent clients of the throughput scenario. */
  concurrency: number;
  /** Tasks per second of the fixed-rate latency scenario. */
  ratePerSecond: number;
  /** Tasks submitted at that rate. */
  rateTasks: number;
  /** Subscribers of the fan-out scenario. */
  fanoutSubscribers: number;
  /** Row counts of the growth scenario. */
  growthRows: number[];
  /** Rows of the write scenario. */
  writeRows: number;
  /** Whether the latency scenario also measures BullMQ on the Redis at 127.0.0.1:6379. */
  bullmq: boolean;
}

/** Returns a figure with its ratio filled in. */
export function figure(fields: Omit<Figure, 'ratio'>): Figure {
  return { ...fields, ratio: fields.value / fields.baselineValue };
}

/** Checks `ratio >= min`. */
export function atLeast(ratio: number, min: number, text: string): TargetCheck {
  const met = ratio >= min;
  const detail = met
    ? `met (${fmt(ratio)}×)`
    : `missed: ${fmt(ratio)}×, ${fmt((1 - ratio / min) * 100)}% short`;
  return { text, met, detail };
}

/** Checks `value <= max`. */
export function atMost(value: number, max: number, text: string, unit = ''): TargetCheck {
  const met = value <= max;
  const detail = met
    ? `met (${fmt(value)}${unit})`
    : `missed: ${fmt(value)}${unit}, ${fmt(value - max)}${unit} over`;
  return { text, met, detail };
}

/** Formats a number with 3 significant digits, or as an integer when it is large. */
export function fmt(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  return Number(value.toPrecision(3)).toString();
}

/** Renders the figures as a markdown table. */
export function toMarkdown(figures: readonly Figure[]): string {
  const lines = [
    '| Scenario | Figure | Taskwire | Baseline | Baseline value | Ratio | Target |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const f of figures) {
    const target = f.target ? `${f.target.text}: ${f.target.detail}` : (f.note ?? '');
    lines.push(
      `| ${f.scenario} | ${f.name} | ${fmt(f.value)} ${f.unit} | ${f.baseline} | ` +
        `${fmt(f.baselineValue)} ${f.unit} | ${fmt(f.ratio)}× | ${target} |`,
    );
  }
  return lines.join('\n');
}
