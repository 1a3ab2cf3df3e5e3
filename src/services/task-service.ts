import type { Config } from '../config';
import type { Logger } from '../logger';
import type { TaskStore } from '../db/task-store';
import { ErrorCode, TaskwireError } from '../errors';
import type { TaskEvent } from './events';
import { TaskEventBus } from './events';
import { createTaskId, UUID_PATTERN } from './ids';
import { LiveTaskRegistry } from './live-tasks';
import type { LlmProvider } from './llm/provider';
import type { JobOutcome } from './queue/worker-pool';
import type { QueueItem } from './queue/priority-queue';
import { WorkerPool } from './queue/worker-pool';
import { PriorityQueue, QueueFullError } from './queue/priority-queue';
import type { SubmitTaskInput, ValidSubmission } from './task-input';
import { invalidInput, validateSubmission } from './task-input';
import { TaskRunner } from './task-runner';
import type { TaskRecord, TaskStatus } from './task-types';
import { TaskEventKind, TaskStatus as Status, isTerminal } from './task-types';
import { recoverTasks } from './task-recovery';

/** Who is calling: tasks belong to their submitter, and only admins see other users' tasks. */
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
  private readonly pendingKeys = new Map<string, Promise<TaskRecord>>();
  private admitting = 0;
  private shuttingDown = false;
  private retentionTimer?: NodeJS.Timeout;
  private closing?: Promise<void>;

  constructor(options: TaskServiceOptions) {
    this.config = options.config;
    this.store = options.store;
    this.provider = options.provider;
    this.logger = options.logger.child({ area: 'queue' });
    this.bus = options.bus ?? new TaskEventBus();
    this.tasks = new LiveTaskRegistry(this.store, this.bus, this.logger);
    this.queue = new PriorityQueue({
      capacity: this.config.QUEUE_MAX_SIZE,
      agingMs: this.config.QUEUE_AGING_MS,
    });
    this.pool = this.createPool();
  }

  /** Recovers tasks left by a previous run, then starts the workers and the retention purge. */
  async start(): Promise<void> {
    const queued = await recoverTasks(this.store, this.config.TASK_MAX_ATTEMPTS, this.logger);
    for (const record of queued) this.enqueue(record, true);
    this.pool.start();
    this.retentionTimer = setInterval(
      () => void this.purgeExpired(),
      this.config.RETENTION_SWEEP_MS,
    );
    this.retentionTimer.unref();
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
    const submission = validateSubmission(input, {
      promptMaxChars: this.config.PROMPT_MAX_CHARS,
      maxTokens: this.config.TASK_MAX_TOKENS,
    });
    this.assertAccepting();
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
    const record = this.tasks.get(id)?.record ?? (await this.store.get(id));
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

  private createPool(): WorkerPool<QueueItem> {
    const runner = new TaskRunner({
      provider: this.provider,
      tasks: this.tasks,
      logger: this.logger,
      maxAttempts: this.config.TASK_MAX_ATTEMPTS,
      retryBaseMs: this.config.TASK_RETRY_BASE_MS,
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
      this.tasks.release(live);
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
    if (existing) return this.tasks.get(existing.id)?.record ?? existing;
    return this.admit(submission, caller);
  }

  /** Reserves a queue place, commits the QUEUED row, then enqueues. */
  private async admit(submission: ValidSubmission, caller: Caller): Promise<TaskRecord> {
    if (this.queue.size + this.admitting >= this.queue.capacity) throw this.queueFull();
    this.admitting += 1;
    try {
      const record = this.createRecord(submission, caller);
      await this.store.insert(record);
      this.assertAccepting();
      this.enqueue(record, false);
      return record;
    } finally {
      this.admitting -= 1;
    }
  }

  private queueFull(): QueueFullError {
    return new QueueFullError(this.queue.capacity, this.queue.size + this.admitting);
  }

  private createRecord(submission: ValidSubmission, caller: Caller): TaskRecord {
    return {
      id: createTaskId(),
      userId: caller.userId,
      status: Status.QUEUED,
      priority: submission.priority,
      prompt: submission.prompt,
      system: submission.system,
      model: submission.model ?? this.provider.defaultModel,
      params: submission.params,
      result: null,
      error: null,
      usage: null,
      cacheKey: null,
      cached: false,
      attempts: 0,
      idempotencyKey: submission.idempotencyKey,
      lastSeq: 0,
      createdAt: new Date(),
      startedAt: null,
      finishedAt: null,
    };
  }

  /** Queues a task whose row is committed and publishes its position. */
  private enqueue(record: TaskRecord, recovered: boolean): void {
    const job = { id: record.id, priority: record.priority };
    const enqueuedAt = recovered ? record.createdAt.getTime() : undefined;
    this.pool.add(job, {
      enqueuedAt,
      force: true,
      onQueued: () => this.tasks.add(record, this.queue.position(record.id) ?? null),
    });
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

function canSee(caller: Caller, record: TaskRecord): boolean {
  return caller.isAdmin || record.userId === caller.userId;
}

function notFound(id: string): TaskwireError {
  return new TaskwireError(ErrorCode.NOT_FOUND, `Task ${id} was not found.`, {
    extensions: { id },
  });
}

const TERMINAL_EVENT_KIND = {
  [Status.COMPLETED]: TaskEventKind.COMPLETED,
  [Status.FAILED]: TaskEventKind.FAILED,
  [Status.CANCELLED]: TaskEventKind.CANCELLED,
} as const;

/** One event with a finished task's final state, or none when the client has seen it. */
async function* finalStateReplay(record: TaskRecord, afterSeq: number): AsyncGenerator<TaskEvent> {
  if (!isTerminal(record.status)) return;
  const seq = Math.max(record.lastSeq, 1);
  if (afterSeq >= seq) return;
  const kind = TERMINAL_EVENT_KIND[record.status as keyof typeof TERMINAL_EVENT_KIND];
  yield {
    seq,
    kind,
    task: record,
    delta: null,
    queuePosition: null,
    at: record.finishedAt ?? new Date(),
  };
}
