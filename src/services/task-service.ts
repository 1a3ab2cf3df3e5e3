import type { Config } from '../config';
import type { Logger } from '../logger';
import type { TaskStore } from '../db/task-store';
import { ErrorCode, TaskwireError } from '../errors';
import type { TaskEvent } from './events';
import { TaskEventBus } from './events';
import { UUID_PATTERN } from './ids';
import { LiveTaskRegistry } from './live-tasks';
import type { LlmProvider } from './llm/provider';
import type { JobOutcome } from './queue/worker-pool';
import type { QueueItem } from './queue/priority-queue';
import { WorkerPool } from './queue/worker-pool';
import { PriorityQueue, QueueFullError } from './queue/priority-queue';
import type { SubmitTaskInput, ValidSubmission } from './task-input';
import { CacheMode, invalidInput, validateSubmission } from './task-input';
import { TaskRunner } from './task-runner';
import { AnswerCache } from './cache/answer-cache';
import type { CacheHit } from './cache/answer-cache';
import type { CacheCoordinatorStats, Flight } from './cache/cache-coordinator';
import { CacheCoordinator, completedFromCache, splitIntoChunks } from './cache/cache-coordinator';
import type { LiveTask, TaskEnding } from './live-tasks';
import type { TaskRecord, TaskStatus } from './task-types';
import { TaskStatus as Status } from './task-types';
import {
  assertSameRequest,
  canSee,
  finalStateReplay,
  newTaskRecord,
  notFound,
} from './task-records';
import { recoverTasks } from './task-recovery';
import { RateLimiter } from './rate-limiter';
import type { Metrics } from './metrics/metrics';

/** The caller of an operation: tasks belong to their submitter, and only admins see other users' tasks. */
export interface Caller {
  userId: string;
  isAdmin: boolean;
}

/** Options for {@link TaskService}. */
export interface TaskServiceOptions {
  config: Config;
  store: TaskStore;
  provider: LlmProvider;
  logger: Logger;
  /** @default a new in-memory bus */
  bus?: TaskEventBus;
  /** Receives queue, task and provider figures. @default none recorded */
  metrics?: Metrics;
}

/** Arguments of {@link TaskService.list}. */
export interface ListTasksArgs {
  statuses?: TaskStatus[];
  first: number;
  /** Id of the last task of the previous page. */
  after?: string;
}

/** Queue figures for health checks and metrics. */
export interface QueueSnapshot {
  depth: number;
  capacity: number;
  running: number;
  workers: number;
  paused: boolean;
}

/** Largest worker count `setWorkerCount` accepts, as the WORKERS setting. */
export const MAX_WORKERS = 256;

const CANCELLED_BY_CLIENT = { code: ErrorCode.CANCELLED, message: 'Cancelled by the client.' };

/**
 * The one entry point for tasks: submit, read, list, cancel, wait and subscribe. Holds queued and
 * running tasks in memory and everything else in the database.
 */
export class TaskService {
  readonly bus: TaskEventBus;
  private readonly config: Config;
  private readonly store: TaskStore;
  private readonly provider: LlmProvider;
  private readonly logger: Logger;
  private readonly tasks: LiveTaskRegistry;
  private readonly queue: PriorityQueue<QueueItem>;
  private readonly pool: WorkerPool<QueueItem>;
  private readonly cache: CacheCoordinator;
  private readonly metrics?: Metrics;
  private readonly pendingKeys = new Map<string, Promise<TaskRecord>>();
  /** Tasks served from the cache whose rows are still being written. */
  private readonly unsaved = new Map<string, TaskRecord>();
  private readonly submitLimiter: RateLimiter;
  private shuttingDown = false;
  private retentionTimer?: NodeJS.Timeout;
  private cacheSweepTimer?: NodeJS.Timeout;
  private closing?: Promise<void>;

