import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Knex, MikroORM } from '@mikro-orm/sqlite';
import type { Logger } from '../logger';
import type { TaskRecord, TaskStatus } from '../services/task-types';
import { TERMINAL_STATUSES } from '../services/task-types';
import { ApiKeyStore } from './api-key-store';
import { BatchWriter } from './batch-writer';
import type { WriteOptions } from './batch-writer';
import type { CacheWrite } from './cache-store';
import { CacheStore, cacheWriteStatements } from './cache-store';
import { TASK_COLUMNS, TASK_INDEXES, TASK_TABLE } from './entities/task.entity';
import { createOrm } from './orm';
import { fromTaskRow, toTaskRowValues } from './task-row';
import type { SqlValue, TaskRow, TaskRowValues } from './task-row';
import { WalCheckpointer } from './wal-checkpointer';
import { insertSql, updateFromValuesSql } from './sql-text';
import { runWriteScript } from './write-transaction';

/** Options for {@link TaskStore.open}. */
export interface TaskStoreOptions {
  /** Where the database is; see `createOrm`. */
  databaseUrl: string;
  /** Milliseconds SQLite waits for another connection's lock. */
  busyTimeoutMs: number;
  /** Milliseconds the writer collects writes before it commits them; see `BatchWriterOptions`. */
  flushIntervalMs: number;
  /** Pending writes that make the writer commit at once. */
  flushMaxRecords: number;
  /** Root logger; the store logs through its `{ area: 'db' }` child. */
  logger: Logger;
  /** Rows one DELETE of the retention purge removes before it lets other writes in. @default 500 */
  purgeChunkSize?: number;
  /** Attempts per write batch when the database is busy. @default 4 (see `BatchWriterOptions`) */
  maxCommitAttempts?: number;
  /** Milliseconds before the first retry of a busy batch. @default 20 (see `BatchWriterOptions`) */
  retryDelayMs?: number;
  /** Logs every SQL statement at debug level. @default false */
  debug?: boolean;
  /** Milliseconds between two PASSIVE WAL checkpoints; 0 turns them off. @default 30000 */
  checkpointIntervalMs?: number;
  /** `PRAGMA journal_size_limit` in bytes; see `CreateOrmOptions`. @default 67108864 (64 MiB) */
  journalSizeLimitBytes?: number;
}

/** Options for {@link TaskStore.list}. */
export interface ListTasksOptions {
  /** Only this user's tasks; every user's when absent. */
  userId?: string;
  /** Only tasks in one of these statuses; every status when absent or empty. */
  statuses?: readonly TaskStatus[];
  /** Page size (0 or more). */
  first: number;
  /** Id of the last task of the previous page; the page starts with the next older task. */
  after?: string;
}

/** One page of {@link TaskStore.list}, newest first. */
export interface TaskPage {
  tasks: TaskRecord[];
  hasNextPage: boolean;
}

/** A write waiting in the batch writer: a task row or a cache entry. */
type TaskWrite =
  | { kind: 'insert'; values: TaskRowValues }
  | { kind: 'update'; id: string; values: TaskRowValues }
  | CacheWrite;

const DEFAULT_PURGE_CHUNK_SIZE = 500;
/** Rows per INSERT or UPDATE statement: few statements, none of them huge. */
const ROWS_PER_STATEMENT = 200;
const TERMINAL = [...TERMINAL_STATUSES];
const c = TASK_COLUMNS;

/**
 * The only way services touch the `task` table. Writes go through a {@link BatchWriter} and are
 * committed in groups; reads are plain indexed queries. Live tasks are kept in memory by their
 * callers, so reads need not see writes that are still pending.
 */
export class TaskStore {
  /** The persistent tier of the answer cache, sharing this store's connection and writer. */
  readonly cache: CacheStore;
  /** API keys, on this store's connection. Their writes bypass the batch writer. */
  readonly apiKeys: ApiKeyStore;
  private closing: Promise<void> | undefined;

