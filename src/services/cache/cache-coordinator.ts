import type { Logger } from '../../logger';
import type { LiveTask, TaskEnding } from '../live-tasks';
import type { CacheMode } from '../task-input';
import type { GenerationParams, TaskRecord } from '../task-types';
import type { AnswerCache, CacheHit, CacheStats } from './answer-cache';
import type { PromptNormalization } from './cache-key';
import { computeCacheKey } from './cache-key';

/** One generation shared by every identical task submitted while it runs. */
export interface Flight {
  key: string;
  /** The task that runs the generation; null until its row is committed. */
  leader: LiveTask | null;
  /** Followers that arrived before the leader was live. */
  pending: LiveTask[];
  /** The ending of the generation, once it has ended. */
  ending: TaskEnding | null;
}

/** Options for {@link CacheCoordinator}. */
export interface CacheCoordinatorOptions {
  cache: AnswerCache;
  /** Provider name; part of every key. */
  providerName: string;
  /** `user` puts the user id in every key; `global` shares answers between users. */
  scope: 'user' | 'global';
  normalization: PromptNormalization;
  /** Seconds an answer stays cached when the request does not say. */
  defaultTtlSeconds: number;
  /** Whether answers of the demo provider are cached. */
  cacheDemoAnswers: boolean;
  logger: Logger;
}

/** Statistics of the cache and of coalescing. */
export interface CacheCoordinatorStats extends CacheStats {
  /** Tasks that shared a running generation instead of starting their own. */
  coalesced: number;
  /** Generations shared right now. */
  flights: number;
}

/** What decides a task's cache key. */
export interface CacheKeyInput {
  cache: CacheMode;
  model: string;
  system: string | null;
  prompt: string;
  params: GenerationParams;
}

const CACHEABLE_FINISH_REASONS: ReadonlySet<string> = new Set(['stop', 'length']);

/**
 * Decides what is cached and under which key, and tracks the generations that identical tasks
 * share (single-flight). Only answers that ended normally are stored: never errors, timeouts,
 * cancellations or partial streams.
 */
export class CacheCoordinator {
  private readonly flights = new Map<string, Flight>();
  private coalescedCount = 0;

  constructor(private readonly options: CacheCoordinatorOptions) {}

  /** Computes a task's cache key, or returns null when it neither reads nor writes the cache (BYPASS). */
  keyFor(input: CacheKeyInput, userId: string): string | null {
    if (input.cache === 'BYPASS') return null;
    const { providerName, scope, normalization } = this.options;
    return computeCacheKey(
      {
        provider: providerName,
        model: input.model,
        system: input.system,
        prompt: input.prompt,
        params: input.params,
        scope: scope === 'user' ? userId : null,
      },
      normalization,
    );
  }

  /** Looks an answer up in both tiers. */
  lookup(key: string): Promise<CacheHit | undefined> {
    return this.options.cache.get(key);
  }

  /** Returns the generation running for `key`, if any. */
  flight(key: string): Flight | undefined {
    return this.flights.get(key);
  }

  /** Registers a new generation for `key`; the caller becomes its leader. */
  claim(key: string): Flight {
    const flight: Flight = { key, leader: null, pending: [], ending: null };
    this.flights.set(key, flight);
    return flight;
  }

  /** Counts a task that joined a flight. */
  countCoalesced(): void {
    this.coalescedCount += 1;
  }

  /** Records how a flight ended and stops new tasks from joining it. */
  end(flight: Flight, ending: TaskEnding): void {
    flight.ending = ending;
    if (this.flights.get(flight.key) === flight) this.flights.delete(flight.key);
  }

  /** Stores a completed answer when it may be reused. */
  remember(live: LiveTask, ending: TaskEnding): void {
    const { record } = live;
    if (ending.status !== 'COMPLETED' || record.cacheKey === null || record.cached) return;
    if (!this.isCacheable(ending)) return;
    this.options.cache.set({
      key: record.cacheKey,
      provider: this.options.providerName,
      model: record.model,
      value: ending.result,
      usage: ending.usage,
      ttlSeconds: live.cacheTtlSeconds ?? this.options.defaultTtlSeconds,
    });
  }

  /** Deletes cached answers by model and age; returns how many were in the database. */
  purge(filter: { model?: string; olderThan?: Date }): Promise<number> {
    return this.options.cache.purge(filter);
  }

  /** Drops expired entries and saves hit counts. */
  sweep(): Promise<void> {
    return this.options.cache.sweep();
  }

  stats(): CacheCoordinatorStats {
    return {
      ...this.options.cache.stats(),
      coalesced: this.coalescedCount,
      flights: this.flights.size,
    };
  }

  private isCacheable(ending: Extract<TaskEnding, { status: 'COMPLETED' }>): boolean {
    if (this.options.providerName === 'demo' && !this.options.cacheDemoAnswers) return false;
    return ending.finishReason !== undefined && CACHEABLE_FINISH_REASONS.has(ending.finishReason);
  }
}

/** Splits an answer into word-sized chunks for a cache hit's token replay. */
export function splitIntoChunks(text: string): string[] {
  return text.match(/\s*\S+|\s+$/g) ?? [];
}

/** Marks a record as answered from the cache. */
export function completedFromCache(record: TaskRecord, hit: CacheHit, now: Date): TaskRecord {
  return {
    ...record,
    status: 'COMPLETED',
    cached: true,
    result: hit.value,
    usage: hit.usage,
    startedAt: now,
    finishedAt: now,
  };
}
