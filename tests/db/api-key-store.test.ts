import { createHash } from 'node:crypto';
import type { Knex } from '@mikro-orm/sqlite';
import { API_KEY_TOUCH_INTERVAL_MS } from '../../src/db/api-key-store';
import type { ApiKeyRecord } from '../../src/db/api-key-store';
import { API_KEY_TABLE } from '../../src/db/entities/api-key.entity';
import type { TaskStore } from '../../src/db/task-store';
import { createTaskId } from '../../src/services/ids';
import { useDatabaseFixtures } from './db-fixtures';

const fixtures = useDatabaseFixtures();

const KEY_FORMAT = /^tw_[A-Za-z0-9_-]{43}$/;
const RECORD_FIELDS = [
  'createdAt',
  'id',
  'label',
  'lastUsedAt',
  'prefix',
  'revokedAt',
  'role',
  'userId',
];

function knexOf(store: TaskStore): Knex {
  return store.orm.em.getConnection().getKnex();
}

async function readRawRow(store: TaskStore, id: string): Promise<Record<string, unknown>> {
  const row = (await knexOf(store)(API_KEY_TABLE).where('id', id).first()) as
    Record<string, unknown> | undefined;
  if (row === undefined) throw new Error(`No api_key row has id ${id}.`);
  return row;
}

/** Flips one character in the random part, keeping the key's format valid. */
function alterKey(key: string): string {
  const index = key.length - 5;
  const replacement = key[index] === 'A' ? 'B' : 'A';
  return key.slice(0, index) + replacement + key.slice(index + 1);
}

