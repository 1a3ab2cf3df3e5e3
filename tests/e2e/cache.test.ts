import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openWsClient, postGraphQL } from '../helpers/graphql-clients';
import { disposeTestServers, makeTempDir, startTestServer } from '../helpers/test-server';
import type { TaskShape } from './operations';
import { CANCEL, QUEUE_METRICS } from './operations';
import {
  collectEvents,
  kindsOf,
  promptOf,
  readTask,
  startWithUpstream,
  submitTask,
  textOf,
  waitForStatus,
} from './steps';

/** Submits, waits for the end and returns the finished task. */
async function run(url: string, input: Record<string, unknown>): Promise<TaskShape> {
  const task = await submitTask(url, input);
  return waitForStatus(url, task.id, ['COMPLETED', 'FAILED', 'CANCELLED']);
}

const CACHE_METRICS = `{ metrics { cache { memoryHits databaseHits memoryMisses coalesced entries writes } } }`;

afterEach(disposeTestServers);

describe('cache keys over the API', () => {
  it('misses on every parameter variant and hits on whitespace variants', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith((body) => ({
      tokens: [`answer ${body.temperature ?? '-'} ${promptOf(body)}`],
    }));
    const prompt = 'Explain caching';
    const first = await run(server.url, { prompt });
    expect(first.cached).toBe(false);

    const variants: Array<Record<string, unknown>> = [
      { prompt, params: { temperature: 0.3 } },
      { prompt, params: { topP: 0.5 } },
      { prompt, params: { maxTokens: 50 } },
      { prompt, params: { stop: ['END'] } },
      { prompt, params: { seed: 7 } },
      { prompt, system: 'Be brief.' },
      { prompt, model: 'm2' },
      { prompt, params: { temperature: 1 } },
    ];
    for (const input of variants) {
      const task = await run(server.url, input);
      expect({ input, cached: task.cached }).toEqual({ input, cached: false });
    }
    expect(upstream.requests).toHaveLength(1 + variants.length);

    for (const variant of [`${prompt}  \n`, `${prompt}\t`, `${prompt}\r\n`]) {
      const task = await run(server.url, { prompt: variant, params: { temperature: null } });
      expect(task.cached).toBe(true);
      expect(task.result).toBe(first.result);
    }
    expect(upstream.requests).toHaveLength(1 + variants.length);
  });

  it('replays a hit as TOKEN events and answers it without waiting for the model', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ tokens: ['slow ', 'model ', 'answer'], firstTokenDelayMs: 500 }));
    await run(server.url, { prompt: 'same' });

    const started = Date.now();
    const response = await postGraphQL<{ generate: TaskShape }>(
      server.url,
      `mutation { generate(input: { prompt: "same" }, waitMs: 5000) { id status cached result } }`,
    );
    const elapsed = Date.now() - started;
    const { events } = await collectEvents(
      openWsClient(server.wsUrl),
      response.data?.generate.id as string,
    );

    expect(response.data?.generate).toMatchObject({
      status: 'COMPLETED',
      cached: true,
      result: 'slow model answer',
    });
    expect(elapsed).toBeLessThan(400);
    expect(kindsOf(events)).toEqual(['STARTED', 'TOKEN', 'COMPLETED']);
    expect(textOf(events)).toBe('slow model answer');
    expect(upstream.requests).toHaveLength(1);
  });

  it('serves a hit by id at once and stores its row soon after', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ tokens: ['stored'] }));
    await run(server.url, { prompt: 'kept' });

    const hit = await submitTask(server.url, { prompt: 'kept' });
    expect(hit).toMatchObject({ status: 'COMPLETED', cached: true });
    // Readable before its row commits, and committed within the deferred-write delay.
    expect(await readTask(server.url, hit.id)).toMatchObject({ status: 'COMPLETED' });
    const rowOf = () => server.store.get(hit.id);
    const deadline = Date.now() + 2000;
    while ((await rowOf()) === null && Date.now() < deadline) await sleep(10);
    expect(await rowOf()).toMatchObject({ status: 'COMPLETED', cached: true, result: 'stored' });
  });

  it('honours BYPASS and REFRESH', async () => {
    const { upstream, server } = await startWithUpstream();
    let calls = 0;
    upstream.respondWith(() => ({ tokens: [`v${++calls}`] }));
    await run(server.url, { prompt: 'p' });

    const bypass = await run(server.url, { prompt: 'p', cache: 'BYPASS' });
    const refresh = await run(server.url, { prompt: 'p', cache: 'REFRESH' });
    const after = await run(server.url, { prompt: 'p' });

    expect(bypass).toMatchObject({ cached: false, result: 'v2' });
    expect(refresh).toMatchObject({ cached: false, result: 'v3' });
    expect(after).toMatchObject({ cached: true, result: 'v3' });
  });
});