  private constructor(
    /** The ORM: its connection pool, metadata and migrator. */
    readonly orm: MikroORM,
    /** The group-commit writer behind `insert` and `update`; `writer.stats` feeds metrics. */
    readonly writer: BatchWriter<TaskWrite>,
    /** Periodic and closing WAL checkpoints; `checkpointer.stats` feeds tests. */
    readonly checkpointer: WalCheckpointer,
    private readonly log: Logger,
    private readonly purgeChunkSize: number,
  ) {
    this.cache = new CacheStore(
      () => this.knex,
      (op) => this.writer.write(op),
    );
    this.apiKeys = new ApiKeyStore(() => this.knex);
  }

  /** Opens the database, runs migrations and starts the writer. */
  static async open(options: TaskStoreOptions): Promise<TaskStore> {
    const purgeChunkSize = options.purgeChunkSize ?? DEFAULT_PURGE_CHUNK_SIZE;
    if (!Number.isInteger(purgeChunkSize) || purgeChunkSize < 1) {
      throw new RangeError(`Expected purgeChunkSize to be an integer >= 1, got ${purgeChunkSize}.`);
    }
    const orm = await createOrm(options);
    const log = options.logger.child({ area: 'db' });
    const knex = orm.em.getConnection().getKnex();
    try {
      const writer = new BatchWriter<TaskWrite>({
        commit: (ops) => runWriteScript(knex, writeStatements(ops), log),
        flushIntervalMs: options.flushIntervalMs,
        maxRecords: options.flushMaxRecords,
        maxAttempts: options.maxCommitAttempts,
        retryDelayMs: options.retryDelayMs,
        logger: log,
      });
      const checkpointer = new WalCheckpointer({
        execute: (sql) => orm.em.getConnection().execute<Record<string, unknown>[]>(sql),
        intervalMs: options.checkpointIntervalMs,
        logger: log,
      });
      checkpointer.start();
      return new TaskStore(orm, writer, checkpointer, log, purgeChunkSize);
    } catch (error) {
      await orm.close(true);
      throw error;
    }
  }

  private get knex(): Knex {
    return this.orm.em.getConnection().getKnex();
  }

  /**
   * Writes a new task. Resolves only after the transaction holding it has committed; a deferred
   * write may wait longer for other writes to share its commit (see `WriteOptions`).
   * @throws TypeError for an invalid date; BatchWriteError when the commit fails (a duplicate id
   *   or idempotency key among them: see `isUniqueViolation`).
   */
  async insert(task: TaskRecord, options: WriteOptions = {}): Promise<void> {
    const values = toTaskRowValues(task);
    await this.writer.write({ kind: 'insert', values }, options);
  }

  /**
   * Changes fields of a task. Several updates of one task apply in the order they were made.
   * Callers may ignore the promise: a failure is logged here, and the promise is marked handled.
   */
  update(id: string, patch: Partial<Omit<TaskRecord, 'id'>>): Promise<void> {
    let values: TaskRowValues;
    try {
      // Drop an `id` that slipped in through a spread: it would rewrite the primary key.
      values = toTaskRowValues({ ...patch, id: undefined });
    } catch (error) {
      return this.handled(Promise.reject(error), id);
    }
    if (Object.keys(values).length === 0) return Promise.resolve();
    return this.handled(this.writer.write({ kind: 'update', id, values }), id);
  }

  /** Returns the committed state of a task, or null. */
  async get(id: string): Promise<TaskRecord | null> {
    const row = await this.knex<TaskRow>(TASK_TABLE).where(c.id, id).first();
    return row ? fromTaskRow(row) : null;
  }

  /** Returns the user's task that was submitted with `key`, or null. */
  async findByIdempotencyKey(userId: string, key: string): Promise<TaskRecord | null> {
    const row = await this.knex<TaskRow>(TASK_TABLE)
      .where(c.userId, userId)
      .andWhere(c.idempotencyKey, key)
      .first();
    return row ? fromTaskRow(row) : null;
  }