  constructor(options: TaskServiceOptions) {
    this.config = options.config;
    this.store = options.store;
    this.provider = options.provider;
    this.logger = options.logger.child({ area: 'queue' });
    this.bus = options.bus ?? new TaskEventBus();
    this.metrics = options.metrics;
    this.submitLimiter = new RateLimiter({ perMinute: this.config.USER_SUBMITS_PER_MINUTE });
    this.tasks = new LiveTaskRegistry(this.store, this.bus, this.logger);
    this.tasks.onFinish((live, ending, followers) => this.handleFinish(live, ending, followers));
    this.cache = this.createCache(options.logger.child({ area: 'cache' }));
    this.queue = new PriorityQueue({
      capacity: this.config.QUEUE_MAX_SIZE,
      agingMs: this.config.QUEUE_AGING_MS,
    });
    this.pool = this.createPool();
  }

  /** Recovers tasks left by a previous run, then starts the workers and the retention purge. */
  async start(): Promise<void> {
    const queued = await recoverTasks(this.store, this.config.TASK_MAX_ATTEMPTS, this.logger);
    for (const record of queued) this.requeueRecovered(record);
    this.pool.start();
    this.retentionTimer = setInterval(
      () => void this.purgeExpired(),
      this.config.RETENTION_SWEEP_MS,
    );
    this.retentionTimer.unref();
    this.cacheSweepTimer = setInterval(() => void this.sweepCache(), this.config.CACHE_SWEEP_MS);
    this.cacheSweepTimer.unref();
    this.logger.info(
      {
        workers: this.config.WORKERS,
        capacity: this.config.QUEUE_MAX_SIZE,
        recovered: queued.length,
      },
      'Task queue started',
    );
  }

  /** Validates and enqueues a task; its QUEUED row is committed before this returns. */
  async submit(input: SubmitTaskInput, caller: Caller): Promise<TaskRecord> {
    try {
      const record = await this.submitValidated(input, caller);
      this.metrics?.taskAccepted();
      return record;
    } catch (error) {
      if (error instanceof TaskwireError) this.metrics?.taskRejected(error.code);
      throw error;
    }
  }

  private async submitValidated(input: SubmitTaskInput, caller: Caller): Promise<TaskRecord> {
    const submission = validateSubmission(input, {
      promptMaxChars: this.config.PROMPT_MAX_CHARS,
      maxTokens: this.config.TASK_MAX_TOKENS,
    });
    this.assertAccepting();
    if (this.limitsUsers(caller)) this.submitLimiter.take(caller.userId);
    if (submission.idempotencyKey === null) return this.admit(submission, caller);
    const mapKey = `${caller.userId}\u0000${submission.idempotencyKey}`;
    const pending = this.pendingKeys.get(mapKey);
    if (pending) return pending;
    const promise = this.admitIdempotent(submission, caller);
    this.pendingKeys.set(mapKey, promise);
    try {
      return await promise;
    } finally {
      this.pendingKeys.delete(mapKey);
    }
  }

  /**
   * Submits a task and waits up to `waitMs` for it to end. Returns the task as it is then, still
   * running if it has not ended: a slow model is not an error.
   */
  async generate(
    input: SubmitTaskInput,
    caller: Caller,
    waitMs?: number | null,
  ): Promise<TaskRecord> {
    const wait = waitMs ?? this.config.GENERATE_WAIT_MS;
    const maxWait = this.config.GENERATE_MAX_WAIT_MS;
    if (!Number.isInteger(wait) || wait < 0 || wait > maxWait) {
      invalidInput('waitMs', `expected an integer from 0 to ${maxWait}, got ${wait}.`);
    }
    const record = await this.submit(input, caller);
    return this.waitForEnd(record, wait);
  }

  /** Returns the caller's task, or null when it does not exist or belongs to someone else. */
  async get(id: string, caller: Caller): Promise<TaskRecord | null> {
    if (!UUID_PATTERN.test(id)) return null;
    const record = this.tasks.get(id)?.record ?? this.unsaved.get(id) ?? (await this.store.get(id));
    return record && canSee(caller, record) ? record : null;
  }

