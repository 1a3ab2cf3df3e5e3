import { defineEntity, p } from '@mikro-orm/core';
import type { InferEntity } from '@mikro-orm/core';
import type { ApiKeyRole } from '../api-key-store';

/** Name of the table that stores API keys. */
export const API_KEY_TABLE = 'api_key';

/** Column of each API key field, shared by the entity and the queries of `ApiKeyStore`. */
export const API_KEY_COLUMNS = {
  id: 'id',
  prefix: 'prefix',
  hash: 'hash',
  userId: 'user_id',
  role: 'role',
  label: 'label',
  createdAt: 'created_at',
  lastUsedAt: 'last_used_at',
  revokedAt: 'revoked_at',
} as const;

/** Names of the indexes on {@link API_KEY_TABLE}. */
export const API_KEY_INDEXES = {
  prefix: 'api_key_prefix_index',
  hash: 'api_key_hash_unique',
} as const;

const c = API_KEY_COLUMNS;

/**
 * The `api_key` table: one row per issued key. The key itself is never stored, only its SHA-256
 * digest in `hash`. `id` is a UUIDv7 in text, and times are INTEGER epoch milliseconds, as in the
 * `task` table.
 */
export const ApiKey = defineEntity({
  name: 'ApiKey',
  tableName: API_KEY_TABLE,
  properties: {
    id: p.uuid().primary().fieldName(c.id),
    // The first characters of the key, shown in listings to tell keys apart. Not a secret.
    prefix: p.text().fieldName(c.prefix),
    // Lowercase hex SHA-256 of the whole key.
    hash: p.text().fieldName(c.hash),
    userId: p.text().fieldName(c.userId),
    // Plain text without a CHECK list, so a later role needs no table rebuild in SQLite.
    role: p.text().$type<ApiKeyRole>().fieldName(c.role),
    label: p.text().nullable().fieldName(c.label),
    createdAt: p.datetime().fieldName(c.createdAt),
    lastUsedAt: p.datetime().nullable().fieldName(c.lastUsedAt),
    revokedAt: p.datetime().nullable().fieldName(c.revokedAt),
  },
  indexes: [
    // `revoke` accepts the prefix that listings show.
    { name: API_KEY_INDEXES.prefix, properties: ['prefix'] },
  ],
  uniques: [
    // Every request with a key is looked up by this column.
    { name: API_KEY_INDEXES.hash, properties: ['hash'] },
  ],
});

/** The entity type MikroORM infers from {@link ApiKey}. */
export type ApiKeyEntity = InferEntity<typeof ApiKey>;
