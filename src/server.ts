import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ExecutionArgs, GraphQLError } from 'graphql';
import { GraphQLError as GraphQLErrorClass } from 'graphql';
import type { YogaServerInstance, YogaLogger } from 'graphql-yoga';
import { createYoga, maskError } from 'graphql-yoga';
import { useServer } from 'graphql-ws/use/ws';
import type { Extra } from 'graphql-ws/use/ws';
import type { Context as WsContext, SubscribePayload } from 'graphql-ws';
import { WebSocketServer } from 'ws';
import type { Config } from './config';
import type { Logger } from './logger';
import { createLogger } from './logger';
import { TaskStore } from './db/task-store';
import { parseDatabaseUrl } from './db/orm';
import { Metrics } from './services/metrics/metrics';
import type { MetricsSources } from './services/metrics/metrics';
import { createSchema } from './schema/schema';
import { useRequestErrorCodes } from './schema/request-error-codes';
import type { GraphQLContext } from './schema/context';
import { createProvider } from './services/llm/create-provider';
import type { LlmProvider } from './services/llm/provider';
import { resolveCaller } from './auth';
import { TaskService } from './services/task-service';

/** Path of the GraphQL endpoint for HTTP, SSE and WebSocket. */
export const GRAPHQL_PATH = '/graphql';

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

type Yoga = YogaServerInstance<Record<string, unknown>, GraphQLContext>;

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
    logger,
  });
  const metrics = new Metrics();
  let tasks: TaskService | undefined;
  try {
    const provider = options.provider ?? createProvider(config, logger);
    tasks = new TaskService({ config, store, provider, logger, metrics });
    metrics.attach(metricsSources(tasks, store, config));
    await tasks.start();
  } catch (error) {
    metrics.close();
    await tasks?.close();
    await store.close();
    throw error;
  }
  return listen({ config, logger, store, tasks, metrics });
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
}

async function listen(parts: ServerParts): Promise<ServerHandle> {
  const { config, logger, store, tasks, metrics } = parts;
  const yoga = createYogaServer(parts);
  const httpServer = createHttpServer((request, response) =>
    handleRequest(request, response, yoga, parts),
  );
  const wsServer = new WebSocketServer({ server: httpServer, path: GRAPHQL_PATH });
  wsServer.on('connection', (socket) => {
    metrics.webSocketOpened();
    socket.once('close', () => metrics.webSocketClosed());
  });
  const stopMetricsLog = logMetricsPeriodically(metrics, logger, config.METRICS_LOG_INTERVAL_MS);
  const wsHandle = useServer(createWsOptions(yoga, logger), wsServer);
  httpServer.listen(config.PORT, config.HOST);
  await once(httpServer, 'listening');
  const { port } = httpServer.address() as AddressInfo;
  const host = config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST;
  logger.info({ url: `http://${host}:${port}${GRAPHQL_PATH}` }, 'Taskwire is listening');

  let closing: Promise<void> | undefined;
  const close = () => {
    stopMetricsLog();
    closing ??= shutdown(logger, tasks, () => wsHandle.dispose(), httpServer, store).finally(() =>
      metrics.close(),
    );
    return closing;
  };
  return {
    url: `http://${host}:${port}${GRAPHQL_PATH}`,
    wsUrl: `ws://${host}:${port}${GRAPHQL_PATH}`,
    port,
    tasks,
    store,
    close,
  };
}

/** The Authorization header of an HTTP request, or `authorization` in graphql-ws connectionParams. */
function authorizationOf(initial: Record<string, unknown>): string | null {
  const request = initial.request as Request | undefined;
  const params = initial.connectionParams as Record<string, unknown> | undefined;
  const fromParams = params?.authorization ?? params?.Authorization;
  if (typeof fromParams === 'string') return fromParams;
  return request?.headers.get('authorization') ?? null;
}

function createYogaServer({ tasks, logger, metrics, config }: ServerParts): Yoga {
  const httpLogger = logger.child({ area: 'http' });
  return createYoga<Record<string, unknown>, GraphQLContext>({
    schema: createSchema(),
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    plugins: [useRequestErrorCodes()],
    logging: toYogaLogger(httpLogger),
    maskedErrors: {
      maskError: (error, message, isDev) => {
        const masked = maskError(error, message, isDev);
        if (masked !== error) {
          const original =
            error instanceof GraphQLErrorClass ? (error.originalError ?? error) : error;
          httpLogger.error({ err: original }, 'Unexpected error while resolving an operation');
        }
        return masked;
      },
    },
    context: (initial) => ({
      tasks,
      metrics,
      caller: resolveCaller({ authorization: authorizationOf(initial) }, config.ADMIN_TOKEN),
      logger: httpLogger,
      transport: initial.socket === undefined ? 'sse' : 'websocket',
    }),
  });
}

