import { collectSse, openWsClient, postGraphQL } from '../helpers/graphql-clients';
import { disposeTestServers, onDispose } from '../helpers/test-server';
import { TaskStore } from '../../src/db/task-store';
import { readPragmas } from '../../src/db/orm';
import pino from 'pino';
import type { EventShape } from './operations';
import { EVENTS, QUEUE_METRICS } from './operations';
import {
  collectEvents,
  kindsOf,
  startWithUpstream,
  submitTask,
  textOf,
  waitForStatus,
} from './steps';

const TOKENS = ['Hello', ',', ' wor', 'ld', '!'];

afterEach(disposeTestServers);

describe('task streaming over graphql-ws and SSE', () => {
  it('streams QUEUED, STARTED, TOKENs and COMPLETED with the exact text', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({
      tokens: TOKENS,
      usage: { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 },
    }));
    const task = await submitTask(server.url, { prompt: 'Say hello' });
    // A short reply may end before the task's row commits; the replay below still has every event.
    expect(['QUEUED', 'RUNNING', 'COMPLETED']).toContain(task.status);

    const { events, result } = await collectEvents(openWsClient(server.wsUrl), task.id);

    expect(result.error).toBeUndefined();
    expect(kindsOf(events)).toEqual(['QUEUED', 'STARTED', 'TOKEN', 'COMPLETED']);
    expect(events.map((event) => event.seq)).toEqual(events.map((_, index) => index + 1));
    expect(textOf(events)).toBe('Hello, world!');
    const last = events.at(-1) as EventShape;
    expect(last.task.status).toBe('COMPLETED');
    expect(last.task.result).toBe('Hello, world!');
    expect(last.task.usage).toEqual({ promptTokens: 7, completionTokens: 5, totalTokens: 12 });
    expect(upstream.requests[0].body.model).toBe('test-model');
  });

  it('streams the same events over SSE', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ tokens: TOKENS }));
    const task = await submitTask(server.url, { prompt: 'Say hello' });

    const results = await collectSse<{ taskEvents: EventShape }>(server.url, EVENTS, {
      id: task.id,
    });

    const events = results.map((item) => item.data?.taskEvents as EventShape);
    expect(kindsOf(events)).toEqual(['QUEUED', 'STARTED', 'TOKEN', 'COMPLETED']);
    expect(textOf(events)).toBe('Hello, world!');
  });

  it('stores the result durably in a WAL-mode SQLite file', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ tokens: TOKENS }));
    const task = await submitTask(server.url, { prompt: 'Say hello' });
    await waitForStatus(server.url, task.id, ['COMPLETED']);

    const pragmas = await readPragmas(server.store.orm);
    expect(pragmas.journalMode).toBe('wal');
    await server.close();

    const store = await TaskStore.open({
      databaseUrl: `file:${server.dbPath}`,
      busyTimeoutMs: 1000,
      flushIntervalMs: 1,
      flushMaxRecords: 100,
      logger: pino({ level: 'silent' }),
    });
    onDispose(() => store.close());
    const row = await store.get(task.id);
    expect(row?.status).toBe('COMPLETED');
    expect(row?.result).toBe('Hello, world!');
    expect(row?.attempts).toBe(1);
  });

  it('replays the final state to a subscriber that comes after the end', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ tokens: TOKENS }));
    const task = await submitTask(server.url, { prompt: 'Say hello' });
    await waitForStatus(server.url, task.id, ['COMPLETED']);
    const client = openWsClient(server.wsUrl);

    const full = await collectEvents(client, task.id);
    const afterTokens = await collectEvents(client, task.id, 3);

    expect(kindsOf(full.events)).toEqual(['QUEUED', 'STARTED', 'TOKEN', 'COMPLETED']);
    expect(afterTokens.events[0].seq).toBe(4);
    expect(afterTokens.events.at(-1)?.kind).toBe('COMPLETED');
  });
});

