import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SchemaBuilder from '@pothos/core';
import { createYoga } from 'graphql-yoga';
import pino from 'pino';
import { WebSocketServer } from 'ws';
import type { Config } from '../../src/config';
import { parseConfig } from '../../src/config';
import type { ServerHandle, ServerOptions } from '../../src/server';
import { createServer } from '../../src/server';

/** A Taskwire server started by the benchmark, with its own SQLite file. */
export interface BenchServer extends ServerHandle {
  dir: string;
  dbPath: string;
  /** Closes the server and removes its directory. */
  dispose(): Promise<void>;
}

/** Creates a temporary directory for one benchmark database. */
export function makeTempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'taskwire-bench-'));
}

/**
 * Starts Taskwire on 127.0.0.1 with a free port, the demo provider, no logging and a queue large
 * enough for the load; `settings` override any of these.
 */
export async function startTaskwire(
  settings: Partial<Record<keyof Config, unknown>> = {},
  options: ServerOptions & { dir?: string } = {},
): Promise<BenchServer> {
  const dir = options.dir ?? (await makeTempDir());
  const dbPath = join(dir, 'taskwire.db');
  const config = parseConfig({
    HOST: '127.0.0.1',
    PORT: 0,
    DATABASE_URL: `file:${dbPath}`,
    LLM_PROVIDER: 'demo',
    LOG_LEVEL: 'silent',
    METRICS_LOG_INTERVAL_MS: 0,
    QUEUE_MAX_SIZE: 100_000,
    WS_MAX_SUBSCRIPTIONS: 10_000,
    SHUTDOWN_GRACE_MS: 500,
    ...settings,
  });
  const server = await createServer(config, { logger: pino({ level: 'silent' }), ...options });
  const dispose = async () => {
    await server.close();
    if (options.dir === undefined) await rm(dir, { recursive: true, force: true });
  };
  return { ...server, dir, dbPath, dispose };
}

/** A stock server started by the benchmark as a baseline. */
export interface BaselineServer {
  url: string;
  close(): Promise<void>;
}

/**
 * Starts graphql-yoga with its defaults and a Pothos schema of one no-op mutation, on node:http:
 * the server Taskwire's throughput target is measured against.
 */
export async function startStockYoga(): Promise<BaselineServer> {
  const builder = new SchemaBuilder({});
  builder.queryType({ fields: (t) => ({ ok: t.boolean({ resolve: () => true }) }) });
  builder.mutationType({ fields: (t) => ({ noop: t.boolean({ resolve: () => true }) }) });
  const yoga = createYoga({ schema: builder.toSchema(), logging: false });
  const server = createHttpServer(yoga);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/graphql`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A plain `ws` server that sends every message to every connected socket. */
export interface RawBroadcaster {
  url: string;
  /** Sockets connected now. */
  size(): number;
  broadcast(text: string): void;
  close(): Promise<void>;
}

/** Starts a `ws` server on 127.0.0.1 with no protocol on top: the fan-out baseline. */
export async function startRawBroadcaster(): Promise<RawBroadcaster> {
  const server = createHttpServer();
  const wss = new WebSocketServer({ server });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    size: () => wss.clients.size,
    broadcast: (text) => {
      for (const socket of wss.clients) socket.send(text);
    },
    close: async () => {
      for (const socket of wss.clients) socket.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