describe('single-flight', () => {
  it('makes one upstream call per group of identical requests', async () => {
    const { upstream, server } = await startWithUpstream({ WORKERS: 4 });
    upstream.respondWith((body) => ({
      tokens: ['shared ', `t=${body.temperature ?? 'none'}`],
      firstTokenDelayMs: 2000,
    }));
    const submits = [];
    for (let i = 0; i < 20; i += 1) {
      submits.push(submitTask(server.url, { prompt: 'burst' }));
      submits.push(submitTask(server.url, { prompt: 'burst', params: { temperature: 0.1 } }));
    }
    const tasks = await Promise.all(submits);

    const done = await Promise.all(
      tasks.map((task) => waitForStatus(server.url, task.id, ['COMPLETED', 'FAILED'], 15_000)),
    );

    expect(upstream.requests).toHaveLength(2);
    for (const [index, task] of done.entries()) {
      expect(task.status).toBe('COMPLETED');
      expect(task.result).toBe(index % 2 === 0 ? 'shared t=none' : 'shared t=0.1');
    }
    expect(done.filter((task) => task.coalesced)).toHaveLength(38);
    const metrics = await postGraphQL<{ metrics: { cache: { coalesced: number } } }>(
      server.url,
      CACHE_METRICS,
    );
    expect(metrics.data?.metrics.cache.coalesced).toBe(38);
  });

  it('fails every follower when the shared call fails, and caches nothing', async () => {
    const { upstream, server } = await startWithUpstream({ TASK_MAX_ATTEMPTS: 1 });
    upstream.respondWith(() => ({
      tokens: ['par', 'tial'],
      tokenDelayMs: 100,
      errorAfterTokens: { afterIndex: 2, error: { message: 'model crashed' } },
    }));
    const tasks = await Promise.all(
      Array.from({ length: 5 }, () => submitTask(server.url, { prompt: 'doomed' })),
    );

    const done = await Promise.all(
      tasks.map((task) => waitForStatus(server.url, task.id, ['COMPLETED', 'FAILED'])),
    );

    expect(upstream.requests).toHaveLength(1);
    for (const task of done) {
      expect(task.status).toBe('FAILED');
      expect(task.error?.message).toContain('model crashed');
    }
    upstream.respondWith(() => ({ tokens: ['recovered'] }));
    const retry = await run(server.url, { prompt: 'doomed' });
    expect(retry).toMatchObject({ status: 'COMPLETED', cached: false, result: 'recovered' });
  });

  it('streams the same tokens to a follower that joins mid-stream', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ tokens: ['a', 'b', 'c', 'd', 'e'], tokenDelayMs: 60 }));
    const leader = await submitTask(server.url, { prompt: 'stream me' });
    await waitForStatus(server.url, leader.id, ['RUNNING']);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const follower = await submitTask(server.url, { prompt: 'stream me' });

    const { events } = await collectEvents(openWsClient(server.wsUrl), follower.id);

    expect(textOf(events)).toBe('abcde');
    expect(events.at(-1)?.task.status).toBe('COMPLETED');
    expect(upstream.requests).toHaveLength(1);
  });

  it('re-runs followers on their own when the leader is cancelled', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ tokens: ['x', 'y'], tokenDelayMs: 150 }));
    const leader = await submitTask(server.url, { prompt: 'shared' });
    const follower = await submitTask(server.url, { prompt: 'shared' });
    await waitForStatus(server.url, leader.id, ['RUNNING']);

    await postGraphQL(server.url, CANCEL, { id: leader.id });
    const done = await waitForStatus(server.url, follower.id, ['COMPLETED', 'FAILED', 'CANCELLED']);

    expect(done).toMatchObject({ status: 'COMPLETED', result: 'xy' });
    expect(upstream.requests).toHaveLength(2);
  });

  it('never cancels the leader when a follower is cancelled', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ tokens: ['x', 'y'], tokenDelayMs: 150 }));
    const leader = await submitTask(server.url, { prompt: 'shared' });
    const follower = await submitTask(server.url, { prompt: 'shared' });

    const cancelled = await postGraphQL<{ cancelTask: TaskShape }>(server.url, CANCEL, {
      id: follower.id,
    });
    const done = await waitForStatus(server.url, leader.id, ['COMPLETED', 'FAILED', 'CANCELLED']);

    expect(cancelled.data?.cancelTask.status).toBe('CANCELLED');
    expect(done).toMatchObject({ status: 'COMPLETED', result: 'xy' });
  });
});

