import type { Logger } from '../logger';
import { isBusyError, sqliteMessage } from './sqlite-errors';

/** Options for {@link BatchWriter}. */
export interface BatchWriterOptions<Op> {
  /**
   * Applies a batch in ONE transaction and commits it. It must leave no transaction open when it
   * rejects (see `runWriteTransaction`). Ops come in the order they were written.
   */
  commit: (ops: readonly Op[]) => Promise<void>;
  /** Milliseconds from the first pending op to the commit; 0 commits on the next turn of the event loop. @default 2 */
  flushIntervalMs?: number;
  /** Pending ops that trigger a commit at once; also the largest batch. @default 500 */
  maxRecords?: number;
  /** Attempts per batch for a retryable failure, counting the first. @default 4 */
  maxAttempts?: number;
  /** Milliseconds before the first retry; each further retry doubles it, plus up to 50% jitter. @default 20 */
  retryDelayMs?: number;
  /** Which failures are worth retrying. @default isBusyError (SQLITE_BUSY, SQLITE_LOCKED) */
  isRetryable?: (error: unknown) => boolean;
  /** Milliseconds a deferred write may wait for company (see `WriteOptions`). @default 50 */
  deferredMs?: number;
  /** Where retries and failures are reported. @default no logging */
  logger?: Logger;
}

/** Called after a transaction commits, with its number of ops and its duration in milliseconds. */
export type CommitListener = (batchSize: number, durationMs: number) => void;

/** Counters for metrics and tests. */
export interface BatchWriterStats {
  /** Ops waiting for a commit, not counting the batch being committed. */
  pending: number;
  /** Transactions that committed. */
  batchesCommitted: number;
  /** Ops in committed transactions. */
  rowsCommitted: number;
  /** Ops in the most recently committed transaction. */
  lastBatchSize: number;
  /** Commit attempts that failed and were rolled back, retried or not. */
  failedCommits: number;
  /** Ops whose `write()` promise was rejected. */
  rejectedWrites: number;
}

/** Stable codes of {@link BatchWriteError}. */
export const BatchWriteErrorCode = {
  /** The transaction failed for good; `cause` holds the database error. */
  COMMIT_FAILED: 'COMMIT_FAILED',
  /** `write()` after `close()`. */
  CLOSED: 'CLOSED',
} as const;
export type BatchWriteErrorCode = (typeof BatchWriteErrorCode)[keyof typeof BatchWriteErrorCode];

/** Rejects a `write()`. Internal: the service layer logs it and shows clients a masked error. */
export class BatchWriteError extends Error {
  readonly code: BatchWriteErrorCode;

  constructor(code: BatchWriteErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BatchWriteError';
    this.code = code;
  }
}

const DEFAULTS = {
  flushIntervalMs: 2,
  deferredMs: 50,
  maxRecords: 500,
  maxAttempts: 4,
  retryDelayMs: 20,
  isRetryable: isBusyError,
} as const;

/** Options of one {@link BatchWriter.write}. */
export interface WriteOptions {
  /**
   * The op may wait up to `deferredMs` for other writes to share its commit; no caller waits on
   * its promise to reply to a client. It still goes into any earlier commit. @default false
   */
  deferred?: boolean;
}

interface Entry<Op> {
  op: Op;
  seq: number;
  /** Date.now() by which the op should be committing. */
  due: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

interface FlushWaiter {
  seq: number;
  resolve: () => void;
}

type Settings<Op> = Required<Omit<BatchWriterOptions<Op>, 'logger'>> & { logger?: Logger };

/**
 * Group commit: many producers `write()` ops, and the writer commits them together in one
 * transaction once `flushIntervalMs` has passed since the first pending op or `maxRecords` are
 * pending, whichever comes first. Each `write()` settles when its transaction commits or finally
 * fails. One transaction runs at a time; ops written meanwhile form the next batch.
 *
 * A retryable failure (a busy database) retries the batch with backoff and finally rejects every
 * op in it. Any other failure of a batch of several ops commits them again one by one, so that one
 * bad op (a duplicate key, say) fails alone instead of taking its batch with it.
 */
export class BatchWriter<Op> {
  private readonly settings: Settings<Op>;
  private readonly commitListeners = new Set<CommitListener>();
  private pending: Entry<Op>[] = [];
  private nextSeq = 1;
  /** Every op with a lower or equal seq has settled. */
  private settledSeq = 0;
  /** Ops up to this seq are due now, whatever the timer says (set by flush). */
  private flushSeq = 0;
  private cancelTimer: (() => void) | undefined;
  /** When the armed timer fires; Infinity when none is armed. */
  private armedFor = Number.POSITIVE_INFINITY;
  /** The earliest `due` among pending ops; Infinity when none is pending. */
  private earliestDue = Number.POSITIVE_INFINITY;
  private draining: Promise<void> | undefined;
  private flushWaiters: FlushWaiter[] = [];
  private closing: Promise<void> | undefined;
  private readonly counters = {
    batchesCommitted: 0,
    rowsCommitted: 0,
    lastBatchSize: 0,
    failedCommits: 0,
    rejectedWrites: 0,
  };

