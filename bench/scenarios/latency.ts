import type { Client } from 'graphql-ws';
import { SUBMIT, TASK_EVENTS, openWsClient, wsRequest } from '../lib/graphql';
import type { TaskEventData } from '../lib/graphql';
import type { BenchSettings, Figure } from '../lib/report';
import { atMost, figure } from '../lib/report';
import { startTaskwire } from '../lib/servers';
import { atFixedRate, now, summarize } from '../lib/stats';
import { measureBullMq } from './bullmq-peer';

const SCENARIO = '2 Latency';

/** Submits over graphql-ws, subscribes, and resolves with ms from submit to COMPLETED. */
async function submitAndWait(client: Client, index: number): Promise<number> {
  const started = now();
  const input = { prompt: `Latency probe ${index}`, cache: 'BYPASS' };
  const { submitTask } = await wsRequest<{ submitTask: { id: string } }>(client, SUBMIT, { input });
  return new Promise((resolve, reject) => {
    client.subscribe<TaskEventData>(
      { query: TASK_EVENTS, variables: { id: submitTask.id } },
      {
        next: (result) => {
          if (result.data?.taskEvents.kind === 'COMPLETED') resolve(now() - started);
        },
        error: reject,
        complete: () => undefined,
      },
    );
  });
}

/**
 * Submit until a graphql-ws subscriber sees COMPLETED, at a fixed rate, against BullMQ's add until
 * `completed` on the local Redis at the same rate.
 */
export async function runLatency(settings: BenchSettings): Promise<Figure[]> {
  const server = await startTaskwire({ WORKERS: 8 });
  const client = openWsClient(server.wsUrl);
  let taskwire;
  try {
    await atFixedRate(20, settings.ratePerSecond, (i) => submitAndWait(client, -i - 1));
    const latencies = await atFixedRate(settings.rateTasks, settings.ratePerSecond, (i) =>
      submitAndWait(client, i),
    );
    taskwire = summarize(latencies);
  } finally {
    await client.dispose();
    await server.dispose();
  }
  const bull = await measureBullMq(settings);
  const rate = `${settings.rateTasks} tasks at ${settings.ratePerSecond}/s`;
  const base = bull.summary;
  const p50: Figure = figure({
    scenario: SCENARIO,
    name: 'submit→COMPLETED at a subscriber, p50',
    value: taskwire.p50,
    unit: 'ms',
    baseline: 'BullMQ add→completed p50',
    baselineValue: base?.p50 ?? Number.NaN,
    note: base ? rate : bull.note,
  });
  const p99: Figure = figure({
    scenario: SCENARIO,
    name: 'submit→COMPLETED at a subscriber, p99',
    value: taskwire.p99,
    unit: 'ms',
    baseline: 'BullMQ add→completed p99',
    baselineValue: base?.p99 ?? Number.NaN,
    target: base ? atMost(taskwire.p99, base.p99, '≤ BullMQ p99', ' ms') : undefined,
    note: base ? rate : bull.note,
  });
  return [p50, p99];
}