describe('what is never cached', () => {
  it.each([
    [
      'a dropped connection',
      { TASK_MAX_ATTEMPTS: 1 },
      () => ({ tokens: ['1', '2', '3', '4', '5', '6'], dropAfterTokens: 5 }),
    ],
    [
      'a timeout',
      { TASK_TIMEOUT_MS: 300 },
      () => ({ tokens: ['1', '2', '3', '4', '5', '6'], tokenDelayMs: 100 }),
    ],
  ])('stores nothing after %s', async (_name, settings, reply) => {
    const { upstream, server } = await startWithUpstream(settings);
    upstream.respondWith(reply);
    const failed = await run(server.url, { prompt: 'fragile' });
    expect(failed.status).toBe('FAILED');

    upstream.respondWith(() => ({ tokens: ['full ', 'text'] }));
    const retry = await run(server.url, { prompt: 'fragile' });

    expect(retry).toMatchObject({ status: 'COMPLETED', cached: false, result: 'full text' });
    expect(await server.store.cache.size()).toEqual({ entries: 1, bytes: 9 });
  });

  it('stores nothing after a cancel', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ tokens: ['1', '2', '3', '4', '5', '6'], tokenDelayMs: 80 }));
    const task = await submitTask(server.url, { prompt: 'fragile' });
    await waitForStatus(server.url, task.id, ['RUNNING']);
    await postGraphQL(server.url, CANCEL, { id: task.id });
    await server.store.flush();
    expect((await server.store.cache.size()).entries).toBe(0);

    upstream.respondWith(() => ({ tokens: ['full'] }));
    const retry = await run(server.url, { prompt: 'fragile' });

    expect(retry).toMatchObject({ status: 'COMPLETED', cached: false, result: 'full' });
  });

  it('does not cache the demo provider unless asked', async () => {
    const server = await startTestServer({ LLM_PROVIDER: 'demo' });
    await run(server.url, { prompt: 'demo' });
    const second = await run(server.url, { prompt: 'demo' });
    expect(second.cached).toBe(false);
  });
});

describe('cache across restarts', () => {
  it('serves a stored answer from the database tier and drops expired ones', async () => {
    const dir = await makeTempDir();
    const first = await startWithUpstream({}, { dir });
    first.upstream.respondWith((body) => ({ tokens: [`answer to ${promptOf(body)}`] }));
    await run(first.server.url, { prompt: 'lasting' });
    await run(first.server.url, { prompt: 'fleeting', cacheTtlSeconds: 1 });
    await first.server.close();
    await new Promise((resolve) => setTimeout(resolve, 1100));

    const second = await startWithUpstream({}, { dir });
    second.upstream.respondWith(() => ({ tokens: ['fresh'] }));
    const lasting = await run(second.server.url, { prompt: 'lasting' });
    const fleeting = await run(second.server.url, { prompt: 'fleeting' });

    expect(lasting).toMatchObject({ cached: true, result: 'answer to lasting' });
    expect(fleeting).toMatchObject({ cached: false, result: 'fresh' });
    const metrics = await postGraphQL<{ metrics: { cache: { databaseHits: number } } }>(
      second.server.url,
      CACHE_METRICS,
    );
    expect(metrics.data?.metrics.cache.databaseHits).toBe(1);
    expect(join(dir, 'taskwire.db')).toBe(second.server.dbPath);
  });
});

describe('cache scope', () => {
  it("never serves one user's answer to another in user scope", async () => {
    const { upstream, server } = await startWithUpstream({ CACHE_SCOPE: 'user' });
    upstream.respondWith(() => ({ tokens: ['private'] }));
    const alice = { userId: 'alice', isAdmin: false };
    const bob = { userId: 'bob', isAdmin: false };

    const first = await server.tasks.generate({ prompt: 'secret' }, alice, 5000);
    const again = await server.tasks.generate({ prompt: 'secret' }, alice, 5000);
    const other = await server.tasks.generate({ prompt: 'secret' }, bob, 5000);

    expect(first.cached).toBe(false);
    expect(again.cached).toBe(true);
    expect(other.cached).toBe(false);
    expect(upstream.requests).toHaveLength(2);
  });

  it('shares answers between users in global scope', async () => {
    const { upstream, server } = await startWithUpstream({ CACHE_SCOPE: 'global' });
    upstream.respondWith(() => ({ tokens: ['shared'] }));

    await server.tasks.generate({ prompt: 'common' }, { userId: 'alice', isAdmin: false }, 5000);
    const other = await server.tasks.generate(
      { prompt: 'common' },
      { userId: 'bob', isAdmin: false },
      5000,
    );

    expect(other.cached).toBe(true);
    expect(upstream.requests).toHaveLength(1);
  });
});

describe('purgeCache', () => {
  const PURGE = `mutation { purgeCache(model: "test-model") }`;

  it('needs the admin token', async () => {
    const { server } = await startWithUpstream({ ADMIN_TOKEN: 'a-long-admin-token-123' });

    const anonymous = await postGraphQL(server.url, PURGE);
    const wrong = await postGraphQL(server.url, PURGE, {}, { authorization: 'Bearer nope' });

    expect(anonymous.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    expect(wrong.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('deletes the matching entries so the next request misses', async () => {
    const { upstream, server } = await startWithUpstream({ ADMIN_TOKEN: 'a-long-admin-token-123' });
    upstream.respondWith(() => ({ tokens: ['cached answer'] }));
    await run(server.url, { prompt: 'p' });
    await server.store.flush();

    const purged = await postGraphQL<{ purgeCache: number }>(
      server.url,
      PURGE,
      {},
      {
        authorization: 'Bearer a-long-admin-token-123',
      },
    );
    const after = await run(server.url, { prompt: 'p' });

    expect(purged.data?.purgeCache).toBe(1);
    expect(after.cached).toBe(false);
    const queue = await postGraphQL(server.url, QUEUE_METRICS);
    expect(queue.errors).toBeUndefined();
  });
});
