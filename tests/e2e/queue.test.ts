import { setTimeout as sleep } from 'node:timers/promises';
import { openWsClient, postGraphQL } from '../helpers/graphql-clients';
import { disposeTestServers, startTestServer } from '../helpers/test-server';
import type { GenerateChunk, GenerateRequest, LlmProvider } from '../../src/services/llm/provider';
import type { TaskShape } from './operations';
import { CANCEL, GENERATE, QUEUE_METRICS, TASKS } from './operations';
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

async function queueMetrics(url: string) {
  const response = await postGraphQL<{
    metrics: { queue: { depth: number; capacity: number; running: number; workers: number } };
  }>(url, QUEUE_METRICS);
  return response.data?.metrics.queue;
}

afterEach(disposeTestServers);

describe('task timeout', () => {
  it('fails hung tasks with TIMEOUT and keeps both workers serving', async () => {
    const { upstream, server } = await startWithUpstream({ WORKERS: 2, TASK_TIMEOUT_MS: 200 });
    upstream.respondWith((body) =>
      promptOf(body).startsWith('hang') ? { hang: true } : { tokens: ['ok'] },
    );
    const hung = [
      await submitTask(server.url, { prompt: 'hang 1' }),
      await submitTask(server.url, { prompt: 'hang 2' }),
    ];
    const normal: TaskShape[] = [];
    for (let i = 0; i < 5; i += 1)
      normal.push(await submitTask(server.url, { prompt: `normal ${i}` }));

    for (const task of hung) {
      const done = await waitForStatus(server.url, task.id, ['FAILED', 'COMPLETED']);
      expect(done.status).toBe('FAILED');
      expect(done.error?.code).toBe('TIMEOUT');
    }
    for (const task of normal) {
      const done = await waitForStatus(server.url, task.id, ['FAILED', 'COMPLETED']);
      expect(done.status).toBe('COMPLETED');
      expect(done.result).toBe('ok');
    }
    const metrics = await queueMetrics(server.url);
    expect(metrics?.workers).toBe(2);
    expect(metrics?.running).toBe(0);
  });
});

describe('cancel', () => {
  it('aborts the upstream request of a streaming task at once', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({
      tokens: Array.from({ length: 40 }, (_, i) => `t${i} `),
      tokenDelayMs: 40,
    }));
    const task = await submitTask(server.url, { prompt: 'long' });
    let cancelledAt = 0;
    const cancelled: Array<Promise<unknown>> = [];

    const { events } = await collectEvents(openWsClient(server.wsUrl), task.id, 0, (event) => {
      const tokens = event.kind === 'TOKEN' ? Number(event.seq) : 0;
      if (tokens > 0 && cancelledAt === 0 && event.delta === 't1 ') {
        cancelledAt = Date.now();
        cancelled.push(postGraphQL(server.url, CANCEL, { id: task.id }));
      }
    });
    await Promise.all(cancelled);
    const aborted = await upstream.waitForAbort(0, 2000);

    expect(kindsOf(events)).toEqual(['QUEUED', 'STARTED', 'TOKEN', 'CANCELLED']);
    expect(textOf(events)).toBe('t0 t1 ');
    expect((aborted.closedAt ?? Infinity) - cancelledAt).toBeLessThan(250);
    await sleep(150);
    const stored = await readTask(server.url, task.id);
    expect(stored?.status).toBe('CANCELLED');
    expect(stored?.error?.code).toBe('CANCELLED');
    expect(stored?.result).toBeNull();
  });

  it('keeps CANCELLED when a provider that ignores the abort sends late tokens', async () => {
    const provider = new StubbornProvider();
    const server = await startTestServer({}, { provider });
    const task = await submitTask(server.url, { prompt: 'p' });
    await provider.started;

    const response = await postGraphQL<{ cancelTask: TaskShape }>(server.url, CANCEL, {
      id: task.id,
    });
    provider.release();
    await provider.finished;

    expect(response.data?.cancelTask.status).toBe('CANCELLED');
    const { events } = await collectEvents(openWsClient(server.wsUrl), task.id);
    expect(kindsOf(events)).toEqual(['QUEUED', 'STARTED', 'TOKEN', 'CANCELLED']);
    expect(textOf(events)).toBe('first');
    const stored = await readTask(server.url, task.id);
    expect(stored?.status).toBe('CANCELLED');
    expect(stored?.result).toBeNull();
  });

  it('removes a queued task so that it never starts', async () => {
    const { upstream, server } = await startWithUpstream({ WORKERS: 1 });
    upstream.respondWith((body) => ({ tokens: [promptOf(body)], firstTokenDelayMs: 300 }));
    const running = await submitTask(server.url, { prompt: 'running' });
    const queued = await submitTask(server.url, { prompt: 'queued' });

    const response = await postGraphQL<{ cancelTask: TaskShape }>(server.url, CANCEL, {
      id: queued.id,
    });
    await waitForStatus(server.url, running.id, ['COMPLETED']);
    await sleep(100);

    expect(response.data?.cancelTask.status).toBe('CANCELLED');
    expect(upstream.requests.map((request) => promptOf(request.body))).toEqual(['running']);
    const { events } = await collectEvents(openWsClient(server.wsUrl), queued.id);
    expect(events.map((event) => event.kind)).not.toContain('STARTED');
    expect(events.at(-1)?.kind).toBe('CANCELLED');
  });

  it('rejects cancelling a finished task as a conflict', async () => {
    const server = await startTestServer();
    const task = await submitTask(server.url, { prompt: 'p' });
    await waitForStatus(server.url, task.id, ['COMPLETED']);

    const response = await postGraphQL(server.url, CANCEL, { id: task.id });

    expect(response.errors?.[0].extensions?.code).toBe('CONFLICT');
    expect(response.errors?.[0].message).toContain('COMPLETED');
  });
});

