import { setTimeout as sleep } from 'node:timers/promises';
import { openWsClient, postGraphQL } from '../helpers/graphql-clients';
import { disposeTestServers, startTestServer } from '../helpers/test-server';
import { startWithUpstream, submitTask, waitForStatus } from './steps';

const METRICS = `{
  metrics {
    queue { depth capacity running workers accepted rejected totals { completed failed cancelled }
            waitTime { count p50 p95 p99 } runTime { count p50 p99 } }
    llm { requests retries errors { code count } tokensIn tokensOut timeToFirstToken { count p50 } tokensPerSecond { count } }
    cache { memoryHits memoryMisses databaseHits databaseMisses hitRate coalesced entries }
    db { pendingWrites batches rows rowsPerBatch { count p50 } writeLatency { count p99 } walBytes }
    subscriptions { connections websocket sse }
    process { uptimeSeconds rssBytes heapUsedBytes eventLoopDelay { p50 p99 } }
  }
}`;

interface MetricsData {
  metrics: {
    queue: Record<string, unknown> & {
      depth: number;
      accepted: number;
      rejected: number;
      totals: { completed: number; failed: number; cancelled: number };
      waitTime: { count: number; p50: number | null; p99: number | null };
      runTime: { count: number; p50: number | null };
    };
    llm: {
      requests: number;
      errors: Array<{ code: string; count: number }>;
      tokensIn: number;
      tokensOut: number;
      timeToFirstToken: { count: number; p50: number | null };
    };
    cache: {
      memoryHits: number;
      memoryMisses: number;
      databaseMisses: number;
      hitRate: number;
      coalesced: number;
    };
    db: { batches: number; rows: number; rowsPerBatch: { count: number }; walBytes: number };
    subscriptions: { connections: number; websocket: number; sse: number };
    process: { uptimeSeconds: number; rssBytes: number; eventLoopDelay: { p50: number | null } };
  };
}

async function readMetrics(url: string) {
  const response = await postGraphQL<MetricsData>(url, METRICS);
  if (!response.data) throw new Error(JSON.stringify(response.errors));
  return response.data.metrics;
}

