import type { Knex } from '@mikro-orm/sqlite';
import type { TokenUsage } from '../services/task-types';
import { CACHE_COLUMNS, CACHE_INDEXES, CACHE_TABLE } from './entities/cache-entry.entity';
import { identifier, insertSql, literal } from './sql-text';

/** A cached answer as the services see it. */
export interface CacheRecord {
  key: string;
  provider: string;
  model: string;
  value: string;
  usage: TokenUsage | null;
  /** UTF-8 size of `value`. */
  bytes: number;
  hits: number;
  createdAt: Date;
  expiresAt: Date;
}

/** A `cache_entry` row as the driver returns it. */
interface CacheRow {
  key: string;
  provider: string;
  model: string;
  value: string;
  usage: string | null;
  bytes: number;
  hits: number;
  created_at: number;
  expires_at: number;
}

/** A write to the cache table, committed by the shared batch writer. */
export type CacheWrite =
  | { kind: 'cache-put'; record: CacheRecord }
  | { kind: 'cache-hits'; counts: ReadonlyMap<string, number> };

const c = CACHE_COLUMNS;

/** Rows one DELETE of the expiry sweep removes before other writes get a turn. */
const SWEEP_CHUNK_ROWS = 500;

/**
 * The persistent tier of the answer cache. Reads are indexed queries; writes go through the
 * database's shared group-commit writer, like every other write.
 */
export class CacheStore {
  constructor(
    private readonly knex: () => Knex,
    private readonly write: (op: CacheWrite) => Promise<void>,
  ) {}

  /** Returns the entry for `key` unless it is missing or expired at `now`. */
  async get(key: string, now: number): Promise<CacheRecord | undefined> {
    const row = await this.knex()<CacheRow>(CACHE_TABLE)
      .where(c.key, key)
      .andWhere(c.expiresAt, '>', now)
      .first();
    return row ? fromRow(row) : undefined;
  }

  /** Stores or replaces an entry; resolves when it is committed. */
  put(record: CacheRecord): Promise<void> {
    return this.write({ kind: 'cache-put', record });
  }

  /** Adds hit counts to entries; resolves when committed. */
  addHits(counts: ReadonlyMap<string, number>): Promise<void> {
    if (counts.size === 0) return Promise.resolve();
    return this.write({ kind: 'cache-hits', counts });
  }

  /** Deletes entries that expired before `now`, in short chunks; returns how many. */
  async deleteExpired(now: number): Promise<number> {
    let deleted = 0;
    for (;;) {
      const knex = this.knex();
      const oldest = knex
        .select(c.key)
        .from(knex.raw('?? indexed by ??', [CACHE_TABLE, CACHE_INDEXES.expiresAt]))
        .where(c.expiresAt, '<=', now)
        .limit(SWEEP_CHUNK_ROWS);
      const count = await knex<CacheRow, number>(CACHE_TABLE).whereIn(c.key, oldest).delete();
      deleted += count;
      if (count < SWEEP_CHUNK_ROWS) return deleted;
    }
  }

  /**
   * Deletes the entries of one model (every model when absent) created before `olderThan` (any
   * time when absent); returns their keys so the memory tier can drop them too.
   */
  async purge(filter: { model?: string; olderThan?: Date }): Promise<string[]> {
    const knex = this.knex();
    const query = knex<CacheRow>(CACHE_TABLE);
    if (filter.model !== undefined) query.where(c.model, filter.model);
    if (filter.olderThan !== undefined) query.where(c.createdAt, '<', filter.olderThan.getTime());
    const rows: Array<{ key: string }> = await query.clone().select(c.key);
    await query.delete();
    return rows.map((row) => row.key);
  }

  /** Entries and bytes in the table. */
  async size(): Promise<{ entries: number; bytes: number }> {
    const row = (await this.knex()(CACHE_TABLE)
      .count({ entries: '*' })
      .sum({ bytes: c.bytes })
      .first()) as { entries: number; bytes: number | null } | undefined;
    return { entries: Number(row?.entries ?? 0), bytes: Number(row?.bytes ?? 0) };
  }
}

/** Builds the statements of one cache write, for the writer's script (see `runWriteScript`). */
export function cacheWriteStatements(op: CacheWrite): string[] {
  if (op.kind === 'cache-put') {
    const row = toRow(op.record);
    const columns = Object.keys(row) as (keyof CacheRow)[];
    const updates = columns
      .filter((column) => column !== c.key)
      .map((column) => `${identifier(column)} = excluded.${identifier(column)}`);
    return [
      insertSql(
        CACHE_TABLE,
        columns,
        [columns.map((column) => row[column])],
        `ON CONFLICT (${identifier(c.key)}) DO UPDATE SET ${updates.join(', ')}`,
      ),
    ];
  }
  return [...op.counts].map(
    ([key, count]) =>
      `UPDATE ${identifier(CACHE_TABLE)} SET ${identifier(c.hits)} = ${identifier(c.hits)} + ${literal(count)} ` +
      `WHERE ${identifier(c.key)} = ${literal(key)}`,
  );
}

function toRow(record: CacheRecord): CacheRow {
  return {
    key: record.key,
    provider: record.provider,
    model: record.model,
    value: record.value,
    usage: record.usage === null ? null : JSON.stringify(record.usage),
    bytes: record.bytes,
    hits: record.hits,
    created_at: record.createdAt.getTime(),
    expires_at: record.expiresAt.getTime(),
  };
}

function fromRow(row: CacheRow): CacheRecord {
  return {
    key: row.key,
    provider: row.provider,
    model: row.model,
    value: row.value,
    usage: row.usage === null ? null : (JSON.parse(row.usage) as TokenUsage),
    bytes: row.bytes,
    hits: row.hits,
    createdAt: new Date(row.created_at),
    expiresAt: new Date(row.expires_at),
  };
}
