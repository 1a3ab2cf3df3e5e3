import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Authenticator } from './auth';
import type { Config } from './config';
import { parseDatabaseUrl } from './db/orm';
import { ProcessLock } from './db/process-lock';
import { TaskStore } from './db/task-store';
import { createRequestHandler } from './http/routes';
import { DocumentCache } from './http/document-cache';
import { createWebSocketEndpoint } from './http/websocket';
import { GRAPHQL_PATH, createYogaServer } from './http/yoga';
import type { Logger } from './logger';
import { createLogger } from './logger';
import { createProvider } from './services/llm/create-provider';
import type { LlmProvider } from './services/llm/provider';
import { Metrics } from './services/metrics/metrics';
import type { MetricsSources } from './services/metrics/metrics';
import { TaskService } from './services/task-service';

export { GRAPHQL_PATH };

/** Options for {@link createServer}. */
export interface ServerOptions {
  /** @default a pino logger at `config.LOG_LEVEL` */
  logger?: Logger;
  /** Replaces the provider chosen from the configuration. @default createProvider(config) */
  provider?: LlmProvider;
}

/** A running server. */
export interface ServerHandle {
  /** `http://HOST:PORT/graphql` */
  url: string;
  /** `ws://HOST:PORT/graphql` */
  wsUrl: string;
  port: number;
  tasks: TaskService;
  store: TaskStore;
  /** Stops intake, finishes or re-queues running tasks, closes sockets and the database. Idempotent. */
  close(): Promise<void>;
}

/** Starts the HTTP, SSE and WebSocket server with its database, queue and provider. */
export async function createServer(
  config: Config,
  options: ServerOptions = {},
): Promise<ServerHandle> {
  const logger = options.logger ?? createLogger({ level: config.LOG_LEVEL });
  const store = await TaskStore.open({
    databaseUrl: config.DATABASE_URL,
    busyTimeoutMs: config.DB_BUSY_TIMEOUT_MS,
    flushIntervalMs: config.DB_FLUSH_INTERVAL_MS,
    flushMaxRecords: config.DB_FLUSH_MAX_RECORDS,
    checkpointIntervalMs: config.DB_CHECKPOINT_INTERVAL_MS,
    logger,
  });
  const lock = await lockDatabase(config, store);
  const metrics = new Metrics();
  let tasks: TaskService | undefined;
  let provider: LlmProvider | undefined;
  try {
    provider = options.provider ?? createProvider(config, logger);
    // A model that cannot load fails the start instead of every task.
    await provider.ready?.();
    tasks = new TaskService({ config, store, provider, logger, metrics });
    metrics.attach(metricsSources(tasks, store, config));
    await tasks.start();
    const auth = new Authenticator({
      mode: config.AUTH_MODE,
      apiKeys: store.apiKeys,
      adminToken: config.ADMIN_TOKEN,
      logger: logger.child({ area: 'auth' }),
    });
    logger.info({ authMode: config.AUTH_MODE }, 'Authentication configured');
    return await listen({ config, logger, store, tasks, metrics, auth, lock });
  } catch (error) {
    metrics.close();
    await (tasks ? tasks.close() : provider?.close());
    await store.close();
    await lock?.release();
    throw error;
  }
}

/** Takes the lock file of a SQLite file database, closing the store when another server has it. */
async function lockDatabase(config: Config, store: TaskStore): Promise<ProcessLock | null> {
  const { filename } = parseDatabaseUrl(config.DATABASE_URL);
  if (filename === ':memory:') return null;
  try {
    return await ProcessLock.acquire(`${filename}.lock`);
  } catch (error) {
    await store.close();
    throw error;
  }
}

function metricsSources(tasks: TaskService, store: TaskStore, config: Config): MetricsSources {
  const { filename } = parseDatabaseUrl(config.DATABASE_URL);
  return {
    queue: () => tasks.snapshot(),
    cache: () => tasks.cacheStats(),
    writer: store.writer,
    walPath: filename === ':memory:' ? null : `${filename}-wal`,
  };
}

/** The parts a listening server is made of. */
interface ServerParts {
  config: Config;
  logger: Logger;
  store: TaskStore;
  tasks: TaskService;
  metrics: Metrics;
  auth: Authenticator;
  lock: ProcessLock | null;
}

async function listen(parts: ServerParts): Promise<ServerHandle> {
  const { config, logger, tasks, metrics } = parts;
  const documents = new DocumentCache();
  const yoga = createYogaServer({ ...parts, documents });
  const httpServer = createHttpServer(
    createRequestHandler(yoga, {
      tasks,
      metrics,
      logger,
      maxBodyBytes: config.MAX_BODY_BYTES,
      allowedOrigins: config.CORS_ORIGINS,
    }),
  );
  const ws = createWebSocketEndpoint(httpServer, yoga, { ...parts, documents });
  const stopMetricsLog = logMetricsPeriodically(metrics, logger, config.METRICS_LOG_INTERVAL_MS);
  try {
    httpServer.listen(config.PORT, config.HOST);
    await once(httpServer, 'listening');
  } catch (error) {
    stopMetricsLog();
    await ws.dispose();
    throw error;
  }
  const { port } = httpServer.address() as AddressInfo;
  const host = config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST;
  logger.info({ url: `http://${host}:${port}${GRAPHQL_PATH}` }, 'Taskwire is listening');

  let closing: Promise<void> | undefined;
  const close = () => {
    stopMetricsLog();
    closing ??= shutdown(parts, () => ws.dispose(), httpServer);
    return closing;
  };
  return {
    url: `http://${host}:${port}${GRAPHQL_PATH}`,
    wsUrl: `ws://${host}:${port}${GRAPHQL_PATH}`,
    port,
    tasks,
    store: parts.store,
    close,
  };
}

/** Logs queue and cache figures every `intervalMs`; returns a function that stops it. */
function logMetricsPeriodically(metrics: Metrics, logger: Logger, intervalMs: number): () => void {
  if (intervalMs === 0) return () => undefined;
  const log = logger.child({ area: 'metrics' });
  const timer = setInterval(() => {
    metrics.snapshot().then(
      ({ queue, cache }) =>
        log.info(
          {
            depth: queue.depth,
            running: queue.running,
            workers: queue.workers,
            cacheHitRate: Number(cache.hitRate.toFixed(3)),
          },
          'Queue and cache figures',
        ),
      (error: unknown) => log.error({ err: error }, 'Failed to collect metrics'),
    );
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** Runs every shutdown step in order, each even when an earlier one failed. */
async function shutdown(
  { logger, tasks, store, metrics, lock }: ServerParts,
  disposeWs: () => void | Promise<void>,
  httpServer: Server,
): Promise<void> {
  const steps: Array<[string, () => unknown]> = [
    ['stop the task queue', () => tasks.close()],
    ['close WebSocket connections', () => disposeWs()],
    ['close the HTTP server', () => closeHttpServer(httpServer)],
    ['close the database', () => store.close()],
    ['release the database lock', () => lock?.release()],
    ['stop the metrics', () => metrics.close()],
  ];
  for (const [name, step] of steps) {
    try {
      await step();
    } catch (error) {
      logger.error({ err: error }, `Shutdown failed to ${name}`);
    }
  }
  logger.info('Taskwire stopped');
}

async function closeHttpServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  // SSE responses and keep-alive requests in flight would hold close() open.
  setTimeout(() => server.closeAllConnections(), 1000).unref();
  await closed;
}
