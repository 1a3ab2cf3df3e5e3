import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pino from 'pino';
import { ConfigError } from '../../src/config';
import { LlamaProvider } from '../../src/services/llm/llama-provider';
import type { LlmProvider } from '../../src/services/llm/provider';
import {
  TINY_MODEL_REPLY,
  predictTinyModelReply,
  writeTinyModel,
} from '../../src/services/llm/tiny-model';
import { openWsClient, postGraphQL } from '../helpers/graphql-clients';
import { disposeTestServers, makeTempDir, startTestServer } from '../helpers/test-server';
import { CANCEL } from '../e2e/operations';
import type { EventShape } from '../e2e/operations';
import { collectEvents, kindsOf, submitTask, textOf, waitForStatus } from '../e2e/steps';

interface LogLine {
  msg: string;
  generatedTokens?: number;
}

/** Writes the built-in model into a fresh temporary directory. */
async function writeModel(): Promise<string> {
  const path = join(await makeTempDir(), 'taskwire-tiny.gguf');
  writeTinyModel(path);
  return path;
}

/**
 * A provider whose worker waits 150 ms after each token, long enough for a cancel to arrive between
 * two tokens, shared by the tests below so that its model loads once. Servers get a view of it
 * whose `close()` does nothing; the suite closes it at the end.
 */
let slow: { provider: LlamaProvider; lines: LogLine[] };

beforeAll(async () => {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => lines.push(JSON.parse(line) as LogLine) },
  );
  const modelPath = join(await mkdtemp(join(tmpdir(), 'taskwire-llama-e2e-')), 'tiny.gguf');
  writeTinyModel(modelPath);
  const provider = new LlamaProvider({
    modelPath,
    sequences: 2,
    threads: 1,
    tokenDelayMs: 150,
    logger,
  });
  // Not awaited: the model loads while the first test starts its own server, and generate() waits.
  slow = { provider, lines };
});

afterAll(async () => {
  await slow.provider.close();
  await rm(dirname(slow.provider.model.path), { recursive: true, force: true });
});

function borrowSlowProvider(): LlmProvider {
  slow.lines.length = 0;
  const { provider } = slow;
  return {
    name: provider.name,
    defaultModel: provider.defaultModel,
    generate: (request) => provider.generate(request),
    close: () => Promise.resolve(),
  };
}

