import type { Knex } from '@mikro-orm/sqlite';
import { BatchWriteError, BatchWriteErrorCode } from '../../src/db/batch-writer';
import { TASK_INDEXES } from '../../src/db/entities/task.entity';
import { isBusyError, isUniqueViolation } from '../../src/db/sqlite-errors';
import type { TaskStore } from '../../src/db/task-store';
import { createTaskId } from '../../src/services/ids';
import type { TaskRecord, TaskStatus } from '../../src/services/task-types';
import { makeTask, sleep, useDatabaseFixtures } from './db-fixtures';

const fixtures = useDatabaseFixtures();

/** Inserts tasks created one millisecond apart (so ids follow the array order), oldest first. */
async function insertSeries(store: TaskStore, specs: Partial<TaskRecord>[]): Promise<TaskRecord[]> {
  const start = Date.now() - specs.length;
  const tasks = specs.map((spec, index) =>
    makeTask({ id: createTaskId(start + index), createdAt: new Date(start + index), ...spec }),
  );
  await Promise.all(tasks.map((task) => store.insert(task)));
  return tasks;
}

/** Runs `action` and returns the query plan of each SELECT or DELETE on `task` it sent. */
async function explainQueries(
  store: TaskStore,
  action: () => Promise<unknown>,
): Promise<string[][]> {
  const knex = store.orm.em.getConnection().getKnex();
  const queries: { sql: string; bindings: readonly Knex.Value[] }[] = [];
  const record = (query: { sql: string; bindings?: readonly Knex.Value[] }) => {
    if (/^(select|delete)\b/i.test(query.sql))
      queries.push({ sql: query.sql, bindings: query.bindings ?? [] });
  };
  knex.on('query', record);
  try {
    await action();
  } finally {
    knex.off('query', record);
  }
  const plans: string[][] = [];
  for (const { sql, bindings } of queries) {
    const rows: { detail: string }[] = await knex.raw(`explain query plan ${sql}`, bindings);
    plans.push(rows.map((row) => row.detail));
  }
  return plans;
}

/** A plan line that reads the whole table without an index. */
const FULL_SCAN = /^SCAN task(?! USING)/;