describe('durable submit', () => {
  it('returns only once the task row is committed, with the task already running', async () => {
    const { upstream, server } = await startWithUpstream({ DB_FLUSH_INTERVAL_MS: 200, WORKERS: 4 });
    upstream.respondWith(() => ({ tokens: ['a', 'b'], firstTokenDelayMs: 500 }));
    const submitted = Date.now();
    const tasks = await Promise.all(
      ['one', 'two', 'three'].map((prompt) => submitTask(server.url, { prompt })),
    );
    // The writer waited DB_FLUSH_INTERVAL_MS before committing, and each submit waited for it.
    expect(Date.now() - submitted).toBeGreaterThanOrEqual(190);
    for (const task of tasks) {
      expect(await server.store.get(task.id)).toMatchObject({ id: task.id, prompt: task.prompt });
    }
    // The tasks started while their rows were waiting: the upstream saw them before the commit.
    expect(upstream.requests).toHaveLength(3);
    for (const request of upstream.requests) {
      expect(request.receivedAt - submitted).toBeLessThan(150);
    }
  });
});

describe('bounded queue', () => {
  it('rejects with QUEUE_FULL before writing anything', async () => {
    const { upstream, server } = await startWithUpstream({ WORKERS: 1, QUEUE_MAX_SIZE: 3 });
    upstream.respondWith(() => ({ hang: true }));
    const first = await submitTask(server.url, { prompt: 'running' });
    await waitForStatus(server.url, first.id, ['RUNNING']);
    for (let i = 0; i < 3; i += 1) await submitTask(server.url, { prompt: `waiting ${i}` });

    const rejected = await postGraphQL(
      server.url,
      `mutation { submitTask(input: { prompt: "one too many" }) { id } }`,
    );

    const error = rejected.errors?.[0];
    expect(error?.extensions?.code).toBe('QUEUE_FULL');
    expect(error?.extensions?.capacity).toBe(3);
    expect(error?.extensions?.depth).toBe(3);
    expect(error?.message).toContain('3 of 3');
    const listed = await postGraphQL<{ tasks: { edges: Array<{ node: { prompt: string } }> } }>(
      server.url,
      TASKS,
      { first: 100 },
    );
    const prompts = listed.data?.tasks.edges.map((edge) => edge.node.prompt);
    expect(prompts).toHaveLength(4);
    expect(prompts).not.toContain('one too many');
  });

  it('runs higher priority first and reports queue positions', async () => {
    const { upstream, server } = await startWithUpstream({ WORKERS: 1 });
    upstream.respondWith((body) => ({
      tokens: [promptOf(body)],
      firstTokenDelayMs: promptOf(body) === 'blocker' ? 200 : 0,
    }));
    const blocker = await submitTask(server.url, { prompt: 'blocker' });
    await waitForStatus(server.url, blocker.id, ['RUNNING']);
    const low = await submitTask(server.url, { prompt: 'low', priority: -5 });
    const normal = await submitTask(server.url, { prompt: 'normal' });
    const high = await submitTask(server.url, { prompt: 'high', priority: 10 });

    expect(low.queuePosition).toBe(1);
    expect(normal.queuePosition).toBe(1);
    expect(high.queuePosition).toBe(1);
    expect((await readTask(server.url, low.id))?.queuePosition).toBe(3);
    await waitForStatus(server.url, low.id, ['COMPLETED']);
    expect(upstream.requests.map((request) => promptOf(request.body))).toEqual([
      'blocker',
      'high',
      'normal',
      'low',
    ]);
  });
});

describe('generate', () => {
  it('returns the completed task when it ends within waitMs', async () => {
    const server = await startTestServer();

    const response = await postGraphQL<{ generate: TaskShape }>(server.url, GENERATE, {
      input: { prompt: 'quick' },
      waitMs: 5000,
    });

    expect(response.data?.generate.status).toBe('COMPLETED');
    expect(response.data?.generate.result).toContain('quick');
  });

  it('returns the still-running task when waitMs passes first', async () => {
    const { upstream, server } = await startWithUpstream();
    upstream.respondWith(() => ({ tokens: ['slow'], firstTokenDelayMs: 1000 }));
    const started = Date.now();

    const response = await postGraphQL<{ generate: TaskShape }>(server.url, GENERATE, {
      input: { prompt: 'slow' },
      waitMs: 100,
    });

    expect(response.errors).toBeUndefined();
    expect(['QUEUED', 'RUNNING']).toContain(response.data?.generate.status);
    expect(Date.now() - started).toBeLessThan(900);
    const done = await waitForStatus(server.url, response.data?.generate.id as string, [
      'COMPLETED',
    ]);
    expect(done.result).toBe('slow');
  });
});

/** A provider that sends one token, then ignores its abort signal and sends more when released. */
class StubbornProvider implements LlmProvider {
  readonly name = 'stubborn';
  readonly defaultModel = 'stubborn';
  started: Promise<void>;
  finished: Promise<void>;
  private markStarted!: () => void;
  private markFinished!: () => void;
  private releaseGate!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.releaseGate = resolve));

  constructor() {
    this.started = new Promise((resolve) => (this.markStarted = resolve));
    this.finished = new Promise((resolve) => (this.markFinished = resolve));
  }

  release(): void {
    this.releaseGate();
  }

  async *generate(_request: GenerateRequest): AsyncIterable<GenerateChunk> {
    yield { type: 'token', text: 'first' };
    this.markStarted();
    await this.gate;
    try {
      yield { type: 'token', text: ' late' };
      yield { type: 'finish', reason: 'stop' };
    } finally {
      this.markFinished();
    }
  }

  async close(): Promise<void> {}
}
