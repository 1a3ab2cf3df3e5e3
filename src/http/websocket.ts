import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { DocumentNode, ExecutionArgs } from 'graphql';
import { GraphQLError, OperationTypeNode, getOperationAST } from 'graphql';
import { CloseCode, handleProtocols, makeServer } from 'graphql-ws';
import type {
  Server as GraphQLWsServer,
  ServerOptions,
  Context as WsContext,
  SubscribePayload,
} from 'graphql-ws';
import type { WebSocket } from 'ws';
import { WebSocketServer } from 'ws';
import type { Authenticator } from '../auth';
import type { Config } from '../config';
import { ErrorCode, isTaskwireError } from '../errors';
import type { Logger } from '../logger';
import type { Metrics } from '../services/metrics/metrics';
import type { Caller } from '../services/task-service';
import { isAllowedOrigin } from './origin';
import type { DocumentCache } from './document-cache';
import type { Yoga } from './yoga';
import { GRAPHQL_PATH } from './yoga';

/** What the WebSocket endpoint needs from the rest of the server. */
export interface WebSocketParts {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  auth: Authenticator;
  /** The documents yoga has parsed and validated; operations met before skip both steps. */
  documents: DocumentCache;
}

/** The graphql-ws endpoint; `dispose()` closes every socket. */
export interface WebSocketEndpoint {
  dispose(): Promise<void>;
}

/** State of one connection: its socket, its caller once authenticated, and an operation count. */
interface ConnectionExtra {
  socket: WebSocket;
  caller?: Caller;
  /**
   * Operations admitted since the open ones were last counted: at least as many as are open, so
   * below the limit it proves there is room without walking `ctx.subscriptions`.
   */
  operations: number;
}

type ConnectionContext = WsContext<Record<string, unknown>, ConnectionExtra>;
type WsArgs = ExecutionArgs & { rootValue: ReturnType<Yoga['getEnveloped']> };

/**
 * Bytes a socket may have waiting in its send buffer before `send` makes graphql-ws wait for the
 * write. A client that reads costs no promise per message. One that stops reading slows down its
 * own subscriptions, whose events then pile up in the event bus up to its per-subscriber limit.
 */
const SEND_BUFFER_BYTES = 64 * 1024;

/** WebSocket close code 1001: the server is going away. */
const GOING_AWAY = 1001;

/**
 * Serves graphql-ws on the HTTP server's port with its limits: connection_init timeout, maximum
 * message size (ws closes an oversized message with 1009), maximum subscriptions per socket,
 * keepalive pings that drop peers which stop answering, and authentication at connection time
 * (an invalid key closes the socket with 4403 Forbidden).
 *
 * The sockets are wired to graphql-ws here rather than through its `useServer`, to keep a
 * connection small. One keepalive timer serves all sockets instead of two timers per socket, the
 * upgrade request is not kept, and a message to a client that keeps up costs no promise.
 */
export function createWebSocketEndpoint(
  httpServer: Server,
  yoga: Yoga,
  parts: WebSocketParts,
): WebSocketEndpoint {
  // TODO(ws): with 10,000 subscribers of one task, a token takes longer than 100 ms to reach them
  // all, and each connection keeps about 12 KB, because graphql-ws and envelop run a promise chain
  // and keep a context per subscription. Next step: one serialized message per event and operation.
  const { config, metrics } = parts;
  const logger = parts.logger.child({ area: 'ws' });
  const wsServer = new WebSocketServer({
    server: httpServer,
    path: GRAPHQL_PATH,
    maxPayload: config.MAX_BODY_BYTES,
    handleProtocols,
    verifyClient: ({ origin, req }: { origin: string; req: { headers: { host?: string } } }) =>
      isAllowedOrigin(origin, req.headers.host, config.CORS_ORIGINS),
  });
  const protocol = makeServer<Record<string, unknown>, ConnectionExtra>(
    createOptions(yoga, parts, logger),
  );
  wsServer.on('error', (error) => logger.error({ err: error }, 'WebSocket server error'));
  wsServer.on('connection', (socket) => {
    metrics.webSocketOpened();
    serveSocket(socket, protocol, logger);
    socket.once('close', () => metrics.webSocketClosed());
  });
  const stopKeepalive = keepAlive(wsServer, config.WS_KEEPALIVE_MS);
  return {
    dispose: async () => {
      stopKeepalive();
      for (const socket of wsServer.clients) socket.close(GOING_AWAY, 'Going away');
      await new Promise<void>((resolve, reject) =>
        wsServer.close((error) => (error ? reject(error) : resolve())),
      );
    },
  };
}