describe('TaskStore', () => {
  describe('insert and get', () => {
    it('round-trips every field: JSON, nulls, booleans and dates to the millisecond', async () => {
      const store = await fixtures.openStore();
      const full = makeTask({
        userId: 'user-9',
        status: 'COMPLETED',
        priority: -3,
        prompt: 'Explain "WAL" in 10 words\n— with ünïcode',
        system: 'Be brief.',
        model: 'llama-3.2-1b',
        params: { temperature: 0.25, topP: 0.9, maxTokens: 64, stop: ['\n\n', 'END'], seed: 42 },
        result: 'Write-ahead log.',
        error: { code: 'TIMEOUT', message: 'Took too long' },
        usage: { promptTokens: 12, completionTokens: 5, totalTokens: 17 },
        cacheKey: 'sha256:abc',
        cached: true,
        attempts: 2,
        idempotencyKey: 'key-1',
        lastSeq: 31,
        createdAt: new Date('2026-01-02T03:04:05.006Z'),
        startedAt: new Date('2026-01-02T03:04:05.999Z'),
        finishedAt: new Date('2026-01-02T03:04:07.001Z'),
      });
      const sparse = makeTask({ params: {}, cached: false, createdAt: new Date(1) });
      await Promise.all([store.insert(full), store.insert(sparse)]);

      expect(await store.get(full.id)).toEqual(full);
      expect(await store.get(sparse.id)).toEqual(sparse);
      expect(await store.get(createTaskId())).toBeNull();
    });

    it('is durable when it resolves: another connection sees the row at once', async () => {
      const store = await fixtures.openStore({ flushIntervalMs: 5 });
      const other = await fixtures.openOrm();
      const task = makeTask();
      await store.insert(task);
      const rows = await other.em
        .getConnection()
        .execute<{ id: string }[]>('select id from task where id = ?', [task.id]);
      expect(rows).toEqual([{ id: task.id }]);
    });

    it('shares commits between concurrent inserts', async () => {
      const store = await fixtures.openStore();
      const tasks = Array.from({ length: 200 }, () => makeTask());
      await Promise.all(tasks.map((task) => store.insert(task)));
      const { batchesCommitted, rowsCommitted } = store.writer.stats;
      expect(rowsCommitted).toBe(200);
      expect(batchesCommitted).toBeLessThanOrEqual(5);
      const [{ count }] = await store.orm.em
        .getConnection()
        .execute<{ count: number }[]>('select count(*) as count from task');
      expect(count).toBe(200);
    });

    it('rejects an invalid date before anything is queued', async () => {
      const store = await fixtures.openStore();
      await expect(store.insert(makeTask({ createdAt: new Date(Number.NaN) }))).rejects.toThrow(
        'Expected createdAt to be a valid Date, got Invalid Date.',
      );
      expect(store.writer.stats.pending).toBe(0);
    });
  });

  describe('update', () => {
    it('applies several updates of one task in order, in the batch of its insert', async () => {
      const store = await fixtures.openStore({ flushIntervalMs: 50 });
      const task = makeTask();
      const inserted = store.insert(task);
      const startedAt = new Date();
      void store.update(task.id, { status: 'RUNNING', startedAt, attempts: 1, lastSeq: 1 });
      void store.update(task.id, { lastSeq: 2, usage: { totalTokens: 3 } });
      void store.update(task.id, {
        status: 'COMPLETED',
        result: 'hi',
        lastSeq: 3,
        finishedAt: startedAt,
      });
      await inserted;
      await store.flush();
      expect(store.writer.stats.batchesCommitted).toBe(1);
      expect(await store.get(task.id)).toEqual({
        ...task,
        status: 'COMPLETED',
        startedAt,
        finishedAt: startedAt,
        attempts: 1,
        lastSeq: 3,
        usage: { totalTokens: 3 },
        result: 'hi',
      });
    });

    it('updates many committed tasks in one batch, whatever columns each changes', async () => {
      const store = await fixtures.openStore({ flushIntervalMs: 50 });
      const tasks = await insertSeries(
        store,
        Array.from({ length: 250 }, () => ({})),
      );
      const startedAt = new Date();
      const missing = createTaskId();
      const writes = tasks.map((task, index) =>
        index % 2 === 0
          ? store.update(task.id, { status: 'RUNNING', startedAt, attempts: 1 })
          : store.update(task.id, { status: 'COMPLETED', result: `answer ${index}` }),
      );
      writes.push(store.update(missing, { status: 'FAILED' }));
      const batchesBefore = store.writer.stats.batchesCommitted;
      await Promise.all(writes);

      expect(store.writer.stats.batchesCommitted - batchesBefore).toBe(1);
      const stored = await Promise.all(tasks.map((task) => store.get(task.id)));
      stored.forEach((row, index) => {
        const task = tasks[index];
        expect(row).toEqual(
          index % 2 === 0
            ? { ...task, status: 'RUNNING', startedAt, attempts: 1 }
            : { ...task, status: 'COMPLETED', result: `answer ${index}` },
        );
      });
      // An update of a task that is not in the table changes nothing, and creates nothing.
      expect(await store.get(missing)).toBeNull();
    });

    it('stores any text exactly: quotes, NUL characters, line breaks and emoji', async () => {
      const store = await fixtures.openStore({ flushIntervalMs: 20 });
      const texts = [
        "it's",
        "'; DROP TABLE task; --",
        'a\u0000b',
        'line\nbreak\r\n',
        'emoji 🎉 ü',
        '',
        "''",
      ];
      const tasks = texts.map((prompt) => makeTask({ prompt, system: prompt }));
      await Promise.all(tasks.map((task) => store.insert(task)));
      await Promise.all(
        tasks.map((task, index) => store.update(task.id, { result: texts[index] })),
      );
      for (const [index, task] of tasks.entries()) {
        expect(await store.get(task.id)).toEqual({ ...task, result: texts[index] });
      }
    });

    it('sets fields to null and leaves fields it is not given alone', async () => {
      const store = await fixtures.openStore();
      const task = makeTask({ error: { code: 'X', message: 'y' }, system: 'sys' });
      await store.insert(task);
      await store.update(task.id, { error: null, cached: true });
      expect(await store.get(task.id)).toEqual({ ...task, error: null, cached: true });
    });

    it('never leaves an unhandled rejection when the caller ignores a failed update', async () => {
      const store = await fixtures.openStore();
      const unhandled = jest.fn();
      process.on('unhandledRejection', unhandled);
      try {
        store.update(createTaskId(), { startedAt: new Date(Number.NaN) });
        await store.flush();
        await sleep(10);
        expect(unhandled).not.toHaveBeenCalled();
      } finally {
        process.off('unhandledRejection', unhandled);
      }
    });
  });

  describe('list', () => {
    async function seed(store: TaskStore): Promise<TaskRecord[]> {
      const statuses: TaskStatus[] = ['COMPLETED', 'QUEUED', 'RUNNING', 'FAILED', 'COMPLETED'];
      return insertSeries(
        store,
        Array.from({ length: 10 }, (_, index) => ({
          status: statuses[index % statuses.length],
          userId: index % 2 === 0 ? 'alice' : 'bob',
        })),
      );
    }

    const newestFirst = (tasks: TaskRecord[]) => tasks.map((task) => task.id).reverse();

    it('pages through every task newest first', async () => {
      const store = await fixtures.openStore();
      const tasks = await seed(store);
      const seen: string[] = [];
      let after: string | undefined;
      for (let pages = 0; pages < 10; pages += 1) {
        const page = await store.list({ first: 4, after });
        seen.push(...page.tasks.map((task) => task.id));
        expect(page.hasNextPage).toBe(seen.length < tasks.length);
        if (!page.hasNextPage) break;
        after = page.tasks[page.tasks.length - 1].id;
      }
      expect(seen).toEqual(newestFirst(tasks));
    });

    it('filters by one or several statuses, newest first', async () => {
      const store = await fixtures.openStore();
      const tasks = await seed(store);
      const completed = tasks.filter((task) => task.status === 'COMPLETED');
      const page = await store.list({ statuses: ['COMPLETED'], first: 3 });
      expect(page.tasks.map((task) => task.id)).toEqual(newestFirst(completed).slice(0, 3));
      expect(page.hasNextPage).toBe(true);

      const open = tasks.filter((task) => task.status === 'QUEUED' || task.status === 'RUNNING');
      const first = await store.list({ statuses: ['QUEUED', 'RUNNING', 'QUEUED'], first: 3 });
      expect(first.tasks.map((task) => task.id)).toEqual(newestFirst(open).slice(0, 3));
      expect(first.hasNextPage).toBe(true);
      const rest = await store.list({
        statuses: ['RUNNING', 'QUEUED'],
        first: 3,
        after: first.tasks[2].id,
      });
      expect(rest.tasks.map((task) => task.id)).toEqual(newestFirst(open).slice(3));
      expect(rest.hasNextPage).toBe(false);
    });

    it("lists only one user's tasks, with and without a status filter", async () => {
      const store = await fixtures.openStore();
      const tasks = await seed(store);
      const bobs = tasks.filter((task) => task.userId === 'bob');
      const all = await store.list({ userId: 'bob', first: 100 });
      expect(all).toEqual({ tasks: [...bobs].reverse(), hasNextPage: false });

      const failedOrQueued = bobs.filter((task) => ['FAILED', 'QUEUED'].includes(task.status));
      const filtered = await store.list({
        userId: 'bob',
        statuses: ['FAILED', 'QUEUED'],
        first: 100,
      });
      expect(filtered.tasks.map((task) => task.id)).toEqual(newestFirst(failedOrQueued));
    });

    it('answers first: 0 with no tasks and whether there are any', async () => {
      const store = await fixtures.openStore();
      expect(await store.list({ first: 0 })).toEqual({ tasks: [], hasNextPage: false });
      await seed(store);
      expect(await store.list({ first: 0 })).toEqual({ tasks: [], hasNextPage: true });
      await expect(store.list({ first: -1 })).rejects.toThrow(
        'Expected first to be an integer >= 0, got -1.',
      );
    });

    it.each([
      ['no filter', {}, 'sqlite_autoindex_task_1'],
      ['one status', { statuses: ['QUEUED'] as TaskStatus[] }, TASK_INDEXES.statusId],
      [
        'several statuses',
        { statuses: ['QUEUED', 'RUNNING'] as TaskStatus[] },
        TASK_INDEXES.statusId,
      ],
      ['a user', { userId: 'alice' }, TASK_INDEXES.userIdId],
      [
        'a user and a status',
        { userId: 'alice', statuses: ['FAILED'] as TaskStatus[] },
        TASK_INDEXES.userIdStatusId,
      ],
      [
        'a user and several statuses',
        { userId: 'alice', statuses: ['FAILED', 'COMPLETED'] as TaskStatus[] },
        TASK_INDEXES.userIdStatusId,
      ],
    ])('reads an index range for %s, never the whole table', async (_name, filter, index) => {
      const store = await fixtures.openStore();
      const after = createTaskId();
      const plans = await explainQueries(store, async () => {
        await store.list({ ...filter, first: 20 });
        await store.list({ ...filter, first: 20, after });
      });
      expect(plans).toHaveLength(2);
      for (const plan of plans) {
        expect(plan.filter((line) => FULL_SCAN.test(line))).toEqual([]);
        expect(plan.join('\n')).toContain(`INDEX ${index}`);
      }
    });
  });

  describe('lookups', () => {
    it('finds a task by user and idempotency key', async () => {
      const store = await fixtures.openStore();
      const task = makeTask({ userId: 'alice', idempotencyKey: 'order-7' });
      await Promise.all([store.insert(task), store.insert(makeTask({ userId: 'alice' }))]);
      expect(await store.findByIdempotencyKey('alice', 'order-7')).toEqual(task);
      expect(await store.findByIdempotencyKey('bob', 'order-7')).toBeNull();
      expect(await store.findByIdempotencyKey('alice', 'order-8')).toBeNull();
    });

    it('rejects a second task with the same key of the same user, alone in its batch', async () => {
      const store = await fixtures.openStore({ flushIntervalMs: 20 });
      const key = { userId: 'alice', idempotencyKey: 'order-7' };
      const results = await Promise.allSettled([
        store.insert(makeTask(key)),
        store.insert(makeTask(key)),
        store.insert(makeTask({ userId: 'bob', idempotencyKey: 'order-7' })),
        store.insert(makeTask()),
      ]);
      expect(results.map((result) => result.status)).toEqual([
        'fulfilled',
        'rejected',
        'fulfilled',
        'fulfilled',
      ]);
      const error = (results[1] as PromiseRejectedResult).reason;
      expect(error).toBeInstanceOf(BatchWriteError);
      expect(isUniqueViolation(error)).toBe(true);
      expect((error as Error).message).toMatch(
        /UNIQUE constraint failed: task.user_id, task.idempotency_key$/,
      );
    });

    it('finds tasks by status oldest first', async () => {
      const store = await fixtures.openStore();
      const tasks = await insertSeries(store, [
        { status: 'RUNNING' },
        { status: 'QUEUED' },
        { status: 'COMPLETED' },
        { status: 'RUNNING' },
      ]);
      const found = await store.findByStatuses(['QUEUED', 'RUNNING']);
      expect(found.map((task) => task.id)).toEqual([tasks[0].id, tasks[1].id, tasks[3].id]);
      expect(await store.findByStatuses([])).toEqual([]);
    });
  });

  describe('deleteFinishedBefore', () => {
    it('deletes only finished tasks older than the cutoff, never QUEUED or RUNNING ones', async () => {
      const store = await fixtures.openStore({ purgeChunkSize: 2 });
      const cutoff = new Date('2026-06-01T00:00:00Z');
      const old = new Date(cutoff.getTime() - 1);
      const tasks = await insertSeries(store, [
        { status: 'COMPLETED', finishedAt: old },
        { status: 'FAILED', finishedAt: old },
        { status: 'CANCELLED', finishedAt: old },
        { status: 'COMPLETED', finishedAt: old },
        { status: 'COMPLETED', finishedAt: cutoff },
        // finishedAt on a live task should not happen; the purge must spare it anyway.
        { status: 'QUEUED', finishedAt: old },
        { status: 'RUNNING', finishedAt: old },
        { status: 'QUEUED' },
      ]);
      expect(await store.deleteFinishedBefore(cutoff)).toBe(4);
      const left = await store.list({ first: 100 });
      expect(left.tasks.map((task) => task.id).sort()).toEqual(
        tasks
          .slice(4)
          .map((task) => task.id)
          .sort(),
      );
      expect(await store.deleteFinishedBefore(cutoff)).toBe(0);
    });

    it('stops at the limit and deletes the oldest first', async () => {
      const store = await fixtures.openStore({ purgeChunkSize: 2 });
      const base = Date.parse('2026-01-01T00:00:00Z');
      const tasks = await insertSeries(
        store,
        [5, 1, 4, 2, 3].map((minute) => ({
          status: 'COMPLETED',
          finishedAt: new Date(base + minute * 60_000),
        })),
      );
      expect(await store.deleteFinishedBefore(new Date(base + 3_600_000), 3)).toBe(3);
      const left = await store.list({ first: 100 });
      expect(left.tasks.map((task) => task.id).sort()).toEqual([tasks[0].id, tasks[2].id].sort());
    });

    it('walks the finished_at index', async () => {
      const store = await fixtures.openStore();
      const plans = await explainQueries(store, () => store.deleteFinishedBefore(new Date()));
      expect(plans).toHaveLength(1);
      expect(plans[0].filter((line) => FULL_SCAN.test(line))).toEqual([]);
      expect(plans[0].join('\n')).toContain(`INDEX ${TASK_INDEXES.finishedAt} (finished_at<?)`);
    });
  });

  describe('when another connection holds the write lock', () => {
    async function holdWriteLock() {
      const other = await fixtures.openOrm();
      const knex = other.em.getConnection().getKnex();
      // The pool has one connection, so the transaction stays on it until ROLLBACK.
      await knex.raw('BEGIN IMMEDIATE');
      let held = true;
      const release = async () => {
        if (!held) return;
        held = false;
        await knex.raw('ROLLBACK');
      };
      fixtures.onCleanup(release);
      return { knex, release };
    }

    it('retries a busy commit and succeeds once the lock is released', async () => {
      const store = await fixtures.openStore({
        busyTimeoutMs: 50,
        retryDelayMs: 20,
        maxCommitAttempts: 10,
      });
      const lock = await holdWriteLock();
      const task = makeTask();
      const inserted = store.insert(task);
      await sleep(150);
      await lock.release();
      await inserted;
      expect(store.writer.stats.failedCommits).toBeGreaterThanOrEqual(1);
      expect(await store.get(task.id)).toEqual(task);
    });

    it('rejects after the last retry, and the next batch commits on a clean connection', async () => {
      const store = await fixtures.openStore({
        busyTimeoutMs: 50,
        retryDelayMs: 10,
        maxCommitAttempts: 2,
      });
      const lock = await holdWriteLock();
      const lost = makeTask();
      const error = await store.insert(lost).catch((reason: unknown) => reason);
      expect(error).toBeInstanceOf(BatchWriteError);
      expect((error as BatchWriteError).code).toBe(BatchWriteErrorCode.COMMIT_FAILED);
      expect(isBusyError(error)).toBe(true);
      expect(store.writer.stats).toMatchObject({ failedCommits: 2, rejectedWrites: 1 });
      await lock.release();

      // If the failed batch had left its transaction open, the other connection could not lock.
      await lock.knex.raw('BEGIN IMMEDIATE');
      await lock.knex.raw('ROLLBACK');
      const task = makeTask();
      await store.insert(task);
      expect(await store.get(task.id)).toEqual(task);
      expect(await store.get(lost.id)).toBeNull();
    });
  });

  it('rolls back a transaction someone left open on its connection before the next batch', async () => {
    const store = await fixtures.openStore();
    const knex = store.orm.em.getConnection().getKnex();
    await knex.raw('BEGIN');
    await knex.raw(`update task set status = 'X'`);
    const task = makeTask();
    await store.insert(task);
    expect(await store.get(task.id)).toEqual(task);
  });

  describe('close', () => {
    it('flushes pending writes, is idempotent and refuses writes afterwards', async () => {
      const store = await fixtures.openStore({ flushIntervalMs: 10_000 });
      const task = makeTask();
      const inserted = store.insert(task);
      const closing = store.close();
      expect(store.close()).toBe(closing);
      await closing;
      await inserted;
      await expect(store.insert(makeTask())).rejects.toMatchObject({
        code: BatchWriteErrorCode.CLOSED,
      });

      const reopened = await fixtures.openStore();
      expect(await reopened.get(task.id)).toEqual(task);
    });

    it('closes through await using', async () => {
      const store = await fixtures.openStore();
      await store[Symbol.asyncDispose]();
      expect(store.writer.closed).toBe(true);
    });
  });
});
