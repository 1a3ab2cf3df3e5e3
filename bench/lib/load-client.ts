import { fork } from 'node:child_process';
import { join } from 'node:path';

/** A closed loop of HTTP POSTs. */
export interface HttpJob {
  mode: 'http';
  url: string;
  body: string;
  concurrency: number;
  durationMs: number;
  maxOps: number;
  /** Milliseconds of load before measuring starts. @default 0 */
  warmupMs?: number;
}

/** A closed loop of operations over one graphql-ws socket. */
export interface WsOpsJob {
  mode: 'ws-ops';
  wsUrl: string;
  query: string;
  concurrency: number;
  durationMs: number;
  maxOps: number;
  /** Milliseconds of load before measuring starts. @default 0 */
  warmupMs?: number;
}

/** Many sockets that each receive the same stream of time-stamped messages. */
export interface FanoutJob {
  mode: 'fanout';
  wsUrl: string;
  count: number;
  protocol: 'graphql-ws' | 'raw';
  query?: string;
  variables?: Record<string, unknown>;
  timeoutMs: number;
  /** Sockets opened at once. */
  openBatch: number;
}

/** What the load client sends back. */
export interface LoadResult {
  ops: number;
  errors: number;
  /** Milliseconds from the first request to the last answer (closed loops only). */
  elapsedMs?: number;
  /** Milliseconds per operation, or per message for fan-out. */
  latencies: number[];
}

/** A running load client. */
export interface LoadClient {
  /** Resolves when a fan-out client has subscribed every socket. */
  ready: Promise<void>;
  result: Promise<LoadResult>;
  pid: number | undefined;
}

const SCRIPT = join(__dirname, 'load-client.mjs');

/**
 * Starts the load generator in a child process and hands it `job`. The child exits by itself once
 * it has sent its result; `killAfterMs` ends it if it does not.
 */
export function startLoadClient(
  job: HttpJob | WsOpsJob | FanoutJob,
  killAfterMs = 120_000,
): LoadClient {
  const child = fork(SCRIPT, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const result = new Promise<LoadResult>((resolve, reject) => {
    child.on('message', (message: { type: string; message?: string } & LoadResult) => {
      if (message.type === 'ready') markReady();
      else if (message.type === 'result') resolve(message);
      else if (message.type === 'error')
        reject(new Error(`Load client failed: ${message.message}`));
    });
    child.once('exit', (code) => {
      clearTimeout(killer);
      reject(new Error(`Load client exited with code ${code} before sending a result.`));
    });
  });
  child.send(job);
  return { ready, result, pid: child.pid };
}
