import { GENERATE, NOOP_QUERY } from '../lib/graphql';
import { startLoadClient } from '../lib/load-client';
import type { LoadResult } from '../lib/load-client';
import type { BenchSettings, Figure } from '../lib/report';
import { atLeast, figure } from '../lib/report';
import { startStockYoga, startTaskwire } from '../lib/servers';
import { summarize } from '../lib/stats';

const SCENARIO = '1 Throughput';

function perSecond(result: LoadResult): number {
  return ((result.ops - result.errors) / (result.elapsedMs ?? Number.NaN)) * 1000;
}

function httpLoad(url: string, body: unknown, settings: BenchSettings, concurrency?: number) {
  return startLoadClient({
    mode: 'http',
    url,
    body: JSON.stringify(body),
    concurrency: concurrency ?? settings.concurrency,
    durationMs: settings.loadMs,
    maxOps: 1_000_000,
    warmupMs: settings.warmupMs,
  }).result;
}

/**
 * End-to-end durable tasks per second (`generate` over HTTP: submit, run on the demo provider,
 * return once ended; the run's time includes committing the last completion) against a no-op
 * query on the same server and a stock yoga + Pothos no-op mutation; plus no-op operations over
 * graphql-ws against the same operations over HTTP POST.
 */
export async function runThroughput(settings: BenchSettings): Promise<Figure[]> {
  const server = await startTaskwire({ WORKERS: 8 });
  const yoga = await startStockYoga();
  try {
    const noop = await httpLoad(server.url, { query: NOOP_QUERY }, settings);
    const stock = await httpLoad(yoga.url, { query: 'mutation { noop }' }, settings);
    const input = { prompt: 'Benchmark the queue', cache: 'BYPASS' };
    const tasks = await httpLoad(server.url, { query: GENERATE, variables: { input } }, settings);
    // The last completions may still wait in the group-commit writer: their commit counts too.
    const flushStarted = performance.now();
    await server.store.flush();
    const elapsedMs = (tasks.elapsedMs ?? Number.NaN) + performance.now() - flushStarted;
    const taskRate = ((tasks.ops - tasks.errors) / elapsedMs) * 1000;
    const ws = await startLoadClient({
      mode: 'ws-ops',
      wsUrl: server.wsUrl,
      query: NOOP_QUERY,
      concurrency: settings.concurrency,
      durationMs: settings.loadMs,
      maxOps: 1_000_000,
      warmupMs: settings.warmupMs,
    }).result;
    const latency = summarize(tasks.latencies);
    const note = `${settings.concurrency} clients, WORKERS=8, ${tasks.errors} errors, generate p99 ${latency.p99.toFixed(1)} ms`;
    return [
      figure({
        scenario: SCENARIO,
        name: 'durable tasks/s vs no-op query, same server',
        value: taskRate,
        unit: '/s',
        baseline: '`{ __typename }` POST',
        baselineValue: perSecond(noop),
        note,
      }),
      figure({
        scenario: SCENARIO,
        name: 'durable tasks/s vs stock yoga',
        value: taskRate,
        unit: '/s',
        baseline: 'stock yoga+Pothos no-op mutation',
        baselineValue: perSecond(stock),
        target: atLeast(taskRate / perSecond(stock), 1.5, '≥ 1.5×'),
      }),
      figure({
        scenario: SCENARIO,
        name: 'no-op ops/s over graphql-ws (1 socket, 64 in flight)',
        value: perSecond(ws),
        unit: '/s',
        baseline: 'same op over HTTP POST',
        baselineValue: perSecond(noop),
        target: atLeast(perSecond(ws) / perSecond(noop), 4, '≥ 4×'),
      }),
    ];
  } finally {
    await yoga.close();
    await server.dispose();
  }
}
