import { createRecordingLogger } from '../db/db-fixtures';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { MockUpstream } from '../helpers/mock-upstream';
import { collectWs, postGraphQL } from '../helpers/graphql-clients';
import { disposeTestServers, onDispose, startTestServer } from '../helpers/test-server';
import type { TestServer } from '../helpers/test-server';
import { startWithUpstream } from './steps';
import type { TaskShape } from './operations';
import { CANCEL, EVENTS, SUBMIT, TASK, TASKS } from './operations';

afterEach(disposeTestServers);

/** Starts a server with AUTH_MODE=apikey and keys for two users and one admin. */
async function startSecured(settings: Record<string, unknown> = {}) {
  const server = await startTestServer({ AUTH_MODE: 'apikey', ...settings });
  const keys = {
    alice: (await server.store.apiKeys.create({ userId: 'alice', role: 'user' })).key,
    bob: (await server.store.apiKeys.create({ userId: 'bob', role: 'user' })).key,
    admin: (await server.store.apiKeys.create({ userId: 'root', role: 'admin' })).key,
  };
  return { server, keys };
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

function wsClient(server: TestServer, key?: string) {
  const closes: number[] = [];
  const client = createClient({
    url: server.wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: key ? { authorization: `Bearer ${key}` } : undefined,
    lazy: false,
    retryAttempts: 0,
    onNonLazyError: () => undefined,
    on: { closed: (event) => closes.push((event as { code: number }).code) },
  });
  onDispose(() => client.dispose());
  return { client, closes };
}

async function sse(server: TestServer, key: string, id: string) {
  const response = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...bearer(key) },
    body: JSON.stringify({ query: EVENTS, variables: { id } }),
  });
  return { status: response.status, text: await response.text() };
}

async function submitAs(server: TestServer, key: string, prompt: string): Promise<TaskShape> {
  const response = await postGraphQL<{ submitTask: TaskShape }>(
    server.url,
    SUBMIT,
    { input: { prompt } },
    bearer(key),
  );
  if (!response.data) throw new Error(JSON.stringify(response.errors));
  return response.data.submitTask;
}

describe('task isolation between users', () => {
  it("hides one user's task from another on every transport", async () => {
    const { server, keys } = await startSecured();
    const task = await submitAs(server, keys.alice, 'alice only');

    const read = await postGraphQL<{ task: TaskShape | null }>(
      server.url,
      TASK,
      { id: task.id },
      bearer(keys.bob),
    );
    const list = await postGraphQL<{ tasks: { edges: unknown[] } }>(
      server.url,
      TASKS,
      {},
      bearer(keys.bob),
    );
    const cancel = await postGraphQL(server.url, CANCEL, { id: task.id }, bearer(keys.bob));
    const viaWs = await collectWs(wsClient(server, keys.bob).client, EVENTS, { id: task.id });
    const viaSse = await sse(server, keys.bob, task.id);
    const own = await postGraphQL<{ task: TaskShape | null }>(
      server.url,
      TASK,
      { id: task.id },
      bearer(keys.alice),
    );
    const asAdmin = await postGraphQL<{ task: TaskShape | null }>(
      server.url,
      TASK,
      { id: task.id },
      bearer(keys.admin),
    );

    expect(read.data?.task).toBeNull();
    expect(list.data?.tasks.edges).toEqual([]);
    expect(cancel.errors?.[0].extensions?.code).toBe('NOT_FOUND');
    expect(viaWs.results[0]?.errors?.[0].extensions?.code).toBe('NOT_FOUND');
    expect(viaSse.text).toContain('NOT_FOUND');
    expect(own.data?.task?.id).toBe(task.id);
    expect(asAdmin.data?.task?.id).toBe(task.id);
  });

  it('keeps idempotency keys per user', async () => {
    const { server, keys } = await startSecured();
    const input = { prompt: 'p', idempotencyKey: 'same-key' };
    const a = await postGraphQL<{ submitTask: TaskShape }>(
      server.url,
      SUBMIT,
      { input },
      bearer(keys.alice),
    );
    const b = await postGraphQL<{ submitTask: TaskShape }>(
      server.url,
      SUBMIT,
      { input },
      bearer(keys.bob),
    );

    expect(a.data?.submitTask.id).toBeDefined();
    expect(b.data?.submitTask.id).not.toBe(a.data?.submitTask.id);
  });
});