  /**
   * One page of tasks, newest first. Each status is read as its own index range (newest first,
   * `first + 1` rows), so a filter never sorts more than a page per status.
   */
  async list(options: ListTasksOptions): Promise<TaskPage> {
    const { first } = options;
    if (!Number.isInteger(first) || first < 0) {
      throw new RangeError(`Expected first to be an integer >= 0, got ${first}.`);
    }
    const rows: TaskRow[] = await this.buildListQuery(options, first + 1);
    return {
      tasks: rows.slice(0, first).map(fromTaskRow),
      hasNextPage: rows.length > first,
    };
  }

  private buildListQuery(
    options: Omit<ListTasksOptions, 'first'>,
    limit: number,
  ): Knex.QueryBuilder {
    const statuses = [...new Set(options.statuses ?? [])];
    const range = (status?: TaskStatus) => {
      const query = this.knex<TaskRow>(TASK_TABLE).select('*');
      if (options.userId !== undefined) query.where(c.userId, options.userId);
      if (status !== undefined) query.where(c.status, status);
      if (options.after !== undefined) query.where(c.id, '<', options.after);
      return query.orderBy(c.id, 'desc').limit(limit);
    };
    if (statuses.length <= 1) return range(statuses[0]);
    // SQLite allows ORDER BY and LIMIT in a compound member only inside a subquery.
    const [head, ...rest] = statuses.map((status, index) =>
      this.knex.select('*').from(range(status).as(`s${index}`)),
    );
    return head.unionAll(rest).orderBy(c.id, 'desc').limit(limit);
  }

  /** Every task in one of `statuses`, oldest first (crash recovery). */
  async findByStatuses(statuses: readonly TaskStatus[]): Promise<TaskRecord[]> {
    if (statuses.length === 0) return [];
    const rows = await this.knex<TaskRow>(TASK_TABLE)
      .whereIn(c.status, [...statuses])
      .orderBy(c.id, 'asc');
    return rows.map(fromTaskRow);
  }

  /**
   * Deletes COMPLETED, FAILED and CANCELLED tasks that finished before `cutoff`, oldest first,
   * never a QUEUED or RUNNING one. Works in chunks of `purgeChunkSize`, each its own short write,
   * and lets other queries in between, so a large purge never holds the write lock for long.
   * @param limit most rows to delete in this call; unlimited when absent.
   * @returns the number of deleted tasks.
   */
  async deleteFinishedBefore(cutoff: Date, limit = Number.POSITIVE_INFINITY): Promise<number> {
    const cutoffMs = cutoff instanceof Date ? cutoff.getTime() : Number.NaN;
    if (Number.isNaN(cutoffMs))
      throw new TypeError(`Expected cutoff to be a valid Date, got ${String(cutoff)}.`);
    if (limit !== Number.POSITIVE_INFINITY && !(Number.isInteger(limit) && limit >= 1)) {
      throw new RangeError(`Expected limit to be an integer >= 1, got ${limit}.`);
    }
    let deleted = 0;
    while (deleted < limit) {
      const chunk = Math.min(this.purgeChunkSize, limit - deleted);
      const count = await this.buildPurgeQuery(cutoffMs, chunk);
      deleted += count;
      if (count < chunk) break;
      await nextTurn();
    }
    return deleted;
  }

  /** Deletes up to `chunk` of the oldest expired tasks. */
  private buildPurgeQuery(cutoffMs: number, chunk: number): Knex.QueryBuilder<TaskRow, number> {
    const knex = this.knex;
    // Without statistics SQLite would pick the status index and walk every finished task; the
    // finished_at range is the one that stops at the cutoff.
    const oldest = knex
      .select(c.id)
      .from(knex.raw('?? indexed by ??', [TASK_TABLE, TASK_INDEXES.finishedAt]))
      .where(c.finishedAt, '<', cutoffMs)
      .whereIn(c.status, TERMINAL)
      .orderBy(c.finishedAt, 'asc')
      .limit(chunk);
    return knex<TaskRow, number>(TASK_TABLE).whereIn(c.id, oldest).delete();
  }

