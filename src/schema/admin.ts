import { ErrorCode, TaskwireError } from '../errors';
import { builder } from './builder';
import type { GraphQLContext } from './context';

function assertAdmin(ctx: GraphQLContext): void {
  if (!ctx.caller.isAdmin) {
    throw new TaskwireError(
      ErrorCode.FORBIDDEN,
      'This operation needs admin rights: send the ADMIN_TOKEN as a bearer token.',
    );
  }
}

builder.mutationFields((t) => ({
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
      ctx.logger.info({ ...filter, deleted, admin: ctx.caller.userId }, 'Cache purged');
      return deleted;
    },
  }),
}));