describe('ApiKeyStore', () => {
  describe('lifecycle', () => {
    it('creates, verifies, lists and revokes a key', async () => {
      const store = await fixtures.openStore();
      const before = Date.now();
      const { key, record } = await store.apiKeys.create({
        userId: 'alice',
        role: 'admin',
        label: 'laptop',
      });

      expect(key).toMatch(KEY_FORMAT);
      expect(record.prefix).toBe(key.slice(0, 12));
      expect(record).toMatchObject({
        userId: 'alice',
        role: 'admin',
        label: 'laptop',
        lastUsedAt: null,
        revokedAt: null,
      });
      expect(record.createdAt.getTime()).toBeGreaterThanOrEqual(before);
      expect(await store.apiKeys.verify(key)).toEqual(record);
      expect(await store.apiKeys.list()).toEqual([record]);

      const revoked = await store.apiKeys.revoke(record.id);

      expect(revoked?.revokedAt).toBeInstanceOf(Date);
      expect(revoked).toEqual({ ...record, revokedAt: revoked?.revokedAt });
      expect(await store.apiKeys.verify(key)).toBeNull();
      expect(await store.apiKeys.list()).toEqual([revoked]);
    });

    it('keeps keys across a reopen of the database', async () => {
      const first = await fixtures.openStore();
      const { key, record } = await first.apiKeys.create({ userId: 'alice', role: 'user' });
      await first.close();

      const second = await fixtures.openStore();

      expect(await second.apiKeys.verify(key)).toEqual(record);
    });

    it('issues different keys and ids every time', async () => {
      const store = await fixtures.openStore();
      const created = await Promise.all(
        Array.from({ length: 20 }, () => store.apiKeys.create({ userId: 'alice', role: 'user' })),
      );

      expect(new Set(created.map((entry) => entry.key)).size).toBe(20);
      expect(new Set(created.map((entry) => entry.record.id)).size).toBe(20);
      expect(new Set(created.map((entry) => entry.record.prefix)).size).toBe(20);
    });
  });

  describe('storage', () => {
    it('stores the SHA-256 hash and never the key', async () => {
      const store = await fixtures.openStore();
      const { key, record } = await store.apiKeys.create({ userId: 'alice', role: 'user' });

      const row = await readRawRow(store, record.id);

      expect(row.hash).toBe(createHash('sha256').update(key).digest('hex'));
      expect(row.prefix).toBe(key.slice(0, 12));
      for (const value of Object.values(row)) {
        expect(String(value)).not.toContain(key);
        expect(String(value)).not.toContain(key.slice(12));
      }
    });

    it('stores times as epoch milliseconds', async () => {
      const store = await fixtures.openStore();
      const { record } = await store.apiKeys.create({ userId: 'alice', role: 'user' });
      await store.apiKeys.revoke(record.id);

      const row = await readRawRow(store, record.id);

      expect(row.created_at).toBe(record.createdAt.getTime());
      expect(typeof row.revoked_at).toBe('number');
      expect(row.last_used_at).toBeNull();
    });

    it('lists records without hashes or keys', async () => {
      const store = await fixtures.openStore();
      const alice = await store.apiKeys.create({ userId: 'alice', role: 'user', label: 'ci' });
      const bob = await store.apiKeys.create({ userId: 'bob', role: 'admin' });

      const records = await store.apiKeys.list();

      expect(records.map((record) => record.id)).toEqual([alice.record.id, bob.record.id]);
      for (const record of records) expect(Object.keys(record).sort()).toEqual(RECORD_FIELDS);
      const listed = JSON.stringify(records);
      for (const { key, record } of [alice, bob]) {
        const row = await readRawRow(store, record.id);
        expect(listed).not.toContain(key);
        expect(listed).not.toContain(String(row.hash));
      }
    });
  });

  describe('verify', () => {
    it('returns null for a wrong key of the right format', async () => {
      const store = await fixtures.openStore();
      const { key } = await store.apiKeys.create({ userId: 'alice', role: 'user' });

      expect(await store.apiKeys.verify(alterKey(key))).toBeNull();
      expect(await store.apiKeys.verify(`tw_${'A'.repeat(43)}`)).toBeNull();
    });

    it('returns null for malformed input without throwing', async () => {
      const store = await fixtures.openStore();
      const { key } = await store.apiKeys.create({ userId: 'alice', role: 'user' });
      const inputs: unknown[] = [
        '',
        'tw_',
        key.slice(0, -1),
        `${key}A`,
        ` ${key}`,
        `${key}\n`,
        `Bearer ${key}`,
        key.toUpperCase(),
        `xx_${key.slice(3)}`,
        `${key.slice(0, 20)}!${key.slice(21)}`,
        key + 'x'.repeat(10_000_000),
        undefined,
        null,
        42,
        { toString: () => key },
        [key],
      ];

      for (const input of inputs) {
        await expect(store.apiKeys.verify(input)).resolves.toBeNull();
      }
      expect(await store.apiKeys.verify(key)).not.toBeNull();
    });

    it('does not record the use', async () => {
      const store = await fixtures.openStore();
      const { key, record } = await store.apiKeys.create({ userId: 'alice', role: 'user' });

      await store.apiKeys.verify(key);

      expect((await readRawRow(store, record.id)).last_used_at).toBeNull();
    });
  });

  describe('revoke', () => {
    it('revokes by prefix and leaves other keys active', async () => {
      const store = await fixtures.openStore();
      const alice = await store.apiKeys.create({ userId: 'alice', role: 'user' });
      const bob = await store.apiKeys.create({ userId: 'bob', role: 'user' });

      const revoked = await store.apiKeys.revoke(alice.record.prefix);

      expect(revoked?.id).toBe(alice.record.id);
      expect(await store.apiKeys.verify(alice.key)).toBeNull();
      expect(await store.apiKeys.verify(bob.key)).toEqual(bob.record);
    });

    it('keeps the first revocation time when repeated', async () => {
      const store = await fixtures.openStore();
      const { record } = await store.apiKeys.create({ userId: 'alice', role: 'user' });
      const first = await store.apiKeys.revoke(record.id);
      await new Promise((resolve) => setTimeout(resolve, 5));

      const second = await store.apiKeys.revoke(record.prefix);

      expect(first?.revokedAt).toBeInstanceOf(Date);
      expect(second).toEqual(first);
    });

    it('returns null for unknown or malformed ids', async () => {
      const store = await fixtures.openStore();
      const { record } = await store.apiKeys.create({ userId: 'alice', role: 'user' });

      for (const input of ['', 'tw_nothing', createTaskId(), 'x'.repeat(100_000)]) {
        expect(await store.apiKeys.revoke(input)).toBeNull();
      }
      expect((await store.apiKeys.list())[0]).toEqual(record);
    });

    it('rejects a prefix shared by two keys and names both ids', async () => {
      const store = await fixtures.openStore();
      const { record } = await store.apiKeys.create({ userId: 'alice', role: 'user' });
      // A real collision needs two keys with the same 54 random prefix bits; write one by hand.
      const twinId = createTaskId();
      await knexOf(store)(API_KEY_TABLE).insert({
        ...(await readRawRow(store, record.id)),
        id: twinId,
        hash: 'f'.repeat(64),
      });

      const revoking = store.apiKeys.revoke(record.prefix);

      await expect(revoking).rejects.toMatchObject({
        code: 'BAD_USER_INPUT',
        extensions: { field: 'idOrPrefix' },
      });
      await expect(revoking).rejects.toThrow(record.id);
      await expect(revoking).rejects.toThrow(twinId);
      expect((await store.apiKeys.list()).every((entry) => entry.revokedAt === null)).toBe(true);
    });
  });

  describe('create validation', () => {
    it.each([
      ['an empty userId', { userId: '' }, 'userId'],
      ['a userId of 129 characters', { userId: 'u'.repeat(129) }, 'userId'],
      ['a userId with a line feed', { userId: 'ali\nce' }, 'userId'],
      ['a userId with an escape character', { userId: 'a\u001b[31m' }, 'userId'],
      ['a userId that is not a string', { userId: 7 }, 'userId'],
      ['an unknown role', { role: 'root' }, 'role'],
      ['a missing role', { role: undefined }, 'role'],
      ['a label of 201 characters', { label: 'l'.repeat(201) }, 'label'],
      ['a label with a NUL character', { label: 'a\u0000b' }, 'label'],
    ])('rejects %s', async (_case, override, field) => {
      const store = await fixtures.openStore();
      const input = { userId: 'alice', role: 'user', ...override } as Parameters<
        typeof store.apiKeys.create
      >[0];

      const creating = store.apiKeys.create(input);

      await expect(creating).rejects.toMatchObject({
        code: 'BAD_USER_INPUT',
        extensions: { field },
      });
      await expect(creating).rejects.toThrow(`Invalid ${field}: expected`);
      expect(await store.apiKeys.list()).toEqual([]);
    });

    it('accepts the longest values and non-ASCII text', async () => {
      const store = await fixtures.openStore();
      const longest = await store.apiKeys.create({
        userId: 'é'.repeat(128),
        role: 'user',
        label: '🔑'.repeat(200),
      });
      const spaced = await store.apiKeys.create({ userId: 'Zoë Smith', role: 'user', label: '' });

      expect(longest.record.userId).toBe('é'.repeat(128));
      expect(longest.record.label).toBe('🔑'.repeat(200));
      expect(spaced.record.label).toBeNull();
      expect(await store.apiKeys.verify(spaced.key)).toEqual(spaced.record);
    });
  });

  describe('touch', () => {
    it('writes the last use at most once per interval and key', async () => {
      const store = await fixtures.openStore();
      const alice = await store.apiKeys.create({ userId: 'alice', role: 'user' });
      const bob = await store.apiKeys.create({ userId: 'bob', role: 'user' });
      const start = Date.now();
      const lastUsed = async (record: ApiKeyRecord) =>
        (await readRawRow(store, record.id)).last_used_at;

      expect(await store.apiKeys.touch(alice.record.id, start)).toBe(true);
      expect(await store.apiKeys.touch(alice.record.id, start + 1)).toBe(false);
      expect(await store.apiKeys.touch(bob.record.id, start + 2)).toBe(true);
      expect(
        await store.apiKeys.touch(alice.record.id, start + API_KEY_TOUCH_INTERVAL_MS - 1),
      ).toBe(false);
      expect(await lastUsed(alice.record)).toBe(start);
      expect(await lastUsed(bob.record)).toBe(start + 2);

      const later = start + API_KEY_TOUCH_INTERVAL_MS;
      expect(await store.apiKeys.touch(alice.record.id, later)).toBe(true);
      expect(await lastUsed(alice.record)).toBe(later);
      expect((await store.apiKeys.verify(alice.key))?.lastUsedAt).toEqual(new Date(later));
    });

    it('sends one write for concurrent calls', async () => {
      const store = await fixtures.openStore();
      const { record } = await store.apiKeys.create({ userId: 'alice', role: 'user' });
      const updates: string[] = [];
      const onQuery = (query: { sql: string }) => {
        if (/^update/i.test(query.sql)) updates.push(query.sql);
      };
      knexOf(store).on('query', onQuery);

      try {
        const results = await Promise.all(
          Array.from({ length: 50 }, () => store.apiKeys.touch(record.id)),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
      } finally {
        knexOf(store).off('query', onQuery);
      }
      expect(updates).toHaveLength(1);
    });

    it('does not write to a revoked or unknown key', async () => {
      const store = await fixtures.openStore();
      const { record } = await store.apiKeys.create({ userId: 'alice', role: 'user' });
      await store.apiKeys.revoke(record.id);

      expect(await store.apiKeys.touch(record.id)).toBe(false);
      expect(await store.apiKeys.touch(createTaskId())).toBe(false);
      expect((await readRawRow(store, record.id)).last_used_at).toBeNull();
    });
  });
});
