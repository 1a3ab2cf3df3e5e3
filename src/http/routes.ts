import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../logger';
import type { Metrics } from '../services/metrics/metrics';
import type { TaskService } from '../services/task-service';
import { isAllowedOrigin } from './origin';
import type { Yoga } from './yoga';

/** What the HTTP routes need from the rest of the server. */
export interface RouteParts {
  tasks: TaskService;
  metrics: Metrics;
  logger: Logger;
  /** Largest request body in bytes. */
  maxBodyBytes: number;
  /** Browser origins allowed besides the server's own. */
  allowedOrigins: readonly string[];
}

/**
 * Creates the node:http handler: `/health`, `/ready`, `/metrics`, and yoga for everything else.
 * A body whose declared length is over the limit is rejected with 413 before it is read; yoga
 * bounds bodies without a `Content-Length` (chunked) as they arrive.
 */
export function createRequestHandler(yoga: Yoga, parts: RouteParts) {
  return (request: IncomingMessage, response: ServerResponse): void => {
    const path = request.url?.split('?')[0];
    if (path === '/metrics') {
      void sendMetrics(response, parts);
    } else if (path === '/health') {
      sendJson(response, 200, { status: 'ok' });
    } else if (path === '/ready') {
      const ready = parts.tasks.accepting;
      sendJson(response, ready ? 200 : 503, { status: ready ? 'ready' : 'shutting down' });
    } else if (Number(request.headers['content-length'] ?? 0) > parts.maxBodyBytes) {
      rejectLargeBody(request, response, parts.maxBodyBytes);
    } else if (
      !isAllowedOrigin(request.headers.origin, request.headers.host, parts.allowedOrigins)
    ) {
      sendError(
        response,
        403,
        'FORBIDDEN',
        `Requests from origin ${request.headers.origin} are not allowed; list it in CORS_ORIGINS.`,
      );
    } else if (request.method === 'POST' && !isJson(request.headers['content-type'])) {
      // Only JSON: browsers send form and text bodies cross-site without a CORS preflight.
      sendError(
        response,
        415,
        'UNSUPPORTED_MEDIA_TYPE',
        'POST bodies must be JSON: send Content-Type: application/json.',
      );
    } else {
      void yoga(request, response);
    }
  };
}

async function sendMetrics(response: ServerResponse, { metrics, logger }: RouteParts) {
  try {
    const text = await metrics.prometheus();
    response.writeHead(200, { 'content-type': metrics.registry.contentType });
    response.end(text);
  } catch (error) {
    logger.error({ err: error }, 'Failed to collect metrics');
    sendJson(response, 500, { error: 'Failed to collect metrics' });
  }
}

function isJson(contentType: string | undefined): boolean {
  const type = contentType?.split(';')[0].trim().toLowerCase();
  return type === 'application/json' || type === 'application/graphql-response+json';
}

function sendError(response: ServerResponse, status: number, code: string, message: string) {
  sendJson(response, status, { errors: [{ message, extensions: { code } }] });
}

function rejectLargeBody(request: IncomingMessage, response: ServerResponse, limit: number) {
  const message = `Request body is larger than the limit of ${limit} bytes.`;
  sendJson(
    response,
    413,
    { errors: [{ message, extensions: { code: 'PAYLOAD_TOO_LARGE' } }] },
    true,
  );
  // Discard what the client is still sending instead of reading it into memory.
  request.resume();
}

/** Sends a small JSON response. */
export function sendJson(
  response: ServerResponse,
  status: number,
  body: unknown,
  close = false,
): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...(close ? { connection: 'close' } : {}),
  });
  response.end(text);
}
