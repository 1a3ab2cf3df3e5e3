import type { CacheCoordinatorStats } from '../services/cache/cache-coordinator';
import type { QueueSnapshot } from '../services/task-service';
import { builder } from './builder';

const QueueMetricsRef = builder.objectRef<QueueSnapshot>('QueueMetrics').implement({
  description: 'The task queue and its workers right now.',
  fields: (t) => ({
    depth: t.exposeInt('depth', { description: 'Tasks waiting for a worker.' }),
    capacity: t.exposeInt('capacity', { description: 'Tasks that may wait before QUEUE_FULL.' }),
    running: t.exposeInt('running', { description: 'Tasks being generated.' }),
    workers: t.exposeInt('workers', { description: 'Tasks that may be generated at once.' }),
    paused: t.exposeBoolean('paused'),
  }),
});

const CacheMetricsRef = builder.objectRef<CacheCoordinatorStats>('CacheMetrics').implement({
  description: 'The answer cache since the server started, and its memory tier now.',
  fields: (t) => ({
    memoryHits: t.exposeInt('memoryHits'),
    memoryMisses: t.exposeInt('memoryMisses'),
    databaseHits: t.exposeInt('databaseHits', {
      description: 'Memory misses found in the database.',
    }),
    databaseMisses: t.exposeInt('databaseMisses'),
    hitRate: t.float({
      description: 'Hits in either tier divided by lookups; 0 before the first lookup.',
      resolve: (stats) => {
        const lookups = stats.memoryHits + stats.memoryMisses;
        return lookups === 0 ? 0 : (stats.memoryHits + stats.databaseHits) / lookups;
      },
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

interface MetricsSource {
  queue: QueueSnapshot;
  cache: CacheCoordinatorStats;
}

const MetricsRef = builder.objectRef<MetricsSource>('Metrics').implement({
  description: 'Figures about the server.',
  fields: (t) => ({
    queue: t.field({ type: QueueMetricsRef, resolve: (metrics) => metrics.queue }),
    cache: t.field({ type: CacheMetricsRef, resolve: (metrics) => metrics.cache }),
  }),
});

builder.queryFields((t) => ({
  metrics: t.field({
    type: MetricsRef,
    resolve: (_root, _args, ctx) => ({
      queue: ctx.tasks.snapshot(),
      cache: ctx.tasks.cacheStats(),
    }),
  }),
}));
