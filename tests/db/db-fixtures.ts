import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Logger } from '../../src/logger';
import { createOrm } from '../../src/db/orm';
import type { CreateOrmOptions } from '../../src/db/orm';
import { TaskStore } from '../../src/db/task-store';
import type { TaskStoreOptions } from '../../src/db/task-store';
import { createTaskId } from '../../src/services/ids';
import type { TaskRecord } from '../../src/services/task-types';

/** A logger that drops everything. */
export const silentLogger: Logger = pino({ level: 'silent' });

/** A logger that keeps each line as a parsed object. */
export function createRecordingLogger(level = 'debug'): {
  logger: Logger;
  lines: Record<string, unknown>[];
} {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

/**
 * A temp directory per test and a registry of everything a test opens: `afterEach` closes them
 * (newest first, every one even if one fails) and removes the directory.
 */
export function useDatabaseFixtures(): {
  dir: () => string;
  databaseUrl: () => string;
  openStore: (options?: Partial<TaskStoreOptions>) => Promise<TaskStore>;
  openOrm: (options?: Partial<CreateOrmOptions>) => ReturnType<typeof createOrm>;
  onCleanup: (close: () => Promise<unknown>) => void;
} {
  let dir: string | undefined;
  let cleanups: (() => Promise<unknown>)[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'taskwire-db-'));
  });

  afterEach(async () => {
    const pending = cleanups.reverse();
    cleanups = [];
    const results = await Promise.allSettled(pending.map((close) => close()));
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  });

  const currentDir = (): string => {
    if (dir === undefined) throw new Error('The temp directory exists only inside a test.');
    return dir;
  };
  const databaseUrl = (): string => `file:${join(currentDir(), 'taskwire.db')}`;
  const onCleanup = (close: () => Promise<unknown>): void => {
    cleanups.push(close);
  };

  return {
    dir: currentDir,
    databaseUrl,
    onCleanup,
    async openStore(options = {}) {
      const store = await TaskStore.open({
        databaseUrl: databaseUrl(),
        busyTimeoutMs: 5000,
        flushIntervalMs: 2,
        flushMaxRecords: 500,
        logger: silentLogger,
        ...options,
      });
      onCleanup(() => store.close());
      return store;
    },
    async openOrm(options = {}) {
      const orm = await createOrm({
        databaseUrl: databaseUrl(),
        busyTimeoutMs: 5000,
        logger: silentLogger,
        ...options,
      });
      onCleanup(() => orm.close(true));
      return orm;
    },
  };
}

/** A complete QUEUED task; `overrides` replace fields. */
export function makeTask(overrides: Partial<TaskRecord> = {}): TaskRecord {
  return {
    id: createTaskId(),
    userId: 'user-1',
    status: 'QUEUED',
    priority: 0,
    prompt: 'Say hello',
    system: null,
    model: 'demo',
    params: {},
    result: null,
    error: null,
    usage: null,
    cacheKey: null,
    cached: false,
    coalesced: false,
    attempts: 0,
    idempotencyKey: null,
    lastSeq: 0,
    createdAt: new Date(),
    startedAt: null,
    finishedAt: null,
    ...overrides,
  };
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
