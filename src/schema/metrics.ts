import { ErrorCode, TaskwireError } from '../errors';
import type { MetricsSnapshot } from '../services/metrics/metrics';
import type { Percentiles } from '../services/metrics/windowed-timing';
import { builder } from './builder';
import type { GraphQLContext } from './context';
import { trackSubscription } from './track-subscription';

/** Bounds and default of `metricsUpdated(intervalMs)`. */
export const METRICS_INTERVAL = { min: 250, max: 60_000, default: 1000 } as const;

const PercentilesRef = builder.objectRef<Percentiles>('Percentiles').implement({
  description:
    'Percentiles over a sliding window of the last 10 minutes, in seconds unless the field says otherwise; null while the window is empty.',
  fields: (t) => ({
    count: t.exposeInt('count', { description: 'Observations since start.' }),
    p50: t.exposeFloat('p50', { nullable: true }),
    p95: t.exposeFloat('p95', { nullable: true }),
    p99: t.exposeFloat('p99', { nullable: true }),
  }),
});

type QueueFigures = MetricsSnapshot['queue'];

const StatusTotalsRef = builder.objectRef<QueueFigures['totals']>('TaskStatusTotals').implement({
  description: 'Tasks that reached each terminal status since start.',
  fields: (t) => ({
    completed: t.exposeInt('completed'),
    failed: t.exposeInt('failed'),
    cancelled: t.exposeInt('cancelled'),
  }),
});

/** The GraphQL `QueueMetrics` type. */
export const QueueMetricsRef = builder.objectRef<QueueFigures>('QueueMetrics').implement({
  description: 'The task queue and its workers.',
  fields: (t) => ({
    depth: t.exposeInt('depth', { description: 'Tasks waiting for a worker.' }),
    capacity: t.exposeInt('capacity', { description: 'Tasks that may wait before QUEUE_FULL.' }),
    running: t.exposeInt('running', { description: 'Tasks being generated.' }),
    workers: t.exposeInt('workers', { description: 'Tasks that may be generated at once.' }),
    paused: t.exposeBoolean('paused'),
    accepted: t.exposeInt('accepted', { description: 'Submissions accepted since start.' }),
    rejected: t.exposeInt('rejected', {
      description: 'Submissions rejected since start (QUEUE_FULL, invalid input and the like).',
    }),
    totals: t.field({ type: StatusTotalsRef, resolve: (queue) => queue.totals }),
    waitTime: t.field({ type: PercentilesRef, resolve: (queue) => queue.waitTime }),
    runTime: t.field({ type: PercentilesRef, resolve: (queue) => queue.runTime }),
  }),
});

const ErrorCountRef = builder.objectRef<{ code: string; count: number }>('ErrorCount').implement({
  fields: (t) => ({ code: t.exposeString('code'), count: t.exposeInt('count') }),
});

const LlmMetricsRef = builder.objectRef<MetricsSnapshot['llm']>('LlmMetrics').implement({
  description: 'Requests to the model provider.',
  fields: (t) => ({
    requests: t.exposeInt('requests'),
    retries: t.exposeInt('retries'),
    errors: t.field({ type: [ErrorCountRef], resolve: (llm) => llm.errors }),
    tokensIn: t.exposeInt('tokensIn', { description: 'Prompt tokens, as providers report them.' }),
    tokensOut: t.exposeInt('tokensOut', { description: 'Generated tokens.' }),
    timeToFirstToken: t.field({ type: PercentilesRef, resolve: (llm) => llm.timeToFirstToken }),
    tokensPerSecond: t.field({
      type: PercentilesRef,
      description: 'In tokens per second, not seconds.',
      resolve: (llm) => llm.tokensPerSecond,
    }),
  }),
});

const CacheMetricsRef = builder.objectRef<MetricsSnapshot['cache']>('CacheMetrics').implement({
  description: 'The answer cache since start, and its memory tier now.',
  fields: (t) => ({
    memoryHits: t.exposeInt('memoryHits'),
    memoryMisses: t.exposeInt('memoryMisses'),
    databaseHits: t.exposeInt('databaseHits', {
      description: 'Memory misses found in the database.',
    }),
    databaseMisses: t.exposeInt('databaseMisses'),
    hitRate: t.exposeFloat('hitRate', {
      description: 'Hits in either tier divided by lookups; 0 before the first lookup.',
    }),
    coalesced: t.exposeInt('coalesced', {
      description: 'Tasks that shared a running identical generation.',
    }),
    writes: t.exposeInt('writes'),
    entries: t.exposeInt('memoryEntries', { description: 'Entries in the memory tier.' }),
    bytes: t.exposeInt('memoryBytes', { description: 'Bytes of answers in the memory tier.' }),
    evictions: t.exposeInt('evictions'),
    expirations: t.exposeInt('expirations'),
  }),
});

