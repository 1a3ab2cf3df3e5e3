import { rm } from 'node:fs/promises';
import { startLoadClient } from '../lib/load-client';
import type { BenchSettings, Figure } from '../lib/report';
import { atMost, figure } from '../lib/report';
import { makeTempDir, startTaskwire } from '../lib/servers';
import type { Percentiles } from '../lib/stats';
import { summarize } from '../lib/stats';
import { makeRow, openBenchStore } from './writes';

const SCENARIO = '8 Growth';
const TASKS_QUERY =
  '{ tasks(first: 20) { edges { node { id status } } pageInfo { hasNextPage } } }';

/** Adds finished tasks through TaskStore.insert, 5,000 at a time, until `total` are stored. */
async function fillTo(dir: string, from: number, total: number): Promise<void> {
  const store = await openBenchStore(dir);
  try {
    const base = Date.now() - total;
    for (let start = from; start < total; start += 5000) {
      const end = Math.min(total, start + 5000);
      const rows = [];
      for (let i = start; i < end; i += 1) rows.push(store.insert(makeRow(i, new Date(base + i))));
      await Promise.all(rows);
    }
  } finally {
    await store.close();
  }
}

/** Latency of the `tasks` query, one request at a time, on a server over `dir`'s database. */
async function measureTasksQuery(dir: string, settings: BenchSettings): Promise<Percentiles> {
  const server = await startTaskwire({}, { dir });
  try {
    const result = await startLoadClient({
      mode: 'http',
      url: server.url,
      body: JSON.stringify({ query: TASKS_QUERY }),
      concurrency: 1,
      durationMs: settings.loadMs / 2,
      maxOps: 1_000_000,
      warmupMs: settings.warmupMs,
    }).result;
    if (result.errors > 0) throw new Error(`${result.errors} tasks queries failed`);
    return summarize(result.latencies);
  } finally {
    await server.dispose();
  }
}

/** `tasks(first: 20)` latency with more and more stored tasks, against the smallest size. */
export async function runGrowth(settings: BenchSettings): Promise<Figure[]> {
  const dir = await makeTempDir();
  const figures: Figure[] = [];
  try {
    let stored = 0;
    let first: Percentiles | undefined;
    for (const size of settings.growthRows) {
      await fillTo(dir, stored, size);
      stored = size;
      const latency = await measureTasksQuery(dir, settings);
      first ??= latency;
      figures.push(
        figure({
          scenario: SCENARIO,
          name: `\`tasks(first: 20)\` p50 at ${size.toLocaleString('en-US')} tasks`,
          value: latency.p50,
          unit: 'ms',
          baseline: `p50 at ${settings.growthRows[0].toLocaleString('en-US')}`,
          baselineValue: first.p50,
          target:
            size === 1_000_000 ? atMost(latency.p50 / first.p50, 2, '≤ 2× at 10k', '×') : undefined,
          note: `p99 ${latency.p99.toFixed(2)} ms (p99 at first size ${first.p99.toFixed(2)} ms)`,
        }),
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return figures;
}