describe('credentials', () => {
  it.each([
    ['missing', {}],
    ['wrong', bearer('tw_not-a-real-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')],
    ['malformed', { authorization: 'Basic abc' }],
  ])('rejects a %s key over HTTP and SSE', async (_name, headers) => {
    const { server } = await startSecured();

    const http = await postGraphQL(
      server.url,
      '{ __typename }',
      undefined,
      headers as Record<string, string>,
    );
    const stream = await fetch(server.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'text/event-stream',
        ...(headers as Record<string, string>),
      },
      body: JSON.stringify({ query: 'subscription { metricsUpdated { queue { depth } } }' }),
    });
    const streamText = await stream.text();

    expect(http.status).toBe(401);
    expect(http.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    expect(streamText).toContain('UNAUTHENTICATED');
  });

  it('rejects a revoked key', async () => {
    const { server } = await startSecured();
    const { key, record } = await server.store.apiKeys.create({ userId: 'carol', role: 'user' });
    expect((await postGraphQL(server.url, '{ __typename }', undefined, bearer(key))).status).toBe(
      200,
    );

    await server.store.apiKeys.revoke(record.id);
    const after = await postGraphQL(server.url, '{ __typename }', undefined, bearer(key));

    expect(after.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
  });

  it.each([undefined, 'tw_wrong-key-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'])(
    'closes a WebSocket whose key is %s with 4403',
    async (key) => {
      const { server } = await startSecured();
      const { client, closes } = wsClient(server, key);

      const result = await collectWs(client, '{ __typename }', {});

      expect(result.error).toBeDefined();
      expect(closes).toContain(4403);
    },
  );

  it('serves a WebSocket with a valid key', async () => {
    const { server, keys } = await startSecured();

    const result = await collectWs<{ __typename: string }>(
      wsClient(server, keys.alice).client,
      '{ __typename }',
      {},
    );

    expect(result.results[0]?.data?.__typename).toBe('Query');
  });
});