/**
 * State the listeners of one socket use, kept per socket rather than in closures, which cost more
 * memory.
 */
interface SocketState {
  logger: Logger;
  /** graphql-ws's message handler, set when it starts listening. */
  handle?: (data: string) => Promise<void>;
  /** graphql-ws's clean-up for a closed socket. */
  closed?: (code?: number, reason?: string) => Promise<void>;
}

const socketStates = new WeakMap<WebSocket, SocketState>();

/** The socket interface graphql-ws calls, as methods on a small object rather than closures. */
class ProtocolSocket {
  constructor(private readonly socket: WebSocket) {}

  get protocol(): string {
    return this.socket.protocol;
  }

  send(data: string): Promise<void> | undefined {
    return send(this.socket, data);
  }

  close(code?: number, reason?: string): void {
    this.socket.close(code, reason);
  }

  onMessage(handle: (data: string) => Promise<void>): void {
    const state = socketStates.get(this.socket);
    if (state) state.handle = handle;
    this.socket.on('message', onSocketMessage);
  }
}

/** Connects one socket to the graphql-ws protocol. */
function serveSocket(
  socket: WebSocket,
  protocol: GraphQLWsServer<ConnectionExtra>,
  logger: Logger,
): void {
  const state: SocketState = { logger };
  socketStates.set(socket, state);
  socket.on('error', onSocketError);
  state.closed = protocol.opened(new ProtocolSocket(socket), { socket, operations: 0 });
  socket.once('close', onSocketClose);
}

function onSocketError(this: WebSocket, error: Error & { code?: unknown }): void {
  const logger = socketStates.get(this)?.logger;
  if (typeof error.code === 'string' && error.code.startsWith('WS_ERR_')) {
    // The client broke the WebSocket protocol (a message over the size limit, say); ws has
    // already closed the socket with the matching code.
    logger?.info(
      { code: error.code, reason: error.message },
      'Closed a WebSocket after a client error',
    );
    return;
  }
  logger?.warn({ err: error }, 'WebSocket error; closing the connection');
  this.close(CloseCode.InternalServerError, 'Internal server error');
}

function onSocketMessage(this: WebSocket, data: unknown): void {
  const state = socketStates.get(this);
  if (!state?.handle) return;
  // For a subscription the handler settles only when the subscription ends.
  state.handle(String(data)).catch((error: unknown) => {
    state.logger.error({ err: error }, 'Failed to handle a graphql-ws message');
    this.close(CloseCode.InternalServerError, 'Internal server error');
  });
}

function onSocketClose(this: WebSocket, code: number, reason: Buffer): void {
  const state = socketStates.get(this);
  state?.closed?.(code, String(reason)).catch((error: unknown) => {
    state.logger.error({ err: error }, 'Failed to clean up a closed WebSocket');
  });
}

/** Sends at once while the socket keeps up, else resolves when the message has been written. */
function send(socket: WebSocket, data: string): Promise<void> | undefined {
  if (socket.readyState !== socket.OPEN) return undefined;
  holdBurst(socket);
  if (socket.bufferedAmount < SEND_BUFFER_BYTES) {
    socket.send(data);
    return undefined;
  }
  return new Promise((resolve, reject) =>
    socket.send(data, (error) => (error ? reject(error) : resolve())),
  );
}

/**
 * Holds the socket's writes until the current callbacks and their promise jobs have run, so the two
 * messages of a query or mutation (`next`, then `complete`) leave in one system call instead of one
 * each. Subscription events are not held: with many subscribers, holding would delay every
 * message until the last subscriber's had been prepared. `_socket` is ws's own TCP socket; without
 * it, messages go out one by one.
 */
function corkUntilNextTick(socket: WebSocket): void {
  const stream = (socket as unknown as { _socket?: Duplex })._socket;
  if (stream === undefined || stream.writableCorked > 0) return;
  stream.cork();
  process.nextTick(uncork, stream);
}

function uncork(stream: Duplex): void {
  stream.uncork();
}

/** Sockets that have sent a message since the last tick ended. */
const sentThisTick = new Set<WebSocket>();
let clearScheduled = false;

/**
 * Lets a socket's first message of a tick go out at once and delays the ones after it until the
 * tick ends. A burst to one socket (the replay of a task's events, say) then leaves in two system
 * calls instead of one per message, while one message to each of many sockets is never delayed.
 */