  /** Lists the caller's tasks, newest first. */
  async list(
    caller: Caller,
    args: ListTasksArgs,
  ): Promise<{ tasks: TaskRecord[]; hasNextPage: boolean }> {
    const page = await this.store.list({
      userId: caller.isAdmin ? undefined : caller.userId,
      statuses: args.statuses,
      first: args.first,
      after: args.after,
    });
    // Rows of live tasks may lag their in-memory state by one write batch.
    const tasks = page.tasks.map((task) => this.tasks.get(task.id)?.record ?? task);
    return { tasks, hasNextPage: page.hasNextPage };
  }

  /**
   * Cancels a queued task (it never starts) or a running one (its provider request is aborted).
   * @throws TaskwireError NOT_FOUND for an unknown id, CONFLICT for a task that already ended.
   */
  async cancel(id: string, caller: Caller): Promise<TaskRecord> {
    const live = UUID_PATTERN.test(id) ? this.tasks.get(id) : undefined;
    if (live && canSee(caller, live.record)) {
      this.tasks.finish(live, { status: Status.CANCELLED, error: CANCELLED_BY_CLIENT });
      this.pool.cancel(id, new TaskwireError(ErrorCode.CANCELLED, CANCELLED_BY_CLIENT.message));
      this.publishPositions();
      this.logger.info({ taskId: id, userId: caller.userId }, 'Task cancelled');
      return live.record;
    }
    const record = await this.get(id, caller);
    if (!record) throw notFound(id);
    throw new TaskwireError(
      ErrorCode.CONFLICT,
      `Task ${id} is already ${record.status} and can no longer be cancelled.`,
      { extensions: { status: record.status } },
    );
  }

  /**
   * Streams a task's events after `afterSeq`: a replay of what the client missed, then live events
   * until the terminal one. A finished task whose events are no longer buffered gets one event with
   * its final state.
   * @throws TaskwireError NOT_FOUND for an unknown id.
   */
  async subscribe(
    id: string,
    caller: Caller,
    afterSeq?: number | null,
  ): Promise<AsyncIterable<TaskEvent>> {
    const from = afterSeq ?? 0;
    if (!Number.isInteger(from) || from < 0) {
      invalidInput('afterSeq', `expected a non-negative integer, got ${from}.`);
    }
    const record = await this.get(id, caller);
    if (!record) throw notFound(id);
    const live = this.bus.subscribe(id, from);
    if (live) return live;
    return finalStateReplay(record, from);
  }

  /** Returns the 1-based queue position of a queued task, or null. */
  queuePosition(id: string): number | null {
    return this.queue.position(id) ?? null;
  }

  /** Changes the number of workers; running tasks are never dropped when it shrinks. */
  setWorkerCount(count: number, caller: Caller): QueueSnapshot {
    if (!Number.isInteger(count) || count < 1 || count > MAX_WORKERS) {
      invalidInput('count', `expected an integer from 1 to ${MAX_WORKERS}, got ${count}.`);
    }
    const before = this.pool.concurrency;
    this.pool.setConcurrency(count);
    this.logger.info({ admin: caller.userId, before, after: count }, 'Worker count changed');
    return this.snapshot();
  }

  /** Stops starting queued tasks; running ones go on. */
  pause(caller: Caller): QueueSnapshot {
    this.pool.pause();
    this.logger.info({ admin: caller.userId }, 'Queue paused');
    return this.snapshot();
  }

  /** Starts queued tasks again. */
  resume(caller: Caller): QueueSnapshot {
    this.pool.resume();
    this.logger.info({ admin: caller.userId }, 'Queue resumed');
    return this.snapshot();
  }

  /** Current queue figures. */
  snapshot(): QueueSnapshot {
    return {
      depth: this.queue.size,
      capacity: this.queue.capacity,
      running: this.pool.running,
      workers: this.pool.concurrency,
      paused: this.pool.paused,
    };
  }

  /** Whether the service accepts new tasks. */
  get accepting(): boolean {
    return !this.shuttingDown;
  }

  /** Resolves when nothing is queued or running. */
  onIdle(): Promise<void> {
    return this.pool.onIdle();
  }

