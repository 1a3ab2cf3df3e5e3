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
    } else if (request.method === 'POST' && request.headers['content-length'] === undefined) {
      void handleUnsizedBody(request, response, yoga, parts);
    } else {
      void yoga(request, response);
    }
  };
}

/**
 * Serves a POST whose size is not declared (chunked): reads it up to the limit, answering 413 past
 * it, then hands it to yoga. Declared sizes are checked up front, which lets yoga skip its own
 * size accounting, the largest single cost of a small request in yoga 5.
 */
async function handleUnsizedBody(
  request: IncomingMessage,
  response: ServerResponse,
  yoga: Yoga,
  { maxBodyBytes, logger }: RouteParts,
): Promise<void> {
  try {
    const body = await readBody(request, maxBodyBytes);
    if (body === undefined) {
      rejectLargeBody(request, response, maxBodyBytes);
      response.once('finish', () => request.destroy());
      return;
    }
    const headers = new Headers();
    for (const [name, value] of Object.entries(request.headers)) {
      if (value !== undefined && name !== 'transfer-encoding') headers.set(name, String(value));
    }
    const url = `http://${request.headers.host ?? 'localhost'}${request.url ?? '/'}`;
    const fetched = await yoga.fetch(
      new Request(url, { method: 'POST', headers, body: new Uint8Array(body) }),
      {
        req: request,
        res: response,
      },
    );
    await sendFetchResponse(fetched, response);
  } catch (error) {
    logger.error({ err: error }, 'Failed to serve a request without Content-Length');
    if (!response.headersSent)
      sendError(response, 500, 'INTERNAL_SERVER_ERROR', 'Unexpected error.');
    else response.destroy();
  }
}

/** Reads a request body, or returns undefined once it grows past `limit` bytes. */
async function readBody(request: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function sendFetchResponse(fetched: Response, response: ServerResponse): Promise<void> {
  response.writeHead(fetched.status, Object.fromEntries(fetched.headers));
  if (fetched.body) {
    for await (const chunk of fetched.body as unknown as AsyncIterable<Uint8Array>) {
      response.write(chunk);
    }
  }
  response.end();
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
