import { Socket } from 'node:net';
import type { BenchSettings } from '../lib/report';
import type { Percentiles } from '../lib/stats';
import { atFixedRate, now, summarize } from '../lib/stats';

const REDIS = { host: '127.0.0.1', port: 6379 };

/** The part of BullMQ's API the peer uses (bullmq 6.x). */
interface BullMqModule {
  Queue: new (
    name: string,
    options: { connection: typeof REDIS },
  ) => {
    add(name: string, data: unknown, options?: Record<string, unknown>): Promise<{ id?: string }>;
    obliterate(options: { force: boolean }): Promise<void>;
    close(): Promise<void>;
  };
  Worker: new (
    name: string,
    processor: (job: { data: unknown }) => Promise<unknown>,
    options: { connection: typeof REDIS; concurrency: number },
  ) => { close(): Promise<void> };
  QueueEvents: new (
    name: string,
    options: { connection: typeof REDIS },
  ) => {
    on(event: 'completed', listener: (args: { jobId: string }) => void): void;
    waitUntilReady(): Promise<unknown>;
    close(): Promise<void>;
  };
}

/** BullMQ's latency, or why it was not measured. */
export interface BullMqResult {
  summary?: Percentiles;
  note: string;
}

async function loadBullMq(): Promise<BullMqModule | undefined> {
  // Loaded only when the peer runs; a variable name keeps the import dynamic for TypeScript.
  const name = 'bullmq';
  try {
    return (await import(name)) as BullMqModule;
  } catch {
    return undefined;
  }
}

function redisReachable(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(REDIS.port, REDIS.host, () => done(true));
  });
}

/**
 * Measures add→`completed` (seen through QueueEvents) of no-op BullMQ jobs on 127.0.0.1:6379 at the
 * same rate as Taskwire's latency scenario, in a queue of its own (`taskwire-bench-<pid>`) that it
 * removes at the end. Skips with a note under `--no-bullmq`, when bullmq is not installed or when
 * Redis does not answer.
 */
export async function measureBullMq(settings: BenchSettings): Promise<BullMqResult> {
  if (!settings.bullmq) return { note: 'BullMQ skipped: --no-bullmq' };
  const bull = await loadBullMq();
  if (bull === undefined) return { note: 'BullMQ skipped: the bullmq package is not installed' };
  if (!(await redisReachable())) return { note: 'BullMQ skipped: no Redis on 127.0.0.1:6379' };
  const queueName = `taskwire-bench-${process.pid}`;
  const queue = new bull.Queue(queueName, { connection: REDIS });
  const events = new bull.QueueEvents(queueName, { connection: REDIS });
  const worker = new bull.Worker(queueName, async (job) => job.data, {
    connection: REDIS,
    concurrency: 8,
  });
  const waiting = new Map<string, () => void>();
  events.on('completed', ({ jobId }) => waiting.get(jobId)?.());
  try {
    await events.waitUntilReady();
    const probe = async (index: number) => {
      const started = now();
      const done = new Promise<void>((resolve) => waiting.set(`job-${index}`, resolve));
      await queue.add('probe', { index }, { jobId: `job-${index}`, removeOnComplete: true });
      await done;
      return now() - started;
    };
    const latencies = await atFixedRate(settings.rateTasks, settings.ratePerSecond, probe);
    return { summary: summarize(latencies), note: `${latencies.length} jobs` };
  } finally {
    await worker.close();
    await events.close();
    await queue.obliterate({ force: true });
    await queue.close();
  }
}
