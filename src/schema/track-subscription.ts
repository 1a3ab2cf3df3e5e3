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
  const iterator = source[Symbol.asyncIterator]();
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    ctx.metrics.subscriptionEnded(ctx.transport);
  };
  ctx.metrics.subscriptionStarted(ctx.transport);
  return {
    async next() {
      try {
        const result = await iterator.next();
        if (result.done) end();
        return result;
      } catch (error) {
        end();
        throw error;
      }
    },
    async return(value?: unknown) {
      end();
      await iterator.return?.(value);
      return { value: undefined, done: true };
    },
    async throw(error?: unknown) {
      end();
      if (iterator.throw) return iterator.throw(error);
      throw error;
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
