import { defineEntity, p } from '@mikro-orm/core';
import type { InferEntity } from '@mikro-orm/core';
import type { TokenUsage } from '../../services/task-types';

/** Name of the table that holds cached answers. */
export const CACHE_TABLE = 'cache_entry';

/** Column of each cache entry field, shared by the entity and the queries of `CacheStore`. */
export const CACHE_COLUMNS = {
  key: 'key',
  provider: 'provider',
  model: 'model',
  value: 'value',
  usage: 'usage',
  bytes: 'bytes',
  hits: 'hits',
  createdAt: 'created_at',
  expiresAt: 'expires_at',
} as const;

/** Names of the indexes on {@link CACHE_TABLE}. */
export const CACHE_INDEXES = {
  expiresAt: 'cache_entry_expires_at_index',
  modelCreatedAt: 'cache_entry_model_created_at_index',
} as const;

const c = CACHE_COLUMNS;

/**
 * The persistent tier of the answer cache: one row per canonical key (a SHA-256 in hex). Times
 * are INTEGER epoch milliseconds, as in the `task` table.
 */
export const CacheEntry = defineEntity({
  name: 'CacheEntry',
  tableName: CACHE_TABLE,
  properties: {
    key: p.text().primary().fieldName(c.key),
    provider: p.text().fieldName(c.provider),
    model: p.text().fieldName(c.model),
    value: p.text().fieldName(c.value),
    usage: p.json<TokenUsage>().columnType('text').nullable().fieldName(c.usage),
    bytes: p.integer().fieldName(c.bytes),
    hits: p.integer().fieldName(c.hits),
    createdAt: p.datetime().fieldName(c.createdAt),
    expiresAt: p.datetime().fieldName(c.expiresAt),
  },
  indexes: [
    // The expiry sweep deletes by age of expiry.
    { name: CACHE_INDEXES.expiresAt, properties: ['expiresAt'] },
    // purgeCache(model, olderThan) filters by model and creation time.
    { name: CACHE_INDEXES.modelCreatedAt, properties: ['model', 'createdAt'] },
  ],
});

/** The entity type MikroORM infers from {@link CacheEntry}. */
export type CacheEntryEntity = InferEntity<typeof CacheEntry>;
