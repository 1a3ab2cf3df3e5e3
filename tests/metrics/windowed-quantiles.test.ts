import { WindowedQuantiles } from '../../src/services/metrics/windowed-timing';

/** Returns the nearest-rank quantile of `values`. */
function exact(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1];
}

describe('WindowedQuantiles', () => {
  it('reads quantiles within 1% of the exact ones over six orders of magnitude', () => {
    const window = new WindowedQuantiles();
    let seed = 7;
    const random = () => {
      seed = (seed * 48_271) % 2_147_483_647;
      return seed / 2_147_483_647;
    };
    const values = Array.from({ length: 20_000 }, () => 10 ** (random() * 6 - 4));
    for (const value of values) window.observe(value);

    for (const q of [0.01, 0.5, 0.95, 0.99, 1]) {
      const got = window.quantile(q) as number;
      expect(Math.abs(got - exact(values, q)) / exact(values, q)).toBeLessThan(0.011);
    }
    expect(window.count).toBe(values.length);
    expect(window.sum).toBeCloseTo(
      values.reduce((sum, value) => sum + value, 0),
      6,
    );
  });

  it('answers null when empty, and counts zero and negative values as zero', () => {
    const window = new WindowedQuantiles();
    expect(window.quantiles([0.5, 0.99])).toEqual([null, null]);
    window.observe(0);
    window.observe(-1);
    window.observe(2);
    window.observe(Number.NaN);
    expect(window.quantile(0.5)).toBe(0);
    expect(window.quantile(1)).toBeCloseTo(2, 1);
    expect(window.count).toBe(3);
  });

  it('forgets a slice once the clock has passed the whole window', () => {
    let now = 1_000_000;
    const window = new WindowedQuantiles({ windowSeconds: 10, slices: 5, now: () => now });
    window.observe(1);
    now += 4_000;
    window.observe(100);
    expect(window.quantile(0)).toBeCloseTo(1, 1);
    // 10 s after the first value its slice is cleared; the second value, 6 s old, stays.
    now += 6_000;
    expect(window.quantile(0)).toBeCloseTo(100, -1);
    now += 60_000;
    expect(window.quantile(0.5)).toBeNull();
    // The count is cumulative, like a Prometheus summary's.
    expect(window.count).toBe(2);
  });

  it('rejects a window it cannot cut', () => {
    expect(() => new WindowedQuantiles({ windowSeconds: 0 })).toThrow(RangeError);
    expect(() => new WindowedQuantiles({ slices: 0 })).toThrow(RangeError);
  });
});
