import pino from 'pino';
import type { Logger } from 'pino';
import { ConfigError, parseConfig } from '../../src/config';
import type { Config } from '../../src/config';
import { createProvider } from '../../src/services/llm/create-provider';
import { DemoProvider } from '../../src/services/llm/demo-provider';
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
  it('picks the demo provider under auto without LLM_BASE_URL and warns that it runs no model', () => {
    const { provider, lines } = create({});

    expect(provider).toBeInstanceOf(DemoProvider);
    const warning = lines.find((line) => line.level === 40);
    expect(warning?.area).toBe('llm');
    expect(warning?.msg).toContain('stand-in that does not run a language model');
    expect(String(warning?.hint)).toContain('http://127.0.0.1:11434/v1');
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

  it('explains that the embedded llama engine is not in this build', () => {
    expect(() => create({ LLM_PROVIDER: 'llama', LLM_MODEL_PATH: '/models/x.gguf' })).toThrow(
      /not available in this build.*LLM_BASE_URL.*LLM_PROVIDER=demo/,
    );
  });

  it('gives the demo provider when asked for it, even with LLM_BASE_URL set', () => {
    const { provider, lines } = create({
      LLM_PROVIDER: 'demo',
      LLM_BASE_URL: 'http://127.0.0.1:1',
    });

    expect(provider).toBeInstanceOf(DemoProvider);
    expect(lines.some((line) => line.level === 40)).toBe(false);
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