async function waitFor<T>(read: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = read();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('Timed out waiting for a condition');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function tokenDeltas(events: EventShape[]): Array<string | null> {
  return events.filter((event) => event.kind === 'TOKEN').map((event) => event.delta);
}

afterEach(disposeTestServers);

describe('llama provider end to end', () => {
  it('streams the exact reply over graphql-ws', async () => {
    const server = await startTestServer({
      LLM_PROVIDER: 'llama',
      LLM_MODEL_PATH: await writeModel(),
      WORKERS: 2,
    });
    const task = await submitTask(server.url, { prompt: 'Say the alphabet', system: 'Be brief.' });

    const { events, result } = await collectEvents(openWsClient(server.wsUrl), task.id);

    expect(result.error).toBeUndefined();
    expect(kindsOf(events)).toEqual(['QUEUED', 'STARTED', 'TOKEN', 'COMPLETED']);
    expect(tokenDeltas(events)).toEqual(Array.from(TINY_MODEL_REPLY));
    const last = events.at(-1) as EventShape;
    expect(last.task.result).toBe(TINY_MODEL_REPLY);
    expect(last.task.usage?.completionTokens).toBe(predictTinyModelReply().completionTokens);
    expect(last.task.usage?.promptTokens).toBeGreaterThan(0);
  });

  it('cuts at maxTokens and before stop sequences', async () => {
    const server = await startTestServer({}, { provider: borrowSlowProvider() });
    const limited = await submitTask(server.url, { prompt: 'limited', params: { maxTokens: 3 } });
    const stopped = await submitTask(server.url, { prompt: 'stopped', params: { stop: ['cd'] } });

    const limitedDone = await waitForStatus(server.url, limited.id, ['COMPLETED', 'FAILED']);
    const stoppedDone = await waitForStatus(server.url, stopped.id, ['COMPLETED', 'FAILED']);

    expect(limitedDone.result).toBe(predictTinyModelReply(3).text);
    expect(limitedDone.usage?.completionTokens).toBe(3);
    expect(stoppedDone.result).toBe('ab');
    expect(stoppedDone.usage?.completionTokens).toBe(4);
  });

  it('runs two tasks at once', async () => {
    const server = await startTestServer({ WORKERS: 2 }, { provider: borrowSlowProvider() });
    const client = openWsClient(server.wsUrl);
    const first = await submitTask(server.url, { prompt: 'first', params: { maxTokens: 4 } });
    const second = await submitTask(server.url, { prompt: 'second', params: { maxTokens: 6 } });
    const tokenTimes: Record<string, number[]> = { first: [], second: [] };

    const [a, b] = await Promise.all([
      collectEvents(client, first.id, 0, (event) => {
        if (event.kind === 'TOKEN') tokenTimes.first.push(Date.now());
      }),
      collectEvents(client, second.id, 0, (event) => {
        if (event.kind === 'TOKEN') tokenTimes.second.push(Date.now());
      }),
    ]);

    expect(textOf(a.events)).toBe(predictTinyModelReply(4).text);
    expect(textOf(b.events)).toBe(predictTinyModelReply(6).text);
    // The second task's tokens began before the first task's ended: they ran side by side.
    expect(tokenTimes.second[0]).toBeLessThan(tokenTimes.first.at(-1) ?? 0);
  });

  it('stops a cancelled task at once', async () => {
    const server = await startTestServer({}, { provider: borrowSlowProvider() });
    const task = await submitTask(server.url, { prompt: 'long' });
    const cancels: Array<Promise<unknown>> = [];
    let tokens = 0;

    const { events } = await collectEvents(openWsClient(server.wsUrl), task.id, 0, (event) => {
      if (event.kind === 'TOKEN' && (tokens += 1) === 3) {
        cancels.push(postGraphQL(server.url, CANCEL, { id: task.id }));
      }
    });
    await Promise.all(cancels);

    expect(kindsOf(events)).toEqual(['QUEUED', 'STARTED', 'TOKEN', 'CANCELLED']);
    expect(tokenDeltas(events)).toEqual(['a', 'b', 'c']);
    const stop = await waitFor(() => slow.lines.find((line) => line.generatedTokens !== undefined));
    // Within one token: at most the token being computed when the cancel arrived.
    expect(stop.generatedTokens).toBeLessThanOrEqual(4);
  });

  it('survives a killed worker', async () => {
    const { provider } = slow;
    const server = await startTestServer({}, { provider: borrowSlowProvider() });
    const task = await submitTask(server.url, { prompt: 'doomed' });
    const crashedPid = provider.workerPid;

    const { events } = await collectEvents(openWsClient(server.wsUrl), task.id, 0, (event) => {
      if (event.kind === 'TOKEN' && event.delta === 'b') process.kill(crashedPid ?? 0, 'SIGKILL');
    });

    const last = events.at(-1) as EventShape;
    expect(last.kind).toBe('FAILED');
    expect(last.task.error?.code).toBe('PROVIDER_ERROR');
    expect(last.task.error?.message).toContain('on signal SIGKILL');
    expect(last.task.attempts).toBe(1);
    const next = await submitTask(server.url, { prompt: 'next', params: { maxTokens: 2 } });
    const done = await waitForStatus(server.url, next.id, ['COMPLETED', 'FAILED'], 20_000);
    expect(done.result).toBe('ab');
    expect(provider.workerPid).not.toBe(crashedPid);
  });
});

describe('llama provider with a bad model file', () => {
  async function badFile(make: (model: Buffer) => Buffer): Promise<string> {
    const path = await writeModel();
    await writeFile(path, make(await readFile(path)));
    return path;
  }

  const cases: Array<[string, (model: Buffer) => Buffer, RegExp]> = [
    ['truncated', (model) => model.subarray(0, model.length - 1000), /the file is truncated/],
    [
      'wrong magic',
      (model) => Buffer.concat([Buffer.from('GGML'), model.subarray(4)]),
      /not a GGUF file: it starts with the bytes 47474d4c/,
    ],
    [
      'header followed by garbage',
      (model) => Buffer.concat([model.subarray(0, 24), Buffer.alloc(100_000, 0xab)]),
      /key 0/,
    ],
    ['empty', () => Buffer.alloc(0), /too short for a GGUF header/],
  ];

  it.each(cases)('refuses to start on a bad file: %s', async (_name, make, reason) => {
    const path = await badFile(make);

    const failure = await startTestServer({ LLM_PROVIDER: 'llama', LLM_MODEL_PATH: path }).catch(
      (error: unknown) => error,
    );

    expect(failure).toBeInstanceOf(ConfigError);
    expect((failure as Error).message).toContain(`LLM_MODEL_PATH=${path} cannot be used: `);
    expect((failure as Error).message).toMatch(reason);
  });

  it('refuses to start with a missing file', async () => {
    const path = join(await makeTempDir(), 'nowhere.gguf');

    await expect(startTestServer({ LLM_PROVIDER: 'auto', LLM_MODEL_PATH: path })).rejects.toThrow(
      `LLM_MODEL_PATH=${path} cannot be used: file not found`,
    );
  });
});