  /**
   * Stops intake, lets running tasks finish within `SHUTDOWN_GRACE_MS`, puts the rest back to
   * QUEUED for the next start, and ends every subscription. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private async shutdown(): Promise<void> {
    this.shuttingDown = true;
    clearInterval(this.retentionTimer);
    clearInterval(this.cacheSweepTimer);
    this.logger.info(
      { running: this.pool.running, queued: this.queue.size },
      'Task queue stopping',
    );
    await this.pool.close({ graceMs: this.config.SHUTDOWN_GRACE_MS });
    this.bus.closeAll(
      new TaskwireError(
        ErrorCode.SHUTTING_DOWN,
        'The server is shutting down; subscribe again after it restarts.',
      ),
    );
    await this.provider.close();
  }

  /**
   * Deletes cached answers of one model (or all) created before `olderThan` (or any time).
   * @returns the number of entries deleted from the database tier.
   */
  purgeCache(filter: { model?: string; olderThan?: Date }): Promise<number> {
    return this.cache.purge(filter);
  }

  /** Cache and coalescing figures. */
  cacheStats(): CacheCoordinatorStats {
    return this.cache.stats();
  }

  private createCache(logger: Logger): CacheCoordinator {
    const answers = new AnswerCache({
      store: this.store.cache,
      maxEntries: this.config.CACHE_MAX_ENTRIES,
      maxBytes: this.config.CACHE_MAX_BYTES,
      logger,
    });
    return new CacheCoordinator({
      cache: answers,
      providerName: this.provider.name,
      scope: this.config.CACHE_SCOPE,
      normalization: this.config.CACHE_NORMALIZE,
      defaultTtlSeconds: this.config.CACHE_TTL_SECONDS,
      cacheDemoAnswers: this.config.CACHE_DEMO_ANSWERS,
      logger,
    });
  }

  /** Queues a task found QUEUED at start; identical ones share one generation again. */
  private requeueRecovered(record: TaskRecord): void {
    const key = record.cacheKey;
    const flight = key === null ? undefined : this.cache.flight(key);
    if (flight) {
      const live = this.tasks.add({ ...record, coalesced: true }, null, null);
      this.joinFlight(live, flight);
      return;
    }
    this.enqueue(record, true, null, key === null ? null : this.cache.claim(key));
  }

  private async sweepCache(): Promise<void> {
    try {
      await this.cache.sweep();
    } catch (error) {
      this.logger.error({ err: error }, 'Cache sweep failed');
    }
  }

  private createPool(): WorkerPool<QueueItem> {
    const runner = new TaskRunner({
      provider: this.provider,
      tasks: this.tasks,
      logger: this.logger,
      maxAttempts: this.config.TASK_MAX_ATTEMPTS,
      retryBaseMs: this.config.TASK_RETRY_BASE_MS,
      metrics: this.metrics,
    });
    const pool = new WorkerPool<QueueItem>({
      queue: this.queue,
      concurrency: this.config.WORKERS,
      timeoutMs: this.config.TASK_TIMEOUT_MS,
      logger: this.logger,
      handler: async (job, context) => {
        const live = this.tasks.get(job.id);
        if (live) await runner.run(live, context.signal);
      },
    });
    pool.on('settled', ({ job, outcome }) => this.handleSettled(job.id, outcome));
    pool.on('dequeued', () => this.publishPositions());
    pool.on('start', (job) => {
      const live = this.tasks.get(job.id);
      if (live) this.metrics?.taskStarted((Date.now() - live.record.createdAt.getTime()) / 1000);
    });
    return pool;
  }

