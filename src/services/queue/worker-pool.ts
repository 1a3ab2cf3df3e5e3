import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { ErrorCode, TaskwireError } from '../../errors';
import type { Logger } from '../../logger';
import type { PriorityQueue, PushOptions, QueueItem } from './priority-queue';

/** Largest delay that `setTimeout` accepts. Node.js fires longer delays after 1 ms instead. */
const MAX_TIMER_MS = 2_147_483_647;

/** Abort reason of a job stopped by {@link WorkerPool.cancel} without an explicit reason. */
export class CancelledError extends TaskwireError {
  constructor(message = 'The task was cancelled.') {
    super(ErrorCode.CANCELLED, message);
    this.name = 'CancelledError';
  }
}

/** Abort reason of a job that ran longer than the pool's `timeoutMs`. */
export class TimeoutError extends TaskwireError {
  readonly timeoutMs: number;

  constructor(timeoutMs: number) {
    super(ErrorCode.TIMEOUT, `The task timed out after ${timeoutMs} ms and was stopped.`, {
      extensions: { timeoutMs },
    });
    this.name = 'TimeoutError';
    this.timeoutMs = timeoutMs;
  }
}

/** Abort reason of a job still running when {@link WorkerPool.close} ran out of grace time. */
export class ShutdownError extends TaskwireError {
  constructor() {
    super(ErrorCode.INTERRUPTED, 'The server shut down before the task finished.');
    this.name = 'ShutdownError';
  }
}

/**
 * Outcome of a job. `interrupted` means that {@link WorkerPool.close} aborted it after the grace
 * period. The first outcome is final, and whatever the handler does after a timeout, cancel or
 * interruption is ignored.
 */
export type JobOutcome =
  | { kind: 'completed' }
  | { kind: 'failed'; error: unknown }
  | { kind: 'timeout' }
  | { kind: 'cancelled'; reason: unknown }
  | { kind: 'interrupted' };

/** Context passed to a handler with its job. */
export interface JobContext {
  /**
   * Signal aborted on cancel, timeout and shutdown. Its `reason` is the cancel reason, a
   * {@link TimeoutError} or a {@link ShutdownError}.
   */
  readonly signal: AbortSignal;
  /** Start time in epoch milliseconds. */
  readonly startedAt: number;
}

/** Payload of the `settled` event. */
export interface JobSettledEvent<T> {
  readonly job: T;
  readonly outcome: JobOutcome;
  /** Milliseconds from start to outcome, or 0 for a job cancelled while queued. */
  readonly durationMs: number;
}

/** Events of a {@link WorkerPool}, by name, with their payloads. */
export interface WorkerPoolEvents<T> {
  /** A job left the queue for a worker, so the positions of the jobs behind it moved up. */
  dequeued: T;
  /** A job started, after `dequeued` and just before its handler is called. */
  start: T;
  /**
   * A job reached its outcome and its slot is free. A job cancelled while queued emits this too,
   * without `dequeued` or `start`.
   */
  settled: JobSettledEvent<T>;
  /** Nothing runs and nothing will start, because the queue is empty or the pool is closed. */
  idle: undefined;
}

type Listener<P> = (payload: P) => void;
type ListenerSets<T> = { [K in keyof WorkerPoolEvents<T>]: Set<Listener<WorkerPoolEvents<T>[K]>> };

/** Options for {@link WorkerPool}. */
export interface WorkerPoolOptions<T extends QueueItem> {
  /** Queue the pool takes jobs from. The pool owns it, so push with `add` and remove with `cancel`. */
  queue: PriorityQueue<T>;
  /** Maximum number of jobs running at once. An integer of at least 1. */
  concurrency: number;
  /** Milliseconds a job may run, from its start, before it is aborted with a {@link TimeoutError}. */
  timeoutMs: number;
  /** Runs one job. It should stop soon after `context.signal` aborts. */
  handler: (job: T, context: JobContext) => Promise<void>;
  /**
   * Logger for timeouts, interruptions and listener errors, and at debug level for every outcome.
   * @default a pino logger that writes warnings and errors to stderr
   */
  logger?: Logger;
}

