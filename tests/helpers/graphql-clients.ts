import type { Client, FormattedExecutionResult } from 'graphql-ws';

type ExecutionResult<T> = FormattedExecutionResult<T, unknown>;
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { onDispose } from './test-server';

/** A GraphQL response as the tests read it. */
export interface GraphQLResponse<T = Record<string, unknown>> {
  status: number;
  data?: T | null;
  errors?: Array<{ message: string; extensions?: Record<string, unknown>; path?: unknown[] }>;
}

/** Sends one operation over HTTP POST. */
export async function postGraphQL<T = Record<string, unknown>>(
  url: string,
  query: string,
  variables?: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<GraphQLResponse<T>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as Omit<GraphQLResponse<T>, 'status'>;
  return { status: response.status, ...body };
}

/** Opens a graphql-ws client that is closed with the test's servers. */
export function openWsClient(url: string, connectionParams?: Record<string, unknown>): Client {
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams,
    lazy: false,
    retryAttempts: 0,
    onNonLazyError: () => undefined,
  });
  onDispose(() => client.dispose());
  return client;
}

/** Everything one subscription delivered before it ended. */
export interface SubscriptionResult<T> {
  results: Array<ExecutionResult<T>>;
  /** The error that ended the subscription, if it did not complete normally. */
  error?: unknown;
}

/**
 * Subscribes and collects every result until the server completes the operation or fails it.
 * `onResult` sees each result as it arrives, for tests that act in the middle of a stream.
 */
export function collectWs<T = Record<string, unknown>>(
  client: Client,
  query: string,
  variables: Record<string, unknown>,
  onResult?: (result: ExecutionResult<T>, index: number) => void,
): Promise<SubscriptionResult<T>> {
  const results: Array<ExecutionResult<T>> = [];
  return new Promise((resolve) => {
    client.subscribe<T>(
      { query, variables },
      {
        next: (result) => {
          results.push(result);
          onResult?.(result, results.length - 1);
        },
        error: (error) => resolve({ results, error }),
        complete: () => resolve({ results }),
      },
    );
  });
}

/** Subscribes over SSE (`Accept: text/event-stream`) and collects results until the stream ends. */
export async function collectSse<T = Record<string, unknown>>(
  url: string,
  query: string,
  variables: Record<string, unknown>,
): Promise<Array<ExecutionResult<T>>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query, variables }),
  });
  if (!response.body) throw new Error(`SSE response without a body, status ${response.status}`);
  const results: Array<ExecutionResult<T>> = [];
  const decoder = new TextDecoder();
  let buffer = '';
  const reader = response.body.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const lines = block.split('\n');
      const event = lines
        .find((line) => line.startsWith('event:'))
        ?.slice(6)
        .trim();
      const data = lines
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n');
      if (event === 'complete') {
        await reader.cancel();
        return results;
      }
      if (data) results.push(JSON.parse(data) as ExecutionResult<T>);
      end = buffer.indexOf('\n\n');
    }
  }
  return results;
}
