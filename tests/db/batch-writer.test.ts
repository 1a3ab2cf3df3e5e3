import { BatchWriteError, BatchWriteErrorCode, BatchWriter } from '../../src/db/batch-writer';
import type { BatchWriterOptions } from '../../src/db/batch-writer';
import { sleep } from './db-fixtures';

/** A busy error as the SQLite driver reports it. */
function busyError(): Error {
  return Object.assign(new Error('SQLITE_BUSY: database is locked'), { code: 'SQLITE_BUSY' });
}

/** A writer whose commits are recorded; `fail` decides whether an attempt throws. */
function createWriter(
  options: Partial<BatchWriterOptions<string>> & {
    fail?: (ops: readonly string[]) => Error | undefined;
  } = {},
) {
  const batches: string[][] = [];
  let running = 0;
  let overlapped = false;
  const { fail, ...rest } = options;
  const writer = new BatchWriter<string>({
    async commit(ops) {
      running += 1;
      overlapped ||= running > 1;
      try {
        await sleep(1);
        const error = fail?.(ops);
        if (error) throw error;
        batches.push([...ops]);
      } finally {
        running -= 1;
      }
    },
    flushIntervalMs: 0,
    retryDelayMs: 1,
    ...rest,
  });
  return { writer, batches, overlapped: () => overlapped };
}

describe('BatchWriter', () => {
  it('commits writes made together in one batch, in order', async () => {
    const { writer, batches } = createWriter();
    await Promise.all(['a', 'b', 'c'].map((op) => writer.write(op)));
    expect(batches).toEqual([['a', 'b', 'c']]);
    expect(writer.stats).toEqual({
      pending: 0,
      batchesCommitted: 1,
      rowsCommitted: 3,
      lastBatchSize: 3,
      failedCommits: 0,
      rejectedWrites: 0,
    });
  });

  it('waits flushIntervalMs from the first pending write before committing', async () => {
    const { writer, batches } = createWriter({ flushIntervalMs: 60 });
    const first = writer.write('a');
    await sleep(20);
    const second = writer.write('b');
    await sleep(10);
    expect(batches).toEqual([]);
    await Promise.all([first, second]);
    expect(batches).toEqual([['a', 'b']]);
  });

  it('lets a deferred write wait deferredMs, unless another write commits first', async () => {
    const { writer, batches } = createWriter({ flushIntervalMs: 0, deferredMs: 80 });
    const started = Date.now();
    await writer.write('late', { deferred: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(75);
    expect(batches).toEqual([['late']]);

    // A normal write after a deferred one is not held back, and takes the deferred one along.
    const deferred = writer.write('rides along', { deferred: true });
    await sleep(5);
    const quickStart = Date.now();
    await writer.write('urgent');
    expect(Date.now() - quickStart).toBeLessThan(60);
    await deferred;
    expect(batches[1]).toEqual(['rides along', 'urgent']);
  });

  it('commits at once when maxRecords writes are pending, in batches of at most maxRecords', async () => {
    const { writer, batches } = createWriter({ flushIntervalMs: 10_000, maxRecords: 3 });
    const started = Date.now();
    await Promise.all(['a', 'b', 'c'].map((op) => writer.write(op)));
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(batches).toEqual([['a', 'b', 'c']]);

    const writes = ['d', 'e', 'f', 'g'].map((op) => writer.write(op));
    await Promise.all(writes.slice(0, 3));
    expect(batches[1]).toEqual(['d', 'e', 'f']);
    expect(writer.stats.pending).toBe(1);
    await writer.flush();
    await writes[3];
    expect(batches[2]).toEqual(['g']);
  });

  it('runs one transaction at a time and puts writes made during a commit in the next batch', async () => {
    const { writer, batches, overlapped } = createWriter();
    const first = writer.write('a');
    await sleep(0);
    // The first batch is now committing.
    const later = ['b', 'c'].map((op) => writer.write(op));
    await Promise.all([first, ...later]);
    expect(batches).toEqual([['a'], ['b', 'c']]);
    expect(overlapped()).toBe(false);
  });

  it('retries a busy commit and resolves once it succeeds', async () => {
    let attempts = 0;
    const { writer, batches } = createWriter({
      fail: () => (++attempts < 3 ? busyError() : undefined),
    });
    await writer.write('a');
    expect(batches).toEqual([['a']]);
    expect(writer.stats.failedCommits).toBe(2);
  });

  it('rejects every write of a batch that stays busy, keeping the cause, then commits the next batch', async () => {
    let busy = true;
    const cause = busyError();
    const { writer, batches } = createWriter({
      maxAttempts: 3,
      fail: () => (busy ? cause : undefined),
    });
    const results = await Promise.allSettled([writer.write('a'), writer.write('b')]);
    for (const result of results) {
      expect(result.status).toBe('rejected');
      const error = (result as PromiseRejectedResult).reason as BatchWriteError;
      expect(error).toBeInstanceOf(BatchWriteError);
      expect(error.code).toBe(BatchWriteErrorCode.COMMIT_FAILED);
      expect(error.message).toBe(
        'Commit of a batch of 2 writes failed after 3 attempt(s): SQLITE_BUSY: database is locked',
      );
      expect(error.cause).toBe(cause);
    }
    expect(writer.stats).toMatchObject({
      failedCommits: 3,
      rejectedWrites: 2,
      batchesCommitted: 0,
    });

    busy = false;
    await writer.write('c');
    expect(batches).toEqual([['c']]);
  });

  it('commits the writes of a batch that fails for another reason one by one, so only the bad one fails', async () => {
    const { writer, batches } = createWriter({
      fail: (ops) => (ops.includes('bad') ? new Error('UNIQUE constraint failed') : undefined),
    });
    const results = await Promise.allSettled(['a', 'bad', 'c'].map((op) => writer.write(op)));
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(batches).toEqual([['a'], ['c']]);
  });

  it('flush() commits pending writes now and waits for a commit in progress', async () => {
    const { writer, batches } = createWriter({ flushIntervalMs: 10_000 });
    void writer.write('a');
    void writer.write('b');
    await writer.flush();
    expect(batches).toEqual([['a', 'b']]);
    await writer.flush();
  });

  it('close() flushes, is idempotent and refuses later writes', async () => {
    const { writer, batches } = createWriter({ flushIntervalMs: 10_000 });
    const write = writer.write('a');
    const closing = writer.close();
    expect(writer.close()).toBe(closing);
    await closing;
    await write;
    expect(batches).toEqual([['a']]);
    await expect(writer.write('b')).rejects.toMatchObject({ code: BatchWriteErrorCode.CLOSED });
  });

  it.each([
    [{ flushIntervalMs: -1 }, 'Expected flushIntervalMs to be an integer >= 0, got -1.'],
    [{ deferredMs: 1.5 }, 'Expected deferredMs to be an integer >= 0, got 1.5.'],
    [{ maxRecords: 0 }, 'Expected maxRecords to be an integer >= 1, got 0.'],
    [{ maxAttempts: 1.5 }, 'Expected maxAttempts to be an integer >= 1, got 1.5.'],
    [{ retryDelayMs: NaN }, 'Expected retryDelayMs to be an integer >= 0, got NaN.'],
  ])('rejects the options %p', (options, message) => {
    expect(() => new BatchWriter<string>({ commit: async () => undefined, ...options })).toThrow(
      message,
    );
  });
});