const DbMetricsRef = builder.objectRef<MetricsSnapshot['db']>('DatabaseMetrics').implement({
  description: 'The group-commit writer and the SQLite write-ahead log.',
  fields: (t) => ({
    pendingWrites: t.exposeInt('pending'),
    batches: t.exposeInt('batchesCommitted'),
    rows: t.exposeInt('rowsCommitted'),
    failedCommits: t.exposeInt('failedCommits'),
    rowsPerBatch: t.field({
      type: PercentilesRef,
      description: 'In rows, not seconds.',
      resolve: (db) => db.batchSize,
    }),
    writeLatency: t.field({ type: PercentilesRef, resolve: (db) => db.writeLatency }),
    walBytes: t.exposeInt('walBytes'),
  }),
});

const SubscriptionMetricsRef = builder
  .objectRef<MetricsSnapshot['subscriptions']>('SubscriptionMetrics')
  .implement({
    fields: (t) => ({
      connections: t.exposeInt('connections', { description: 'Open WebSocket connections.' }),
      websocket: t.exposeInt('websocket', { description: 'Active subscriptions over WebSocket.' }),
      sse: t.exposeInt('sse', { description: 'Active subscriptions over SSE.' }),
    }),
  });

const ProcessMetricsRef = builder
  .objectRef<MetricsSnapshot['process']>('ProcessMetrics')
  .implement({
    fields: (t) => ({
      uptimeSeconds: t.exposeFloat('uptimeSeconds'),
      rssBytes: t.exposeFloat('rssBytes'),
      heapUsedBytes: t.exposeFloat('heapUsedBytes'),
      eventLoopDelay: t.field({ type: PercentilesRef, resolve: (p) => p.eventLoopDelay }),
    }),
  });

const MetricsRef = builder.objectRef<MetricsSnapshot>('Metrics').implement({
  description: 'Figures about the server; /metrics reports the same in the Prometheus format.',
  fields: (t) => ({
    queue: t.field({ type: QueueMetricsRef, resolve: (m) => m.queue }),
    llm: t.field({ type: LlmMetricsRef, resolve: (m) => m.llm }),
    cache: t.field({ type: CacheMetricsRef, resolve: (m) => m.cache }),
    db: t.field({ type: DbMetricsRef, resolve: (m) => m.db }),
    subscriptions: t.field({ type: SubscriptionMetricsRef, resolve: (m) => m.subscriptions }),
    process: t.field({ type: ProcessMetricsRef, resolve: (m) => m.process }),
  }),
});

builder.queryFields((t) => ({
  metrics: t.field({
    type: MetricsRef,
    resolve: (_root, _args, ctx) => ctx.metrics.snapshot(),
  }),
}));

builder.subscriptionFields((t) => ({
  metricsUpdated: t.field({
    type: MetricsRef,
    description: `Sends the metrics at once and then every intervalMs (${METRICS_INTERVAL.min} to ${METRICS_INTERVAL.max}, default ${METRICS_INTERVAL.default}) until the client leaves.`,
    args: { intervalMs: t.arg.int() },
    subscribe: (_root, args, ctx) =>
      trackSubscription(ctx, streamMetrics(ctx, intervalOf(args.intervalMs))),
    resolve: (snapshot) => snapshot,
  }),
}));

function intervalOf(intervalMs: number | null | undefined): number {
  const interval = intervalMs ?? METRICS_INTERVAL.default;
  if (interval < METRICS_INTERVAL.min || interval > METRICS_INTERVAL.max) {
    throw new TaskwireError(
      ErrorCode.BAD_USER_INPUT,
      `Invalid intervalMs: expected an integer from ${METRICS_INTERVAL.min} to ${METRICS_INTERVAL.max}, got ${interval}.`,
      { extensions: { field: 'intervalMs' } },
    );
  }
  return interval;
}

/** Yields a snapshot now and after every interval; the timer stops when the consumer returns. */
async function* streamMetrics(
  ctx: GraphQLContext,
  intervalMs: number,
): AsyncGenerator<MetricsSnapshot> {
  for (;;) {
    yield await ctx.metrics.snapshot();
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