function handleRequest(
  request: IncomingMessage,
  response: ServerResponse,
  yoga: Yoga,
  { tasks, metrics, logger }: ServerParts,
): void {
  const path = request.url?.split('?')[0];
  if (path === '/metrics') {
    metrics.prometheus().then(
      (text) => {
        response.writeHead(200, { 'content-type': metrics.registry.contentType });
        response.end(text);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'Failed to collect metrics');
        sendJson(response, 500, { error: 'Failed to collect metrics' });
      },
    );
  } else if (path === '/health') {
    sendJson(response, 200, { status: 'ok' });
  } else if (path === '/ready') {
    const ready = tasks.accepting;
    sendJson(response, ready ? 200 : 503, { status: ready ? 'ready' : 'shutting down' });
  } else {
    void yoga(request, response);
  }
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  response.end(text);
}

type WsArgs = ExecutionArgs & { rootValue: ReturnType<Yoga['getEnveloped']> };

/**
 * graphql-ws options that run every operation through yoga's envelop plugins, so masking and
 * context work as over HTTP. Parse and validation errors are returned for that operation only:
 * thrown, they would close the whole socket and every other operation on it.
 */
function createWsOptions(yoga: Yoga, logger: Logger) {
  const wsLogger = logger.child({ area: 'ws' });
  return {
    execute: (args: ExecutionArgs) => (args as WsArgs).rootValue.execute(args),
    subscribe: (args: ExecutionArgs) => (args as WsArgs).rootValue.subscribe(args),
    onSubscribe: async (
      ctx: WsContext<Record<string, unknown>, Extra>,
      _id: string,
      payload: SubscribePayload,
    ): Promise<ExecutionArgs | readonly GraphQLError[]> => {
      const enveloped = yoga.getEnveloped({
        ...ctx,
        req: ctx.extra.request,
        socket: ctx.extra.socket,
        params: payload,
      });
      let document;
      try {
        document = enveloped.parse(payload.query);
      } catch (error) {
        return [toOperationError(error, 'GRAPHQL_PARSE_FAILED')];
      }
      const errors = enveloped.validate(enveloped.schema, document);
      if (errors.length > 0)
        return errors.map((error: GraphQLError) =>
          toOperationError(error, 'GRAPHQL_VALIDATION_FAILED'),
        );
      try {
        const contextValue = await enveloped.contextFactory();
        return {
          schema: enveloped.schema,
          operationName: payload.operationName,
          document,
          variableValues: payload.variables,
          contextValue,
          rootValue: enveloped,
        };
      } catch (error) {
        wsLogger.error({ err: error }, 'Failed to build the context of a WebSocket operation');
        return [toOperationError(new Error('Internal server error'), 'INTERNAL_SERVER_ERROR')];
      }
    },
  };
}

function toOperationError(error: unknown, code: string): GraphQLError {
  const message = error instanceof Error ? error.message : String(error);
  const base = error instanceof GraphQLErrorClass ? error : undefined;
  return new GraphQLErrorClass(message, {
    nodes: base?.nodes,
    source: base?.source,
    positions: base?.positions,
    extensions: { ...base?.extensions, code: base?.extensions.code ?? code },
  });
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

function toYogaLogger(logger: Logger): YogaLogger {
  return {
    debug: (...args: unknown[]) => logger.debug(args.map(String).join(' ')),
    info: (...args: unknown[]) => logger.info(args.map(String).join(' ')),
    warn: (...args: unknown[]) => logger.warn(args.map(String).join(' ')),
    error: (...args: unknown[]) => {
      const error = args.find((arg) => arg instanceof Error);
      logger.error(
        { err: error },
        args
          .filter((arg) => arg !== error)
          .map(String)
          .join(' '),
      );
    },
  };
}

async function shutdown(
  logger: Logger,
  tasks: TaskService,
  disposeWs: () => void | Promise<void>,
  httpServer: Server,
  store: TaskStore,
): Promise<void> {
  const steps: Array<[string, () => unknown]> = [
    ['stop the task queue', () => tasks.close()],
    ['close WebSocket connections', () => disposeWs()],
    ['close the HTTP server', () => closeHttpServer(httpServer)],
    ['close the database', () => store.close()],
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
