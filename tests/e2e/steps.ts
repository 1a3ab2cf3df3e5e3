import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from 'graphql-ws';
import type { SubscriptionResult } from '../helpers/graphql-clients';
import { collectWs, postGraphQL } from '../helpers/graphql-clients';
import type { EventShape, TaskShape } from './operations';
import { EVENTS, SUBMIT, TASK } from './operations';
import { MockUpstream } from '../helpers/mock-upstream';
import { onDispose, startTestServer } from '../helpers/test-server';
import type { TestServer } from '../helpers/test-server';

/**
 * Starts a local OpenAI wire-format upstream and a server that uses it (model `test-model` unless
 * `settings` say otherwise); both are closed with the test's other servers.
 */
export async function startWithUpstream(
  settings: Record<string, unknown> = {},
  options: { dir?: string } = {},
): Promise<{ upstream: MockUpstream; server: TestServer }> {
  const upstream = await MockUpstream.start();
  onDispose(() => upstream.close());
  const server = await startTestServer(
    { LLM_PROVIDER: 'openai', LLM_BASE_URL: upstream.url, LLM_MODEL: 'test-model', ...settings },
    options,
  );
  return { upstream, server };
}

/** The last message of an upstream chat request: the task's prompt. */
export function promptOf(body: { messages: Array<{ content: unknown }> }): string {
  return String(body.messages.at(-1)?.content);
}

/** Submits a task over HTTP and returns it; fails the test on a GraphQL error. */
export async function submitTask(url: string, input: Record<string, unknown>): Promise<TaskShape> {
  const response = await postGraphQL<{ submitTask: TaskShape }>(url, SUBMIT, { input });
  if (!response.data?.submitTask) {
    throw new Error(`submitTask failed: ${JSON.stringify(response.errors)}`);
  }
  return response.data.submitTask;
}

/** Reads a task over HTTP. */
export async function readTask(url: string, id: string): Promise<TaskShape | null> {
  const response = await postGraphQL<{ task: TaskShape | null }>(url, TASK, { id });
  if (response.errors) throw new Error(`task failed: ${JSON.stringify(response.errors)}`);
  return response.data?.task ?? null;
}

/** Polls a task until its status is one of `statuses`. */
export async function waitForStatus(
  url: string,
  id: string,
  statuses: string[],
  timeoutMs = 10_000,
): Promise<TaskShape> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await readTask(url, id);
    if (task && statuses.includes(task.status)) return task;
    if (Date.now() > deadline) {
      throw new Error(`Task ${id} is ${task?.status}, expected one of ${statuses.join(', ')}`);
    }
    await sleep(20);
  }
}

/** Subscribes to a task's events over graphql-ws and collects them until the end. */
export async function collectEvents(
  client: Client,
  id: string,
  afterSeq?: number,
  onEvent?: (event: EventShape, index: number) => void,
): Promise<{ events: EventShape[]; result: SubscriptionResult<{ taskEvents: EventShape }> }> {
  const result = await collectWs<{ taskEvents: EventShape }>(
    client,
    EVENTS,
    { id, afterSeq },
    (item, index) => {
      if (item.data?.taskEvents) onEvent?.(item.data.taskEvents, index);
    },
  );
  const events = result.results.flatMap((item) => (item.data ? [item.data.taskEvents] : []));
  return { events, result };
}

/** Kinds of events in order, with runs of TOKEN folded into one for readable assertions. */
export function kindsOf(events: EventShape[]): string[] {
  const kinds: string[] = [];
  for (const event of events) {
    if (event.kind === 'TOKEN' && kinds.at(-1) === 'TOKEN') continue;
    kinds.push(event.kind);
  }
  return kinds;
}

/** Concatenated deltas of the TOKEN events. */
export function textOf(events: EventShape[]): string {
  return events
    .filter((event) => event.kind === 'TOKEN')
    .map((event) => event.delta)
    .join('');
}
