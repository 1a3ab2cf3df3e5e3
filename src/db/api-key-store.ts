import { createHash, randomBytes } from 'node:crypto';
import type { Knex } from '@mikro-orm/sqlite';
import { createTaskId } from '../services/ids';
import { invalidInput } from '../services/task-input';
import { API_KEY_COLUMNS, API_KEY_TABLE } from './entities/api-key.entity';

/** Roles an API key can grant. */
export const ApiKeyRole = { USER: 'user', ADMIN: 'admin' } as const;
export type ApiKeyRole = (typeof ApiKeyRole)[keyof typeof ApiKeyRole];

/** An API key as listings show it: never the key, never its hash. */
export interface ApiKeyRecord {
  /** UUIDv7; ids sort in creation order. */
  id: string;
  /** The first {@link API_KEY_PREFIX_LENGTH} characters of the key, such as `tw_AbC123xY_`. */
  prefix: string;
  userId: string;
  role: ApiKeyRole;
  label: string | null;
  createdAt: Date;
  /** Last use that {@link ApiKeyStore.touch} wrote, up to a minute behind the latest use. */
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** Input of {@link ApiKeyStore.create}. */
export interface NewApiKeyInput {
  /** Owner of the key: 1 to 128 printable characters. */
  userId: string;
  role: ApiKeyRole;
  /** Free text shown in listings, up to 200 printable characters. An empty label is stored as null. */
  label?: string | null;
}

/** A {@link NewApiKeyInput} that passed {@link validateNewApiKey}. */
export interface ValidNewApiKey {
  userId: string;
  role: ApiKeyRole;
  label: string | null;
}

/** Text at the start of every key, so that a leaked key is easy to find with grep or a scanner. */
export const API_KEY_MARKER = 'tw_';
/**
 * Characters of a key stored in clear as its prefix: the marker and 9 random characters, which
 * reveal 54 of the key's 256 random bits and leave 202 secret.
 */
export const API_KEY_PREFIX_LENGTH = 12;
/** Milliseconds within which {@link ApiKeyStore.touch} writes a key's last use only once. */
export const API_KEY_TOUCH_INTERVAL_MS = 60_000;

/** 32 random bytes in base64url are 43 characters; anything else is not a key of ours. */
const KEY_PATTERN = /^tw_[A-Za-z0-9_-]{43}$/;
const KEY_LENGTH = API_KEY_MARKER.length + 43;
const MAX_USER_ID_CHARS = 128;
const MAX_LABEL_CHARS = 200;
/** Control, format, private-use, surrogate and unassigned code points (Unicode category C). */
const NON_PRINTABLE = /\p{C}/u;
/** Upper bound on keys whose last touch is remembered; older entries go first. */
const MAX_TRACKED_KEYS = 10_000;
const ROLES: ReadonlySet<string> = new Set(Object.values(ApiKeyRole));

const c = API_KEY_COLUMNS;
/** Every column but `hash`: no query of a record reads the hash back. */
const RECORD_COLUMNS = [
  c.id,
  c.prefix,
  c.userId,
  c.role,
  c.label,
  c.createdAt,
  c.lastUsedAt,
  c.revokedAt,
];

/** An `api_key` row as the driver returns it, without the hash. */
interface ApiKeyRow {
  id: string;
  prefix: string;
  user_id: string;
  role: string;
  label: string | null;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

/**
 * Issues, verifies, lists and revokes API keys in the `api_key` table. Each key carries 256
 * random bits, and only its SHA-256 digest is stored. Key management is rare, so writes go
 * straight to the database instead of through the batch writer.
 *
 * A request handler calls {@link verify} and then {@link touch} with the record's id. `touch`
 * writes at most once a minute per key, so authentication does not add a write to every request.
 */
export class ApiKeyStore {
  /** Time of the last write of `last_used_at` per key id, oldest first. */
  private readonly lastTouched = new Map<string, number>();