describe('one WebSocket carrying several subscriptions', () => {
  it('fails one subscription and keeps the socket and the other one going', async () => {
    const { upstream, server } = await startWithUpstream({ WORKERS: 2 });
    upstream.respondWith((body) => {
      const prompt = String(body.messages.at(-1)?.content);
      if (prompt === 'first') {
        return {
          tokens: ['a', 'b', 'c', 'd'],
          tokenDelayMs: 20,
          errorAfterTokens: {
            afterIndex: 3,
            error: { message: 'upstream exploded', type: 'server_error' },
          },
        };
      }
      return { tokens: ['x', 'y', 'z', '!'], tokenDelayMs: 60 };
    });
    const client = openWsClient(server.wsUrl);
    const first = await submitTask(server.url, { prompt: 'first' });
    const second = await submitTask(server.url, { prompt: 'second' });

    const [failed, completed] = await Promise.all([
      collectEvents(client, first.id),
      collectEvents(client, second.id),
    ]);

    expect(failed.result.error).toBeUndefined();
    expect(kindsOf(failed.events)).toEqual(['QUEUED', 'STARTED', 'TOKEN', 'FAILED']);
    expect(textOf(failed.events)).toBe('abc');
    const failure = failed.events.at(-1)?.task.error;
    expect(failure?.code).toBe('PROVIDER_ERROR');
    expect(failure?.message).toContain('upstream exploded');
    expect(completed.events.at(-1)?.kind).toBe('COMPLETED');
    expect(textOf(completed.events)).toBe('xyz!');
    const third = await collectEvents(client, second.id);
    expect(third.events.at(-1)?.task.result).toBe('xyz!');
  });
});

describe('upstream streams cut at arbitrary bytes', () => {
  const multilingual = [
    'Привет',
    ', ',
    '世界',
    ' ',
    '😀',
    ' mixed ',
    'ASCII',
    ' «ok»',
    '\n',
    'end',
  ];

  it.each([
    ['one byte per write', 'bytes-1' as const],
    ['random cuts, seed 1', { randomSeed: 1, maxChunk: 7 }],
    ['random cuts, seed 2', { randomSeed: 2, maxChunk: 3 }],
    ['random cuts, seed 3', { randomSeed: 3, maxChunk: 40 }],
  ])('delivers identical text with %s', async (_name, chunking) => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ tokens: multilingual, chunking }));
    const task = await submitTask(server.url, { prompt: 'multilingual' });

    const { events } = await collectEvents(openWsClient(server.wsUrl), task.id);

    const expected = multilingual.join('');
    expect(events.at(-1)?.kind).toBe('COMPLETED');
    expect(textOf(events)).toBe(expected);
    expect(events.at(-1)?.task.result).toBe(expected);
    expect(textOf(events)).not.toContain('\uFFFD');
  });
});

