import { openWsClient, collectWs, postGraphQL } from '../helpers/graphql-clients';
import { disposeTestServers, startTestServer } from '../helpers/test-server';
import type { TaskShape } from './operations';
import { CANCEL, EVENTS, GENERATE, SUBMIT, TASK, TASKS } from './operations';
import { submitTask, waitForStatus } from './steps';

afterEach(disposeTestServers);

const UNKNOWN_ID = '01890000-0000-7000-8000-000000000000';

describe('input validation', () => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['empty prompt', { prompt: '' }, 'prompt'],
    ['blank prompt', { prompt: '   \n ' }, 'prompt'],
    ['oversized prompt', { prompt: 'x'.repeat(101) }, 'prompt'],
    ['oversized system', { prompt: 'p', system: 'x'.repeat(101) }, 'system'],
    ['temperature above 2', { prompt: 'p', params: { temperature: 2.5 } }, 'params.temperature'],
    ['negative temperature', { prompt: 'p', params: { temperature: -0.1 } }, 'params.temperature'],
    ['topP of zero', { prompt: 'p', params: { topP: 0 } }, 'params.topP'],
    ['maxTokens of zero', { prompt: 'p', params: { maxTokens: 0 } }, 'params.maxTokens'],
    [
      'maxTokens above the limit',
      { prompt: 'p', params: { maxTokens: 1_000_000 } },
      'params.maxTokens',
    ],
    [
      'five stop sequences',
      { prompt: 'p', params: { stop: ['a', 'b', 'c', 'd', 'e'] } },
      'params.stop',
    ],
    ['empty stop sequence', { prompt: 'p', params: { stop: [''] } }, 'params.stop'],
    ['priority out of range', { prompt: 'p', priority: 1000 }, 'priority'],
    ['blank model', { prompt: 'p', model: ' ' }, 'model'],
    ['empty idempotency key', { prompt: 'p', idempotencyKey: '' }, 'idempotencyKey'],
  ];

  it.each(cases)(
    'rejects %s with BAD_USER_INPUT and writes nothing',
    async (_name, input, field) => {
      const server = await startTestServer({ PROMPT_MAX_CHARS: 100 });

      const response = await postGraphQL(server.url, SUBMIT, { input });

      expect(response.data).toBeNull();
      expect(response.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0].extensions?.field).toBe(field);
      expect(response.errors?.[0].message).toContain(field);
      const listed = await postGraphQL<{ tasks: { edges: unknown[] } }>(server.url, TASKS, {});
      expect(listed.data?.tasks.edges).toHaveLength(0);
    },
  );

  it('rejects variables of the wrong type', async () => {
    const server = await startTestServer();

    const response = await postGraphQL(server.url, SUBMIT, {
      input: { prompt: 42, priority: 'high' },
    });

    expect(response.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.errors?.[0].message).toContain('String');
  });

  it('rejects a malformed operation with a parse error', async () => {
    const server = await startTestServer();

    const response = await postGraphQL(
      server.url,
      'mutation { submitTask(input: { prompt: "x" ) { id } }',
    );

    expect(response.errors?.[0].extensions?.code).toBe('GRAPHQL_PARSE_FAILED');
  });

  it('rejects an unknown field with a validation error', async () => {
    const server = await startTestServer();

    const response = await postGraphQL(server.url, '{ task(id: "x") { nope } }');

    expect(response.errors?.[0].extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
  });

  it('rejects a waitMs out of range', async () => {
    const server = await startTestServer();

    const response = await postGraphQL(server.url, GENERATE, {
      input: { prompt: 'p' },
      waitMs: -1,
    });

    expect(response.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.errors?.[0].extensions?.field).toBe('waitMs');
  });

  it('keeps serving after every bad request', async () => {
    const server = await startTestServer();
    for (const input of cases.map((testCase) => testCase[1])) {
      await postGraphQL(server.url, SUBMIT, { input });
    }
    await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"query": ',
    });

    const task = await submitTask(server.url, { prompt: 'still here' });

    // The demo reply is instant: the task may end before its row commits and submit returns.
    expect(['QUEUED', 'RUNNING', 'COMPLETED']).toContain(task.status);
    expect((await waitForStatus(server.url, task.id, ['COMPLETED'])).result).toContain(
      'still here',
    );
  });
});

