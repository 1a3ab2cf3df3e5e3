// A benchmark server run as a child process (see startServerProcess), so that its resident set
// size does not include the load client's or the bench runner's memory. It takes commands over
// IPC: start Taskwire or a raw `ws` broadcaster, report RSS after a full GC, broadcast
// time-stamped messages (raw only), and close.
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Config } from '../../src/config';
import type { BenchServer, RawBroadcaster } from './servers';
import { startRawBroadcaster, startTaskwire } from './servers';
import { now, sleep } from './stats';

/** Commands the parent sends. */
type Command =
  | { type: 'start-taskwire'; settings: Partial<Record<keyof Config, unknown>> }
  | { type: 'start-raw' }
  | { type: 'memory' }
  | { type: 'broadcast'; messages: number; intervalMs: number }
  | { type: 'close' };

/** Replies the child sends back. */
type Reply =
  | { type: 'listening'; url: string; wsUrl: string }
  | { type: 'memory'; memory: ServerMemory }
  | { type: 'broadcast-done' }
  | { type: 'closed' }
  | { type: 'error'; message: string };

/** Memory of the child in bytes, measured after a full garbage collection. */
export interface ServerMemory {
  /** Resident set size: everything the process holds, heap reserve included. */
  rss: number;
  /** V8 heap in use plus memory of JavaScript objects held outside it (buffers). */
  heap: number;
}

/** A server in a child process. */
export interface ServerProcess {
  url: string;
  wsUrl: string;
  memory(): Promise<ServerMemory>;
  /**
   * Sends `messages` graphql-ws `next` messages to every socket, `intervalMs` apart, each stamped
   * with its send time, then a `complete`. Only for the raw broadcaster.
   */
  broadcast(messages: number, intervalMs: number): Promise<void>;
  close(): Promise<void>;
}

const KILL_AFTER_MS = 300_000;

/**
 * `--cpu-prof` flags when `BENCH_CPU_PROF` names a directory: each server process then writes a
 * CPU profile there when it stops.
 */
function profileArgs(): string[] {
  const dir = process.env.BENCH_CPU_PROF;
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [];
}

/**
 * Forks this file under tsx with `--expose-gc` and the young-generation size `npm start` uses, and
 * starts Taskwire or the raw broadcaster in it.
 */
export async function startServerProcess(
  kind: { taskwire: Partial<Record<keyof Config, unknown>> } | 'raw',
): Promise<ServerProcess> {
  const child = fork(__filename, [], {
    execArgv: ['--import', 'tsx', '--expose-gc', '--max-semi-space-size=32', ...profileArgs()],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
  child.once('exit', () => clearTimeout(killer));
  const start: Command =
    kind === 'raw' ? { type: 'start-raw' } : { type: 'start-taskwire', settings: kind.taskwire };
  const listening = await request(child, start, 'listening');
  if (listening.type !== 'listening') throw new Error('Server process did not start');
  return {
    url: listening.url,
    wsUrl: listening.wsUrl,
    memory: async () => {
      const reply = await request(child, { type: 'memory' }, 'memory');
      return reply.type === 'memory' ? reply.memory : { rss: Number.NaN, heap: Number.NaN };
    },
    broadcast: async (messages, intervalMs) => {
      await request(child, { type: 'broadcast', messages, intervalMs }, 'broadcast-done');
    },
    close: async () => {
      if (child.exitCode !== null) return;
      await request(child, { type: 'close' }, 'closed');
    },
  };
}

/** Sends one command and resolves with the reply of type `expected`. */
function request(child: ChildProcess, command: Command, expected: Reply['type']): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const onMessage = (reply: Reply) => {
      if (reply.type === 'error') reject(new Error(`Server process failed: ${reply.message}`));
      else if (reply.type === expected) resolve(reply);
      else return;
      cleanup();
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`Server process exited with code ${code} while waiting for ${expected}`));
    };
    const cleanup = () => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send(command);
  });
}

/** Runs the commands in the child process. */
function serve(): void {
  let taskwire: BenchServer | undefined;
  let raw: RawBroadcaster | undefined;
  const send = (reply: Reply) => process.send?.(reply);
  const handle = async (command: Command): Promise<void> => {
    switch (command.type) {
      case 'start-taskwire':
        taskwire = await startTaskwire(command.settings);
        send({ type: 'listening', url: taskwire.url, wsUrl: taskwire.wsUrl });
        return;
      case 'start-raw':
        raw = await startRawBroadcaster();
        send({ type: 'listening', url: raw.url, wsUrl: raw.url });
        return;
      case 'memory': {
        (globalThis as { gc?: () => void }).gc?.();
        const usage = process.memoryUsage();
        send({ type: 'memory', memory: { rss: usage.rss, heap: usage.heapUsed + usage.external } });
        return;
      }
      case 'broadcast':
        if (raw === undefined) throw new Error('broadcast needs the raw broadcaster');
        for (let index = 0; index < command.messages; index += 1) {
          await sleep(command.intervalMs);
          const event = { seq: index + 3, kind: 'TOKEN', delta: `ts:${now().toFixed(3)} ` };
          raw.broadcast(
            JSON.stringify({ id: '1', type: 'next', payload: { data: { taskEvents: event } } }),
          );
        }
        raw.broadcast(JSON.stringify({ id: '1', type: 'complete' }));
        send({ type: 'broadcast-done' });
        return;
      case 'close':
        await taskwire?.dispose();
        await raw?.close();
        process.send?.({ type: 'closed' }, () => process.exit(0));
        return;
    }
  };
  process.on('message', (command: Command) => {
    handle(command).catch((error: unknown) => {
      send({ type: 'error', message: String(error instanceof Error ? error.stack : error) });
    });
  });
}

if (require.main === module && process.send !== undefined) serve();
