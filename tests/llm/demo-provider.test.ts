import { DemoProvider } from '../../src/services/llm/demo-provider';
import { collect, createRequest as createRequestWith } from '../helpers/provider-requests';
import type { GenerateChunk, GenerateRequest } from '../../src/services/llm/provider';

function createRequest(overrides: Partial<GenerateRequest> = {}): GenerateRequest {
  return createRequestWith({ model: 'demo', prompt: 'Tell me about the sea' }, overrides);
}

function tokensOf(chunks: GenerateChunk[]): string[] {
  return chunks.flatMap((chunk) => (chunk.type === 'token' ? [chunk.text] : []));
}

describe('DemoProvider', () => {
  it('streams the reply word by word, each word with its leading space', async () => {
    const chunks = await collect(new DemoProvider().generate(createRequest()));

    const tokens = tokensOf(chunks);
    expect(tokens.join('')).toBe(
      'Demo reply to "Tell me about the sea": this text comes from the built-in demo provider, not a language model.',
    );
    expect(tokens.slice(0, 4)).toEqual(['Demo', ' reply', ' to', ' "Tell']);
    expect(tokens.slice(1).every((token) => /^ \S+$/.test(token))).toBe(true);
    expect(chunks.slice(-2)).toEqual([
      {
        type: 'usage',
        usage: { promptTokens: 5, completionTokens: tokens.length, totalTokens: 5 + tokens.length },
      },
      { type: 'finish', reason: 'stop' },
    ]);
  });

  it('gives the same tokens for the same request', async () => {
    const provider = new DemoProvider();

    const first = await collect(provider.generate(createRequest()));
    const second = await collect(provider.generate(createRequest()));

    expect(second).toEqual(first);
  });

  it('quotes at most 60 characters of the prompt, with its whitespace collapsed', () => {
    const reply = DemoProvider.replyTo(`  many\n\nlines ${'x'.repeat(100)}`);

    expect(reply).toBe(
      `Demo reply to "many lines ${'x'.repeat(49)}…": this text comes from the built-in demo provider, not a language model.`,
    );
  });

  it('counts the system message in the prompt tokens', async () => {
    const chunks = await collect(
      new DemoProvider().generate(createRequest({ prompt: 'one two', system: 'three four five' })),
    );

    expect(chunks.find((chunk) => chunk.type === 'usage')).toMatchObject({
      usage: { promptTokens: 5 },
    });
  });

  it('stops after maxTokens words with the finish reason length', async () => {
    const chunks = await collect(
      new DemoProvider().generate(createRequest({ params: { maxTokens: 3 } })),
    );

    expect(tokensOf(chunks)).toEqual(['Demo', ' reply', ' to']);
    expect(chunks.at(-1)).toEqual({ type: 'finish', reason: 'length' });
    expect(chunks.find((chunk) => chunk.type === 'usage')).toMatchObject({
      usage: { completionTokens: 3 },
    });
  });

  it('cuts before the earliest stop sequence with the finish reason stop', async () => {
    const chunks = await collect(
      new DemoProvider().generate(createRequest({ params: { stop: ['demo', 'about'] } })),
    );

    expect(tokensOf(chunks).join('')).toBe('Demo reply to "Tell me');
    expect(chunks.at(-1)).toEqual({ type: 'finish', reason: 'stop' });
  });

  it('lets maxTokens win over a stop sequence further on', async () => {
    const chunks = await collect(
      new DemoProvider().generate(createRequest({ params: { stop: ['model'], maxTokens: 2 } })),
    );

    expect(tokensOf(chunks)).toEqual(['Demo', ' reply']);
    expect(chunks.at(-1)).toEqual({ type: 'finish', reason: 'length' });
  });

  it('throws the abort reason between two tokens', async () => {
    const controller = new AbortController();
    const reason = new Error('cancelled');
    const stream = new DemoProvider({ tokenDelayMs: 1000 }).generate(
      createRequest({ signal: controller.signal }),
    );
    const pending = stream.next();

    setTimeout(() => controller.abort(reason), 10);

    await expect(pending).rejects.toBe(reason);
  });

  it('throws the abort reason with no delay, after the tokens already read', async () => {
    const controller = new AbortController();
    const stream = new DemoProvider().generate(createRequest({ signal: controller.signal }));

    await stream.next();
    controller.abort('stop now');

    await expect(stream.next()).rejects.toBe('stop now');
  });

  it('waits tokenDelayMs between tokens', async () => {
    const started = Date.now();

    await collect(
      new DemoProvider({ tokenDelayMs: 20 }).generate(createRequest({ params: { maxTokens: 5 } })),
    );

    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
  });

  it('rejects a negative tokenDelayMs, saying what came', () => {
    expect(() => new DemoProvider({ tokenDelayMs: -1 })).toThrow('got -1');
  });

  it('has the name and model demo and closes any number of times', async () => {
    const provider = new DemoProvider();

    await provider.close();
    await provider.close();

    expect([provider.name, provider.defaultModel]).toEqual(['demo', 'demo']);
  });
});
