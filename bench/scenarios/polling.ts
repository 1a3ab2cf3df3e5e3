import type { Client } from 'graphql-ws';
import { MockUpstream } from '../../tests/helpers/mock-upstream';
import { SUBMIT, TASK_EVENTS, openWsClient, postGraphQL, wsRequest } from '../lib/graphql';
import type { TaskEventData } from '../lib/graphql';
import type { BenchSettings, Figure } from '../lib/report';
import { figure, fmt } from '../lib/report';
import type { BenchServer } from '../lib/servers';
import { startTaskwire } from '../lib/servers';
import { atFixedRate, now, sleep, summarize } from '../lib/stats';

const SCENARIO = '3 Subscription vs polling';
const TASK_STATUS = 'query ($id: ID!) { task(id: $id) { status } }';
const POLL_INTERVALS_MS = [250, 1000];
const TERMINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);
/** Tasks take 50 to 1,050 ms, drawn at random, so completions fall anywhere between poll ticks. */
const MIN_DURATION_MS = 50;
const DURATION_SPREAD_MS = 1000;

/** When one watcher learnt that a task ended, and how many requests it sent for it. */
interface Watch {
  knownAt: number;
  requests: number;
}

/** Subscribes over graphql-ws and resolves when the terminal event arrives. */
function subscribeUntilEnd(client: Client, id: string): Promise<Watch> {
  return new Promise((resolve, reject) => {
    client.subscribe<TaskEventData>(
      { query: TASK_EVENTS, variables: { id } },
      {
        next: (result) => {
          const kind = result.data?.taskEvents.kind;
          if (kind !== undefined && TERMINAL.has(kind)) resolve({ knownAt: now(), requests: 1 });
        },
        error: reject,
        complete: () => undefined,
      },
    );
  });
}

/** Polls `task(id)` over HTTP POST every `intervalMs`, starting one interval after `submitted`. */
async function pollUntilEnd(
  url: string,
  id: string,
  submitted: number,
  intervalMs: number,
): Promise<Watch> {
  for (let requests = 1; requests <= 10_000; requests += 1) {
    const due = submitted + requests * intervalMs;
    await sleep(Math.max(0, due - now()));
    const { task } = await postGraphQL<{ task: { status: string } | null }>(url, TASK_STATUS, {
      id,
    });
    if (task !== null && TERMINAL.has(task.status)) return { knownAt: now(), requests };
  }
  throw new Error(`Task ${id} did not end within 10,000 polls`);
}

/** Resolves with the time the server published the task's terminal event, seen in-process. */
async function completionTime(server: BenchServer, id: string): Promise<number> {
  const events = server.tasks.bus.subscribe(id);
  if (events === undefined) throw new Error(`Task ${id} has no event topic`);
  for await (const event of events) {
    if (TERMINAL.has(event.kind)) return now();
  }
  throw new Error(`Task ${id}: events ended without a terminal event`);
}

/** Delays after completion and request counts of every watcher of one task. */
interface TaskWatches {
  subscriber: Watch & { delay: number };
  pollers: Array<Watch & { delay: number }>;
}

async function watchOneTask(server: BenchServer, client: Client, index: number) {
  const submitted = now();
  const input = { prompt: `Polling probe ${index}`, cache: 'BYPASS' };
  const { submitTask } = await wsRequest<{ submitTask: { id: string } }>(client, SUBMIT, { input });
  const { id } = submitTask;
  const [completedAt, subscriber, ...pollers] = await Promise.all([
    completionTime(server, id),
    subscribeUntilEnd(client, id),
    ...POLL_INTERVALS_MS.map((interval) => pollUntilEnd(server.url, id, submitted, interval)),
  ]);
  const withDelay = (watch: Watch) => ({ ...watch, delay: watch.knownAt - completedAt });
  const result: TaskWatches = {
    subscriber: withDelay(subscriber),
    pollers: pollers.map(withDelay),
  };
  return result;
}

/**
 * How long after a task completes a graphql-ws subscriber and pollers of `task(id)` (every 250 ms
 * and every 1 s) learn of it, and how many requests each sends per task. All three watch the same
 * tasks at once; the openai provider streams from MockUpstream with a random first-token delay.
 */
export async function runPolling(settings: BenchSettings): Promise<Figure[]> {
  const tasks = settings.mode === 'quick' ? 20 : settings.mode === 'full' ? 200 : 60;
  const upstream = await MockUpstream.start({
    respond: () => ({
      tokens: ['Polled', ' answer'],
      firstTokenDelayMs: MIN_DURATION_MS + Math.random() * DURATION_SPREAD_MS,
    }),
  });
  const server = await startTaskwire({
    LLM_PROVIDER: 'openai',
    LLM_BASE_URL: upstream.url,
    LLM_MODEL: 'bench',
    WORKERS: 64,
  });
  const client = openWsClient(server.wsUrl);
  let watches: TaskWatches[];
  try {
    watches = await atFixedRate(tasks, 10, (i) => watchOneTask(server, client, i));
  } finally {
    await client.dispose();
    await server.dispose();
    await upstream.close();
  }
  const subscriberDelay = summarize(watches.map((w) => w.subscriber.delay));
  const figures: Figure[] = [];
  POLL_INTERVALS_MS.forEach((interval, index) => {
    const pollDelay = summarize(watches.map((w) => w.pollers[index].delay));
    const pollRequests = watches.reduce((sum, w) => sum + w.pollers[index].requests, 0) / tasks;
    const label = interval >= 1000 ? `${interval / 1000} s` : `${interval} ms`;
    figures.push(
      figure({
        scenario: SCENARIO,
        name: `delay after completion, p50, subscriber vs ${label} poll`,
        value: subscriberDelay.p50,
        unit: 'ms',
        baseline: `\`task(id)\` poll every ${label}, p50`,
        baselineValue: pollDelay.p50,
        note:
          `p99 ${fmt(subscriberDelay.p99)} ms vs ${fmt(pollDelay.p99)} ms; ` +
          `${tasks} tasks of 50–1,050 ms at 10/s`,
      }),
      figure({
        scenario: SCENARIO,
        name: `requests per task, subscriber vs ${label} poll`,
        value: 1,
        unit: 'req',
        baseline: `HTTP POSTs of a ${label} poller`,
        baselineValue: pollRequests,
        note: 'the subscriber sends one subscribe message per task and no HTTP request',
      }),
    );
  });
  return figures;
}
