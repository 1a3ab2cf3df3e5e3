import { randomUUID } from 'node:crypto';
import type { ValidationContext } from 'graphql';
import { GraphQLError, NoSchemaIntrospectionCustomRule } from 'graphql';
import type { Plugin, YogaLogger, YogaServerInstance } from 'graphql-yoga';
import { createYoga, maskError } from 'graphql-yoga';
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import type { Authenticator } from '../auth';
import type { Config } from '../config';
import { ErrorCode } from '../errors';
import type { Logger } from '../logger';
import type { GraphQLContext } from '../schema/context';
import { useRequestErrorCodes } from '../schema/request-error-codes';
import { useBoundedErrors } from './bounded-errors';
import type { DocumentCache } from './document-cache';
import { useSharedEventResults } from './shared-event-results';
import { createSchema } from '../schema/schema';
import type { Metrics } from '../services/metrics/metrics';
import type { Caller, TaskService } from '../services/task-service';

/** Path of the GraphQL endpoint for HTTP, SSE and WebSocket. */
export const GRAPHQL_PATH = '/graphql';

/** The yoga instance with Taskwire's context. */
export type Yoga = YogaServerInstance<Record<string, unknown>, GraphQLContext>;

/** Parts of the server that yoga uses. */
export interface YogaParts {
  config: Config;
  logger: Logger;
  tasks: TaskService;
  metrics: Metrics;
  auth: Authenticator;
  /** Parsed and validated documents, shared with the WebSocket endpoint. */
  documents: DocumentCache;
}

/** Creates yoga with the schema, masking, limits and the per-request context. */
export function createYogaServer(parts: YogaParts): Yoga {
  const { config, tasks, metrics, auth } = parts;
  const httpLogger = parts.logger.child({ area: 'http' });
  return createYoga<Record<string, unknown>, GraphQLContext>({
    schema: createSchema(),
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    graphiql: config.GRAPHIQL,
    cors:
      config.CORS_ORIGINS.length === 0
        ? false
        : {
            origin: config.CORS_ORIGINS,
            methods: ['GET', 'POST'],
            allowedHeaders: ['content-type', 'authorization', 'accept'],
          },
    // The request handler enforces MAX_BODY_BYTES before yoga reads a body (see routes.ts).
    maxRequestBodySize: false,
    batching: config.MAX_BATCH_OPERATIONS > 1 ? { limit: config.MAX_BATCH_OPERATIONS } : false,
    // Replaced by DocumentCache (see there).
    parserAndValidationCache: false,
    plugins: createPlugins(config, parts.documents),
    logging: toYogaLogger(httpLogger),
    maskedErrors: {
      maskError: (error, message, isDev) => {
        const masked = maskError(error, message, isDev);
        if (masked !== error) {
          const original = error instanceof GraphQLError ? (error.originalError ?? error) : error;
          httpLogger.error({ err: original }, 'Unexpected error while resolving an operation');
        }
        return masked;
      },
    },
    context: async (initial) => ({
      tasks,
      metrics,
      // graphql-ws connections authenticate once, in onConnect, and pass their caller along.
      caller:
        (initial.caller as Caller | undefined) ??
        (await auth.authenticate(authorizationOf(initial))),
      // One shared logger rather than a child per operation: a child costs memory for the life
      // of every subscription, and few operations log.
      logger: httpLogger,
      requestId: requestIdOf(initial),
      transport: initial.socket === undefined ? 'sse' : 'websocket',
    }),
  });
}

function createPlugins(config: Config, documents: DocumentCache): Plugin[] {
  const plugins: Plugin[] = [
    documents.plugin(),
    useBoundedErrors(),
    useRequestErrorCodes(),
    useQueryLimits(config),
    useTokenLimitCode(),
    useSharedEventResults(['taskEvents']),
  ];
  if (!config.INTROSPECTION) {
    plugins.push({
      onValidate: ({ addValidationRule }) => addValidationRule(NoSchemaIntrospectionCustomRule),
    });
  }
  return plugins;
}

/**
 * GraphQL Armor's depth, alias, directive and token limits. Each rejection is reported as a
 * validation error of that operation with code QUERY_TOO_COMPLEX. By default Armor throws, which
 * yoga reports without a code, and which over graphql-ws would close the whole socket.
 */
function useQueryLimits(config: Config): Plugin {
  const report = [
    (context: ValidationContext | null, error: GraphQLError) =>
      context?.reportError(
        new GraphQLError(error.message, {
          nodes: error.nodes,
          extensions: { code: ErrorCode.QUERY_TOO_COMPLEX },
        }),
      ),
  ];
  const reject = { propagateOnRejection: false, onReject: report };
  return EnvelopArmorPlugin({
    maxDepth: { n: config.MAX_QUERY_DEPTH, ...reject },
    maxAliases: { n: config.MAX_QUERY_ALIASES, ...reject },
    maxDirectives: { n: config.MAX_QUERY_DIRECTIVES, ...reject },
    maxTokens: { n: config.MAX_QUERY_TOKENS },
    costLimit: { enabled: false },
    blockFieldSuggestion: { enabled: !config.INTROSPECTION },
  }) as Plugin;
}

/**
 * Armor enforces the token limit inside the parser, so its rejection surfaces as a syntax error;
 * this gives it the same QUERY_TOO_COMPLEX code as the other limits. Must come after Armor.
 */
function useTokenLimitCode(): Plugin {
  return {
    onParse: ({ parseFn, setParseFn }) => {
      setParseFn((source, options) => {
        try {
          return parseFn(source, options);
        } catch (error) {
          if (error instanceof GraphQLError && /Token limit of \d+ exceeded/.test(error.message)) {
            throw new GraphQLError(error.message, {
              extensions: { code: ErrorCode.QUERY_TOO_COMPLEX },
            });
          }
          throw error;
        }
      });
    },
  };
}

/** Returns the client's `X-Request-Id` when it is a plain token, else a new UUID, for log correlation. */
function requestIdOf(initial: Record<string, unknown>): string {
  const request = initial.request as Request | undefined;
  const fromClient = request?.headers.get('x-request-id');
  return fromClient && /^[\w.:-]{1,128}$/.test(fromClient) ? fromClient : randomUUID();
}

/** Returns the Authorization header of an HTTP request, or `authorization` in graphql-ws connectionParams. */
function authorizationOf(initial: Record<string, unknown>): string | null {
  const params = initial.connectionParams as Record<string, unknown> | undefined;
  if (params) {
    const fromParams = params.authorization ?? params.Authorization;
    return typeof fromParams === 'string' ? fromParams : null;
  }
  const request = initial.request as Request | undefined;
  return request?.headers.get('authorization') ?? null;
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