/** Options for {@link WorkerPool.close}. */
export interface CloseOptions {
  /**
   * Milliseconds to wait for running jobs before they are interrupted. Without a limit the wait
   * still ends, because every job times out after `timeoutMs`.
   * @default Infinity
   */
  graceMs?: number;
}

interface ActiveJob<T> {
  readonly job: T;
  readonly controller: AbortController;
  /** `performance.now()` at start, for durations that ignore wall-clock changes. */
  readonly startTime: number;
  timer: NodeJS.Timeout | undefined;
  outcome: JobOutcome | undefined;
}

function validatePoolOptions<T extends QueueItem>(options: WorkerPoolOptions<T>): void {
  validateConcurrency(options.concurrency);
  const { timeoutMs } = options;
  if (!(timeoutMs > 0) || timeoutMs > MAX_TIMER_MS) {
    throw new RangeError(
      `Expected timeoutMs to be greater than 0 and at most ${MAX_TIMER_MS}, got ${String(timeoutMs)}.`,
    );
  }
}

function validateConcurrency(concurrency: number): void {
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(
      `Expected concurrency to be an integer of at least 1, got ${String(concurrency)}.`,
    );
  }
}

function validateGraceMs(graceMs: number): void {
  if (!(graceMs >= 0) || (graceMs > MAX_TIMER_MS && graceMs !== Infinity)) {
    throw new RangeError(
      `Expected graceMs to be from 0 to ${MAX_TIMER_MS} or Infinity, got ${String(graceMs)}.`,
    );
  }
}

function createDefaultLogger(): Logger {
  return pino({ level: 'warn' }, pino.destination({ dest: 2, sync: true }));
}

/**
 * Runs jobs from a {@link PriorityQueue} with bounded concurrency, a timeout per job, cancel, pause
 * and graceful shutdown.
 *
 * A job counts against `concurrency` from its start until its outcome. Cancel, timeout and shutdown
 * decide the outcome at once, even if the handler ignores its signal and keeps running. That
 * handler then runs outside the limit until it notices the abort.
 */
export class WorkerPool<T extends QueueItem> {
  private readonly queue: PriorityQueue<T>;
  private readonly timeoutMs: number;
  private readonly handler: (job: T, context: JobContext) => Promise<void>;
  private readonly logger: Logger;
  private readonly active = new Map<string, ActiveJob<T>>();
  private readonly listeners: ListenerSets<T> = {
    dequeued: new Set(),
    start: new Set(),
    settled: new Set(),
    idle: new Set(),
  };
  private readonly idleWaiters: (() => void)[] = [];
  private readonly noneRunningWaiters = new Set<() => void>();
  private maxConcurrency: number;
  private started = false;
  private isPaused = false;
  private closing = false;
  private closePromise: Promise<void> | undefined;
  private draining = false;
  private idleEmitted = true;

  constructor(options: WorkerPoolOptions<T>) {
    validatePoolOptions(options);
    this.queue = options.queue;
    this.maxConcurrency = options.concurrency;
    this.timeoutMs = options.timeoutMs;
    this.handler = options.handler;
    this.logger = options.logger ?? createDefaultLogger();
  }

  /** Number of jobs running now. */
  get running(): number {
    return this.active.size;
  }

  /** Maximum number of jobs running at once. */
  get concurrency(): number {
    return this.maxConcurrency;
  }

  /** Whether `pause()` stopped new jobs from starting. */
  get paused(): boolean {
    return this.isPaused;
  }

  /** Returns the ids of the running jobs, in start order. */
  runningIds(): string[] {
    return [...this.active.keys()];
  }

  /** Returns whether the job with this id is running. */
  isRunning(id: string): boolean {
    return this.active.has(id);
  }

  /**
   * Starts running jobs. Until then the pool only queues them, so a caller can load recovered jobs
   * first. Calling it again has no effect, and after `close()` it starts nothing.
   */
  start(): void {
    this.started = true;
    this.drain();
  }