function holdBurst(socket: WebSocket): void {
  if (sentThisTick.has(socket)) {
    corkUntilNextTick(socket);
    return;
  }
  sentThisTick.add(socket);
  if (!clearScheduled) {
    clearScheduled = true;
    process.nextTick(clearSent);
  }
}

function clearSent(): void {
  sentThisTick.clear();
  clearScheduled = false;
}

const answered = new WeakSet<WebSocket>();

function markAnswered(this: WebSocket): void {
  answered.add(this);
}

/**
 * Pings every socket every `intervalMs` from one timer, and terminates a socket that did not
 * reply to the previous ping.
 */
function keepAlive(wsServer: WebSocketServer, intervalMs: number): () => void {
  if (intervalMs === 0) return () => undefined;
  wsServer.on('connection', (socket) => {
    answered.add(socket);
    socket.on('pong', markAnswered);
  });
  const timer = setInterval(() => {
    for (const socket of wsServer.clients) {
      if (!answered.delete(socket)) {
        socket.terminate();
        continue;
      }
      socket.ping();
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

function createOptions(
  yoga: Yoga,
  parts: WebSocketParts,
  logger: Logger,
): ServerOptions<Record<string, unknown>, ConnectionExtra> {
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
      prepareOperation(yoga, parts, ctx, id, payload, logger),
    onNext: (ctx: ConnectionContext, _id: string, _payload: SubscribePayload, args) => {
      const operation = getOperationAST(args.document, args.operationName);
      if (operation?.operation !== OperationTypeNode.SUBSCRIPTION) {
        corkUntilNextTick(ctx.extra.socket);
      }
      return undefined;
    },
  };
}

/**
 * Parses and validates one operation through yoga's envelop plugins, so masking, limits and
 * context work as over HTTP. Errors are returned for that operation only: thrown, they would
 * close the whole socket and every other operation on it.
 */
async function prepareOperation(
  yoga: Yoga,
  { config, documents }: WebSocketParts,
  ctx: ConnectionContext,
  id: string,
  payload: SubscribePayload,
  logger: Logger,
): Promise<ExecutionArgs | readonly GraphQLError[]> {
  const limit = config.WS_MAX_SUBSCRIPTIONS;
  if (ctx.extra.operations >= limit) {
    // The count only grows between these checks; walking the open operations costs more, so it
    // is done only when the count reaches the limit.
    ctx.extra.operations = countOthers(ctx.subscriptions, id, limit);
    if (ctx.extra.operations >= limit) {
      return [
        operationError(
          `This connection already has ${limit} operations open or starting, the most allowed. Complete some or open another connection.`,
          ErrorCode.RATE_LIMITED,
        ),
      ];
    }
  }
  ctx.extra.operations += 1;
  return buildArgs(yoga, documents, ctx, payload, logger);
}

/** Operations open on the connection besides `id` (graphql-ws lists them while they start too). */
function countOthers(open: Record<string, unknown>, id: string, limit: number): number {
  let count = 0;
  for (const key in open) {
    if (key !== id && ++count >= limit) break;
  }
  return count;
}

async function buildArgs(
  yoga: Yoga,
  documents: DocumentCache,
  ctx: ConnectionContext,
  payload: SubscribePayload,
  logger: Logger,
): Promise<ExecutionArgs | readonly GraphQLError[]> {
  const enveloped = yoga.getEnveloped({
    connectionParams: ctx.connectionParams,
    socket: ctx.extra.socket,
    caller: ctx.extra.caller,
    params: payload,
  });
  // A document parsed and validated before skips the plugins' parse and validate hooks: their
  // checks (token and depth limits among them) gave the same result the first time.
  let document: DocumentNode;
  const cached = documents.document(payload.query);
  if (cached !== undefined) {
    document = cached;
  } else {
    try {
      document = enveloped.parse(payload.query) as DocumentNode;
    } catch (error) {
      return [toOperationError(error, 'GRAPHQL_PARSE_FAILED')];
    }
  }
  const errors = documents.validation(document) ?? enveloped.validate(enveloped.schema, document);
  if (errors.length > 0) {
    return errors.map((error: GraphQLError) =>
      toOperationError(error, 'GRAPHQL_VALIDATION_FAILED'),
    );
  }
  // graphql-ws would reply to this with an error of its own, without a code.
  if (!getOperationAST(document, payload.operationName)) {
    return [
      operationError(
        payload.operationName
          ? `The document has no operation named ${JSON.stringify(payload.operationName).slice(0, 100)}.`
          : 'The document has several operations: name the one to run in operationName.',
        'OPERATION_RESOLUTION_FAILURE',
      ),
    ];
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
