import { ErrorCode, TaskwireError } from '../errors';
import { builder } from './builder';
import type { GraphQLContext } from './context';
import { QueueMetricsRef } from './metrics';

function assertAdmin(ctx: GraphQLContext): void {
  if (!ctx.caller.isAdmin) {
    throw new TaskwireError(
      ErrorCode.FORBIDDEN,
      'This operation needs admin rights: use an admin API key or the ADMIN_TOKEN as the bearer token.',
    );
  }
}

/** Runs an admin change and returns the queue figures after it. */
async function queueAfter(ctx: GraphQLContext, change: () => void) {
  assertAdmin(ctx);
  change();
  return (await ctx.metrics.snapshot()).queue;
}

builder.mutationFields((t) => ({
  setWorkerCount: t.field({
    type: QueueMetricsRef,
    description:
      'Changes how many tasks run at once. Growing starts queued tasks at once; shrinking lets running tasks finish. Admins only.',
    args: { count: t.arg.int({ required: true }) },
    resolve: (_root, args, ctx) =>
      queueAfter(ctx, () => ctx.tasks.setWorkerCount(args.count, ctx.caller)),
  }),
  pauseQueue: t.field({
    type: QueueMetricsRef,
    description: 'Stops starting queued tasks; running tasks go on. Admins only.',
    resolve: (_root, _args, ctx) => queueAfter(ctx, () => ctx.tasks.pause(ctx.caller)),
  }),
  resumeQueue: t.field({
    type: QueueMetricsRef,
    description: 'Starts queued tasks again after pauseQueue. Admins only.',
    resolve: (_root, _args, ctx) => queueAfter(ctx, () => ctx.tasks.resume(ctx.caller)),
  }),
  purgeCache: t.int({
    description:
      'Deletes cached answers of one model (or every model) created before olderThan (or any time). Returns how many were deleted from the database. Admins only.',
    args: {
      model: t.arg.string(),
      olderThan: t.arg({ type: 'DateTime' }),
    },
    resolve: async (_root, args, ctx) => {
      assertAdmin(ctx);
      const filter = { model: args.model ?? undefined, olderThan: args.olderThan ?? undefined };
      const deleted = await ctx.tasks.purgeCache(filter);
      ctx.logger.info(
        { ...filter, deleted, admin: ctx.caller.userId, requestId: ctx.requestId },
        'Cache purged',
      );
      return deleted;
    },
  }),
}));