  /**
   * Queues a job and starts it if a slot is free. `onQueued` runs after the job is in the queue and
   * before any job starts, so a caller can announce the queue position ahead of the job's start.
   * @throws {QueueFullError} from the queue, unless `force` is set.
   * @throws {TaskwireError} with code `SHUTTING_DOWN` after `close()`.
   * @throws {Error} when a job with the same id is queued, or the priority is not an integer.
   */
  add(job: T, options?: PushOptions & { onQueued?: () => void }): void {
    if (this.closing) {
      throw new TaskwireError(
        ErrorCode.SHUTTING_DOWN,
        'The server is shutting down and accepts no new tasks. Retry on another instance or later.',
      );
    }
    this.queue.push(job, options);
    this.idleEmitted = false;
    options?.onQueued?.();
    this.drain();
  }

  /**
   * Cancels a job. A queued job is removed and never starts. A running job has its signal aborted
   * with `reason` and its slot freed at once. Either way `settled` is emitted with outcome
   * `cancelled` before this returns.
   * @param reason abort reason and outcome reason. @default new CancelledError()
   * @returns where the job was, or `undefined` when it is neither queued nor running.
   */
  cancel(id: string, reason: unknown = new CancelledError()): 'queued' | 'running' | undefined {
    const queued = this.queue.remove(id);
    if (queued !== undefined) {
      this.emit('settled', { job: queued, outcome: { kind: 'cancelled', reason }, durationMs: 0 });
      this.checkIdle();
      return 'queued';
    }
    const active = this.active.get(id);
    if (active === undefined) {
      return undefined;
    }
    this.finish(active, { kind: 'cancelled', reason }, reason);
    return 'running';
  }

  /**
   * Changes the concurrency. Growing starts queued jobs at once. Shrinking lets running jobs finish
   * and starts no new one until fewer than `concurrency` run.
   */
  setConcurrency(concurrency: number): void {
    validateConcurrency(concurrency);
    this.maxConcurrency = concurrency;
    this.drain();
  }

  /** Stops starting new jobs. Running jobs continue. */
  pause(): void {
    this.isPaused = true;
  }

  /** Starts jobs again after `pause()`. */
  resume(): void {
    this.isPaused = false;
    this.drain();
  }

