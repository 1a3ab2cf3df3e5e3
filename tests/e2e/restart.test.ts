import { MockUpstream } from '../helpers/mock-upstream';
import { openWsClient, postGraphQL } from '../helpers/graphql-clients';
import { startServerProcess } from '../helpers/server-process';
import { disposeTestServers, makeTempDir, onDispose } from '../helpers/test-server';
import type { TaskShape } from './operations';
import {
  collectEvents,
  kindsOf,
  promptOf,
  readTask,
  submitTask,
  textOf,
  waitForStatus,
} from './steps';
import { join } from 'node:path';

async function setUp(maxAttempts: number) {
  const upstream = await MockUpstream.start();
  onDispose(() => upstream.close());
  const dir = await makeTempDir();
  const env = {
    DATABASE_URL: `file:${join(dir, 'taskwire.db')}`,
    LLM_PROVIDER: 'openai',
    LLM_BASE_URL: upstream.url,
    LLM_MODEL: 'test-model',
    WORKERS: '1',
    TASK_MAX_ATTEMPTS: String(maxAttempts),
  };
  return { upstream, env };
}

/** Starts a server, gets one task RUNNING and two QUEUED, then kills the process with SIGKILL. */
async function crashWithWork(upstream: MockUpstream, env: Record<string, string>) {
  upstream.respondWith(() => ({ tokens: ['never', ' finished'], firstTokenDelayMs: 60_000 }));
  const first = await startServerProcess(env);
  const running = await submitTask(first.url, { prompt: 'running' });
  const queued = [
    await submitTask(first.url, { prompt: 'queued 1' }),
    await submitTask(first.url, { prompt: 'queued 2' }),
  ];
  await waitForStatus(first.url, running.id, ['RUNNING']);
  await upstream.waitForRequests(1, 5000);
  // The RUNNING row is written by the batched writer a few milliseconds after the event.
  await new Promise((resolve) => setTimeout(resolve, 100));
  await first.stop('SIGKILL');
  return { running, queued };
}

afterEach(disposeTestServers);

describe('restart after a crash', () => {
  it('re-queues the interrupted task and runs every task to the end', async () => {
    const { upstream, env } = await setUp(3);
    const { running, queued } = await crashWithWork(upstream, env);
    upstream.respondWith((body) => ({ tokens: [`done: ${promptOf(body)}`] }));

    const second = await startServerProcess(env);
    const client = openWsClient(second.wsUrl);
    const streams = await Promise.all(
      [running, ...queued].map((task) => collectEvents(client, task.id)),
    );

    for (const [index, task] of [running, ...queued].entries()) {
      const { events } = streams[index];
      expect(events.at(-1)?.kind).toBe('COMPLETED');
      expect(events.at(-1)?.task.result).toBe(`done: ${task.prompt}`);
    }
    const interrupted = (await readTask(second.url, running.id)) as TaskShape;
    expect(interrupted.attempts).toBe(2);
    expect(
      second.logs.some((line) => line.msg === 'Recovered tasks interrupted by the last stop'),
    ).toBe(true);
  }, 60_000);

  it('fails the interrupted task with INTERRUPTED once its attempts are used', async () => {
    const { upstream, env } = await setUp(1);
    const { running, queued } = await crashWithWork(upstream, env);
    upstream.respondWith((body) => ({ tokens: [`done: ${promptOf(body)}`] }));

    const second = await startServerProcess(env);
    const client = openWsClient(second.wsUrl);
    const interrupted = await collectEvents(client, running.id);
    const others = await Promise.all(queued.map((task) => collectEvents(client, task.id)));

    expect(kindsOf(interrupted.events)).toEqual(['FAILED']);
    expect(interrupted.events[0].task.error?.code).toBe('INTERRUPTED');
    for (const { events } of others) expect(events.at(-1)?.kind).toBe('COMPLETED');
  }, 60_000);
});

describe('reconnecting after a crash', () => {
  it('resumes from afterSeq with RETRYING and the new text', async () => {
    const { upstream, env } = await setUp(3);
    upstream.respondWith(() => ({
      tokens: Array.from({ length: 50 }, (_, i) => `old${i} `),
      tokenDelayMs: 100,
    }));
    const first = await startServerProcess(env);
    const task = await submitTask(first.url, { prompt: 'interrupted stream' });
    let lastSeen = 0;
    const seen = new Promise<void>((resolve) => {
      void collectEvents(openWsClient(first.wsUrl), task.id, 0, (event) => {
        if (event.kind === 'TOKEN') lastSeen = event.seq;
        if (event.delta === 'old2 ') resolve();
      });
    });
    await seen;
    await first.stop('SIGKILL');
    upstream.respondWith(() => ({ tokens: ['new ', 'text'] }));

    const second = await startServerProcess(env);
    const { events } = await collectEvents(openWsClient(second.wsUrl), task.id, lastSeen);

    expect(lastSeen).toBeGreaterThan(0);
    expect(events[0].kind).toBe('RETRYING');
    expect(events[0].seq).toBeGreaterThan(lastSeen);
    expect(events.at(-1)?.kind).toBe('COMPLETED');
    expect(textOf(events)).toBe('new text');
  }, 60_000);
});

describe('graceful shutdown', () => {
  it('rejects new work, re-queues a running task and finishes it after restart', async () => {
    const { upstream, env } = await setUp(3);
    upstream.respondWith(() => ({ tokens: ['slow'], firstTokenDelayMs: 60_000 }));
    const server = await startServerProcess({ ...env, SHUTDOWN_GRACE_MS: '300' });
    const task = await submitTask(server.url, { prompt: 'slow one' });
    await waitForStatus(server.url, task.id, ['RUNNING']);

    const exitCode = await server.stop('SIGTERM');
    expect(exitCode).toBe(0);
    expect(upstream.requests[0].aborted).toBe(true);

    upstream.respondWith(() => ({ tokens: ['finished later'] }));
    const restarted = await startServerProcess(env);
    const done = await waitForStatus(restarted.url, task.id, ['COMPLETED']);
    expect(done.result).toBe('finished later');
    const ready = await fetch(restarted.url.replace('/graphql', '/ready'));
    expect(ready.status).toBe(200);
    const health = await postGraphQL(restarted.url, '{ __typename }');
    expect(health.status).toBe(200);
  }, 60_000);
});