  private handleSettled(id: string, outcome: JobOutcome): void {
    const live = this.tasks.get(id);
    if (!live) return;
    if (outcome.kind === 'timeout') {
      const message = `The task timed out after ${this.config.TASK_TIMEOUT_MS} ms.`;
      this.tasks.finish(live, {
        status: Status.FAILED,
        error: { code: ErrorCode.TIMEOUT, message },
      });
      this.logger.warn({ taskId: id }, message);
    } else if (outcome.kind === 'interrupted') {
      const { attempts, status } = live.record;
      const maxAttempts = this.config.TASK_MAX_ATTEMPTS;
      if (status === Status.RUNNING && attempts >= maxAttempts) {
        // As after a crash: a stop during the last allowed attempt ends the task, so restarts
        // cannot run it again and again.
        this.tasks.finish(live, {
          status: Status.FAILED,
          error: {
            code: ErrorCode.INTERRUPTED,
            message: `The server stopped while the task was running, after ${attempts} of ${maxAttempts} attempts.`,
          },
        });
      } else {
        this.tasks.release(live);
      }
    } else if (outcome.kind === 'failed') {
      this.logger.error({ err: outcome.error, taskId: id }, 'Task handler failed unexpectedly');
      this.tasks.finish(live, {
        status: Status.FAILED,
        error: {
          code: ErrorCode.INTERNAL,
          message: 'The task failed with an unexpected server error.',
        },
      });
    }
  }

  private assertAccepting(): void {
    if (this.shuttingDown) {
      throw new TaskwireError(
        ErrorCode.SHUTTING_DOWN,
        'The server is shutting down and accepts no new tasks.',
      );
    }
  }

  private async admitIdempotent(submission: ValidSubmission, caller: Caller): Promise<TaskRecord> {
    const key = submission.idempotencyKey as string;
    const existing = await this.store.findByIdempotencyKey(caller.userId, key);
    if (existing) {
      assertSameRequest(existing, submission, key);
      return this.tasks.get(existing.id)?.record ?? existing;
    }
    return this.admit(submission, caller);
  }

  /**
   * Admits a validated task: answered from the cache, joined to an identical running generation,
   * or queued on its own.
   */
  private async admit(submission: ValidSubmission, caller: Caller): Promise<TaskRecord> {
    const model = submission.model ?? this.provider.defaultModel;
    const key = this.cache.keyFor({ ...submission, model }, caller.userId);
    if (key !== null && submission.cache === CacheMode.DEFAULT) {
      const hit = await this.cache.lookup(key);
      if (hit) return this.admitFromCache(submission, caller, key, hit);
      const flight = this.cache.flight(key);
      if (flight) return this.admitFollower(submission, caller, key, flight);
    }
    return this.admitQueued(submission, caller, key);
  }

  /** Stores a task COMPLETED from a cached answer and replays it to subscribers. */
  private async admitFromCache(
    submission: ValidSubmission,
    caller: Caller,
    key: string,
    hit: CacheHit,
  ): Promise<TaskRecord> {
    const chunks = splitIntoChunks(hit.value);
    const base = newTaskRecord(submission, caller, key, this.provider.defaultModel);
    const record = { ...completedFromCache(base, hit, new Date()), lastSeq: chunks.length + 2 };
    const unkeyed = submission.idempotencyKey === null;
    const saved = this.store.insert(record, { deferred: unkeyed });
    if (unkeyed) {
      // The reply contains the whole result, which the cache already keeps, so it need not wait
      // for the commit. The row may also wait for other writes to share its commit, and a crash in
      // that time loses only this row. Until the row commits, reads find the task in `unsaved`.
      // A task with an idempotency key waits, because a retry must find its row.
      this.unsaved.set(record.id, record);
      const forget = () => this.unsaved.delete(record.id);
      saved.then(forget, (error: unknown) => {
        forget();
        this.logger.error(
          { err: error, taskId: record.id },
          "A cached answer's task was not saved",
        );
      });
    } else {
      await saved;
    }
    this.tasks.replayCompleted(record, chunks);
    this.metrics?.taskFinished(Status.COMPLETED, 0);
    return record;
  }

  /** Stores a task that shares the generation of an identical one; it takes no queue place. */
  private async admitFollower(
    submission: ValidSubmission,
    caller: Caller,
    key: string,
    flight: Flight,
  ): Promise<TaskRecord> {
    this.assertUserQueueRoom(caller);
    const record = {
      ...newTaskRecord(submission, caller, key, this.provider.defaultModel),
      coalesced: true,
    };
    await this.store.insert(record);
    this.assertAccepting();
    const live = this.tasks.add(record, null, submission.cacheTtlSeconds);
    this.cache.countCoalesced();
    this.joinFlight(live, flight);
    return live.record;
  }