describe('admin controls', () => {
  const ADMIN_OPERATIONS = [
    'mutation { setWorkerCount(count: 3) { workers } }',
    'mutation { pauseQueue { paused } }',
    'mutation { resumeQueue { paused } }',
    'mutation { purgeCache }',
  ];

  it.each(ADMIN_OPERATIONS)('forbids %s to a user', async (operation) => {
    const { server, keys } = await startSecured();

    const response = await postGraphQL(server.url, operation, undefined, bearer(keys.alice));

    expect(response.errors?.[0].extensions?.code).toBe('FORBIDDEN');
  });

  it('pauses and resumes the queue', async () => {
    const { server, keys } = await startSecured();
    await postGraphQL(
      server.url,
      'mutation { pauseQueue { paused } }',
      undefined,
      bearer(keys.admin),
    );
    const task = await submitAs(server, keys.alice, 'waits');
    await sleep(100);
    const paused = await postGraphQL<{ task: TaskShape }>(
      server.url,
      TASK,
      { id: task.id },
      bearer(keys.alice),
    );

    const resumed = await postGraphQL<{ resumeQueue: { paused: boolean } }>(
      server.url,
      'mutation { resumeQueue { paused } }',
      undefined,
      bearer(keys.admin),
    );
    await sleep(200);
    const after = await postGraphQL<{ task: TaskShape }>(
      server.url,
      TASK,
      { id: task.id },
      bearer(keys.alice),
    );

    expect(paused.data?.task.status).toBe('QUEUED');
    expect(resumed.data?.resumeQueue.paused).toBe(false);
    expect(after.data?.task.status).toBe('COMPLETED');
  });

  it('changes the worker count under load without losing or repeating a task', async () => {
    const upstream = await MockUpstream.start();
    onDispose(() => upstream.close());
    upstream.respondWith((body) => ({
      tokens: [String(body.messages.at(-1)?.content)],
      firstTokenDelayMs: 50,
    }));
    const { server, keys } = await startSecured({
      LLM_PROVIDER: 'openai',
      LLM_BASE_URL: upstream.url,
      LLM_MODEL: 'm',
      WORKERS: 2,
      QUEUE_MAX_SIZE: 500,
      CACHE_SCOPE: 'user',
    });
    const admin = bearer(keys.admin);
    const setWorkers = (count: number) =>
      postGraphQL<{ setWorkerCount: { workers: number; running: number } }>(
        server.url,
        `mutation { setWorkerCount(count: ${count}) { workers running } }`,
        undefined,
        admin,
      );
    const submits = Array.from({ length: 60 }, (_, i) => submitAs(server, keys.admin, `job ${i}`));
    const tasks = await Promise.all(submits);

    const grown = await setWorkers(6);
    const shrunk = await setWorkers(1);
    await sleep(150);
    const runningAtOne = server.tasks.snapshot().running;
    await server.tasks.onIdle();

    expect(grown.data?.setWorkerCount.workers).toBe(6);
    // Growing starts queued tasks at once, so the answer already shows six running.
    expect(grown.data?.setWorkerCount.running).toBe(6);
    expect(shrunk.data?.setWorkerCount.workers).toBe(1);
    expect(runningAtOne).toBeLessThanOrEqual(1);
    const prompts = upstream.requests.map((request) =>
      String(request.body.messages.at(-1)?.content),
    );
    expect(new Set(prompts).size).toBe(60);
    expect(prompts).toHaveLength(60);
    for (const task of tasks) {
      const done = await postGraphQL<{ task: TaskShape }>(server.url, TASK, { id: task.id }, admin);
      expect(done.data?.task.status).toBe('COMPLETED');
    }
    const invalid = await setWorkers(0);
    expect(invalid.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
  });
});

describe('per-user limits', () => {
  it('rate-limits one user with a retry time while another is served', async () => {
    const { server, keys } = await startSecured({ USER_SUBMITS_PER_MINUTE: 3 });
    for (let i = 0; i < 3; i += 1) await submitAs(server, keys.alice, `a${i}`);

    const limited = await postGraphQL(
      server.url,
      SUBMIT,
      { input: { prompt: 'a3' } },
      bearer(keys.alice),
    );
    const other = await postGraphQL<{ submitTask: TaskShape }>(
      server.url,
      SUBMIT,
      { input: { prompt: 'b0' } },
      bearer(keys.bob),
    );

    expect(limited.errors?.[0].extensions?.code).toBe('RATE_LIMITED');
    expect(limited.errors?.[0].extensions?.retryAfter).toBeGreaterThanOrEqual(1);
    expect(limited.errors?.[0].extensions?.retryAfter).toBeLessThanOrEqual(20);
    expect(other.errors).toBeUndefined();
    expect(other.data?.submitTask.id).toBeDefined();
  });

  it('caps the tasks one user has waiting', async () => {
    const { server, keys } = await startSecured({ USER_MAX_QUEUED: 2 });
    await postGraphQL(
      server.url,
      'mutation { pauseQueue { paused } }',
      undefined,
      bearer(keys.admin),
    );
    await submitAs(server, keys.alice, 'one');
    await submitAs(server, keys.alice, 'two');

    const third = await postGraphQL(
      server.url,
      SUBMIT,
      { input: { prompt: 'three' } },
      bearer(keys.alice),
    );
    const other = await postGraphQL<{ submitTask: TaskShape }>(
      server.url,
      SUBMIT,
      { input: { prompt: 'b' } },
      bearer(keys.bob),
    );

    expect(third.errors?.[0].extensions?.code).toBe('RATE_LIMITED');
    expect(other.data?.submitTask.status).toBe('QUEUED');
  });

  it("interleaves a burst from one user with another user's task", async () => {
    const upstream = await MockUpstream.start();
    onDispose(() => upstream.close());
    upstream.respondWith(() => ({ tokens: ['ok'] }));
    const { server, keys } = await startSecured({
      LLM_PROVIDER: 'openai',
      LLM_BASE_URL: upstream.url,
      LLM_MODEL: 'm',
      WORKERS: 1,
    });
    const admin = bearer(keys.admin);
    await postGraphQL(server.url, 'mutation { pauseQueue { paused } }', undefined, admin);
    for (let i = 0; i < 5; i += 1) await submitAs(server, keys.alice, `burst ${i}`);
    await submitAs(server, keys.bob, 'bob later');
    await postGraphQL(server.url, 'mutation { resumeQueue { paused } }', undefined, admin);
    await server.tasks.onIdle();

    const order = upstream.requests.map((request) => String(request.body.messages.at(-1)?.content));
    // Alice's burst queued first, yet Bob's one task runs second, not sixth.
    expect(order.indexOf('bob later')).toBe(1);
    expect(order).toHaveLength(6);
  });
});

describe('GraphQL and transport limits', () => {
  it.each([
    ['a depth bomb', '{ tasks { edges { node { error { code } } } } }'],
    [
      'an alias flood',
      `{ ${Array.from({ length: 20 }, (_, i) => `a${i}: task(id: "x") { id }`).join(' ')} }`,
    ],
    ['a token flood', `{ ${Array.from({ length: 400 }, () => '__typename').join(' ')} }`],
  ])('rejects %s with QUERY_TOO_COMPLEX and keeps serving', async (_name, query) => {
    const server = await startTestServer({
      MAX_QUERY_DEPTH: 3,
      MAX_QUERY_ALIASES: 5,
      MAX_QUERY_TOKENS: 300,
    });
    const client = wsClient(server).client;

    const overHttp = await postGraphQL(server.url, query);
    const overWs = await collectWs(client, query, {});
    const fine = await collectWs<{ __typename: string }>(client, '{ __typename }', {});

    expect(overHttp.errors?.[0].extensions?.code).toBe('QUERY_TOO_COMPLEX');
    expect(JSON.stringify(overWs.error)).toContain('QUERY_TOO_COMPLEX');
    expect(fine.results[0]?.data?.__typename).toBe('Query');
  });

  it('rejects a 10 MB body with 413 and keeps serving', async () => {
    const server = await startTestServer();
    const body = JSON.stringify({
      query: SUBMIT,
      variables: { input: { prompt: 'x'.repeat(10 * 1024 * 1024) } },
    });

    const declared = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    const chunked = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: new Blob([body]).stream(),
      duplex: 'half',
    } as RequestInit);
    const fine = await postGraphQL(server.url, '{ __typename }');

    expect(declared.status).toBe(413);
    expect(chunked.status).toBe(413);
    expect(fine.status).toBe(200);
  });

  it('survives 1,000 malformed WebSocket frames and keeps serving others', async () => {
    const server = await startTestServer();
    const sockets = await Promise.all(
      Array.from(
        { length: 10 },
        () =>
          new Promise<WebSocket>((resolve, reject) => {
            const socket = new WebSocket(server.wsUrl, 'graphql-transport-ws');
            socket.once('open', () => resolve(socket));
            socket.once('error', reject);
          }),
      ),
    );
    const closed = sockets.map(
      (socket) => new Promise<number>((resolve) => socket.once('close', (code) => resolve(code))),
    );
    for (const socket of sockets) {
      for (let i = 0; i < 100; i += 1)
        socket.send(i % 2 === 0 ? '{not json' : Buffer.from([0xff, 0x00, i]));
    }
    const codes = await Promise.all(closed);

    expect(codes.every((code) => code === 4400 || code === 1007)).toBe(true);
    const { client } = wsClient(server);
    const result = await collectWs<{ __typename: string }>(client, '{ __typename }', {});
    expect(result.results[0]?.data?.__typename).toBe('Query');
  });

  it('closes a WebSocket that never sends connection_init', async () => {
    const server = await startTestServer({ WS_INIT_TIMEOUT_MS: 200 });
    const socket = new WebSocket(server.wsUrl, 'graphql-transport-ws');

    const code = await new Promise<number>((resolve) => socket.once('close', resolve));

    expect(code).toBe(4408);
  });

  it("closes a WebSocket whose message is over MAX_BODY_BYTES, logging it as the client's error", async () => {
    const { logger, lines } = createRecordingLogger('info');
    const server = await startTestServer({ MAX_BODY_BYTES: 2048 }, { logger });
    const socket = new WebSocket(server.wsUrl, 'graphql-transport-ws');
    await new Promise((resolve) => socket.once('open', resolve));

    socket.send(JSON.stringify({ type: 'connection_init', payload: { pad: 'x'.repeat(4096) } }));
    const code = await new Promise<number>((resolve) => socket.once('close', resolve));

    expect(code).toBe(1009);
    expect((await postGraphQL(server.url, '{ __typename }')).status).toBe(200);
    const report = lines.find((line) => line.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
    expect(report).toMatchObject({ level: 30, msg: 'Closed a WebSocket after a client error' });
    expect(lines.filter((line) => (line.level as number) >= 40)).toEqual([]);
  });

  it('limits subscriptions per WebSocket', async () => {
    const server = await startTestServer({ WS_MAX_SUBSCRIPTIONS: 2 });
    const { client } = wsClient(server);
    const streams = [1, 2].map(() => {
      const results: unknown[] = [];
      const stop = client.subscribe(
        { query: 'subscription { metricsUpdated(intervalMs: 60000) { queue { depth } } }' },
        {
          next: (r) => results.push(r),
          error: () => undefined,
          complete: () => undefined,
        },
      );
      return { results, stop };
    });
    await sleep(200);

    const third = await collectWs(
      client,
      'subscription { metricsUpdated(intervalMs: 60000) { queue { depth } } }',
      {},
    );

    expect(JSON.stringify(third.error)).toContain('RATE_LIMITED');
    // A stream the client completes gives its place back.
    streams[0].stop();
    await sleep(100);
    const fourth = await collectWs<{ __typename: string }>(client, '{ __typename }', {});
    expect(fourth.results[0]?.data?.__typename).toBe('Query');
    streams[1].stop();
  });

  it('gives back the place of every finished or refused WebSocket operation', async () => {
    const server = await startTestServer({ WS_MAX_SUBSCRIPTIONS: 2 });
    const { client } = wsClient(server);
    for (let round = 0; round < 5; round += 1) {
      const done = await collectWs<{ __typename: string }>(client, '{ __typename }', {});
      expect(done.results[0]?.data?.__typename).toBe('Query');
      const invalid = await collectWs(client, '{ nope }', {});
      expect(JSON.stringify(invalid.error)).toContain('GRAPHQL_VALIDATION_FAILED');
      const unnamed = await new Promise<unknown>((resolve) => {
        client.subscribe(
          { query: 'query A { __typename } query B { __typename }', operationName: 'C' },
          { next: () => undefined, error: resolve, complete: () => resolve(undefined) },
        );
      });
      expect(JSON.stringify(unnamed)).toContain('OPERATION_RESOLUTION_FAILURE');
    }
  });

  it('leaves no listener behind when a socket closes during subscribe', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ hang: true }));
    const task = await postGraphQL<{ submitTask: TaskShape }>(server.url, SUBMIT, {
      input: { prompt: 'long' },
    });
    const id = task.data?.submitTask.id as string;

    for (let i = 0; i < 20; i += 1) {
      const socket = new WebSocket(server.wsUrl, 'graphql-transport-ws');
      await new Promise((resolve) => socket.once('open', resolve));
      socket.send(JSON.stringify({ type: 'connection_init' }));
      await new Promise((resolve) => socket.once('message', resolve));
      socket.send(
        JSON.stringify({
          id: '1',
          type: 'subscribe',
          payload: { query: EVENTS, variables: { id } },
        }),
      );
      if (i % 2 === 0) socket.terminate();
      else await sleep(5).then(() => socket.close());
    }
    await sleep(300);

    expect(server.tasks.bus.subscriberCount).toBe(0);
    const metrics = await postGraphQL<{
      metrics: { subscriptions: { websocket: number; connections: number } };
    }>(server.url, '{ metrics { subscriptions { websocket connections } } }');
    expect(metrics.data?.metrics.subscriptions).toEqual({ websocket: 0, connections: 0 });
  });

  it('hides introspection and GraphiQL when turned off', async () => {
    const server = await startTestServer({ INTROSPECTION: 'false', GRAPHIQL: 'false' });

    const introspection = await postGraphQL(server.url, '{ __schema { types { name } } }');
    const page = await fetch(server.url, { headers: { accept: 'text/html' } });

    expect(introspection.errors?.[0]).toBeDefined();
    expect(await page.text()).not.toContain('GraphiQL');
  });
});