/** Reads one sample from the Prometheus text, e.g. `taskwire_queue_depth` or a labelled series. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((row) => row.startsWith(`${series} `));
  if (!line) throw new Error(`No sample ${series} in /metrics`);
  return Number(line.slice(series.length + 1));
}

afterEach(disposeTestServers);

describe('metrics query and /metrics', () => {
  it('count the work a test caused, the same in both', async () => {
    const { upstream, server } = await startWithUpstream({
      WORKERS: 1,
      QUEUE_MAX_SIZE: 2,
      TASK_MAX_ATTEMPTS: 1,
    });
    upstream.respondWith((body) => {
      const prompt = String(body.messages.at(-1)?.content);
      if (prompt === 'fail') return { status: 400, errorBody: { error: { message: 'no' } } };
      return {
        tokens: ['a', 'b', 'c'],
        firstTokenDelayMs: prompt === 'slow' ? 1500 : 50,
        usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 },
      };
    });
    const slow = await submitTask(server.url, { prompt: 'slow' });
    await waitForStatus(server.url, slow.id, ['RUNNING']);
    const queued = [
      await submitTask(server.url, { prompt: 'q1' }),
      await submitTask(server.url, { prompt: 'fail' }),
    ];
    const full = await postGraphQL(
      server.url,
      `mutation { submitTask(input: { prompt: "over" }) { id } }`,
    );
    expect(full.errors?.[0].extensions?.code).toBe('QUEUE_FULL');
    const during = await readMetrics(server.url);
    expect(during.queue.depth).toBe(2);
    expect(during.queue.running).toBe(1);

    for (const task of [slow, ...queued])
      await waitForStatus(server.url, task.id, ['COMPLETED', 'FAILED']);
    await submitTask(server.url, { prompt: 'q1' });
    await server.store.flush();
    const after = await readMetrics(server.url);
    const text = await (await fetch(server.url.replace('/graphql', '/metrics'))).text();

    expect(after.queue.accepted).toBe(4);
    expect(after.queue.rejected).toBe(1);
    expect(after.queue.totals).toEqual({ completed: 3, failed: 1, cancelled: 0 });
    expect(after.queue.waitTime.count).toBe(3);
    expect(after.queue.waitTime.p99).toBeGreaterThanOrEqual(0.25);
    expect(after.queue.runTime.count).toBe(4);
    expect(after.llm.requests).toBe(3);
    expect(after.llm.errors).toEqual([{ code: 'PROVIDER_ERROR', count: 1 }]);
    expect(after.llm.tokensOut).toBe(6);
    expect(after.llm.tokensIn).toBe(8);
    expect(after.llm.timeToFirstToken.p50).toBeGreaterThanOrEqual(0.04);
    expect(after.cache.memoryHits).toBe(1);
    // The rejected submit looked in the cache too: a full queue still serves cached answers.
    expect(after.cache.databaseMisses).toBe(4);
    expect(after.db.rows).toBeGreaterThan(0);
    expect(after.db.walBytes).toBeGreaterThan(0);
    expect(after.process.rssBytes).toBeGreaterThan(0);

    expect(sample(text, 'taskwire_queue_depth')).toBe(0);
    expect(sample(text, 'taskwire_tasks_accepted_total')).toBe(after.queue.accepted);
    expect(sample(text, 'taskwire_tasks_rejected_total{code="QUEUE_FULL"}')).toBe(1);
    expect(sample(text, 'taskwire_tasks_finished_total{status="completed"}')).toBe(3);
    expect(sample(text, 'taskwire_cache_requests_total{tier="memory",result="hit"}')).toBe(1);
    expect(sample(text, 'taskwire_llm_requests_total')).toBe(after.llm.requests);
    expect(sample(text, 'taskwire_task_wait_seconds_count')).toBe(after.queue.waitTime.count);
    expect(sample(text, 'taskwire_task_wait_seconds_window{quantile="0.99"}')).toBeCloseTo(
      after.queue.waitTime.p99 as number,
      6,
    );
    expect(sample(text, 'taskwire_db_rows_total')).toBeGreaterThanOrEqual(after.db.rows);
    expect(text).toContain('process_resident_memory_bytes');
    expect(text).toContain('# TYPE taskwire_task_wait_seconds histogram');
  });

  it('counts coalesced tasks and the cache hit rate', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ tokens: ['x'], firstTokenDelayMs: 200 }));
    const tasks = await Promise.all(
      [1, 2, 3].map(() => submitTask(server.url, { prompt: 'same' })),
    );
    for (const task of tasks) await waitForStatus(server.url, task.id, ['COMPLETED']);
    await submitTask(server.url, { prompt: 'same' });

    const metrics = await readMetrics(server.url);

    expect(metrics.cache.coalesced).toBe(2);
    expect(metrics.cache.memoryHits).toBe(1);
    expect(metrics.cache.hitRate).toBeCloseTo(1 / 4, 5);
  });
});

describe('metricsUpdated subscription', () => {
  it('delivers at its interval and stops when the client leaves', async () => {
    const server = await startTestServer();
    const client = openWsClient(server.wsUrl);
    const received: number[] = [];

    const unsubscribe = client.subscribe<{
      metricsUpdated: { subscriptions: { websocket: number } };
    }>(
      {
        query:
          'subscription { metricsUpdated(intervalMs: 250) { subscriptions { websocket connections } } }',
      },
      {
        next: (result) => received.push(result.data?.metricsUpdated.subscriptions.websocket ?? -1),
        error: () => undefined,
        complete: () => undefined,
      },
    );
    await sleep(1100);
    unsubscribe();
    await sleep(300);
    const countAtStop = received.length;
    await sleep(600);
    const metrics = await readMetrics(server.url);

    expect(countAtStop).toBeGreaterThanOrEqual(4);
    expect(countAtStop).toBeLessThanOrEqual(6);
    expect(received[0]).toBe(1);
    expect(received.length).toBe(countAtStop);
    expect(metrics.subscriptions.websocket).toBe(0);
    expect(metrics.subscriptions.connections).toBe(1);
  });

  it.each([0, 249, 60_001])('rejects intervalMs %d', async (intervalMs) => {
    const server = await startTestServer();

    const response = await postGraphQL(
      server.url,
      `subscription { metricsUpdated(intervalMs: ${intervalMs}) { queue { depth } } }`,
      undefined,
      {
        accept: 'text/event-stream',
      },
    ).catch(() => undefined);

    expect(response === undefined || response.status >= 200).toBe(true);
    const ws = openWsClient(server.wsUrl);
    const errors = await new Promise<unknown>((resolve) => {
      ws.subscribe(
        { query: `subscription { metricsUpdated(intervalMs: ${intervalMs}) { queue { depth } } }` },
        {
          next: (result) => resolve(result.errors),
          error: resolve,
          complete: () => resolve(undefined),
        },
      );
    });
    expect(JSON.stringify(errors)).toContain('BAD_USER_INPUT');
  });
});
