import type { Client } from 'graphql-ws';
import { SUBMIT, TASK_EVENTS, openWsClient, wsRequest } from '../lib/graphql';
import type { TaskEventData } from '../lib/graphql';
import type { BenchSettings, Figure } from '../lib/report';
import { atMost, figure, fmt } from '../lib/report';
import { startTaskwire } from '../lib/servers';
import { readStamp, startStampedUpstream } from '../lib/stamped-upstream';
import { now, summarize } from '../lib/stats';

const SCENARIO = '4 Streaming';
const TOKENS = 40;
const TOKEN_DELAY_MS = 10;
/** Long enough for the subscription to be in place before the first token reaches Taskwire. */
const FIRST_TOKEN_DELAY_MS = 50;

/** Timings of one streamed response, in milliseconds. */
interface StreamTiming {
  /** From the request until the first token arrived. */
  firstToken: number;
  /** Per token, from the upstream's write until the client received it. */
  tokenDelays: number[];
}

/** Streams one response straight from the upstream with fetch, parsing the SSE lines. */
async function readDirect(baseUrl: string, index: number): Promise<StreamTiming> {
  const started = now();
  const response = await fetch(`${baseUrl}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'bench',
      stream: true,
      messages: [{ role: 'user', content: `Streaming probe ${index}` }],
    }),
  });
  if (response.body === null)
    throw new Error(`Upstream returned HTTP ${response.status} without a body`);
  const timing: StreamTiming = { firstToken: Number.NaN, tokenDelays: [] };
  const decoder = new TextDecoder();
  let buffered = '';
  const reader = response.body.getReader();
  for (;;) {
    const { done, value: bytes } = await reader.read();
    if (done) break;
    const received = now();
    buffered += decoder.decode(bytes, { stream: true });
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const chunk = JSON.parse(line.slice(6)) as {
        choices: Array<{ delta: { content?: string } }>;
      };
      const sent = readStamp(chunk.choices[0]?.delta.content ?? '');
      if (sent === undefined) continue;
      if (timing.tokenDelays.length === 0) timing.firstToken = received - started;
      timing.tokenDelays.push(received - sent);
    }
  }
  return timing;
}

/** Submits one task over graphql-ws and times its TOKEN events at a graphql-ws subscriber. */
async function readThroughTaskwire(client: Client, index: number): Promise<StreamTiming> {
  const started = now();
  const input = { prompt: `Streaming probe ${index}`, cache: 'BYPASS' };
  const { submitTask } = await wsRequest<{ submitTask: { id: string } }>(client, SUBMIT, { input });
  const timing: StreamTiming = { firstToken: Number.NaN, tokenDelays: [] };
  return new Promise((resolve, reject) => {
    client.subscribe<TaskEventData>(
      { query: TASK_EVENTS, variables: { id: submitTask.id } },
      {
        next: (result) => {
          const received = now();
          const event = result.data?.taskEvents;
          if (event?.kind !== 'TOKEN') return;
          const sent = readStamp(event.delta ?? '');
          if (sent === undefined) return;
          if (timing.tokenDelays.length === 0) timing.firstToken = received - started;
          timing.tokenDelays.push(received - sent);
        },
        error: reject,
        complete: () => resolve(timing),
      },
    );
  });
}

/**
 * Time to first token and delay per token through Taskwire (openai provider, graphql-ws
 * subscriber) against the same upstream read directly with fetch. Streams alternate between the
 * two paths, one at a time, so both see the same machine load.
 */
export async function runStreaming(settings: BenchSettings): Promise<Figure[]> {
  const streams = settings.mode === 'quick' ? 8 : settings.mode === 'full' ? 60 : 25;
  const upstream = await startStampedUpstream({
    tokens: TOKENS,
    tokenDelayMs: TOKEN_DELAY_MS,
    firstTokenDelayMs: FIRST_TOKEN_DELAY_MS,
  });
  const server = await startTaskwire({
    LLM_PROVIDER: 'openai',
    LLM_BASE_URL: upstream.url,
    LLM_MODEL: 'bench',
    WORKERS: 2,
  });
  const client = openWsClient(server.wsUrl);
  const direct: StreamTiming[] = [];
  const taskwire: StreamTiming[] = [];
  try {
    // Warm-up: connections, JIT and the first database writes.
    await readDirect(upstream.url, -1);
    await readThroughTaskwire(client, -1);
    for (let index = 0; index < streams; index += 1) {
      direct.push(await readDirect(upstream.url, index));
      taskwire.push(await readThroughTaskwire(client, index));
    }
  } finally {
    await client.dispose();
    await server.dispose();
    await upstream.close();
  }
  const tokens = (timings: StreamTiming[]) => summarize(timings.flatMap((t) => t.tokenDelays));
  const first = (timings: StreamTiming[]) => summarize(timings.map((t) => t.firstToken));
  const tokenTw = tokens(taskwire);
  const tokenDirect = tokens(direct);
  const firstTw = first(taskwire);
  const firstDirect = first(direct);
  const missing = streams * TOKENS - tokenTw.count;
  const setup = `${streams} streams × ${TOKENS} tokens, ${TOKEN_DELAY_MS} ms apart`;
  const addedNote = (added: number) => `adds ${fmt(added)} ms; ${setup}`;
  const addedTokenP99 = tokenTw.p99 - tokenDirect.p99;
  const addedFirstP99 = firstTw.p99 - firstDirect.p99;
  return [
    figure({
      scenario: SCENARIO,
      name: 'delay per token, upstream write→client, p50',
      value: tokenTw.p50,
      unit: 'ms',
      baseline: 'fetch of the upstream, p50',
      baselineValue: tokenDirect.p50,
      note: addedNote(tokenTw.p50 - tokenDirect.p50) + (missing > 0 ? `; ${missing} lost` : ''),
    }),
    figure({
      scenario: SCENARIO,
      name: 'delay per token, upstream write→client, p99',
      value: tokenTw.p99,
      unit: 'ms',
      baseline: 'fetch of the upstream, p99',
      baselineValue: tokenDirect.p99,
      target: atMost(addedTokenP99, 1, 'adds ≤ 1 ms p99', ' ms'),
    }),
    figure({
      scenario: SCENARIO,
      name: 'time to first token, p50',
      value: firstTw.p50,
      unit: 'ms',
      baseline: 'fetch of the upstream, p50',
      baselineValue: firstDirect.p50,
      note: `${addedNote(firstTw.p50 - firstDirect.p50)}, first after ${FIRST_TOKEN_DELAY_MS} ms`,
    }),
    figure({
      scenario: SCENARIO,
      name: 'time to first token, p99',
      value: firstTw.p99,
      unit: 'ms',
      baseline: 'fetch of the upstream, p99',
      baselineValue: firstDirect.p99,
      target: atMost(addedFirstP99, 3, 'adds ≤ 3 ms p99', ' ms'),
    }),
  ];
}
