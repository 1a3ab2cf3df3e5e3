import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { GgufMetadataValue } from '../../src/services/llm/gguf/gguf-format';
import { readGgufFile } from '../../src/services/llm/gguf/gguf-reader';
import type { GgufTensorSpec } from '../../src/services/llm/gguf/gguf-writer';
import { encodeGguf } from '../../src/services/llm/gguf/gguf-writer';
import { LlamaProvider, chooseLlamaThreads } from '../../src/services/llm/llama-provider';
import { LlamaWorker } from '../../src/services/llm/llama-worker-client';
import type { GenerateChunk } from '../../src/services/llm/provider';
import { ProviderError } from '../../src/services/llm/provider';
import type { GenerationParams } from '../../src/services/task-types';
import {
  TINY_MODEL_REPLY,
  predictTinyModelReply,
  tokenizeForTinyModel,
  writeTinyModel,
} from '../../src/services/llm/tiny-model';

const silent = pino({ level: 'silent' });
let dir: string;
let modelPath: string;
let provider: LlamaProvider;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'taskwire-llama-'));
  modelPath = join(dir, 'tiny.gguf');
  writeTinyModel(modelPath);
  provider = new LlamaProvider({ modelPath, sequences: 2, threads: 1, logger: silent });
  await provider.ready();
});

afterAll(async () => {
  await provider.close();
  await rm(dir, { recursive: true, force: true });
});

interface Generation {
  tokens: string[];
  text: string;
  usage?: Extract<GenerateChunk, { type: 'usage' }>['usage'];
  finish?: string;
}

async function generate(
  params: GenerationParams = {},
  options: { prompt?: string; system?: string | null; target?: LlamaProvider } = {},
): Promise<Generation> {
  const result: Generation = { tokens: [], text: '' };
  const stream = (options.target ?? provider).generate({
    model: 'tiny',
    prompt: options.prompt ?? 'Say something',
    system: options.system ?? null,
    params,
    signal: new AbortController().signal,
  });
  for await (const chunk of stream) {
    if (chunk.type === 'token') result.tokens.push(chunk.text);
    else if (chunk.type === 'usage') result.usage = chunk.usage;
    else result.finish = chunk.reason;
  }
  result.text = result.tokens.join('');
  return result;
}

/** Prompt tokens of a chat in the tiny model's ChatML template, with the BOS token. */
function countChatTokens(prompt: string, system: string | null): number {
  const systemPart = system === null ? '' : `<|im_start|>system\n${system}<|im_end|>\n`;
  const chat = `${systemPart}<|im_start|>user\n${prompt}<|im_end|>\n<|im_start|>assistant\n`;
  return 1 + tokenizeForTinyModel(chat).length;
}

async function writeVariant(
  name: string,
  edit: (
    metadata: Array<[string, GgufMetadataValue]>,
    tensors: GgufTensorSpec[],
  ) => { metadata: Array<[string, GgufMetadataValue]>; tensors: GgufTensorSpec[] },
): Promise<string> {
  const info = readGgufFile(modelPath);
  const bytes = await readFile(modelPath);
  const tensors = info.tensors.map((tensor) => {
    const start = info.dataOffset + tensor.offset;
    const copy = bytes.buffer.slice(
      bytes.byteOffset + start,
      bytes.byteOffset + start + tensor.byteLength,
    );
    return { name: tensor.name, dims: tensor.dims, data: new Float32Array(copy) };
  });
  const path = join(dir, name);
  await writeFile(path, encodeGguf(edit([...info.metadata.entries()], tensors)));
  return path;
}