  /**
   * Enqueues the task at once and returns after its row has committed. The task may start, and
   * even finish, while the row is being written: then its later writes merge into the same batch.
   * A task whose row cannot be written fails and is dropped, and the caller gets the error; no
   * client has its id yet.
   */
  private async admitQueued(
    submission: ValidSubmission,
    caller: Caller,
    key: string | null,
  ): Promise<TaskRecord> {
    this.assertUserQueueRoom(caller);
    if (this.queue.size >= this.queue.capacity) throw this.queueFull();
    // Checked again: a cache lookup may have let a shutdown begin since the first check.
    this.assertAccepting();
    // Claimed before the task is queued, so identical tasks that arrive meanwhile join this one.
    const flight = key !== null && !this.cache.flight(key) ? this.cache.claim(key) : null;
    const record = newTaskRecord(submission, caller, key, this.provider.defaultModel);
    // Written before the task is queued, so the insert comes before any update of the task.
    const saved = this.store.insert(record);
    try {
      this.enqueue(record, false, submission.cacheTtlSeconds, flight);
    } catch (error) {
      saved.catch(() => undefined);
      if (flight) this.abandonFlight(flight);
      throw error;
    }
    // Held here: a task that ends before its row commits has already left the registry.
    const live = this.tasks.get(record.id);
    try {
      await saved;
    } catch (error) {
      this.logger.error({ err: error, taskId: record.id }, 'A new task was not saved');
      this.dropUnsaved(record.id);
      throw new TaskwireError(
        ErrorCode.INTERNAL,
        'The task could not be saved, so it was not queued. Try again.',
        { cause: error },
      );
    }
    // The task may have started or even ended; return its state now, not the one it was stored with.
    return live?.record ?? record;
  }

  /** Stops a task whose row could not be written; its flight's followers fail with it. */
  private dropUnsaved(id: string): void {
    const live = this.tasks.get(id);
    if (!live) return;
    this.tasks.finish(live, {
      status: Status.FAILED,
      error: { code: ErrorCode.INTERNAL, message: 'The task could not be saved.' },
    });
    this.pool.cancel(id, new TaskwireError(ErrorCode.INTERNAL, 'The task could not be saved.'));
    this.publishPositions();
  }

  /** Attaches a follower to a flight, or settles it at once when the flight already ended. */
  private joinFlight(live: LiveTask, flight: Flight): void {
    if (flight.ending === null) {
      if (flight.leader) this.tasks.attach(live, flight.leader);
      else flight.pending.push(live);
    } else if (flight.ending.status === Status.CANCELLED) {
      this.runAlone(live);
    } else {
      this.tasks.finish(live, flight.ending);
    }
  }

  /** Lets a follower whose leader was cancelled run: it joins a newer flight or leads its own. */
  private runAlone(live: LiveTask): void {
    const key = live.record.cacheKey;
    const existing = key === null ? undefined : this.cache.flight(key);
    if (existing) {
      this.joinFlight(live, existing);
      return;
    }
    const flight = key === null ? null : this.cache.claim(key);
    const job = { id: live.record.id, priority: this.fairPriority(live.record) };
    this.pool.add(job, {
      force: true,
      onQueued: () => this.tasks.requeue(live, this.queue.position(job.id) ?? null),
    });
    if (flight) this.lead(flight, live);
  }

  private lead(flight: Flight, live: LiveTask): void {
    flight.leader = live;
    for (const follower of flight.pending.splice(0)) this.tasks.attach(follower, live);
  }

  /** Ends a flight whose leader never became live; its followers run on their own. */
  private abandonFlight(flight: Flight): void {
    const ending = { status: Status.CANCELLED, error: CANCELLED_BY_CLIENT };
    this.cache.end(flight, ending);
    for (const follower of flight.pending.splice(0)) this.runAlone(follower);
  }

