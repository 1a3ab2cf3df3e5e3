import { ErrorCode, TaskwireError } from '../errors';

/** Options for {@link RateLimiter}. */
export interface RateLimiterOptions {
  /** Requests one key may make per minute, on average; also the largest burst. */
  perMinute: number;
  /** @default Date.now */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/** Buckets kept before full ones are dropped; a full bucket is the same as no bucket. */
const PRUNE_THRESHOLD = 10_000;

/**
 * A token bucket per key: each key may burst up to `perMinute` requests, and gains one request
 * every `60 / perMinute` seconds.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly now: () => number;
  private readonly refillPerMs: number;

  constructor(private readonly options: RateLimiterOptions) {
    this.now = options.now ?? Date.now;
    this.refillPerMs = options.perMinute / 60_000;
  }

  /**
   * Takes one request from `key`'s bucket.
   * @throws TaskwireError RATE_LIMITED with `extensions.retryAfter` in whole seconds.
   */
  take(key: string): void {
    const now = this.now();
    const bucket = this.refill(key, now);
    if (bucket.tokens < 1) {
      const retryAfter = Math.ceil((1 - bucket.tokens) / this.refillPerMs / 1000);
      throw new TaskwireError(
        ErrorCode.RATE_LIMITED,
        `Too many submissions: the limit is ${this.options.perMinute} per minute. Retry in ${retryAfter} s.`,
        { extensions: { retryAfter } },
      );
    }
    bucket.tokens -= 1;
  }

  private refill(key: string, now: number): Bucket {
    const capacity = this.options.perMinute;
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= PRUNE_THRESHOLD) this.prune(now);
      bucket = { tokens: capacity, updatedAt: now };
      this.buckets.set(key, bucket);
    }
    bucket.tokens = Math.min(capacity, bucket.tokens + (now - bucket.updatedAt) * this.refillPerMs);
    bucket.updatedAt = now;
    return bucket;
  }

  private prune(now: number): void {
    for (const [key, bucket] of this.buckets) {
      const tokens = bucket.tokens + (now - bucket.updatedAt) * this.refillPerMs;
      if (tokens >= this.options.perMinute) this.buckets.delete(key);
    }
  }
}
