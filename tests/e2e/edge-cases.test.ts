import sqlite3 from 'sqlite3';
import WebSocket from 'ws';
import { parseConfig } from '../../src/config';
import { postGraphQL } from '../helpers/graphql-clients';
import { disposeTestServers, makeTempDir, startTestServer } from '../helpers/test-server';
import { readTask, startWithUpstream, submitTask } from './steps';
import type { TaskShape } from './operations';
import { GENERATE, SUBMIT, TASKS } from './operations';

afterEach(disposeTestServers);

describe('browser origins', () => {
  it("rejects another site's requests and accepts same-origin and listed ones", async () => {
    const server = await startTestServer({ CORS_ORIGINS: 'https://app.example' });
    const post = (origin?: string, contentType = 'application/json') =>
      fetch(server.url, {
        method: 'POST',
        headers: { 'content-type': contentType, ...(origin ? { origin } : {}) },
        body: JSON.stringify({ query: '{ __typename }' }),
      });
    const self = new URL(server.url).origin;

    const foreign = await post('https://evil.example');
    const same = await post(self);
    const listed = await post('https://app.example');
    const form = await post(undefined, 'application/x-www-form-urlencoded');
    const plain = await post(undefined, 'text/plain');

    expect(foreign.status).toBe(403);
    expect(
      ((await foreign.json()) as { errors: Array<{ extensions: { code: string } }> }).errors[0]
        .extensions.code,
    ).toBe('FORBIDDEN');
    expect(same.status).toBe(200);
    expect(listed.status).toBe(200);
    expect(listed.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(form.status).toBe(415);
    expect(plain.status).toBe(415);
  });

  it('refuses a WebSocket from another site', async () => {
    const server = await startTestServer();

    const status = await new Promise<number>((resolve) => {
      const socket = new WebSocket(server.wsUrl, 'graphql-transport-ws', {
        origin: 'https://evil.example',
      });
      socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      socket.on('open', () => {
        socket.close();
        resolve(101);
      });
      socket.on('error', () => undefined);
    });

    expect(status).toBe(401);
  });
});

describe('one server per database', () => {
  it('refuses a second server on the same SQLite file', async () => {
    const first = await startTestServer();

    await expect(startTestServer({}, { dir: first.dir })).rejects.toThrow(/in use by process/);
    const still = await postGraphQL(first.url, '{ __typename }');
    expect(still.status).toBe(200);
  });

  it('starts again on the same file after a clean stop', async () => {
    const first = await startTestServer();
    await first.close();

    const second = await startTestServer({}, { dir: first.dir });

    expect((await postGraphQL(second.url, '{ __typename }')).status).toBe(200);
  });
});

describe('generate during shutdown', () => {
  it('answers a waiting generate with the re-queued task', async () => {
    const { upstream, server } = await startWithUpstream({ SHUTDOWN_GRACE_MS: 100 });
    upstream.respondWith(() => ({ hang: true }));

    const pending = postGraphQL<{ generate: TaskShape }>(server.url, GENERATE, {
      input: { prompt: 'slow' },
      waitMs: 60_000,
    });
    await upstream.waitForRequests(1, 5000);
    const closing = server.close();
    const response = await pending;
    await closing;

    expect(response.data?.generate.status).toBe('QUEUED');
  });

  it('fails a task stopped in its last attempt', async () => {
    const dir = await makeTempDir();
    const settings = { SHUTDOWN_GRACE_MS: 50, TASK_MAX_ATTEMPTS: 1 };
    const { upstream, server } = await startWithUpstream(settings, { dir });
    upstream.respondWith(() => ({ hang: true }));
    const task = await submitTask(server.url, { prompt: 'stopped twice' });
    await upstream.waitForRequests(1, 5000);
    await server.close();

    const restarted = await startTestServer(
      { ...settings, LLM_PROVIDER: 'openai', LLM_BASE_URL: upstream.url, LLM_MODEL: 'test-model' },
      { dir },
    );
    const after = await readTask(restarted.url, task.id);
    expect(after).toMatchObject({ status: 'FAILED', attempts: 1, error: { code: 'INTERRUPTED' } });
    expect(upstream.requests).toHaveLength(1);
  });
});

describe('idempotency key reuse', () => {
  it('rejects the same key with a different prompt as a conflict', async () => {
    const server = await startTestServer();
    const first = await postGraphQL<{ submitTask: TaskShape }>(server.url, SUBMIT, {
      input: { prompt: 'a', idempotencyKey: 'k1' },
    });

    const other = await postGraphQL(server.url, SUBMIT, {
      input: { prompt: 'b', idempotencyKey: 'k1' },
    });

    expect(first.data?.submitTask.id).toBeDefined();
    expect(other.errors?.[0].extensions?.code).toBe('CONFLICT');
    expect(other.errors?.[0].message).toContain(first.data?.submitTask.id as string);
  });
});

describe('input checks', () => {
  it('rejects a model name with a line break', async () => {
    const server = await startTestServer();

    const response = await postGraphQL(server.url, SUBMIT, {
      input: { prompt: 'p', model: 'gpt\nX-Injected: 1' },
    });

    expect(response.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.errors?.[0].extensions?.field).toBe('model');
  });

  it('rejects a default wait above the maximum at start', () => {
    expect(() => parseConfig({ GENERATE_WAIT_MS: 5000, GENERATE_MAX_WAIT_MS: 1000 })).toThrow(
      /GENERATE_WAIT_MS/,
    );
  });
});

describe('request bodies without Content-Length', () => {
  it('serves a chunked JSON body under the limit, SSE included', async () => {
    const server = await startTestServer();
    const chunked = (body: string, accept = 'application/json') =>
      fetch(server.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept },
        body: new Blob([body]).stream(),
        duplex: 'half',
      } as RequestInit);

    const submitted = await chunked(
      JSON.stringify({ query: SUBMIT, variables: { input: { prompt: 'chunked' } } }),
    );
    const task = ((await submitted.json()) as { data: { submitTask: TaskShape } }).data.submitTask;
    const stream = await chunked(
      JSON.stringify({ query: `subscription { taskEvents(id: "${task.id}") { kind } }` }),
      'text/event-stream',
    );
    const text = await stream.text();

    expect(submitted.status).toBe(200);
    expect(stream.headers.get('content-type')).toContain('text/event-stream');
    expect(text).toContain('"kind":"COMPLETED"');
    expect(text).toContain('event: complete');
  });
});

