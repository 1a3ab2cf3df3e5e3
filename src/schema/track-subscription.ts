import type { GraphQLContext } from './context';

/**
 * Counts a subscription as active, by transport, from now until its iterator ends however it
 * ends: completion, error, or the client leaving. Unlike an async generator wrapper, `return()`
 * reaches the source even before the first `next()`, so a client that leaves while the
 * subscription is still being set up leaves no listener behind.
 */
export function trackSubscription<T>(
  ctx: GraphQLContext,
  source: AsyncIterable<T>,
): AsyncIterableIterator<T> {
  return new TrackedSubscription(ctx, source[Symbol.asyncIterator]());
}

/** A class rather than an object of closures: one of these lives as long as its subscription. */
class TrackedSubscription<T> implements AsyncIterableIterator<T> {
  private ended = false;

  constructor(
    private readonly ctx: GraphQLContext,
    private readonly iterator: AsyncIterator<T>,
  ) {
    ctx.metrics.subscriptionStarted(ctx.transport);
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.ctx.metrics.subscriptionEnded(this.ctx.transport);
  }

  async next(): Promise<IteratorResult<T>> {
    try {
      const result = await this.iterator.next();
      if (result.done) this.end();
      return result;
    } catch (error) {
      this.end();
      throw error;
    }
  }

  async return(value?: unknown): Promise<IteratorResult<T>> {
    this.end();
    await this.iterator.return?.(value);
    return { value: undefined, done: true };
  }

  async throw(error?: unknown): Promise<IteratorResult<T>> {
    this.end();
    if (this.iterator.throw) return this.iterator.throw(error);
    throw error;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
