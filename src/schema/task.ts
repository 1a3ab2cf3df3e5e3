import { ErrorCode, TaskwireError } from '../errors';
import type { TaskEvent } from '../services/events';
import { CacheMode } from '../services/task-input';
import type { TaskErrorInfo, TaskRecord, TokenUsage } from '../services/task-types';
import { TaskEventKind, TaskStatus } from '../services/task-types';
import { builder } from './builder';
import './scalars';
import { trackSubscription } from './track-subscription';

/** Tasks per page when the client gives no `first`. */
export const DEFAULT_PAGE_SIZE = 20;
/** Largest `first` a client may ask for. */
export const MAX_PAGE_SIZE = 100;

const TaskStatusEnum = builder.enumType('TaskStatus', {
  description: 'Where a task is in its life. COMPLETED, FAILED and CANCELLED are terminal.',
  values: Object.values(TaskStatus),
});

const TaskEventKindEnum = builder.enumType('TaskEventKind', {
  description: 'What happened to a task. RETRYING means the text streamed so far is discarded.',
  values: Object.values(TaskEventKind),
});

const CacheModeEnum = builder.enumType('CacheMode', {
  description:
    'DEFAULT reads and writes the answer cache, BYPASS does neither, REFRESH only writes.',
  values: Object.values(CacheMode),
});

const TaskErrorRef = builder.objectRef<TaskErrorInfo>('TaskError').implement({
  description: 'Why a task failed or was cancelled.',
  fields: (t) => ({
    code: t.exposeString('code'),
    message: t.exposeString('message'),
  }),
});

const TokenUsageRef = builder.objectRef<TokenUsage>('TokenUsage').implement({
  description: 'Token counts reported by the model provider.',
  fields: (t) => ({
    promptTokens: t.exposeInt('promptTokens', { nullable: true }),
    completionTokens: t.exposeInt('completionTokens', { nullable: true }),
    totalTokens: t.exposeInt('totalTokens', { nullable: true }),
  }),
});

/** The GraphQL `Task` type. */
export const TaskRef = builder.objectRef<TaskRecord>('Task').implement({
  description: 'One LLM generation request and its result.',
  fields: (t) => ({
    id: t.exposeID('id'),
    status: t.field({ type: TaskStatusEnum, resolve: (task) => task.status }),
    prompt: t.exposeString('prompt'),
    system: t.exposeString('system', { nullable: true }),
    model: t.exposeString('model'),
    result: t.exposeString('result', { nullable: true }),
    error: t.field({ type: TaskErrorRef, nullable: true, resolve: (task) => task.error }),
    cached: t.exposeBoolean('cached', { description: 'Whether the answer came from the cache.' }),
    coalesced: t.exposeBoolean('coalesced', {
      description: 'Whether the task shared the generation of an identical task already running.',
    }),
    attempts: t.exposeInt('attempts'),
    priority: t.exposeInt('priority'),
    queuePosition: t.int({
      nullable: true,
      description: '1-based place in the queue while QUEUED; 1 runs next.',
      resolve: (task, _args, ctx) =>
        task.status === TaskStatus.QUEUED ? ctx.tasks.queuePosition(task.id) : null,
    }),
    usage: t.field({ type: TokenUsageRef, nullable: true, resolve: (task) => task.usage }),
    createdAt: t.field({ type: 'DateTime', resolve: (task) => task.createdAt }),
    startedAt: t.field({ type: 'DateTime', nullable: true, resolve: (task) => task.startedAt }),
    finishedAt: t.field({ type: 'DateTime', nullable: true, resolve: (task) => task.finishedAt }),
  }),
});

const TaskEventRef = builder.objectRef<TaskEvent>('TaskEvent').implement({
  description: "One step in a task's life. `seq` rises by one per event of the task.",
  fields: (t) => ({
    seq: t.exposeInt('seq'),
    kind: t.field({ type: TaskEventKindEnum, resolve: (event) => event.kind }),
    task: t.field({ type: TaskRef, resolve: (event) => event.task }),
    delta: t.exposeString('delta', { nullable: true, description: 'Text of a TOKEN event.' }),
    queuePosition: t.exposeInt('queuePosition', { nullable: true }),
    at: t.field({ type: 'DateTime', resolve: (event) => event.at }),
  }),
});

const GenerationParamsInput = builder.inputType('GenerationParams', {
  description: "Sampling settings; absent fields use the model's defaults.",
  fields: (t) => ({
    temperature: t.float({ description: 'From 0 to 2.' }),
    topP: t.float({ description: 'Above 0, at most 1.' }),
    maxTokens: t.int({ description: 'At least 1; the server sets the maximum.' }),
    stop: t.stringList({ description: 'Up to 4 sequences that end the generation.' }),
    seed: t.int(),
  }),
});

const SubmitTaskInputRef = builder.inputType('SubmitTaskInput', {
  fields: (t) => ({
    prompt: t.string({ required: true }),
    system: t.string(),
    model: t.string({ description: "Defaults to the server's configured model." }),
    params: t.field({ type: GenerationParamsInput }),
    priority: t.int({ defaultValue: 0, description: 'From -100 to 100; higher runs first.' }),
    cache: t.field({ type: CacheModeEnum, defaultValue: CacheMode.DEFAULT }),
    cacheTtlSeconds: t.int({
      description:
        'Seconds the answer stays cached, from 1 to one year; the server sets the default.',
    }),
    idempotencyKey: t.string({
      description: 'The same key from the same user returns the same task instead of a new one.',
    }),
  }),
});

