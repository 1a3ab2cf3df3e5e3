import { NOOP_QUERY, SUBMIT, postGraphQL } from '../lib/graphql';
import { startLoadClient } from '../lib/load-client';
import type { BenchSettings, Figure } from '../lib/report';
import { atMost, figure } from '../lib/report';
import { startTaskwire } from '../lib/servers';
import { summarize } from '../lib/stats';

const SCENARIO = '5 Cache hit';

/**
 * Latency of `submitTask` answered from the cache (same prompt, `CACHE_DEMO_ANSWERS=true`), one
 * request at a time, against the no-op query on the same server.
 */
export async function runCacheHit(settings: BenchSettings): Promise<Figure[]> {
  const server = await startTaskwire({ CACHE_DEMO_ANSWERS: 'true' });
  try {
    const input = { prompt: 'A prompt asked again and again' };
    await postGraphQL(server.url, SUBMIT, { input });
    await server.tasks.onIdle();
    await server.store.flush();
    const load = (body: unknown) =>
      startLoadClient({
        mode: 'http',
        url: server.url,
        body: JSON.stringify(body),
        concurrency: 1,
        durationMs: settings.loadMs / 2,
        maxOps: 1_000_000,
        warmupMs: settings.warmupMs,
      }).result;
    const hits = summarize((await load({ query: SUBMIT, variables: { input } })).latencies);
    const noop = summarize((await load({ query: NOOP_QUERY })).latencies);
    const note = `1 client; p99 ${hits.p99.toFixed(2)} ms vs ${noop.p99.toFixed(2)} ms`;
    return [
      figure({
        scenario: SCENARIO,
        name: 'submit latency of a hit, p50',
        value: hits.p50,
        unit: 'ms',
        baseline: '`{ __typename }` POST p50',
        baselineValue: noop.p50,
        target: atMost(hits.p50 / noop.p50, 1.1, '≤ 1.1× no-op', '×'),
        note,
      }),
      figure({
        scenario: SCENARIO,
        name: 'submit latency of a hit, p99',
        value: hits.p99,
        unit: 'ms',
        baseline: '`{ __typename }` POST p99',
        baselineValue: noop.p99,
      }),
    ];
  } finally {
    await server.dispose();
  }
}
