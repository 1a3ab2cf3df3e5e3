import pino from 'pino';
import { ErrorCode, TaskwireError } from '../../src/errors';
import { PriorityQueue, QueueFullError } from '../../src/services/queue/priority-queue';
import type { QueueItem } from '../../src/services/queue/priority-queue';
import {
  CancelledError,
  ShutdownError,
  TimeoutError,
  WorkerPool,
} from '../../src/services/queue/worker-pool';
import type {
  JobContext,
  JobSettledEvent,
  WorkerPoolOptions,
} from '../../src/services/queue/worker-pool';

type Job = QueueItem;
type Handler = WorkerPoolOptions<Job>['handler'];

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

function createDeferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((onResolve, onReject) => {
    resolve = onResolve;
    reject = onReject;
  });
  return { promise, resolve, reject };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Lets pending promise callbacks and immediate timers run. */
function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A handler that ignores its signal and never settles. */
const hang: Handler = () => new Promise<void>(() => undefined);

const pools: WorkerPool<Job>[] = [];

function createPool(
  handler: Handler,
  options: Partial<Omit<WorkerPoolOptions<Job>, 'handler'>> = {},
): WorkerPool<Job> {
  const pool = new WorkerPool<Job>({
    queue: new PriorityQueue<Job>({ capacity: 1000, agingMs: 60_000 }),
    concurrency: 2,
    timeoutMs: 5000,
    logger: pino({ level: 'silent' }),
    handler,
    ...options,
  });
  pools.push(pool);
  return pool;
}

function recordSettled(pool: WorkerPool<Job>): JobSettledEvent<Job>[] {
  const events: JobSettledEvent<Job>[] = [];
  pool.on('settled', (event) => events.push(event));
  return events;
}

function outcomeKinds(events: JobSettledEvent<Job>[]): Record<string, string> {
  return Object.fromEntries(events.map((event) => [event.job.id, event.outcome.kind]));
}

function addJobs(pool: WorkerPool<Job>, prefix: string, count: number, priority = 0): string[] {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
  for (const id of ids) {
    pool.add({ id, priority });
  }
  return ids;
}

afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close({ graceMs: 0 })));
});