describe('secrets', () => {
  it('never writes the upstream key or an API key to the log', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write: (chunk, _enc, done) => (lines.push(String(chunk)), done()),
    });
    const upstream = await MockUpstream.start();
    onDispose(() => upstream.close());
    upstream.respondWith(() => ({ status: 401, errorBody: { error: { message: 'bad key' } } }));
    const server = await startTestServer(
      {
        AUTH_MODE: 'apikey',
        LLM_PROVIDER: 'openai',
        LLM_BASE_URL: upstream.url,
        LLM_API_KEY: 'sk-upstream-secret-123',
        LLM_MODEL: 'm',
        LOG_LEVEL: 'trace',
      },
      { logger: pino({ level: 'trace' }, sink) },
    );
    const { key } = await server.store.apiKeys.create({ userId: 'dave', role: 'user' });
    const submitted = await postGraphQL<{ submitTask: TaskShape }>(
      server.url,
      SUBMIT,
      { input: { prompt: 'p' } },
      bearer(key),
    );
    await postGraphQL(server.url, '{ __typename }', undefined, bearer(`${key}x`));
    await sleep(300);
    await server.close();

    const log = lines.join('');
    expect(submitted.data?.submitTask.id).toBeDefined();
    expect(upstream.requests[0].headers.authorization).toBe('Bearer sk-upstream-secret-123');
    expect(log.length).toBeGreaterThan(0);
    expect(log).not.toContain('sk-upstream-secret-123');
    expect(log).not.toContain(key);
    expect(log).not.toContain(key.slice(12));
  });
});

describe('configuration', () => {
  it('refuses to serve a public address without API keys', async () => {
    await expect(startTestServer({ HOST: '0.0.0.0', AUTH_MODE: 'none' })).rejects.toThrow(
      /AUTH_MODE/,
    );
  });
});