const PageInfoRef = builder
  .objectRef<{ hasNextPage: boolean; endCursor: string | null }>('PageInfo')
  .implement({
    fields: (t) => ({
      hasNextPage: t.exposeBoolean('hasNextPage'),
      endCursor: t.exposeString('endCursor', { nullable: true }),
    }),
  });

const TaskEdgeRef = builder.objectRef<TaskRecord>('TaskEdge').implement({
  fields: (t) => ({
    cursor: t.string({ resolve: (task) => encodeCursor(task.id) }),
    node: t.field({ type: TaskRef, resolve: (task) => task }),
  }),
});

const TaskConnectionRef = builder
  .objectRef<{ tasks: TaskRecord[]; hasNextPage: boolean }>('TaskConnection')
  .implement({
    fields: (t) => ({
      edges: t.field({ type: [TaskEdgeRef], resolve: (page) => page.tasks }),
      pageInfo: t.field({
        type: PageInfoRef,
        resolve: (page) => {
          const last = page.tasks.at(-1);
          return { hasNextPage: page.hasNextPage, endCursor: last ? encodeCursor(last.id) : null };
        },
      }),
    }),
  });

const CURSOR_PREFIX = 'task:';

/** Encodes a task id as an opaque pagination cursor. */
export function encodeCursor(id: string): string {
  return Buffer.from(`${CURSOR_PREFIX}${id}`).toString('base64url');
}

/** Decodes a cursor from {@link encodeCursor}; throws BAD_USER_INPUT for anything else. */
export function decodeCursor(cursor: string): string {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  if (
    !text.startsWith(CURSOR_PREFIX) ||
    encodeCursor(text.slice(CURSOR_PREFIX.length)) !== cursor
  ) {
    throw new TaskwireError(
      ErrorCode.BAD_USER_INPUT,
      `Invalid cursor ${JSON.stringify(cursor)}: use a pageInfo.endCursor from an earlier page.`,
      {
        extensions: { field: 'after' },
      },
    );
  }
  return text.slice(CURSOR_PREFIX.length);
}

function pageSize(first: number | null | undefined): number {
  const size = first ?? DEFAULT_PAGE_SIZE;
  if (size < 1 || size > MAX_PAGE_SIZE) {
    throw new TaskwireError(
      ErrorCode.BAD_USER_INPUT,
      `Invalid first: expected an integer from 1 to ${MAX_PAGE_SIZE}, got ${size}.`,
      { extensions: { field: 'first' } },
    );
  }
  return size;
}

builder.queryFields((t) => ({
  task: t.field({
    type: TaskRef,
    nullable: true,
    description: 'A task of the caller, or null when there is none with this id.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => ctx.tasks.get(String(args.id), ctx.caller),
  }),
  tasks: t.field({
    type: TaskConnectionRef,
    description: "The caller's tasks, newest first.",
    args: {
      status: t.arg({ type: [TaskStatusEnum] }),
      first: t.arg.int({
        description: `From 1 to ${MAX_PAGE_SIZE}; default ${DEFAULT_PAGE_SIZE}.`,
      }),
      after: t.arg.string({ description: 'pageInfo.endCursor of the previous page.' }),
    },
    resolve: (_root, args, ctx) =>
      ctx.tasks.list(ctx.caller, {
        statuses: args.status ?? undefined,
        first: pageSize(args.first),
        after: args.after ? decodeCursor(args.after) : undefined,
      }),
  }),
}));

builder.mutationFields((t) => ({
  submitTask: t.field({
    type: TaskRef,
    description:
      'Queues a task and returns it at once; follow it with the taskEvents subscription.',
    args: { input: t.arg({ type: SubmitTaskInputRef, required: true }) },
    resolve: (_root, args, ctx) => ctx.tasks.submit(args.input, ctx.caller),
  }),
  generate: t.field({
    type: TaskRef,
    description:
      'Queues a task and waits up to waitMs for it to end, then returns it as it is: a task still running is returned, not an error.',
    args: {
      input: t.arg({ type: SubmitTaskInputRef, required: true }),
      waitMs: t.arg.int({
        description: 'Milliseconds to wait; the server sets the default and the maximum.',
      }),
    },
    resolve: (_root, args, ctx) => ctx.tasks.generate(args.input, ctx.caller, args.waitMs),
  }),
  cancelTask: t.field({
    type: TaskRef,
    description: 'Cancels a queued or running task. A task that already ended is a CONFLICT error.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => ctx.tasks.cancel(String(args.id), ctx.caller),
  }),
}));

builder.subscriptionFields((t) => ({
  taskEvents: t.field({
    type: TaskEventRef,
    description:
      'Replays the events after afterSeq, then streams live ones and completes after the terminal event. A finished task sends its final state and completes.',
    args: {
      id: t.arg.id({ required: true }),
      afterSeq: t.arg.int({
        description: 'Last seq the client has seen; 0 or absent replays everything.',
      }),
    },
    subscribe: async (_root, args, ctx) =>
      trackSubscription(ctx, await ctx.tasks.subscribe(String(args.id), ctx.caller, args.afterSeq)),
    resolve: (event) => event,
  }),
}));
