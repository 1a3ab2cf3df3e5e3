import { defineEntity, p } from '@mikro-orm/core';
import type { InferEntity } from '@mikro-orm/core';
import type {
  GenerationParams,
  TaskErrorInfo,
  TaskRecord,
  TaskStatus,
  TokenUsage,
} from '../../services/task-types';

/** Name of the table that holds tasks. */
export const TASK_TABLE = 'task';

/**
 * Column of each {@link TaskRecord} field. The entity and the hand-written queries of `TaskStore`
 * both read names from here, so a renamed column cannot drift between them.
 */
export const TASK_COLUMNS = {
  id: 'id',
  userId: 'user_id',
  status: 'status',
  priority: 'priority',
  prompt: 'prompt',
  system: 'system',
  model: 'model',
  params: 'params',
  result: 'result',
  error: 'error',
  usage: 'usage',
  cacheKey: 'cache_key',
  cached: 'cached',
  coalesced: 'coalesced',
  attempts: 'attempts',
  idempotencyKey: 'idempotency_key',
  lastSeq: 'last_seq',
  createdAt: 'created_at',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
} as const satisfies Record<keyof TaskRecord, string>;

/** Names of the indexes on {@link TASK_TABLE}; queries that must pick one name it from here. */
export const TASK_INDEXES = {
  statusId: 'task_status_id_index',
  userIdStatusId: 'task_user_id_status_id_index',
  userIdId: 'task_user_id_id_index',
  finishedAt: 'task_finished_at_index',
  cacheKey: 'task_cache_key_index',
  userIdIdempotencyKey: 'task_user_id_idempotency_key_unique',
} as const;

const c = TASK_COLUMNS;

/**
 * The `task` table. Column storage, chosen so that SQLite sorts and compares values reliably:
 * - `id` is a UUIDv7 in lowercase text; text order is creation order, so it doubles as the sort key.
 * - Times are INTEGER epoch milliseconds in columns declared `datetime`; that is MikroORM's own SQLite
 *   convention, so `em.find` hydrates them as `Date` too. Exact to the millisecond, compared as
 *   numbers, no time zone or text format involved.
 * - JSON columns are declared `text`: SQLite gives a column declared `json` NUMERIC affinity, which
 *   would turn a numeric-looking JSON document into a number.
 * - Booleans are INTEGER 0 or 1.
 */
export const Task = defineEntity({
  name: 'Task',
  tableName: TASK_TABLE,
  properties: {
    id: p.uuid().primary().fieldName(c.id),
    userId: p.text().fieldName(c.userId),
    // Plain text without a CHECK list, so a later status needs no table rebuild in SQLite.
    status: p.text().$type<TaskStatus>().fieldName(c.status),
    priority: p.integer().fieldName(c.priority),
    prompt: p.text().fieldName(c.prompt),
    system: p.text().nullable().fieldName(c.system),
    model: p.text().fieldName(c.model),
    params: p.json<GenerationParams>().columnType('text').fieldName(c.params),
    result: p.text().nullable().fieldName(c.result),
    error: p.json<TaskErrorInfo>().columnType('text').nullable().fieldName(c.error),
    usage: p.json<TokenUsage>().columnType('text').nullable().fieldName(c.usage),
    cacheKey: p.text().nullable().fieldName(c.cacheKey),
    cached: p.boolean().fieldName(c.cached),
    coalesced: p.boolean().default(false).fieldName(c.coalesced),
    attempts: p.integer().fieldName(c.attempts),
    idempotencyKey: p.text().nullable().fieldName(c.idempotencyKey),
    lastSeq: p.integer().fieldName(c.lastSeq),
    createdAt: p.datetime().fieldName(c.createdAt),
    startedAt: p.datetime().nullable().fieldName(c.startedAt),
    finishedAt: p.datetime().nullable().fieldName(c.finishedAt),
  },
  indexes: [
    // Listing newest first with a status filter, and crash recovery (oldest first).
    { name: TASK_INDEXES.statusId, properties: ['status', 'id'] },
    // Per-user listing, with and without a status filter.
    { name: TASK_INDEXES.userIdStatusId, properties: ['userId', 'status', 'id'] },
    { name: TASK_INDEXES.userIdId, properties: ['userId', 'id'] },
    // The retention purge walks finished tasks by age.
    { name: TASK_INDEXES.finishedAt, properties: ['finishedAt'] },
    { name: TASK_INDEXES.cacheKey, properties: ['cacheKey'] },
  ],
  uniques: [
    // SQLite treats NULLs as distinct, so tasks without a key never collide.
    { name: TASK_INDEXES.userIdIdempotencyKey, properties: ['userId', 'idempotencyKey'] },
  ],
});

/** The entity type MikroORM infers from {@link Task}; it has the same fields as `TaskRecord`. */
export type TaskEntity = InferEntity<typeof Task>;