  /**
   * Runs after every task ends: stores a reusable answer, ends the task's flight, and settles the
   * followers: they complete or fail with their leader, or run alone when it was cancelled.
   */
  private handleFinish(live: LiveTask, ending: TaskEnding, followers: LiveTask[]): void {
    this.cache.remember(live, ending);
    const { startedAt, finishedAt } = live.record;
    const runMs = startedAt && finishedAt ? finishedAt.getTime() - startedAt.getTime() : null;
    this.metrics?.taskFinished(ending.status, runMs === null ? null : runMs / 1000);
    const key = live.record.cacheKey;
    const flight = key === null ? undefined : this.cache.flight(key);
    if (flight?.leader === live) this.cache.end(flight, ending);
    for (const follower of followers) {
      if (ending.status === Status.CANCELLED) this.runAlone(follower);
      else this.tasks.finish(follower, ending);
    }
  }

  /**
   * Per-user limits apply to users authenticated by API key; admins and the single local user of
   * AUTH_MODE=none are bound by the queue's own capacity only.
   */
  private limitsUsers(caller: Caller): boolean {
    return this.config.AUTH_MODE === 'apikey' && !caller.isAdmin;
  }

  private assertUserQueueRoom(caller: Caller): void {
    const limit = this.config.USER_MAX_QUEUED;
    if (!this.limitsUsers(caller) || this.tasks.queuedCount(caller.userId) < limit) return;
    throw new TaskwireError(
      ErrorCode.RATE_LIMITED,
      `You have ${limit} tasks waiting, the most allowed per user. Wait for some to start or cancel them.`,
      { extensions: { limit, retryAfter: 1 } },
    );
  }

  private queueFull(): QueueFullError {
    return new QueueFullError(this.queue.capacity, this.queue.size);
  }

  /** Queues a task whose row is committed and publishes its position. */
  private enqueue(
    record: TaskRecord,
    recovered: boolean,
    cacheTtlSeconds: number | null,
    flight: Flight | null,
  ): void {
    const job = { id: record.id, priority: this.fairPriority(record) };
    const enqueuedAt = recovered ? record.createdAt.getTime() : undefined;
    this.pool.add(job, {
      enqueuedAt,
      force: true,
      onQueued: () => {
        const live = this.tasks.add(record, this.queue.position(job.id) ?? null, cacheTtlSeconds);
        if (flight) this.lead(flight, live);
      },
    });
  }

  /**
   * The priority a task queues with: its own, lowered by one level for each task its user already
   * has waiting. A burst from one user then interleaves with other users' tasks instead of
   * running ahead of them, while aging still lets every task through in the end.
   */
  private fairPriority(record: TaskRecord): number {
    return record.priority - this.tasks.queuedCount(record.userId);
  }

  private publishPositions(): void {
    if (this.bus.subscriberCount === 0) return;
    let position = 0;
    for (const job of this.queue.values()) {
      position += 1;
      const live = this.tasks.get(job.id);
      if (live) this.tasks.publishPosition(live, position);
    }
  }

  private async waitForEnd(record: TaskRecord, waitMs: number): Promise<TaskRecord> {
    const live = this.tasks.get(record.id);
    if (!live || waitMs === 0) return live?.record ?? record;
    let timer: NodeJS.Timeout | undefined;
    let waiter: ((ended: TaskRecord) => void) | undefined;
    try {
      return await new Promise<TaskRecord>((resolve) => {
        waiter = resolve;
        live.waiters.add(resolve);
        timer = setTimeout(() => resolve(live.record), waitMs);
      });
    } finally {
      clearTimeout(timer);
      if (waiter) live.waiters.delete(waiter);
    }
  }

  private async purgeExpired(): Promise<void> {
    const cutoff = new Date(Date.now() - this.config.RESULT_RETENTION_HOURS * 3_600_000);
    try {
      const deleted = await this.store.deleteFinishedBefore(cutoff);
      if (deleted > 0)
        this.logger.info({ deleted, cutoff }, 'Purged finished tasks past retention');
    } catch (error) {
      this.logger.error({ err: error }, 'Retention purge failed');
    }
  }
}
