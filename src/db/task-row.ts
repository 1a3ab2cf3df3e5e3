import type {
  GenerationParams,
  TaskErrorInfo,
  TaskRecord,
  TokenUsage,
} from '../services/task-types';
import { TaskStatus } from '../services/task-types';
import { TASK_COLUMNS } from './entities/task.entity';

/** A value as SQLite stores it. */
export type SqlValue = string | number | null;

/** Column values keyed by column name, ready for an INSERT or UPDATE. */
export type TaskRowValues = Record<string, SqlValue>;

/** A `task` row as the driver returns it. */
export interface TaskRow {
  id: string;
  user_id: string;
  status: string;
  priority: number;
  prompt: string;
  system: string | null;
  model: string;
  params: string;
  result: string | null;
  error: string | null;
  usage: string | null;
  cache_key: string | null;
  cached: number;
  coalesced: number;
  attempts: number;
  idempotency_key: string | null;
  last_seq: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
}

type Encoders = { [K in keyof TaskRecord]: (value: TaskRecord[K], field: K) => SqlValue };

const same = (value: string | number | null): SqlValue => value;
const json = (value: object | null): SqlValue => (value === null ? null : JSON.stringify(value));
const flag = (value: boolean): SqlValue => (value ? 1 : 0);
const time = (value: Date | null, field: string): SqlValue => {
  if (value === null) return null;
  const millis = value instanceof Date ? value.getTime() : Number.NaN;
  if (Number.isNaN(millis)) {
    throw new TypeError(`Expected ${field} to be a valid Date, got ${String(value)}.`);
  }
  return millis;
};

/** How each field becomes a column value; the mapped type makes a new TaskRecord field a compile error here. */
const ENCODERS: Encoders = {
  id: same,
  userId: same,
  status: same,
  priority: same,
  prompt: same,
  system: same,
  model: same,
  params: json,
  result: same,
  error: json,
  usage: json,
  cacheKey: same,
  cached: flag,
  coalesced: flag,
  attempts: same,
  idempotencyKey: same,
  lastSeq: same,
  createdAt: time,
  startedAt: time,
  finishedAt: time,
};

function encodeField<K extends keyof TaskRecord>(field: K, value: TaskRecord[K]): SqlValue {
  return ENCODERS[field](value, field);
}

/**
 * Column values for the fields `patch` defines (fields set to `undefined` are left out).
 * @throws TypeError for an invalid Date.
 */
export function toTaskRowValues(patch: Partial<TaskRecord>): TaskRowValues {
  const values: TaskRowValues = {};
  for (const field of Object.keys(ENCODERS) as (keyof TaskRecord)[]) {
    const value = patch[field];
    if (value !== undefined) values[TASK_COLUMNS[field]] = encodeField(field, value);
  }
  return values;
}

/** Rebuilds the TaskRecord a row was written from. */
export function fromTaskRow(row: TaskRow): TaskRecord {
  return {
    id: row.id,
    userId: row.user_id,
    status: parseStatus(row),
    priority: row.priority,
    prompt: row.prompt,
    system: row.system,
    model: row.model,
    params: JSON.parse(row.params) as GenerationParams,
    result: row.result,
    error: parseJson<TaskErrorInfo>(row.error),
    usage: parseJson<TokenUsage>(row.usage),
    cacheKey: row.cache_key,
    cached: row.cached === 1,
    coalesced: row.coalesced === 1,
    attempts: row.attempts,
    idempotencyKey: row.idempotency_key,
    lastSeq: row.last_seq,
    createdAt: new Date(row.created_at),
    startedAt: parseTime(row.started_at),
    finishedAt: parseTime(row.finished_at),
  };
}

const STATUSES: ReadonlySet<string> = new Set(Object.values(TaskStatus));

function parseStatus(row: TaskRow): TaskStatus {
  if (!STATUSES.has(row.status)) {
    throw new Error(
      `Task ${row.id} has unknown status ${JSON.stringify(row.status)} in the database.`,
    );
  }
  return row.status as TaskStatus;
}

function parseJson<T>(text: string | null): T | null {
  return text === null ? null : (JSON.parse(text) as T);
}

function parseTime(millis: number | null): Date | null {
  return millis === null ? null : new Date(millis);
}
