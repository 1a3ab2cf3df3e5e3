import { cpus } from 'node:os';
import { availableParallelism, loadavg } from 'node:os';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BenchSettings, Figure } from './lib/report';
import { toMarkdown } from './lib/report';
import { runCacheHit } from './scenarios/cache';
import { runFanout } from './scenarios/fanout';
import { runGrowth } from './scenarios/growth';
import { runLatency } from './scenarios/latency';
import { runPolling } from './scenarios/polling';
import { runStreaming } from './scenarios/streaming';
import { runThroughput } from './scenarios/throughput';
import { runWrites } from './scenarios/writes';

/** A scenario: a name for `--only` and the function that measures it. */
interface Scenario {
  name: string;
  run: (settings: BenchSettings) => Promise<Figure[]>;
}

const SCENARIOS: Scenario[] = [
  { name: 'throughput', run: runThroughput },
  { name: 'latency', run: runLatency },
  { name: 'polling', run: runPolling },
  { name: 'streaming', run: runStreaming },
  { name: 'cache', run: runCacheHit },
  { name: 'writes', run: runWrites },
  { name: 'fanout', run: runFanout },
  { name: 'growth', run: runGrowth },
];

function parseSettings(args: readonly string[]): BenchSettings {
  if (args.includes('--quick')) {
    return {
      mode: 'quick',
      loadMs: 1500,
      warmupMs: 500,
      concurrency: 64,
      ratePerSecond: 100,
      rateTasks: 200,
      fanoutSubscribers: 300,
      growthRows: [10_000, 100_000],
      writeRows: 5000,
      bullmq: !args.includes('--no-bullmq'),
    };
  }
  const full = args.includes('--full');
  return {
    mode: full ? 'full' : 'default',
    loadMs: full ? 8000 : 4000,
    warmupMs: 1000,
    concurrency: 64,
    ratePerSecond: 100,
    rateTasks: full ? 1000 : 500,
    fanoutSubscribers: full ? 10_000 : 2000,
    growthRows: full ? [10_000, 100_000, 1_000_000] : [10_000, 100_000],
    writeRows: full ? 50_000 : 20_000,
    bullmq: !args.includes('--no-bullmq'),
  };
}

function describeMachine(): Record<string, string | number> {
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
  return {
    cores: availableParallelism(),
    cpu: cpuModel ?? cpus()[0]?.model ?? 'unknown',
    node: process.version,
    loadAverage: loadavg()[0],
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const settings = parseSettings(args);
  const only = args
    .find((arg) => arg.startsWith('--only='))
    ?.slice('--only='.length)
    .split(',');
  const machine = describeMachine();
  console.log(
    `Taskwire bench (${settings.mode}) on ${machine.cores} cores, ${machine.cpu}, Node ${machine.node}`,
  );
  const load = loadavg()
    .map((value) => value.toFixed(2))
    .join(', ');
  console.log(
    `Server, baselines and load generator share these cores. Load average before the run: ${load}.\n`,
  );
  const figures: Figure[] = [];
  const started = Date.now();
  for (const scenario of SCENARIOS) {
    if (only !== undefined && !only.includes(scenario.name)) continue;
    const t0 = Date.now();
    try {
      const results = await scenario.run(settings);
      figures.push(...results);
      console.log(toMarkdown(results));
    } catch (error) {
      console.error(`Scenario ${scenario.name} failed:`, error);
    }
    console.log(`(${scenario.name}: ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
  }
  console.log('## Results\n');
  console.log(toMarkdown(figures));
  const outDir = join(__dirname, 'results');
  await mkdir(outDir, { recursive: true });
  const report = {
    date: new Date().toISOString(),
    machine,
    settings,
    figures,
    seconds: (Date.now() - started) / 1000,
  };
  await writeFile(join(outDir, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nWrote bench/results/latest.json after ${report.seconds.toFixed(0)} s.`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
