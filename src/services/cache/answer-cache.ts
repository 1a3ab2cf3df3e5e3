import { LRUCache } from 'lru-cache';
import type { CacheRecord, CacheStore } from '../../db/cache-store';
import type { Logger } from '../../logger';
import type { TokenUsage } from '../task-types';

/** Where a cache hit came from. */
export type CacheTier = 'memory' | 'database';

/** A cached answer found for a key. */
export interface CacheHit {
  tier: CacheTier;
  value: string;
  usage: TokenUsage | null;
}

/** An answer to store. */
export interface CacheEntryInput {
  key: string;
  provider: string;
  model: string;
  value: string;
  usage: TokenUsage | null;
  /** Seconds the answer stays valid. */
  ttlSeconds: number;
}

/** Counters since start, and the current size of each tier. */
export interface CacheStats {
  memoryHits: number;
  memoryMisses: number;
  databaseHits: number;
  databaseMisses: number;
  writes: number;
  memoryEntries: number;
  memoryBytes: number;
  /** Entries pushed out of memory to stay within the entry or byte limit. */
  evictions: number;
  /** Entries found or swept after their TTL, in either tier. */
  expirations: number;
}

/** Options for {@link AnswerCache}. */
export interface AnswerCacheOptions {
  store: CacheStore;
  /** Entries the memory tier holds. */
  maxEntries: number;
  /** UTF-8 bytes of answer text the memory tier holds. */
  maxBytes: number;
  logger: Logger;
  /** @default Date.now */
  now?: () => number;
}

interface MemoryEntry {
  model: string;
  createdAt: number;
  value: string;
  usage: TokenUsage | null;
  bytes: number;
  expiresAt: number;
}

/**
 * A two-tier answer cache: a bounded LRU in memory in front of the `cache_entry` table. A memory
 * miss that the database answers is copied into memory. Both tiers honour each entry's expiry:
 * an expired entry is never returned.
 */
export class AnswerCache {
  private readonly memory: LRUCache<string, MemoryEntry>;
  private readonly store: CacheStore;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly pendingHits = new Map<string, number>();
  private readonly counters = {
    memoryHits: 0,
    memoryMisses: 0,
    databaseHits: 0,
    databaseMisses: 0,
    writes: 0,
    evictions: 0,
    expirations: 0,
  };

  constructor(options: AnswerCacheOptions) {
    this.store = options.store;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
    this.memory = new LRUCache<string, MemoryEntry>({
      max: options.maxEntries,
      maxSize: options.maxBytes,
      sizeCalculation: (entry) => Math.max(1, entry.bytes),
      dispose: (_entry, _key, reason) => {
        if (reason === 'evict') this.counters.evictions += 1;
        if (reason === 'expire') this.counters.expirations += 1;
      },
      perf: { now: () => this.now() },
    });
  }

  /** Looks a key up in memory, then in the database; returns undefined on a miss. */
  async get(key: string): Promise<CacheHit | undefined> {
    const now = this.now();
    const inMemory = this.memory.get(key);
    if (inMemory) {
      this.counters.memoryHits += 1;
      this.countHit(key);
      return { tier: 'memory', value: inMemory.value, usage: inMemory.usage };
    }
    this.counters.memoryMisses += 1;
    const stored = await this.store.get(key, now);
    if (!stored) {
      this.counters.databaseMisses += 1;
      return undefined;
    }
    this.counters.databaseHits += 1;
    this.countHit(key);
    this.remember(key, {
      model: stored.model,
      createdAt: stored.createdAt.getTime(),
      value: stored.value,
      usage: stored.usage,
      bytes: stored.bytes,
      expiresAt: stored.expiresAt.getTime(),
    });
    return { tier: 'database', value: stored.value, usage: stored.usage };
  }

  /** Stores an answer in both tiers; the database write is committed in the background. */
  set(input: CacheEntryInput): void {
    const now = this.now();
    const expiresAt = now + input.ttlSeconds * 1000;
    const bytes = Buffer.byteLength(input.value, 'utf8');
    this.remember(input.key, {
      model: input.model,
      createdAt: now,
      value: input.value,
      usage: input.usage,
      bytes,
      expiresAt,
    });
    this.counters.writes += 1;
    const record: CacheRecord = {
      key: input.key,
      provider: input.provider,
      model: input.model,
      value: input.value,
      usage: input.usage,
      bytes,
      hits: 0,
      createdAt: new Date(now),
      expiresAt: new Date(expiresAt),
    };
    this.store.put(record).catch((error: unknown) => {
      this.logger.error({ err: error, cacheKey: input.key }, 'Failed to save a cache entry');
    });
  }

  /** Deletes entries by model and age from both tiers; returns how many database rows went. */
  async purge(filter: { model?: string; olderThan?: Date }): Promise<number> {
    const keys = await this.store.purge(filter);
    for (const key of keys) this.memory.delete(key);
    const before = filter.olderThan?.getTime() ?? Number.POSITIVE_INFINITY;
    for (const [key, entry] of this.memory.entries()) {
      const modelMatches = filter.model === undefined || entry.model === filter.model;
      if (modelMatches && entry.createdAt < before) this.memory.delete(key);
    }
    return keys.length;
  }

  /** Drops expired entries from both tiers and saves pending hit counts. */
  async sweep(): Promise<void> {
    this.memory.purgeStale();
    this.counters.expirations += await this.store.deleteExpired(this.now());
    const counts = new Map(this.pendingHits);
    this.pendingHits.clear();
    await this.store.addHits(counts);
  }

  /** Counters since start and the memory tier's size. */
  stats(): CacheStats {
    return {
      ...this.counters,
      memoryEntries: this.memory.size,
      memoryBytes: this.memory.calculatedSize,
    };
  }

  private remember(key: string, entry: MemoryEntry): void {
    const ttl = entry.expiresAt - this.now();
    if (ttl > 0) this.memory.set(key, entry, { ttl });
  }

  private countHit(key: string): void {
    this.pendingHits.set(key, (this.pendingHits.get(key) ?? 0) + 1);
  }
}