describe('a task whose row cannot be written', () => {
  it('fails the submit, stops the task it had started and keeps serving', async () => {
    const { upstream, server } = await startWithUpstream({ DB_BUSY_TIMEOUT_MS: 20 });
    upstream.respondWith(() => ({ tokens: ['a', 'b', 'c', 'd'], tokenDelayMs: 400 }));
    // Another connection holds the write lock until the writer has given up on the batch.
    const blocker = new sqlite3.Database(server.dbPath);
    const exec = (sql: string) =>
      new Promise<void>((resolve, reject) =>
        blocker.exec(sql, (error) => (error ? reject(error) : resolve())),
      );
    await exec('PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE');
    try {
      const failed = await postGraphQL(server.url, SUBMIT, { input: { prompt: 'never saved' } });
      expect(failed.errors?.[0]).toMatchObject({
        message: 'The task could not be saved, so it was not queued. Try again.',
        extensions: { code: 'INTERNAL_SERVER_ERROR' },
      });
      // The task had started before its insert failed: its upstream request is aborted.
      await upstream.waitForAbort(0);
    } finally {
      await exec('ROLLBACK');
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
    const list = await postGraphQL<{ tasks: { edges: unknown[] } }>(server.url, TASKS, {});
    expect(list.data?.tasks.edges).toEqual([]);

    upstream.respondWith(() => ({ tokens: ['fine'] }));
    const task = (
      await postGraphQL<{ generate: TaskShape }>(server.url, GENERATE, {
        input: { prompt: 'saved' },
      })
    ).data?.generate;
    expect(task?.status).toBe('COMPLETED');
  });
});