describe('malformed upstream streams', () => {
  it('fails the task on an error object between tokens and [DONE]', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({
      tokens: ['one', ' two'],
      errorAfterTokens: { afterIndex: 2, error: { message: 'context length exceeded' } },
      done: true,
    }));
    const task = await submitTask(server.url, { prompt: 'p' });

    const done = await waitForStatus(server.url, task.id, ['COMPLETED', 'FAILED']);

    expect(done.status).toBe('FAILED');
    expect(done.error?.code).toBe('PROVIDER_ERROR');
    expect(done.error?.message).toContain('context length exceeded');
    expect(done.result).toBeNull();
    expect(upstream.requests).toHaveLength(1);
  });

  it('records usage from a final chunk whose choices are empty', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({
      tokens: ['a', 'b'],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    }));
    const task = await submitTask(server.url, { prompt: 'p' });

    const done = await waitForStatus(server.url, task.id, ['COMPLETED', 'FAILED']);

    expect(done.status).toBe('COMPLETED');
    expect(done.usage).toEqual({ promptTokens: 3, completionTokens: 2, totalTokens: 5 });
  });

  it('tolerates choices: null in the middle of a stream', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({
      rawEvents: [
        JSON.stringify({
          choices: [{ index: 0, delta: { content: 'before' }, finish_reason: null }],
        }),
        JSON.stringify({ choices: null }),
        JSON.stringify({
          choices: [{ index: 0, delta: { content: ' after' }, finish_reason: 'stop' }],
        }),
        '[DONE]',
      ],
    }));
    const task = await submitTask(server.url, { prompt: 'p' });

    const done = await waitForStatus(server.url, task.id, ['COMPLETED', 'FAILED']);

    expect(done.status).toBe('COMPLETED');
    expect(done.result).toBe('before after');
  });

  it('fails a stream that ends with neither [DONE] nor a finish reason', async () => {
    const { upstream, server } = await startWithUpstream({ TASK_MAX_ATTEMPTS: 1 });
    upstream.respondWith(() => ({ tokens: ['half'], finishReason: null, done: false }));
    const task = await submitTask(server.url, { prompt: 'p' });

    const done = await waitForStatus(server.url, task.id, ['COMPLETED', 'FAILED']);

    expect(done.status).toBe('FAILED');
    expect(done.error?.code).toBe('PROVIDER_INCOMPLETE_STREAM');
    expect(done.result).toBeNull();
  });

  it('keeps its workers after every malformed stream', async () => {
    const { upstream, server } = await startWithUpstream({ WORKERS: 2, TASK_MAX_ATTEMPTS: 1 });
    const replies = [
      { tokens: ['x'], errorAfterTokens: { afterIndex: 1, error: { message: 'bad' } } },
      { rawEvents: [JSON.stringify({ choices: null }), 'not json at all'] },
      { tokens: ['y'], finishReason: null, done: false },
      { tokens: ['fine'] },
    ];
    upstream.respondWith((_body, index) => replies[Math.min(index, replies.length - 1)]);
    const ids = [];
    for (const prompt of ['a', 'b', 'c', 'd'])
      ids.push((await submitTask(server.url, { prompt })).id);

    const statuses = [];
    for (const id of ids)
      statuses.push((await waitForStatus(server.url, id, ['COMPLETED', 'FAILED'])).status);

    expect(statuses).toEqual(['FAILED', 'FAILED', 'FAILED', 'COMPLETED']);
    const metrics = await postGraphQL<{ metrics: { queue: { workers: number } } }>(
      server.url,
      QUEUE_METRICS,
    );
    expect(metrics.data?.metrics.queue.workers).toBe(2);
  });
});

describe('transient upstream errors', () => {
  it('retries a 503 and completes with the text of the successful attempt', async () => {
    const { upstream, server } = await startWithUpstream({ TASK_MAX_ATTEMPTS: 3 });
    upstream.respondWith((_body, index) =>
      index === 0 ? { status: 503, errorBody: { error: { message: 'busy' } } } : { tokens: ['ok'] },
    );
    const task = await submitTask(server.url, { prompt: 'p' });

    const { events } = await collectEvents(openWsClient(server.wsUrl), task.id);

    expect(kindsOf(events)).toEqual([
      'QUEUED',
      'STARTED',
      'RETRYING',
      'STARTED',
      'TOKEN',
      'COMPLETED',
    ]);
    expect(events.at(-1)?.task.attempts).toBe(2);
    expect(events.at(-1)?.task.result).toBe('ok');
    expect(upstream.requests).toHaveLength(2);
  });

  it('does not retry a 400', async () => {
    const { upstream, server } = await startWithUpstream({ TASK_MAX_ATTEMPTS: 3 });
    upstream.respondWith(() => ({ status: 400, errorBody: { error: { message: 'bad model' } } }));
    const task = await submitTask(server.url, { prompt: 'p' });

    const done = await waitForStatus(server.url, task.id, ['COMPLETED', 'FAILED']);

    expect(done.status).toBe('FAILED');
    expect(done.error?.message).toContain('bad model');
    expect(done.attempts).toBe(1);
    expect(upstream.requests).toHaveLength(1);
  });
});