  constructor(private readonly knex: () => Knex) {}

  /**
   * Issues a key and stores its digest. The returned `key` is the only copy: it cannot be read
   * back later, so show it to its owner once and never log it.
   * @throws TaskwireError BAD_USER_INPUT naming the invalid field.
   */
  async create(input: NewApiKeyInput): Promise<{ key: string; record: ApiKeyRecord }> {
    const valid = validateNewApiKey(input);
    const key = API_KEY_MARKER + randomBytes(32).toString('base64url');
    const now = Date.now();
    const row: ApiKeyRow = {
      id: createTaskId(now),
      prefix: key.slice(0, API_KEY_PREFIX_LENGTH),
      user_id: valid.userId,
      role: valid.role,
      label: valid.label,
      created_at: now,
      last_used_at: null,
      revoked_at: null,
    };
    await this.knex()(API_KEY_TABLE).insert({ ...row, [c.hash]: hashApiKey(key) });
    return { key, record: fromRow(row) };
  }

  /**
   * Returns the record of an active key, or null for an unknown, revoked or malformed one. Never
   * throws on client input: anything that is not a string of the exact key format is rejected
   * before it is hashed. Does not record the use; call {@link touch} for that.
   * @throws Error only when the database query fails.
   */
  async verify(key: unknown): Promise<ApiKeyRecord | null> {
    if (typeof key !== 'string' || key.length !== KEY_LENGTH || !KEY_PATTERN.test(key)) {
      return null;
    }
    // The index search compares SHA-256(key), not the key, with stored digests, so its time can
    // reveal at most how many leading characters a guess's digest shares with a stored one. That
    // reveals nothing about the key, and no one can choose a key whose digest comes closer, because
    // SHA-256 is preimage-resistant. A constant-time comparison would therefore protect nothing.
    const row = await this.selectRecords()
      .where(c.hash, hashApiKey(key))
      .whereNull(c.revokedAt)
      .first();
    return row === undefined ? null : fromRow(row);
  }

  /** Lists every key, revoked ones included, oldest first. The records hold no secrets. */
  async list(): Promise<ApiKeyRecord[]> {
    const rows = await this.selectRecords().orderBy(c.id, 'asc');
    return rows.map(fromRow);
  }

  /**
   * Revokes the key with this id or prefix and returns its record, or null when no key matches.
   * Revoking a revoked key changes nothing and returns the record with its first `revokedAt`.
   * @throws TaskwireError BAD_USER_INPUT when a prefix matches more than one key; the message
   *   lists their ids, so that the caller can revoke by id.
   */
  async revoke(idOrPrefix: string): Promise<ApiKeyRecord | null> {
    if (typeof idOrPrefix !== 'string' || idOrPrefix === '' || idOrPrefix.length > 64) return null;
    const matches = await this.selectRecords()
      .where(c.id, idOrPrefix)
      .orWhere(c.prefix, idOrPrefix)
      .limit(10);
    if (matches.length === 0) return null;
    if (matches.length > 1) {
      const ids = matches.map((row) => row.id).join(', ');
      invalidInput(
        'idOrPrefix',
        `${idOrPrefix} matches several keys (${ids}). Revoke one of them by id.`,
      );
    }
    const { id } = matches[0];
    // `whereNull` keeps the time of the first revocation when two revocations race.
    await this.knex()(API_KEY_TABLE)
      .where(c.id, id)
      .whereNull(c.revokedAt)
      .update({ [c.revokedAt]: Date.now() });
    const row = await this.selectRecords().where(c.id, id).first();
    return row === undefined ? null : fromRow(row);
  }

