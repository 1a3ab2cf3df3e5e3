import pino from 'pino';
import { AnswerCache } from '../../src/services/cache/answer-cache';
import { TaskStore } from '../../src/db/task-store';
import { disposeTestServers, makeTempDir, onDispose } from '../helpers/test-server';
import { join } from 'node:path';

const logger = pino({ level: 'silent' });

async function openStore(dir?: string): Promise<TaskStore> {
  const folder = dir ?? (await makeTempDir());
  const store = await TaskStore.open({
    databaseUrl: `file:${join(folder, 'cache.db')}`,
    busyTimeoutMs: 1000,
    flushIntervalMs: 0,
    flushMaxRecords: 100,
    logger,
  });
  onDispose(() => store.close());
  return store;
}

function entry(key: string, value: string, ttlSeconds = 60, model = 'm') {
  return { key, provider: 'openai', model, value, usage: null, ttlSeconds };
}

afterEach(disposeTestServers);

describe('AnswerCache', () => {
  it('serves from memory, then from the database after a restart', async () => {
    const dir = await makeTempDir();
    const firstStore = await openStore(dir);
    const first = new AnswerCache({
      store: firstStore.cache,
      maxEntries: 10,
      maxBytes: 1e6,
      logger,
    });
    first.set(entry('k', 'answer'));
    expect(await first.get('k')).toEqual({ tier: 'memory', value: 'answer', usage: null });
    await firstStore.close();

    const second = new AnswerCache({
      store: (await openStore(dir)).cache,
      maxEntries: 10,
      maxBytes: 1e6,
      logger,
    });
    expect(await second.get('k')).toEqual({ tier: 'database', value: 'answer', usage: null });
    expect((await second.get('k'))?.tier).toBe('memory');
    expect(second.stats()).toMatchObject({ databaseHits: 1, memoryHits: 1, memoryMisses: 1 });
  });

  it('never returns an expired entry from either tier', async () => {
    let now = 1_000_000;
    const store = await openStore();
    const cache = new AnswerCache({
      store: store.cache,
      maxEntries: 10,
      maxBytes: 1e6,
      logger,
      now: () => now,
    });
    cache.set(entry('k', 'answer', 10));
    await store.flush();
    now += 10_001;

    expect(await cache.get('k')).toBeUndefined();
    const fresh = new AnswerCache({
      store: store.cache,
      maxEntries: 10,
      maxBytes: 1e6,
      logger,
      now: () => now,
    });
    expect(await fresh.get('k')).toBeUndefined();
    await cache.sweep();
    expect(await store.cache.size()).toEqual({ entries: 0, bytes: 0 });
    expect(cache.stats().expirations).toBeGreaterThanOrEqual(1);
  });

  it('evicts the least recently used entry past maxEntries', async () => {
    const store = await openStore();
    const cache = new AnswerCache({ store: store.cache, maxEntries: 2, maxBytes: 1e6, logger });
    cache.set(entry('a', 'A'));
    cache.set(entry('b', 'B'));
    await cache.get('a');
    cache.set(entry('c', 'C'));
    await store.flush();

    expect(cache.stats()).toMatchObject({ memoryEntries: 2, evictions: 1 });
    expect((await cache.get('a'))?.tier).toBe('memory');
    expect((await cache.get('b'))?.tier).toBe('database');
  });

  it('keeps the memory tier within maxBytes', async () => {
    const store = await openStore();
    const cache = new AnswerCache({ store: store.cache, maxEntries: 100, maxBytes: 10, logger });
    cache.set(entry('a', 'ééé'));
    cache.set(entry('b', 'xxxx'));
    cache.set(entry('c', 'yyyy'));

    expect(cache.stats().memoryBytes).toBeLessThanOrEqual(10);
    expect(cache.stats().evictions).toBe(1);
  });

  it('purges by model and age in both tiers', async () => {
    let now = 1_000_000;
    const store = await openStore();
    const cache = new AnswerCache({
      store: store.cache,
      maxEntries: 10,
      maxBytes: 1e6,
      logger,
      now: () => now,
    });
    cache.set(entry('old-a', 'x', 600, 'a'));
    now += 1000;
    cache.set(entry('new-a', 'y', 600, 'a'));
    cache.set(entry('b', 'z', 600, 'b'));
    await store.flush();

    expect(await cache.purge({ model: 'a', olderThan: new Date(now) })).toBe(1);
    expect(await cache.get('old-a')).toBeUndefined();
    expect(await cache.get('new-a')).toBeDefined();
    expect(await cache.purge({})).toBe(2);
    expect(await cache.get('b')).toBeUndefined();
  });

  it('saves hit counts on sweep', async () => {
    const store = await openStore();
    const cache = new AnswerCache({ store: store.cache, maxEntries: 10, maxBytes: 1e6, logger });
    cache.set(entry('k', 'v'));
    await cache.get('k');
    await cache.get('k');
    await cache.sweep();

    expect((await store.cache.get('k', Date.now()))?.hits).toBe(2);
  });
});