  /**
   * Returns a promise that resolves when nothing runs and the queue is empty, or once the pool is
   * closed and nothing runs. It resolves at once if that is already the case.
   */
  onIdle(): Promise<void> {
    if (this.isIdle()) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops starting jobs, waits up to `graceMs` for running jobs, then aborts the rest with a
   * {@link ShutdownError} and emits `settled` with outcome `interrupted` for each. Queued jobs stay in
   * the queue. Later calls return the first call's promise and ignore their options.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.closePromise === undefined) {
      const graceMs = options.graceMs ?? Infinity;
      validateGraceMs(graceMs);
      this.closePromise = this.shutdown(graceMs);
    }
    return this.closePromise;
  }

  /** Closes the pool with the default grace period, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * Subscribes to an event. A listener that throws is logged and does not affect the pool or the
   * other listeners.
   * @returns a function that unsubscribes the listener.
   */
  on<K extends keyof WorkerPoolEvents<T>>(
    event: K,
    listener: Listener<WorkerPoolEvents<T>[K]>,
  ): () => void {
    const listeners = this.listeners[event];
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  }

  /**
   * Starts queued jobs while slots are free. It is a loop, not recursion, because listeners and
   * handlers can call back into the pool. A nested call returns at once, and the loop that is
   * already running checks the slot count again before every start.
   */
  private drain(): void {
    if (this.draining) {
      return;
    }
    this.draining = true;
    try {
      while (this.canStart()) {
        const job = this.queue.shift();
        if (job === undefined) {
          break;
        }
        this.startJob(job);
      }
    } finally {
      this.draining = false;
    }
  }

  private canStart(): boolean {
    return (
      this.started && !this.isPaused && !this.closing && this.active.size < this.maxConcurrency
    );
  }

  private startJob(job: T): void {
    const active: ActiveJob<T> = {
      job,
      controller: new AbortController(),
      startTime: performance.now(),
      timer: undefined,
      outcome: undefined,
    };
    this.active.set(job.id, active);
    this.idleEmitted = false;
    active.timer = setTimeout(() => this.handleTimeout(active), this.timeoutMs);
    this.emit('dequeued', job);
    this.emit('start', job);
    // A listener may have cancelled the job already.
    if (active.outcome === undefined) {
      this.runHandler(active, Date.now()).catch((error: unknown) => {
        this.logger.error({ err: error, jobId: job.id }, 'Worker pool failed to settle a job');
      });
    }
  }

  private async runHandler(active: ActiveJob<T>, startedAt: number): Promise<void> {
    const context: JobContext = { signal: active.controller.signal, startedAt };
    try {
      await this.handler(active.job, context);
    } catch (error) {
      this.finish(active, { kind: 'failed', error });
      return;
    }
    this.finish(active, { kind: 'completed' });
  }

  private handleTimeout(active: ActiveJob<T>): void {
    this.logger.warn(
      { jobId: active.job.id, timeoutMs: this.timeoutMs },
      'Job timed out, so its signal was aborted and its slot freed',
    );
    this.finish(active, { kind: 'timeout' }, new TimeoutError(this.timeoutMs));
  }

  /**
   * Records the first outcome of a running job, frees its slot, aborts its signal when `abortReason`
   * is given, emits `settled` and starts the next job. Later calls for the same job are ignored.
   */
  private finish(active: ActiveJob<T>, outcome: JobOutcome, abortReason?: unknown): void {
    const { job } = active;
    if (active.outcome !== undefined) {
      this.logger.debug(
        { jobId: job.id, outcome: outcome.kind, decided: active.outcome.kind },
        'Ignored a job result that came after its outcome was decided',
      );
      return;
    }
    active.outcome = outcome;
    clearTimeout(active.timer);
    this.active.delete(job.id);
    if (abortReason !== undefined) {
      active.controller.abort(abortReason);
    }
    const durationMs = performance.now() - active.startTime;
    this.logger.debug({ jobId: job.id, outcome: outcome.kind, durationMs }, 'Job settled');
    this.emit('settled', { job, outcome, durationMs });
    this.notifyIfNoneRunning();
    this.drain();
    this.checkIdle();
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.closing = true;
    this.logger.info(
      { running: this.active.size, queued: this.queue.size, graceMs },
      'Worker pool closing',
    );
    await this.waitForNoneRunning(graceMs);
    const interrupted = [...this.active.values()];
    for (const active of interrupted) {
      this.logger.warn(
        { jobId: active.job.id },
        'Job interrupted by shutdown after the grace period',
      );
      this.finish(active, { kind: 'interrupted' }, new ShutdownError());
    }
    this.checkIdle();
    this.logger.info(
      { interrupted: interrupted.length, queued: this.queue.size },
      'Worker pool closed',
    );
  }

  private waitForNoneRunning(graceMs: number): Promise<void> {
    if (this.active.size === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        this.noneRunningWaiters.delete(done);
        resolve();
      };
      this.noneRunningWaiters.add(done);
      if (graceMs !== Infinity) {
        timer = setTimeout(done, graceMs);
      }
    });
  }

  private notifyIfNoneRunning(): void {
    if (this.active.size === 0) {
      for (const done of [...this.noneRunningWaiters]) {
        done();
      }
    }
  }

  private isIdle(): boolean {
    return this.active.size === 0 && (this.queue.size === 0 || this.closing);
  }

  /** Resolves `onIdle()` promises and emits `idle` once per transition from busy to idle. */
  private checkIdle(): void {
    if (!this.isIdle()) {
      return;
    }
    for (const resolve of this.idleWaiters.splice(0)) {
      resolve();
    }
    if (!this.idleEmitted) {
      this.idleEmitted = true;
      this.emit('idle', undefined);
    }
  }

  private emit<K extends keyof WorkerPoolEvents<T>>(
    event: K,
    payload: WorkerPoolEvents<T>[K],
  ): void {
    for (const listener of [...this.listeners[event]]) {
      try {
        listener(payload);
      } catch (error) {
        this.logger.error({ err: error, event }, 'Worker pool event listener failed');
      }
    }
  }
}