  /**
   * Records that key `id` was used at `now`, unless this store already wrote a use of it less than
   * {@link API_KEY_TOUCH_INTERVAL_MS} earlier. Each process throttles on its own.
   * A failed write is not retried before the interval ends, so a broken database is not hit
   * once per request.
   * @param now time of the use in epoch milliseconds. @default Date.now()
   * @returns whether this call wrote a row: false when throttled or when no active key has `id`.
   */
  async touch(id: string, now: number = Date.now()): Promise<boolean> {
    const last = this.lastTouched.get(id);
    if (last !== undefined && now - last < API_KEY_TOUCH_INTERVAL_MS) return false;
    this.remember(id, now);
    const changed = await this.knex()(API_KEY_TABLE)
      .where(c.id, id)
      .whereNull(c.revokedAt)
      .update({ [c.lastUsedAt]: now });
    return changed > 0;
  }

  /** Stores the touch time last in the map and drops entries that no longer throttle anything. */
  private remember(id: string, now: number): void {
    this.lastTouched.delete(id);
    this.lastTouched.set(id, now);
    for (const [oldId, time] of this.lastTouched) {
      const expired = now - time >= API_KEY_TOUCH_INTERVAL_MS;
      if (!expired && this.lastTouched.size <= MAX_TRACKED_KEYS) break;
      this.lastTouched.delete(oldId);
    }
  }

  private selectRecords(): Knex.QueryBuilder<ApiKeyRow, ApiKeyRow[]> {
    return this.knex()<ApiKeyRow>(API_KEY_TABLE).select(RECORD_COLUMNS);
  }
}

/**
 * Checks the input of {@link ApiKeyStore.create} and returns it with the label normalized.
 * @throws TaskwireError BAD_USER_INPUT naming the invalid field.
 */
export function validateNewApiKey(input: NewApiKeyInput): ValidNewApiKey {
  const { userId, role, label } = input;
  if (!isPrintable(userId, 1, MAX_USER_ID_CHARS)) {
    invalidInput(
      'userId',
      `expected 1 to ${MAX_USER_ID_CHARS} printable characters, got ${quoteForMessage(userId)}.`,
    );
  }
  if (typeof role !== 'string' || !ROLES.has(role)) {
    invalidInput('role', `expected 'user' or 'admin', got ${quoteForMessage(role)}.`);
  }
  if (label !== undefined && label !== null && !isPrintable(label, 0, MAX_LABEL_CHARS)) {
    invalidInput(
      'label',
      `expected at most ${MAX_LABEL_CHARS} printable characters, got ${quoteForMessage(label)}.`,
    );
  }
  return { userId, role, label: label === undefined || label === '' ? null : label };
}

/** Returns the lowercase hex SHA-256 digest under which a key is stored. */
export function hashApiKey(key: string): string {
  // A fast hash is enough: a key has 256 random bits, so no guessing attack gains from a slow hash
  // such as bcrypt, which exists to protect low-entropy passwords.
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Returns whether `value` is a string of `min` to `max` code points, none in category C. */
function isPrintable(value: unknown, min: number, max: number): value is string {
  if (typeof value !== 'string' || value.length > max * 2) return false;
  const length = [...value].length;
  return length >= min && length <= max && !NON_PRINTABLE.test(value);
}

/** Quotes a rejected value for an error message, cut to 40 characters. */
function quoteForMessage(value: unknown): string {
  if (typeof value !== 'string') return typeof value;
  if (value.length <= 40) return JSON.stringify(value);
  return `${JSON.stringify(`${value.slice(0, 40)}…`)} (${[...value].length} characters)`;
}

function fromRow(row: ApiKeyRow): ApiKeyRecord {
  return {
    id: row.id,
    prefix: row.prefix,
    userId: row.user_id,
    role: parseRole(row),
    label: row.label,
    createdAt: new Date(row.created_at),
    lastUsedAt: row.last_used_at === null ? null : new Date(row.last_used_at),
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  };
}

function parseRole(row: ApiKeyRow): ApiKeyRole {
  if (!ROLES.has(row.role)) {
    throw new Error(
      `API key ${row.id} has unknown role ${JSON.stringify(row.role)} in the database.`,
    );
  }
  return row.role as ApiKeyRole;
}
