import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Logger } from 'pino';
import { ConfigError, parseConfig } from '../../src/config';
import type { Config } from '../../src/config';
import { createProvider } from '../../src/services/llm/create-provider';
import { DemoProvider } from '../../src/services/llm/demo-provider';
import { LlamaProvider } from '../../src/services/llm/llama-provider';
import { createTinyModel, writeTinyModel } from '../../src/services/llm/tiny-model';
import { OpenAiProvider } from '../../src/services/llm/openai-provider';
import { MockUpstream } from '../helpers/mock-upstream';

interface LogLine {
  level: number;
  msg: string;
  area?: string;
  [field: string]: unknown;
}

/** A logger that keeps its lines in memory. */
function createCapturingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'debug', redact: ['apiKey', '*.apiKey'] },
    { write: (line: string) => lines.push(JSON.parse(line) as LogLine) },
  );
  return { logger, lines };
}

const closeables: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  await Promise.all(closeables.splice(0).map((provider) => provider.close()));
});

function create(settings: Partial<Record<keyof Config, unknown>>) {
  const { logger, lines } = createCapturingLogger();
  const provider = createProvider(parseConfig(settings), logger);
  closeables.push(provider);
  return { provider, lines };
}

describe('createProvider', () => {
  it('runs the built-in model under auto by default', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'taskwire-provider-'));
    const cwd = process.cwd();
    // The built-in model is written under the working directory, which must not be the checkout.
    process.chdir(dir);
    try {
      const { provider, lines } = create({ WORKERS: 3, LLM_THREADS: 1, LLM_CONTEXT_SIZE: 512 });

      expect(provider).toBeInstanceOf(LlamaProvider);
      expect(provider.defaultModel).toBe('taskwire-tiny');
      const written = await readFile(join(dir, 'data', 'models', 'taskwire-tiny.gguf'));
      expect(written.equals(createTinyModel())).toBe(true);
      const warning = lines.find((line) => line.level === 40);
      expect(warning?.area).toBe('llm');
      expect(warning?.msg).toContain('built-in test model');
      expect(String(warning?.hint)).toContain('LLM_MODEL_PATH');
      expect(String(warning?.hint)).toContain('http://127.0.0.1:11434/v1');
      const info = await (provider as LlamaProvider).ready();
      expect(info).toMatchObject({ sequences: 3, threads: 1, contextSize: 512 });
    } finally {
      process.chdir(cwd);
      await Promise.all(closeables.splice(0).map((provider) => provider.close()));
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs LLM_MODEL_PATH under auto', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'taskwire-provider-'));
    try {
      const modelPath = join(dir, 'model.gguf');
      writeTinyModel(modelPath);

      const { provider, lines } = create({ LLM_MODEL_PATH: modelPath, LLM_MODEL: 'tiny-test' });

      expect(provider).toBeInstanceOf(LlamaProvider);
      expect(provider.defaultModel).toBe('tiny-test');
      expect(lines.some((line) => line.level === 40)).toBe(false);
      expect(lines.find((line) => line.msg.includes('embedded llama.cpp engine'))).toMatchObject({
        modelPath,
        architecture: 'llama',
      });
    } finally {
      await Promise.all(closeables.splice(0).map((provider) => provider.close()));
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('prefers LLM_BASE_URL to LLM_MODEL_PATH under auto', () => {
    const { provider, lines } = create({
      LLM_BASE_URL: 'http://127.0.0.1:11434',
      LLM_MODEL: 'llama3.2',
      LLM_MODEL_PATH: '/models/unused.gguf',
    });

    expect(provider).toBeInstanceOf(OpenAiProvider);
    const warning = lines.find((line) => line.level === 40);
    expect(warning?.msg).toContain('LLM_PROVIDER=llama');
    expect(warning?.ignoredLlmModelPath).toBe('/models/unused.gguf');
  });

  it('picks the OpenAI-compatible provider under auto when LLM_BASE_URL is set', () => {
    const { provider, lines } = create({
      LLM_BASE_URL: 'http://127.0.0.1:11434',
      LLM_MODEL: 'llama3.2',
      LLM_API_KEY: 'sk-very-secret',
    });

    expect(provider).toBeInstanceOf(OpenAiProvider);
    expect(provider.defaultModel).toBe('llama3.2');
    const info = lines.find((line) => line.msg === 'Using an OpenAI-compatible model server');
    expect(info).toMatchObject({
      area: 'llm',
      provider: 'openai',
      endpoint: 'http://127.0.0.1:11434/v1/chat/completions',
      model: 'llama3.2',
      bearerToken: true,
    });
    expect(JSON.stringify(lines)).not.toContain('sk-very-secret');
  });

  it('uses gpt-4o-mini with a warning when LLM_MODEL is not set', () => {
    const { provider, lines } = create({
      LLM_PROVIDER: 'openai',
      LLM_BASE_URL: 'https://api.openai.com/v1',
    });

    expect(provider.defaultModel).toBe('gpt-4o-mini');
    expect(
      lines.some((line) => line.level === 40 && line.msg.includes('LLM_MODEL is not set')),
    ).toBe(true);
  });

  it('requires LLM_BASE_URL for LLM_PROVIDER=openai', () => {
    expect(() => create({ LLM_PROVIDER: 'openai' })).toThrow(ConfigError);
    expect(() => create({ LLM_PROVIDER: 'openai' })).toThrow(/needs LLM_BASE_URL/);
  });

  it('rejects an LLM_MODEL_PATH that is not GGUF', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'taskwire-provider-'));
    try {
      const modelPath = join(dir, 'notes.txt');
      await writeFile(modelPath, 'these are not model weights');

      expect(() => create({ LLM_PROVIDER: 'llama', LLM_MODEL_PATH: modelPath })).toThrow(
        ConfigError,
      );
      expect(() => create({ LLM_PROVIDER: 'llama', LLM_MODEL_PATH: modelPath })).toThrow(
        `LLM_MODEL_PATH=${modelPath} cannot be used: not a GGUF file`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('gives the demo provider when asked for it, even with LLM_BASE_URL set', () => {
    const { provider, lines } = create({
      LLM_PROVIDER: 'demo',
      LLM_BASE_URL: 'http://127.0.0.1:1',
    });

    expect(provider).toBeInstanceOf(DemoProvider);
    expect(lines.some((line) => line.level === 40)).toBe(false);
  });

  it('gives the demo provider DEMO_TOKEN_DELAY_MS between tokens', async () => {
    const { provider } = create({ LLM_PROVIDER: 'demo', DEMO_TOKEN_DELAY_MS: 40 });
    const started = Date.now();
    let tokens = 0;
    for await (const chunk of provider.generate({
      model: 'demo',
      prompt: 'one two',
      system: null,
      params: { maxTokens: 3 },
      signal: new AbortController().signal,
    })) {
      if (chunk.type === 'token') tokens += 1;
    }
    expect(tokens).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(110);
  });

  it('passes LLM_REQUEST_TIMEOUT_MS to the provider', async () => {
    const upstream = await MockUpstream.start({ respond: { hangBeforeHeaders: true } });
    closeables.push(upstream);
    const { provider } = create({ LLM_BASE_URL: upstream.url, LLM_REQUEST_TIMEOUT_MS: 100 });
    const signal = new AbortController().signal;

    const stream = provider.generate({ model: 'm', prompt: 'p', system: null, params: {}, signal });
    const failure = await stream[Symbol.asyncIterator]()
      .next()
      .catch((error: unknown) => error);

    expect(failure).toMatchObject({ code: 'PROVIDER_NETWORK_ERROR' });
    expect((failure as Error).message).toContain('100 ms');
  });
});
