import { rm } from 'node:fs/promises';
import pino from 'pino';
import { TaskStore } from '../../src/db/task-store';
import { TASK_TABLE } from '../../src/db/entities/task.entity';
import { toTaskRowValues } from '../../src/db/task-row';
import { createTaskId } from '../../src/services/ids';
import type { TaskRecord } from '../../src/services/task-types';
import type { BenchSettings, Figure } from '../lib/report';
import { atLeast, figure } from '../lib/report';
import { makeTempDir } from '../lib/servers';

const SCENARIO = '6 Writes';
/** Rows per INSERT of the batched baseline: 19 bound values a row stays below SQLite's 32,766. */
const BATCH_ROWS = 500;

/** A finished task row, as the benchmark stores them. */
export function makeRow(index: number, createdAt = new Date()): TaskRecord {
  return {
    id: createTaskId(),
    userId: 'local',
    status: 'COMPLETED',
    priority: 0,
    prompt: `Benchmark prompt number ${index}`,
    system: null,
    model: 'demo',
    params: {},
    result: 'Demo reply: this text stands in for a model answer of a few words.',
    error: null,
    usage: null,
    cacheKey: null,
    cached: false,
    coalesced: false,
    attempts: 1,
    idempotencyKey: null,
    lastSeq: 20,
    createdAt,
    startedAt: createdAt,
    finishedAt: createdAt,
  };
}

/** Opens a TaskStore on a new file with the server's default writer settings. */
export function openBenchStore(dir: string): Promise<TaskStore> {
  return TaskStore.open({
    databaseUrl: `file:${dir}/taskwire.db`,
    busyTimeoutMs: 5000,
    flushIntervalMs: 2,
    flushMaxRecords: 500,
    logger: pino({ level: 'silent' }),
  });
}

async function withStore<T>(run: (store: TaskStore) => Promise<T>): Promise<T> {
  const dir = await makeTempDir();
  const store = await openBenchStore(dir);
  try {
    return await run(store);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Rows per second of `rows` concurrent `TaskStore.insert` calls through the group-commit writer. */
function groupCommitRate(rows: number): Promise<number> {
  return withStore(async (store) => {
    const started = performance.now();
    await Promise.all(Array.from({ length: rows }, (_, i) => store.insert(makeRow(i))));
    return (rows / (performance.now() - started)) * 1000;
  });
}

/** Rows per second with one transaction per row, one after the other. */
function rowByRowRate(rows: number): Promise<number> {
  return withStore(async (store) => {
    const knex = store.orm.em.getConnection().getKnex();
    const started = performance.now();
    for (let i = 0; i < rows; i += 1) {
      const values = toTaskRowValues(makeRow(i));
      await knex.transaction((trx) => trx(TASK_TABLE).insert(values));
    }
    return (rows / (performance.now() - started)) * 1000;
  });
}

/** Rows per second of knex multi-row INSERTs of 500 rows in one transaction. */
function batchedRate(rows: number): Promise<number> {
  return withStore(async (store) => {
    const knex = store.orm.em.getConnection().getKnex();
    const started = performance.now();
    const values = Array.from({ length: rows }, (_, i) => toTaskRowValues(makeRow(i)));
    await knex.transaction(async (trx) => {
      for (let start = 0; start < rows; start += BATCH_ROWS) {
        await trx(TASK_TABLE).insert(values.slice(start, start + BATCH_ROWS));
      }
    });
    return (rows / (performance.now() - started)) * 1000;
  });
}

/**
 * Durable inserts per second through the group-commit writer, against one transaction per row and
 * against knex batched inserts of the same rows (both on the same kind of TaskStore connection).
 */
export async function runWrites(settings: BenchSettings): Promise<Figure[]> {
  const rows = settings.writeRows;
  const group = await groupCommitRate(rows);
  const single = await rowByRowRate(Math.min(rows, 2000));
  const batched = await batchedRate(rows);
  const note = `${rows} rows; row-by-row measured on ${Math.min(rows, 2000)}`;
  return [
    figure({
      scenario: SCENARIO,
      name: 'group-commit inserts/s vs one transaction per row',
      value: group,
      unit: 'rows/s',
      baseline: 'one transaction per row',
      baselineValue: single,
      note,
    }),
    figure({
      scenario: SCENARIO,
      name: 'group-commit inserts/s vs batched insert',
      value: group,
      unit: 'rows/s',
      baseline: 'knex INSERT of 500 rows, 1 transaction',
      baselineValue: batched,
      target: atLeast(group / batched, 0.8, '≥ 0.8×'),
    }),
  ];
}