describe('LlamaProvider with the built-in model', () => {
  it('streams the greedy reply with usage', async () => {
    const result = await generate({}, { prompt: 'Hello' });

    // ✓ is three byte tokens and arrives as one piece once complete.
    expect(result.tokens).toEqual(Array.from(TINY_MODEL_REPLY));
    expect(result.finish).toBe('stop');
    expect(result.usage).toEqual({
      promptTokens: countChatTokens('Hello', null),
      completionTokens: predictTinyModelReply().completionTokens,
      totalTokens: countChatTokens('Hello', null) + predictTinyModelReply().completionTokens,
    });
  });

  it('puts the system prompt into the chat template', async () => {
    const result = await generate({}, { prompt: 'Hello', system: 'Be brief.' });

    expect(result.text).toBe(TINY_MODEL_REPLY);
    expect(result.usage?.promptTokens).toBe(countChatTokens('Hello', 'Be brief.'));
  });

  it.each([1, 5, 37, 38, 39])('stops after maxTokens %i', async (maxTokens) => {
    const expected = predictTinyModelReply(maxTokens);

    const result = await generate({ maxTokens });

    expect(result.text).toBe(expected.text);
    expect(result.usage?.completionTokens).toBe(expected.completionTokens);
    expect(result.finish).toBe('length');
  });

  it('cuts before a multi-token stop sequence', async () => {
    const result = await generate({ stop: ['zz', 'klm'] });

    expect(result.text).toBe('abcdefghij');
    expect(result.finish).toBe('stop');
    expect(result.usage?.completionTokens).toBe('abcdefghijklm'.length);
  });

  it('releases text of an incomplete stop', async () => {
    const result = await generate({ stop: ['xyz!'] });

    expect(result.text).toBe(TINY_MODEL_REPLY);
    expect(result.finish).toBe('stop');
  });

  it('samples with temperature, topP and seed', async () => {
    const sampled = { temperature: 2, topP: 1, maxTokens: 24 };

    const first = await generate({ ...sampled, seed: 7 });
    const again = await generate({ ...sampled, seed: 7 });
    const other = await generate({ ...sampled, seed: 8 });
    const nucleus = await generate({ ...sampled, topP: 0.5, seed: 7 });

    expect(again.text).toBe(first.text);
    expect(other.text).not.toBe(first.text);
    expect(first.text).not.toBe(predictTinyModelReply(24).text);
    // llama.cpp applies top-p before temperature: at 0.5 only the likeliest token is left.
    expect(nucleus.text).toBe(predictTinyModelReply(24).text);
  });

  it('round-trips non-ASCII text through the tokenizer', async () => {
    const text = 'Grüße, 世界 🦙 — ok';

    const tokens = await provider.tokenize(text);

    expect(tokens).toEqual(tokenizeForTinyModel(text));
    expect(await provider.detokenize(tokens)).toBe(text);
  });

  it('counts a non-ASCII prompt in UTF-8 byte tokens', async () => {
    const prompt = '世界 🦙';

    const result = await generate({ maxTokens: 1 }, { prompt });

    expect(result.usage?.promptTokens).toBe(countChatTokens(prompt, null));
  });

  it('throws the abort reason, frees the sequence', async () => {
    const controller = new AbortController();
    const reason = new Error('cancelled by the test');
    const seen: string[] = [];
    const stream = provider.generate({
      model: 'tiny',
      prompt: 'p',
      system: null,
      params: {},
      signal: controller.signal,
    });

    const failure = await (async () => {
      for await (const chunk of stream) {
        if (chunk.type === 'token') seen.push(chunk.text);
        if (seen.length === 3) controller.abort(reason);
      }
    })().catch((error: unknown) => error);

    expect(failure).toBe(reason);
    expect(seen).toEqual(['a', 'b', 'c']);
    const both = await Promise.all([generate(), generate()]);
    expect(both.map((result) => result.text)).toEqual([TINY_MODEL_REPLY, TINY_MODEL_REPLY]);
  });

  it('frees the sequence when the consumer stops reading', async () => {
    for (let round = 0; round < 3; round += 1) {
      const stream = provider.generate({
        model: 'tiny',
        prompt: 'p',
        system: null,
        params: {},
        signal: new AbortController().signal,
      });
      for await (const chunk of stream) if (chunk.type === 'token') break;
    }

    const both = await Promise.all([generate(), generate()]);
    expect(both.map((result) => result.text)).toEqual([TINY_MODEL_REPLY, TINY_MODEL_REPLY]);
  });

  it('throws when aborted before the start', async () => {
    const controller = new AbortController();
    controller.abort(new Error('too late'));
    const stream = provider.generate({
      model: 'tiny',
      prompt: 'p',
      system: null,
      params: {},
      signal: controller.signal,
    });

    await expect(stream[Symbol.asyncIterator]().next()).rejects.toThrow('too late');
  });

  it('fails a prompt longer than the context', async () => {
    const failure = await generate({}, { prompt: 'x'.repeat(5000) }).catch(
      (error: unknown) => error,
    );

    expect(failure).toBeInstanceOf(ProviderError);
    expect(failure).toMatchObject({ code: 'PROVIDER_ERROR', retryable: false });
    expect((failure as Error).message).toContain(
      `The prompt is ${countChatTokens('x'.repeat(5000), null)} tokens long, but the context has room for 4096 tokens per task.`,
    );
    expect((await generate({ maxTokens: 2 })).text).toBe('ab');
  });
});

describe('LlamaProvider with a model llama.cpp rejects', () => {
  it('fails fast with the load error', async () => {
    const path = await writeVariant('no-norm.gguf', (metadata, tensors) => ({
      metadata,
      tensors: tensors.filter((tensor) => tensor.name !== 'output_norm.weight'),
    }));
    const broken = new LlamaProvider({ modelPath: path, threads: 1, logger: silent });
    try {
      const failure = await broken.ready().catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(ProviderError);
      expect((failure as Error).message).toMatch(
        /could not load the model: .*'output_norm\.weight'/,
      );
      const started = Date.now();
      await expect(generate({}, { target: broken })).rejects.toBe(failure);
      expect(Date.now() - started).toBeLessThan(100);
    } finally {
      await broken.close();
    }
  });

  it('survives a native abort in the worker', async () => {
    // The provider's own validation rejects this file; the worker is started directly to see that
    // a native abort ends only the worker.
    const path = await writeVariant('no-heads.gguf', (metadata, tensors) => ({
      metadata: metadata.filter(([key]) => key !== 'llama.attention.head_count'),
      tensors,
    }));
    const worker = LlamaWorker.start({
      modelPath: path,
      contextSize: 256,
      sequences: 1,
      threads: 1,
      loadTimeoutMs: 30_000,
      logger: silent,
    });
    try {
      const failure = (await worker.ready.catch((error: unknown) => error)) as Error;

      expect(failure.message).toMatch(
        /exited (with code 134|on signal SIGABRT) before the model was loaded/,
      );
      expect(failure.message).toContain('GGML_ASSERT');
      expect(worker.exited).toBe(true);
    } finally {
      await worker.close();
    }
  });
});

describe('chooseLlamaThreads', () => {
  it.each([
    [1, 1],
    [2, 1],
    [8, 7],
  ])('gives %i cores %i threads', (cores, threads) => {
    expect(chooseLlamaThreads(cores)).toBe(threads);
  });
});