describe('WorkerPool', () => {
  describe('options', () => {
    it.each([0, 1.5, NaN])('rejects concurrency %p', (concurrency) => {
      expect(() => createPool(hang, { concurrency })).toThrow(
        `Expected concurrency to be an integer of at least 1, got ${String(concurrency)}.`,
      );
    });

    it.each([0, NaN, 2 ** 31])('rejects timeoutMs %p', (timeoutMs) => {
      expect(() => createPool(hang, { timeoutMs })).toThrow(
        `Expected timeoutMs to be greater than 0 and at most 2147483647, got ${String(timeoutMs)}.`,
      );
    });

    it('rejects a negative graceMs', () => {
      const pool = createPool(hang);

      expect(() => pool.close({ graceMs: -1 })).toThrow(
        'Expected graceMs to be from 0 to 2147483647 or Infinity, got -1.',
      );
    });

    it('rejects setConcurrency below 1', () => {
      const pool = createPool(hang);

      expect(() => pool.setConcurrency(0)).toThrow(
        'Expected concurrency to be an integer of at least 1, got 0.',
      );
      expect(pool.concurrency).toBe(2);
    });
  });

  describe('scheduling', () => {
    it('holds jobs until start', async () => {
      const handler = jest.fn(hang);
      const pool = createPool(handler);
      addJobs(pool, 'j', 3);
      await flush();

      expect(handler).not.toHaveBeenCalled();
      expect(pool.running).toBe(0);
      pool.start();
      expect(pool.running).toBe(2);
      expect(pool.runningIds()).toEqual(['j0', 'j1']);
      expect(pool.isRunning('j0')).toBe(true);
      expect(pool.isRunning('j2')).toBe(false);
    });

    it('starts jobs in queue order', async () => {
      const order: string[] = [];
      const pool = createPool(
        async (job) => {
          order.push(job.id);
        },
        { concurrency: 1 },
      );
      pool.add({ id: 'low', priority: 0 });
      pool.add({ id: 'high', priority: 9 });
      pool.add({ id: 'middle', priority: 5 });
      pool.start();
      await pool.onIdle();

      expect(order).toEqual(['high', 'middle', 'low']);
    });

    it('passes a signal and start time to the handler', async () => {
      const contexts: JobContext[] = [];
      const pool = createPool(async (_job, context) => {
        contexts.push(context);
      });
      const before = Date.now();
      pool.start();
      pool.add({ id: 'a', priority: 0 });
      await pool.onIdle();

      expect(contexts).toHaveLength(1);
      expect(contexts[0].signal.aborted).toBe(false);
      expect(contexts[0].startedAt).toBeGreaterThanOrEqual(before);
      expect(contexts[0].startedAt).toBeLessThanOrEqual(Date.now());
    });

    it('never exceeds concurrency with random job lengths', async () => {
      let inFlight = 0;
      let maxInFlight = 0;
      const pool = createPool(
        async () => {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          await delay(1 + Math.random() * 10);
          inFlight--;
        },
        { concurrency: 3 },
      );
      const settled = recordSettled(pool);
      pool.start();
      addJobs(pool, 'j', 40);
      await pool.onIdle();

      expect(maxInFlight).toBe(3);
      expect(settled).toHaveLength(40);
      expect(settled.every((event) => event.outcome.kind === 'completed')).toBe(true);
      expect(pool.running).toBe(0);
    });

    it('keeps concurrency when a settled listener adds jobs', async () => {
      let maxRunning = 0;
      let added = 0;
      const pool = createPool(() => delay(2), { concurrency: 2 });
      pool.on('start', () => {
        maxRunning = Math.max(maxRunning, pool.running);
      });
      pool.on('settled', () => {
        if (added < 20) {
          pool.add({ id: `extra${added++}`, priority: 0 });
        }
      });
      const settled = recordSettled(pool);
      pool.start();
      addJobs(pool, 'j', 4);
      await pool.onIdle();

      expect(maxRunning).toBe(2);
      expect(settled).toHaveLength(24);
    });

    it('survives a handler that throws synchronously', async () => {
      const pool = createPool(
        (job) => {
          if (job.id === 'bad') {
            throw new Error('broken handler');
          }
          return Promise.resolve();
        },
        { concurrency: 1 },
      );
      const settled = recordSettled(pool);
      pool.add({ id: 'bad', priority: 1 });
      pool.add({ id: 'good', priority: 0 });
      pool.start();
      await pool.onIdle();

      expect(outcomeKinds(settled)).toEqual({ bad: 'failed', good: 'completed' });
      expect(settled[0].outcome).toEqual({ kind: 'failed', error: new Error('broken handler') });
    });

    it('starts many synchronously failing jobs without deep recursion', () => {
      const pool = createPool(
        () => {
          throw new Error('fails at once');
        },
        { concurrency: 1, queue: new PriorityQueue<Job>({ capacity: 20_000, agingMs: 1000 }) },
      );
      const settled = recordSettled(pool);
      addJobs(pool, 'j', 20_000);
      pool.start();

      expect(settled).toHaveLength(20_000);
      expect(pool.running).toBe(0);
    });

    it('reports a rejected handler as failed', async () => {
      const failure = new Error('provider down');
      const pool = createPool(async () => {
        await delay(1);
        throw failure;
      });
      const settled = recordSettled(pool);
      pool.start();
      pool.add({ id: 'a', priority: 0 });
      pool.add({ id: 'b', priority: 0 });
      await pool.onIdle();

      expect(settled.map((event) => event.outcome)).toEqual([
        { kind: 'failed', error: failure },
        { kind: 'failed', error: failure },
      ]);
      expect(pool.running).toBe(0);
    });

    it('rejects a full queue and a duplicate id', () => {
      const pool = createPool(hang, {
        queue: new PriorityQueue<Job>({ capacity: 1, agingMs: 1000 }),
      });
      pool.add({ id: 'a', priority: 0 });

      expect(() => pool.add({ id: 'b', priority: 0 })).toThrow(QueueFullError);
      expect(() => pool.add({ id: 'a', priority: 0 }, { force: true })).toThrow(
        'Item "a" is already in the queue.',
      );
      pool.add({ id: 'c', priority: 0 }, { force: true });
      expect(pool.runningIds()).toEqual([]);
    });
  });

  describe('timeout', () => {
    it('frees the slots of hung handlers', async () => {
      const signals = new Map<string, AbortSignal>();
      let maxRunning = 0;
      const pool = createPool(
        (job, context) => {
          signals.set(job.id, context.signal);
          return job.id.startsWith('hung') ? hang(job, context) : delay(5);
        },
        { concurrency: 2, timeoutMs: 40 },
      );
      pool.on('start', () => {
        maxRunning = Math.max(maxRunning, pool.running);
      });
      const settled = recordSettled(pool);
      addJobs(pool, 'hung', 2, 1);
      addJobs(pool, 'normal', 5, 0);
      pool.start();
      await pool.onIdle();

      expect(outcomeKinds(settled)).toEqual({
        hung0: 'timeout',
        hung1: 'timeout',
        normal0: 'completed',
        normal1: 'completed',
        normal2: 'completed',
        normal3: 'completed',
        normal4: 'completed',
      });
      expect(signals.get('hung0')?.reason).toBeInstanceOf(TimeoutError);
      expect(signals.get('hung1')?.reason).toBeInstanceOf(TimeoutError);
      expect(signals.get('normal0')?.aborted).toBe(false);
      expect(pool.running).toBe(0);
      expect(pool.concurrency).toBe(2);
      expect(maxRunning).toBe(2);
    });

    it('ignores a handler that settles after its timeout', async () => {
      const pool = createPool(
        async (job) => {
          await delay(40);
          if (job.id === 'rejects') {
            throw new Error('late failure');
          }
        },
        { timeoutMs: 10 },
      );
      const settled = recordSettled(pool);
      pool.start();
      pool.add({ id: 'resolves', priority: 0 });
      pool.add({ id: 'rejects', priority: 0 });
      await pool.onIdle();
      await delay(60);

      expect(outcomeKinds(settled)).toEqual({ resolves: 'timeout', rejects: 'timeout' });
      expect(settled).toHaveLength(2);
    });

    it('gives the timeout error a code and the limit', () => {
      const error = new TimeoutError(250);

      expect(error).toBeInstanceOf(TaskwireError);
      expect(error.name).toBe('TimeoutError');
      expect(error.code).toBe(ErrorCode.TIMEOUT);
      expect(error.extensions).toEqual({ code: ErrorCode.TIMEOUT, timeoutMs: 250 });
      expect(error.message).toBe('The task timed out after 250 ms and was stopped.');
    });
  });

  describe('cancel', () => {
    it('removes a queued job so it never starts', async () => {
      const handler = jest.fn((_job: Job) => delay(5));
      const pool = createPool(handler, { concurrency: 1 });
      const settled = recordSettled(pool);
      addJobs(pool, 'j', 3);

      expect(pool.cancel('j1')).toBe('queued');
      expect(settled).toHaveLength(1);
      expect(settled[0].job.id).toBe('j1');
      expect(settled[0].outcome.kind).toBe('cancelled');
      expect(settled[0].durationMs).toBe(0);
      pool.start();
      await pool.onIdle();

      expect(handler.mock.calls.map(([job]) => job.id)).toEqual(['j0', 'j2']);
    });

    it('aborts a running job and frees its slot at once', () => {
      const signals = new Map<string, AbortSignal>();
      const pool = createPool(
        (job, context) => {
          signals.set(job.id, context.signal);
          return hang(job, context);
        },
        { concurrency: 1 },
      );
      const settled = recordSettled(pool);
      pool.start();
      addJobs(pool, 'j', 2);

      expect(pool.cancel('j0')).toBe('running');
      const reason: unknown = signals.get('j0')?.reason;
      expect(reason).toBeInstanceOf(CancelledError);
      expect((reason as CancelledError).code).toBe(ErrorCode.CANCELLED);
      expect(settled).toHaveLength(1);
      expect(settled[0].outcome).toEqual({ kind: 'cancelled', reason });
      expect(pool.isRunning('j0')).toBe(false);
      expect(pool.runningIds()).toEqual(['j1']);
    });

    it('passes a custom reason to the signal and outcome', () => {
      let signal: AbortSignal | undefined;
      const pool = createPool((_job, context) => {
        signal = context.signal;
        return new Promise<void>(() => undefined);
      });
      const settled = recordSettled(pool);
      pool.start();
      pool.add({ id: 'a', priority: 0 });
      const reason = new Error('user request');
      pool.cancel('a', reason);

      expect(signal?.reason).toBe(reason);
      expect(settled[0].outcome).toEqual({ kind: 'cancelled', reason });
    });

    it('ignores a handler that settles after cancel', async () => {
      const deferreds = new Map<string, Deferred>();
      const pool = createPool((job) => {
        const deferred = createDeferred();
        deferreds.set(job.id, deferred);
        return deferred.promise;
      });
      const settled = recordSettled(pool);
      pool.start();
      pool.add({ id: 'resolves', priority: 0 });
      pool.add({ id: 'rejects', priority: 0 });
      pool.cancel('resolves');
      pool.cancel('rejects');
      deferreds.get('resolves')?.resolve();
      deferreds.get('rejects')?.reject(new Error('aborted'));
      await flush();

      expect(outcomeKinds(settled)).toEqual({ resolves: 'cancelled', rejects: 'cancelled' });
      expect(settled).toHaveLength(2);
    });

    it('returns undefined for an unknown or finished job', async () => {
      const pool = createPool(() => Promise.resolve());
      pool.start();
      pool.add({ id: 'a', priority: 0 });
      await pool.onIdle();

      expect(pool.cancel('a')).toBeUndefined();
      expect(pool.cancel('missing')).toBeUndefined();
    });

    it('skips the handler of a job cancelled by a start listener', async () => {
      let maxRunning = 0;
      const handler = jest.fn((_job: Job) => delay(2));
      const pool = createPool(handler, { concurrency: 2 });
      pool.on('start', (job) => {
        maxRunning = Math.max(maxRunning, pool.running);
        if (job.id === 'j1') {
          pool.cancel(job.id);
        }
      });
      const settled = recordSettled(pool);
      addJobs(pool, 'j', 5);
      pool.start();
      await pool.onIdle();

      expect(handler.mock.calls.map(([job]) => job.id)).toEqual(['j0', 'j2', 'j3', 'j4']);
      expect(outcomeKinds(settled)).toMatchObject({ j1: 'cancelled', j4: 'completed' });
      expect(maxRunning).toBe(2);
    });
  });

  describe('setConcurrency', () => {
    it('starts queued jobs at once when it grows', () => {
      const pool = createPool(hang, { concurrency: 1 });
      addJobs(pool, 'j', 6);
      pool.start();

      expect(pool.running).toBe(1);
      pool.setConcurrency(4);
      expect(pool.running).toBe(4);
      expect(pool.concurrency).toBe(4);
    });

    it('lets running jobs finish when it shrinks', async () => {
      const deferreds = new Map<string, Deferred>();
      const pool = createPool(
        (job) => {
          const deferred = createDeferred();
          deferreds.set(job.id, deferred);
          return deferred.promise;
        },
        { concurrency: 3 },
      );
      const settled = recordSettled(pool);
      addJobs(pool, 'j', 5);
      pool.start();
      pool.setConcurrency(1);

      expect(pool.runningIds()).toEqual(['j0', 'j1', 'j2']);
      deferreds.get('j0')?.resolve();
      await flush();
      expect(pool.runningIds()).toEqual(['j1', 'j2']);
      deferreds.get('j1')?.resolve();
      await flush();
      expect(pool.runningIds()).toEqual(['j2']);
      deferreds.get('j2')?.resolve();
      await flush();
      expect(pool.runningIds()).toEqual(['j3']);
      expect(outcomeKinds(settled)).toEqual({ j0: 'completed', j1: 'completed', j2: 'completed' });
    });

    it('runs 200 jobs once each while concurrency changes', async () => {
      const runs = new Map<string, number>();
      let overLimit = 0;
      let maxRunning = 0;
      const pool = createPool(
        async (job) => {
          runs.set(job.id, (runs.get(job.id) ?? 0) + 1);
          await delay(Math.random() * 3);
        },
        { concurrency: 2 },
      );
      pool.on('start', () => {
        maxRunning = Math.max(maxRunning, pool.running);
        if (pool.running > pool.concurrency) {
          overLimit++;
        }
      });
      const settled = recordSettled(pool);
      pool.on('settled', () => {
        if (settled.length === 40) {
          pool.setConcurrency(6);
        } else if (settled.length === 120) {
          pool.setConcurrency(1);
        }
      });
      const ids = addJobs(pool, 'j', 200);
      pool.start();
      await pool.onIdle();

      expect(settled).toHaveLength(200);
      expect(settled.every((event) => event.outcome.kind === 'completed')).toBe(true);
      expect(ids.filter((id) => runs.get(id) !== 1)).toEqual([]);
      expect(overLimit).toBe(0);
      expect(maxRunning).toBe(6);
      expect(pool.concurrency).toBe(1);
    });
  });

  describe('pause', () => {
    it('starts nothing while paused and resumes', async () => {
      const done: string[] = [];
      const pool = createPool(async (job) => {
        await delay(5);
        done.push(job.id);
      });
      pool.start();
      pool.add({ id: 'running', priority: 0 });
      pool.pause();
      addJobs(pool, 'waiting', 3);

      expect(pool.paused).toBe(true);
      expect(pool.runningIds()).toEqual(['running']);
      await delay(20);
      expect(done).toEqual(['running']);
      expect(pool.running).toBe(0);

      pool.resume();
      expect(pool.paused).toBe(false);
      expect(pool.running).toBe(2);
      await pool.onIdle();
      expect(done).toHaveLength(4);
    });
  });

  describe('onIdle', () => {
    it('resolves at once when nothing is pending', async () => {
      const pool = createPool(hang);

      await expect(pool.onIdle()).resolves.toBeUndefined();
    });

    it('resolves after every job settles and emits idle once', async () => {
      const idle = jest.fn();
      let settledCount = 0;
      const pool = createPool(() => delay(5));
      pool.on('idle', idle);
      pool.on('settled', () => settledCount++);
      addJobs(pool, 'j', 5);
      const whenIdle = pool.onIdle();
      pool.start();
      await whenIdle;

      expect(settledCount).toBe(5);
      expect(pool.running).toBe(0);
      expect(idle).toHaveBeenCalledTimes(1);
    });

    it('waits for queued jobs before start', async () => {
      const pool = createPool(() => Promise.resolve());
      pool.add({ id: 'a', priority: 0 });
      let resolved = false;
      const whenIdle = pool.onIdle().then(() => {
        resolved = true;
      });
      await delay(10);

      expect(resolved).toBe(false);
      pool.start();
      await whenIdle;
      expect(resolved).toBe(true);
    });
  });

  describe('events', () => {
    it('emits dequeued before start', () => {
      const events: string[] = [];
      const pool = createPool(hang, { concurrency: 1 });
      pool.on('dequeued', (job) => events.push(`dequeued ${job.id}`));
      pool.on('start', (job) => events.push(`start ${job.id}`));
      addJobs(pool, 'j', 2);
      pool.start();

      expect(events).toEqual(['dequeued j0', 'start j0']);
    });

    it('logs a throwing listener and keeps running', async () => {
      const lines: string[] = [];
      const logger = pino({ level: 'error' }, { write: (line: string) => lines.push(line) });
      const pool = createPool(() => Promise.resolve(), { logger });
      const after = jest.fn();
      pool.on('settled', () => {
        throw new Error('listener bug');
      });
      pool.on('settled', after);
      pool.start();
      addJobs(pool, 'j', 3);
      await pool.onIdle();

      expect(after).toHaveBeenCalledTimes(3);
      expect(lines).toHaveLength(3);
      const entry = JSON.parse(lines[0]) as {
        msg: string;
        event: string;
        err: { message: string };
      };
      expect(entry.msg).toBe('Worker pool event listener failed');
      expect(entry.event).toBe('settled');
      expect(entry.err.message).toBe('listener bug');
    });

    it('stops calling an unsubscribed listener', async () => {
      const listener = jest.fn();
      const pool = createPool(() => Promise.resolve());
      const unsubscribe = pool.on('start', listener);
      pool.start();
      pool.add({ id: 'a', priority: 0 });
      unsubscribe();
      pool.add({ id: 'b', priority: 0 });
      await pool.onIdle();

      expect(listener).toHaveBeenCalledTimes(1);
    });
  });

  describe('close', () => {
    it('lets running jobs finish within the grace period', async () => {
      const handler = jest.fn(() => delay(30));
      const pool = createPool(handler, { concurrency: 2 });
      const settled = recordSettled(pool);
      addJobs(pool, 'j', 3);
      pool.start();
      const started = performance.now();
      await pool.close({ graceMs: 1000 });

      expect(performance.now() - started).toBeLessThan(1000);
      expect(outcomeKinds(settled)).toEqual({ j0: 'completed', j1: 'completed' });
      expect(handler).toHaveBeenCalledTimes(2);
      expect(pool.running).toBe(0);
      await expect(pool.onIdle()).resolves.toBeUndefined();
    });

    it('keeps queued jobs and rejects new ones', async () => {
      const handler = jest.fn(() => Promise.resolve());
      const queue = new PriorityQueue<Job>({ capacity: 10, agingMs: 1000 });
      const pool = createPool(handler, { queue });
      pool.add({ id: 'queued', priority: 0 });
      await pool.close();

      expect(queue.has('queued')).toBe(true);
      expect(() => pool.add({ id: 'late', priority: 0 })).toThrow(TaskwireError);
      expect(() => pool.add({ id: 'late', priority: 0 })).toThrow(
        'The server is shutting down and accepts no new tasks. Retry on another instance or later.',
      );
      pool.start();
      expect(pool.running).toBe(0);
      expect(handler).not.toHaveBeenCalled();
    });

    it('interrupts jobs still running after the grace period', async () => {
      let signal: AbortSignal | undefined;
      const pool = createPool((job, context) => {
        signal = context.signal;
        return hang(job, context);
      });
      const settled = recordSettled(pool);
      pool.start();
      pool.add({ id: 'stuck', priority: 0 });
      const started = performance.now();
      await pool.close({ graceMs: 30 });

      expect(performance.now() - started).toBeGreaterThanOrEqual(25);
      expect(settled.map((event) => event.outcome)).toEqual([{ kind: 'interrupted' }]);
      expect(signal?.reason).toBeInstanceOf(ShutdownError);
      expect((signal?.reason as ShutdownError).code).toBe(ErrorCode.INTERRUPTED);
      expect(pool.running).toBe(0);
    });

    it('returns the same promise on every call', async () => {
      const pool = createPool(() => delay(10));
      const settled = recordSettled(pool);
      pool.start();
      pool.add({ id: 'a', priority: 0 });
      const first = pool.close({ graceMs: 500 });

      expect(pool.close({ graceMs: 0 })).toBe(first);
      expect(pool[Symbol.asyncDispose]()).toBe(first);
      await first;
      expect(outcomeKinds(settled)).toEqual({ a: 'completed' });
    });
  });
});
