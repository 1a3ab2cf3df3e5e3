import { createClient } from 'graphql-ws';
import type { Client } from 'graphql-ws';
import WebSocket from 'ws';

/** Sends one operation over HTTP POST and returns `data`; throws on GraphQL errors. */
export async function postGraphQL<T>(
  url: string,
  query: string,
  variables?: Record<string, unknown>,
): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: T; errors?: Array<{ message: string }> };
  if (body.errors !== undefined || body.data === undefined) {
    throw new Error(`GraphQL request failed: ${JSON.stringify(body.errors ?? body)}`);
  }
  return body.data;
}

/** Opens a graphql-ws client on 127.0.0.1 with no retries. */
export function openWsClient(url: string): Client {
  return createClient({ url, webSocketImpl: WebSocket, lazy: false, retryAttempts: 0 });
}

/** Runs one query or mutation over graphql-ws and returns `data`. */
export function wsRequest<T>(
  client: Client,
  query: string,
  variables?: Record<string, unknown>,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let data: T | undefined;
    client.subscribe<T>(
      { query, variables },
      {
        next: (result) => {
          if (result.errors) reject(new Error(JSON.stringify(result.errors)));
          else data = result.data as T;
        },
        error: reject,
        complete: () => (data === undefined ? reject(new Error('No data')) : resolve(data)),
      },
    );
  });
}

/** Event kinds as the schema names them. */
export interface TaskEventData {
  taskEvents: { seq: number; kind: string; delta: string | null };
}

export const SUBMIT = `mutation ($input: SubmitTaskInput!) { submitTask(input: $input) { id status } }`;
export const GENERATE = `mutation ($input: SubmitTaskInput!) { generate(input: $input, waitMs: 60000) { id status } }`;
export const TASK_EVENTS = `subscription ($id: ID!) { taskEvents(id: $id) { seq kind delta } }`;
export const NOOP_QUERY = '{ __typename }';
