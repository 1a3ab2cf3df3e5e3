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

const MetricsRef = builder.objectRef<{ queue: QueueSnapshot }>('Metrics').implement({
  description: 'Figures about the server.',
  fields: (t) => ({
    queue: t.field({ type: QueueMetricsRef, resolve: (metrics) => metrics.queue }),
  }),
});

builder.queryFields((t) => ({
  metrics: t.field({
    type: MetricsRef,
    resolve: (_root, _args, ctx) => ({ queue: ctx.tasks.snapshot() }),
  }),
}));