  /** Commits every write made so far. */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  /**
   * Flushes pending writes, truncates the WAL and closes the database. Idempotent; runs every step
   * even if one fails.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private async shutdown(): Promise<void> {
    const errors: unknown[] = [];
    await this.writer.close().catch((error: unknown) => errors.push(error));
    await this.checkpointer.close().catch((error: unknown) => errors.push(error));
    await this.orm.close(true).catch((error: unknown) => errors.push(error));
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, 'Closing the task store failed');
  }

  private handled(write: Promise<void>, id: string): Promise<void> {
    write.catch((error: unknown) => {
      this.log.error({ err: error, taskId: id }, 'Task update was not saved');
    });
    return write;
  }
}

/** A task's writes within one batch, merged: one INSERT or one UPDATE of the final values. */
interface MergedTaskWrite {
  insert: boolean;
  values: TaskRowValues;
}

/**
 * Builds the statements of one batch, run as one transaction. A task's writes in the batch merge
 * into one: an insert followed by updates becomes one INSERT of the final values, and several
 * updates become one. The merged inserts go out as multi-row INSERTs, and the updates as one
 * `UPDATE ... FROM (VALUES ...)` per set of changed columns. Cache writes keep their order among
 * themselves; they touch another table, so their order against task writes does not matter.
 * An update of a task that is not in the table changes nothing.
 */
function writeStatements(ops: readonly TaskWrite[]): string[] {
  const tasks = new Map<string, MergedTaskWrite>();
  const statements: string[] = [];
  const cacheStatements: string[] = [];
  for (const op of ops) {
    if (op.kind === 'cache-put' || op.kind === 'cache-hits') {
      cacheStatements.push(...cacheWriteStatements(op));
      continue;
    }
    const id = op.kind === 'insert' ? String(op.values[c.id]) : op.id;
    const merged = tasks.get(id);
    if (merged === undefined) {
      // Copied: the op itself may be committed again alone if this batch fails.
      tasks.set(id, { insert: op.kind === 'insert', values: { ...op.values } });
    } else if (op.kind === 'insert') {
      // A second insert of one id can only fail; run it as written so it fails as written.
      statements.push(insertRowsSql([op.values]));
    } else {
      Object.assign(merged.values, op.values);
    }
  }
  const inserts: TaskRowValues[] = [];
  const updates = new Map<string, { columns: string[]; rows: SqlValue[][] }>();
  for (const [id, merged] of tasks) {
    if (merged.insert) {
      inserts.push(merged.values);
      continue;
    }
    const columns = Object.keys(merged.values).sort();
    const signature = columns.join(',');
    const group = updates.get(signature) ?? { columns, rows: [] };
    group.rows.push([id, ...columns.map((column) => merged.values[column])]);
    updates.set(signature, group);
  }
  for (let start = 0; start < inserts.length; start += ROWS_PER_STATEMENT) {
    statements.push(insertRowsSql(inserts.slice(start, start + ROWS_PER_STATEMENT)));
  }
  for (const { columns, rows } of updates.values()) {
    for (let start = 0; start < rows.length; start += ROWS_PER_STATEMENT) {
      const chunk = rows.slice(start, start + ROWS_PER_STATEMENT);
      statements.push(updateFromValuesSql(TASK_TABLE, c.id, columns, chunk));
    }
  }
  statements.push(...cacheStatements);
  return statements;
}

/** Builds one INSERT of complete task rows (every row has every column). */
function insertRowsSql(rows: readonly TaskRowValues[]): string {
  const columns = Object.keys(rows[0]);
  return insertSql(
    TASK_TABLE,
    columns,
    rows.map((row) => columns.map((column) => row[column] ?? null)),
  );
}
