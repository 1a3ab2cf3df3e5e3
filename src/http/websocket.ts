import type { Server } from 'node:http';
import type { ExecutionArgs } from 'graphql';
import { GraphQLError } from 'graphql';
import { CloseCode } from 'graphql-ws';
import type { Context as WsContext, SubscribePayload } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import type { Extra } from 'graphql-ws/use/ws';
import type { WebSocket } from 'ws';
import { WebSocketServer } from 'ws';
import type { Authenticator } from '../auth';
import type { Config } from '../config';
import { ErrorCode, isTaskwireError } from '../errors';
import type { Logger } from '../logger';
import type { Metrics } from '../services/metrics/metrics';
import type { Caller } from '../services/task-service';
import { isAllowedOrigin } from './origin';
import type { Yoga } from './yoga';
import { GRAPHQL_PATH } from './yoga';

/** What the WebSocket endpoint needs from the rest of the server. */
export interface WebSocketParts {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  auth: Authenticator;
}

/** The graphql-ws endpoint; `dispose()` closes every socket. */
export interface WebSocketEndpoint {
  dispose(): Promise<void>;
}

type ConnectionContext = WsContext<Record<string, unknown>, Extra & { caller?: Caller }>;
type WsArgs = ExecutionArgs & { rootValue: ReturnType<Yoga['getEnveloped']> };

/**
 * Serves graphql-ws on the HTTP server's port with its limits: connection_init timeout, maximum
 * message size (ws closes an oversized message with 1009), maximum subscriptions per socket,
 * keepalive pings that drop peers which stop answering, and authentication at connection time
 * (an invalid key closes the socket with 4403 Forbidden).
 */
export function createWebSocketEndpoint(
  httpServer: Server,
  yoga: Yoga,
  parts: WebSocketParts,
): WebSocketEndpoint {
  const { config, metrics } = parts;
  const wsServer = new WebSocketServer({
    server: httpServer,
    path: GRAPHQL_PATH,
    maxPayload: config.MAX_BODY_BYTES,
    verifyClient: ({ origin, req }: { origin: string; req: { headers: { host?: string } } }) =>
      isAllowedOrigin(origin, req.headers.host, config.CORS_ORIGINS),
  });
  wsServer.on('connection', (socket) => {
    metrics.webSocketOpened();
    const stopKeepalive = keepAlive(socket, config.WS_KEEPALIVE_MS);
    socket.once('close', () => {
      stopKeepalive();
      metrics.webSocketClosed();
    });
  });
  const handle = useServer(createOptions(yoga, parts), wsServer);
  return { dispose: async () => handle.dispose() };
}

/** Pings the peer every `intervalMs` and terminates it when the previous ping got no pong. */
function keepAlive(socket: WebSocket, intervalMs: number): () => void {
  if (intervalMs === 0) return () => undefined;
  let alive = true;
  socket.on('pong', () => (alive = true));
  const timer = setInterval(() => {
    if (!alive) {
      socket.terminate();
      return;
    }
    alive = false;
    socket.ping();
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

function createOptions(yoga: Yoga, parts: WebSocketParts) {
  const logger = parts.logger.child({ area: 'ws' });
  return {
    connectionInitWaitTimeout: parts.config.WS_INIT_TIMEOUT_MS,
    execute: (args: ExecutionArgs) => (args as WsArgs).rootValue.execute(args),
    subscribe: (args: ExecutionArgs) => (args as WsArgs).rootValue.subscribe(args),
    onConnect: async (ctx: ConnectionContext) => {
      const authorization = ctx.connectionParams?.authorization;
      try {
        ctx.extra.caller = await parts.auth.authenticate(
          typeof authorization === 'string' ? authorization : null,
        );
        return true;
      } catch (error) {
        if (!isTaskwireError(error, ErrorCode.UNAUTHENTICATED)) throw error;
        logger.info({ reason: error.message }, 'Rejected a WebSocket connection');
        return false;
      }
    },
    onSubscribe: (ctx: ConnectionContext, id: string, payload: SubscribePayload) =>
      prepareOperation(yoga, parts.config, ctx, id, payload, logger),
  };
}

/**
 * Parses and validates one operation through yoga's envelop plugins, so masking, limits and
 * context work as over HTTP. Errors are returned for that operation only: thrown, they would
 * close the whole socket and every other operation on it.
 */
async function prepareOperation(
  yoga: Yoga,
  config: Config,
  ctx: ConnectionContext,
  id: string,
  payload: SubscribePayload,
  logger: Logger,
): Promise<ExecutionArgs | readonly GraphQLError[]> {
  const active = Object.keys(ctx.subscriptions).filter((key) => key !== id).length;
  if (active >= config.WS_MAX_SUBSCRIPTIONS) {
    return [
      operationError(
        `Too many operations on this connection: ${active} of ${config.WS_MAX_SUBSCRIPTIONS} are active. Complete some or open another connection.`,
        ErrorCode.RATE_LIMITED,
      ),
    ];
  }
  const enveloped = yoga.getEnveloped({
    ...ctx,
    req: ctx.extra.request,
    socket: ctx.extra.socket,
    caller: ctx.extra.caller,
    params: payload,
  });
  let document;
  try {
    document = enveloped.parse(payload.query);
  } catch (error) {
    return [toOperationError(error, 'GRAPHQL_PARSE_FAILED')];
  }
  const errors = enveloped.validate(enveloped.schema, document);
  if (errors.length > 0) {
    return errors.map((error: GraphQLError) =>
      toOperationError(error, 'GRAPHQL_VALIDATION_FAILED'),
    );
  }
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
    if (error instanceof GraphQLError) return [error];
    logger.error({ err: error }, 'Failed to build the context of a WebSocket operation');
    return [operationError('Unexpected error.', ErrorCode.INTERNAL)];
  }
}

function operationError(message: string, code: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code } });
}

function toOperationError(error: unknown, code: string): GraphQLError {
  const message = error instanceof Error ? error.message : String(error);
  const base = error instanceof GraphQLError ? error : undefined;
  return new GraphQLError(message, {
    nodes: base?.nodes,
    source: base?.source,
    positions: base?.positions,
    extensions: { ...base?.extensions, code: base?.extensions.code ?? code },
  });
}

export { CloseCode };