  constructor(options: BatchWriterOptions<Op>) {
    this.settings = validateOptions(options);
  }

  /**
   * Calls `listener` after every committed transaction with its size and duration (for metrics).
   * @returns a function that removes the listener.
   */
  onCommit(listener: CommitListener): () => void {
    this.commitListeners.add(listener);
    return () => this.commitListeners.delete(listener);
  }

  private notifyCommitted(batchSize: number, durationMs: number): void {
    for (const listener of this.commitListeners) {
      try {
        listener(batchSize, durationMs);
      } catch (error) {
        this.settings.logger?.error({ err: error }, 'Commit listener failed');
      }
    }
  }

  /** Snapshot of the counters. */
  get stats(): BatchWriterStats {
    return { pending: this.pending.length, ...this.counters };
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  /**
   * Queues `op` for the next batch.
   * @returns a promise that resolves once the op's transaction has committed.
   * @throws BatchWriteError (as a rejection) COMMIT_FAILED with the database error as `cause`,
   *   or CLOSED after `close()`.
   */
  write(op: Op, options: WriteOptions = {}): Promise<void> {
    if (this.closing) {
      this.counters.rejectedWrites += 1;
      return Promise.reject(
        new BatchWriteError(BatchWriteErrorCode.CLOSED, 'The batch writer is closed.'),
      );
    }
    const { flushIntervalMs, deferredMs } = this.settings;
    const due =
      Date.now() +
      (options.deferred === true ? Math.max(flushIntervalMs, deferredMs) : flushIntervalMs);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ op, seq: this.nextSeq++, due, resolve, reject });
      this.earliestDue = Math.min(this.earliestDue, due);
      if (this.pending.length >= this.settings.maxRecords) this.kick();
      else this.arm();
    });
  }

  /**
   * Commits everything written so far without waiting for the interval. Resolves once each of
   * those ops has committed or failed (failures reach the ops' own promises, not this one).
   */
  flush(): Promise<void> {
    const seq = this.nextSeq - 1;
    if (seq <= this.settledSeq) return Promise.resolve();
    this.flushSeq = Math.max(this.flushSeq, seq);
    const done = new Promise<void>((resolve) => this.flushWaiters.push({ seq, resolve }));
    this.kick();
    return done;
  }

  /** Refuses new writes from now on and flushes the rest. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.flush();
    return this.closing;
  }

  /**
   * Schedules a commit for when the earliest pending op is due, unless a commit is running (it
   * looks again when it ends) or the armed timer fires no later.
   */
  private arm(): void {
    if (this.pending.length === 0 || this.draining !== undefined) return;
    if (this.armedFor <= this.earliestDue) return;
    this.clearTimer();
    const delay = this.earliestDue - Date.now();
    this.armedFor = this.earliestDue;
    if (delay <= 0 && this.settings.flushIntervalMs === 0) {
      const handle = setImmediate(() => this.kick());
      this.cancelTimer = () => clearImmediate(handle);
    } else {
      const handle = setTimeout(() => this.kick(), Math.max(0, delay));
      this.cancelTimer = () => clearTimeout(handle);
    }
  }

  private clearTimer(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.armedFor = Number.POSITIVE_INFINITY;
  }

  /** Starts committing due ops now, or lets the running drain pick them up. */
  private kick(): void {
    this.clearTimer();
    if (this.draining !== undefined) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      // Writes that arrived after the loop's last check may already be due (a kick() in that gap
      // found the drain still running and left them to it).
      if (this.isDue()) this.kick();
      else this.arm();
    });
  }

  private isDue(): boolean {
    const [first] = this.pending;
    if (first === undefined) return false;
    return (
      first.seq <= this.flushSeq ||
      this.pending.length >= this.settings.maxRecords ||
      Date.now() >= this.earliestDue
    );
  }

  private async drain(): Promise<void> {
    while (this.isDue()) {
      // A commit takes every pending op up to the limit, deferred ones included.
      const batch = this.pending.splice(0, this.settings.maxRecords);
      this.earliestDue = Number.POSITIVE_INFINITY;
      for (const entry of this.pending) this.earliestDue = Math.min(this.earliestDue, entry.due);
      await this.commitBatch(batch);
      this.settle(batch[batch.length - 1].seq);
    }
  }

  /** Commits `batch`, settling each entry; never rejects. */
  private async commitBatch(batch: Entry<Op>[]): Promise<void> {
    const failure = await this.commitWithRetries(batch);
    if (failure === undefined) {
      for (const entry of batch) entry.resolve();
    } else if (batch.length > 1 && !this.settings.isRetryable(failure.error)) {
      this.settings.logger?.warn(
        { batchSize: batch.length, reason: sqliteMessage(failure.error) },
        'Batch failed; committing its writes one by one',
      );
      for (const entry of batch) await this.commitBatch([entry]);
    } else {
      this.rejectAll(batch, failure);
    }
  }

  /** @returns undefined on success, or the last error and the number of attempts made. */
  private async commitWithRetries(
    batch: Entry<Op>[],
  ): Promise<{ error: unknown; attempts: number } | undefined> {
    const { maxAttempts, isRetryable } = this.settings;
    const ops = batch.map((entry) => entry.op);
    for (let attempt = 1; ; attempt += 1) {
      try {
        const started = performance.now();
        await this.settings.commit(ops);
        this.counters.batchesCommitted += 1;
        this.counters.rowsCommitted += batch.length;
        this.counters.lastBatchSize = batch.length;
        this.notifyCommitted(batch.length, performance.now() - started);
        return undefined;
      } catch (error) {
        this.counters.failedCommits += 1;
        if (attempt >= maxAttempts || !isRetryable(error)) return { error, attempts: attempt };
        const delay = this.retryDelay(attempt);
        this.settings.logger?.warn(
          {
            batchSize: batch.length,
            attempt,
            maxAttempts,
            delayMs: delay,
            reason: sqliteMessage(error),
          },
          'Batch commit failed; retrying',
        );
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  private retryDelay(attempt: number): number {
    const base = this.settings.retryDelayMs * 2 ** (attempt - 1);
    return Math.round(base * (1 + Math.random() / 2));
  }

  private rejectAll(batch: Entry<Op>[], failure: { error: unknown; attempts: number }): void {
    const reason = sqliteMessage(failure.error);
    const error = new BatchWriteError(
      BatchWriteErrorCode.COMMIT_FAILED,
      `Commit of a batch of ${batch.length} writes failed after ${failure.attempts} ` +
        `attempt(s): ${reason}`,
      { cause: failure.error },
    );
    this.settings.logger?.error(
      { batchSize: batch.length, attempts: failure.attempts, reason },
      'Batch commit failed; rejecting its writes',
    );
    this.counters.rejectedWrites += batch.length;
    for (const entry of batch) entry.reject(error);
  }

  private settle(seq: number): void {
    this.settledSeq = seq;
    const ready = this.flushWaiters.filter((waiter) => waiter.seq <= seq);
    if (ready.length === 0) return;
    this.flushWaiters = this.flushWaiters.filter((waiter) => waiter.seq > seq);
    for (const waiter of ready) waiter.resolve();
  }
}

function validateOptions<Op>(options: BatchWriterOptions<Op>): Settings<Op> {
  const settings = {
    commit: options.commit,
    flushIntervalMs: options.flushIntervalMs ?? DEFAULTS.flushIntervalMs,
    deferredMs: options.deferredMs ?? DEFAULTS.deferredMs,
    maxRecords: options.maxRecords ?? DEFAULTS.maxRecords,
    maxAttempts: options.maxAttempts ?? DEFAULTS.maxAttempts,
    retryDelayMs: options.retryDelayMs ?? DEFAULTS.retryDelayMs,
    isRetryable: options.isRetryable ?? DEFAULTS.isRetryable,
    logger: options.logger,
  };
  expectInteger('flushIntervalMs', settings.flushIntervalMs, 0);
  expectInteger('deferredMs', settings.deferredMs, 0);
  expectInteger('maxRecords', settings.maxRecords, 1);
  expectInteger('maxAttempts', settings.maxAttempts, 1);
  expectInteger('retryDelayMs', settings.retryDelayMs, 0);
  if (typeof settings.commit !== 'function') {
    throw new TypeError(`Expected commit to be a function, got ${typeof settings.commit}.`);
  }
  return settings;
}

function expectInteger(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(`Expected ${name} to be an integer >= ${min}, got ${value}.`);
  }
}