describe('unknown and malformed ids', () => {
  it('returns null for an unknown task', async () => {
    const server = await startTestServer();

    const response = await postGraphQL<{ task: TaskShape | null }>(server.url, TASK, {
      id: UNKNOWN_ID,
    });

    expect(response.errors).toBeUndefined();
    expect(response.data?.task).toBeNull();
  });

  it.each([UNKNOWN_ID, 'not-a-uuid'])('cancels %s with NOT_FOUND', async (id) => {
    const server = await startTestServer();

    const response = await postGraphQL(server.url, CANCEL, { id });

    expect(response.errors?.[0].extensions?.code).toBe('NOT_FOUND');
  });

  it('ends a subscription to an unknown task with NOT_FOUND and keeps the socket', async () => {
    const server = await startTestServer();
    const client = openWsClient(server.wsUrl);

    const missing = await collectWs(client, EVENTS, { id: UNKNOWN_ID });
    const badSyntax = await collectWs(client, 'subscription { taskEvents(id: ', {});
    const task = await submitTask(server.url, { prompt: 'after the errors' });
    const good = await collectWs<{ taskEvents: { kind: string } }>(client, EVENTS, { id: task.id });

    expect(missing.results[0]?.errors?.[0].extensions?.code).toBe('NOT_FOUND');
    expect(badSyntax.error).toBeDefined();
    expect(JSON.stringify(badSyntax.error)).toContain('GRAPHQL_PARSE_FAILED');
    expect(good.results.at(-1)?.data?.taskEvents.kind).toBe('COMPLETED');
  });

  it('rejects a negative afterSeq', async () => {
    const server = await startTestServer();
    const task = await submitTask(server.url, { prompt: 'p' });
    const client = openWsClient(server.wsUrl);

    const result = await collectWs(client, EVENTS, { id: task.id, afterSeq: -1 });

    expect(result.results[0]?.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
  });
});

describe('task listing', () => {
  it('pages newest first with cursors and filters by status', async () => {
    const server = await startTestServer();
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1)
      ids.push((await submitTask(server.url, { prompt: `task ${i}` })).id);
    for (const id of ids) await waitForStatus(server.url, id, ['COMPLETED']);
    const queued = await postGraphQL<{ cancelTask: TaskShape }>(server.url, CANCEL, { id: ids[0] });
    expect(queued.errors?.[0].extensions?.code).toBe('CONFLICT');

    type Page = {
      tasks: {
        edges: Array<{ node: { id: string } }>;
        pageInfo: { hasNextPage: boolean; endCursor: string };
      };
    };
    const first = await postGraphQL<Page>(server.url, TASKS, { first: 2 });
    const second = await postGraphQL<Page>(server.url, TASKS, {
      first: 2,
      after: first.data?.tasks.pageInfo.endCursor,
    });
    const third = await postGraphQL<Page>(server.url, TASKS, {
      first: 2,
      after: second.data?.tasks.pageInfo.endCursor,
    });
    const failed = await postGraphQL<Page>(server.url, TASKS, { status: ['FAILED'] });

    const pages = [first, second, third].map((page) =>
      page.data?.tasks.edges.map((edge) => edge.node.id),
    );
    expect(pages).toEqual([[ids[4], ids[3]], [ids[2], ids[1]], [ids[0]]]);
    expect(first.data?.tasks.pageInfo.hasNextPage).toBe(true);
    expect(third.data?.tasks.pageInfo.hasNextPage).toBe(false);
    expect(failed.data?.tasks.edges).toEqual([]);
  });

  it.each([
    [{ first: 0 }, 'first'],
    [{ first: 101 }, 'first'],
    [{ after: 'garbage' }, 'after'],
  ])('rejects %j', async (variables, field) => {
    const server = await startTestServer();

    const response = await postGraphQL(server.url, TASKS, variables);

    expect(response.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.errors?.[0].extensions?.field).toBe(field);
  });
});

describe('idempotency keys', () => {
  it('returns the same task for the same key', async () => {
    const server = await startTestServer();
    const input = { prompt: 'once', idempotencyKey: 'order-42' };

    const [a, b] = await Promise.all([
      submitTask(server.url, input),
      submitTask(server.url, input),
    ]);
    const c = await submitTask(server.url, input);
    const other = await submitTask(server.url, { ...input, idempotencyKey: 'order-43' });

    expect(b.id).toBe(a.id);
    expect(c.id).toBe(a.id);
    expect(other.id).not.toBe(a.id);
  });
});

describe('health endpoints', () => {
  it('answers /health and /ready', async () => {
    const server = await startTestServer();
    const base = server.url.replace('/graphql', '');

    const health = await fetch(`${base}/health`);
    const ready = await fetch(`${base}/ready`);

    expect(health.status).toBe(200);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });

  it('serves GraphiQL to a browser', async () => {
    const server = await startTestServer();

    const response = await fetch(server.url, { headers: { accept: 'text/html' } });

    expect(response.status).toBe(200);
    expect(await response.text()).toContain('GraphiQL');
  });
});
