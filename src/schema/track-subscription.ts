import type { GraphQLContext } from './context';

/**
 * Counts a subscription as active, by transport, for as long as its iterator runs; the count drops
 * however it ends (completion, error, or the client leaving).
 */
export async function* trackSubscription<T>(
  ctx: GraphQLContext,
  source: AsyncIterable<T>,
): AsyncGenerator<T> {
  ctx.metrics.subscriptionStarted(ctx.transport);
  try {
    yield* source;
  } finally {
    ctx.metrics.subscriptionEnded(ctx.transport);
  }
}
