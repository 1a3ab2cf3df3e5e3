import { SUBMIT, TASK_EVENTS, postGraphQL } from '../lib/graphql';
import { startLoadClient } from '../lib/load-client';
import type { LoadResult } from '../lib/load-client';
import type { BenchSettings, Figure } from '../lib/report';
import { atMost, figure } from '../lib/report';
import { startServerProcess } from '../lib/server-process';
import type { ServerProcess } from '../lib/server-process';
import { startStampedUpstream } from '../lib/stamped-upstream';
import { summarize } from '../lib/stats';

const SCENARIO = '7 Fan-out';
const TOKENS = 20;
const TOKEN_DELAY_MS = 100;
const OPEN_BATCH = 100;

/** Delivery delays and memory of one fan-out run. */
interface FanoutRun {
  result: LoadResult;
  /** Server RSS growth per connected subscriber, in bytes. */
  rssPerConnection: number;
  /** Growth of the server's heap in use (plus external memory) per subscriber, in bytes. */
  heapPerConnection: number;
}

/** Connects the fan-out client, measures the server's RSS growth, then lets the stream run. */
async function measure(
  server: ServerProcess,
  count: number,
  subscribe: { query: string; variables: Record<string, unknown> } | undefined,
  stream: () => Promise<void>,
): Promise<FanoutRun> {
  const before = await server.memory();
  const client = startLoadClient(
    {
      mode: 'fanout',
      wsUrl: server.wsUrl,
      count,
      protocol: subscribe === undefined ? 'raw' : 'graphql-ws',
      query: subscribe?.query,
      variables: subscribe?.variables,
      timeoutMs: 120_000,
      openBatch: OPEN_BATCH,
    },
    240_000,
  );
  await Promise.race([client.ready, client.result]);
  const after = await server.memory();
  await stream();
  return {
    result: await client.result,
    rssPerConnection: (after.rss - before.rss) / count,
    heapPerConnection: (after.heap - before.heap) / count,
  };
}

/** Taskwire: N graphql-ws subscribers to one task streamed by the openai provider. */
async function measureTaskwire(count: number): Promise<FanoutRun> {
  let openGate: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  const upstream = await startStampedUpstream({
    tokens: TOKENS,
    tokenDelayMs: TOKEN_DELAY_MS,
    firstTokenDelayMs: TOKEN_DELAY_MS,
    gate: () => gate,
  });
  const server = await startServerProcess({
    taskwire: { LLM_PROVIDER: 'openai', LLM_BASE_URL: upstream.url, LLM_MODEL: 'bench' },
  });
  try {
    const input = { prompt: 'Fan-out probe', cache: 'BYPASS' };
    const { submitTask } = await postGraphQL<{ submitTask: { id: string } }>(server.url, SUBMIT, {
      input,
    });
    const subscribe = { query: TASK_EVENTS, variables: { id: submitTask.id } };
    return await measure(server, count, subscribe, async () => openGate());
  } finally {
    openGate();
    await server.close();
    await upstream.close();
  }
}

/** Baseline: the same number of plain `ws` sockets receiving the same messages. */
async function measureRaw(count: number): Promise<FanoutRun> {
  const server = await startServerProcess('raw');
  try {
    return await measure(server, count, undefined, () => server.broadcast(TOKENS, TOKEN_DELAY_MS));
  } finally {
    await server.close();
  }
}

/**
 * N graphql-ws subscribers to one task that streams 20 tokens 100 ms apart: delivery delay from
 * the upstream's write to each subscriber's receipt, and server memory per connection, against a
 * raw `ws` broadcast of the same messages. Both servers run in a child process of their own.
 */
export async function runFanout(settings: BenchSettings): Promise<Figure[]> {
  const count = settings.fanoutSubscribers;
  const taskwire = await measureTaskwire(count);
  const raw = await measureRaw(count);
  const tw = summarize(taskwire.result.latencies);
  const base = summarize(raw.result.latencies);
  const expected = count * TOKENS;
  const delivered = (run: FanoutRun) =>
    `${run.result.latencies.length} of ${expected} tokens, ${run.result.errors} sockets unfinished`;
  return [
    figure({
      scenario: SCENARIO,
      name: `token delivery p50, ${count.toLocaleString('en-US')} subscribers`,
      value: tw.p50,
      unit: 'ms',
      baseline: 'raw `ws` broadcast p50',
      baselineValue: base.p50,
      note: `Taskwire ${delivered(taskwire)}; raw ${delivered(raw)}`,
    }),
    figure({
      scenario: SCENARIO,
      name: `token delivery p99, ${count.toLocaleString('en-US')} subscribers`,
      value: tw.p99,
      unit: 'ms',
      baseline: 'raw `ws` broadcast p99',
      baselineValue: base.p99,
      target: atMost(tw.p99 / base.p99, 1.5, '≤ 1.5× raw ws', '×'),
    }),
    figure({
      scenario: SCENARIO,
      name: 'server memory kept per connection (heap + external)',
      value: taskwire.heapPerConnection / 1024,
      unit: 'KB',
      baseline: 'raw `ws` socket',
      baselineValue: raw.heapPerConnection / 1024,
      target: atMost(taskwire.heapPerConnection / 1024, 10, '< 10 KB', ' KB'),
      note: 'V8 heap in use plus external memory, after a full GC, before and after all sockets connect',
    }),
    figure({
      scenario: SCENARIO,
      name: 'server RSS growth per connection',
      value: taskwire.rssPerConnection / 1024,
      unit: 'KB',
      baseline: 'raw `ws` socket',
      baselineValue: raw.rssPerConnection / 1024,
      note: 'includes the young generation growing to --max-semi-space-size=32 under the first load',
    }),
  ];
}
