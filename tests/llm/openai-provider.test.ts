import http from 'node:http';
import { collect, createRequest as createRequestWith } from '../helpers/provider-requests';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { OpenAiProviderOptions } from '../../src/services/llm/openai-provider';
import { OpenAiProvider } from '../../src/services/llm/openai-provider';
import type { GenerateChunk, GenerateRequest } from '../../src/services/llm/provider';
import { ProviderError, ProviderErrorCode } from '../../src/services/llm/provider';
import type { MockChunking, MockUpstreamOptions } from '../helpers/mock-upstream';
import { MockUpstream, echoTokens } from '../helpers/mock-upstream';

const mocks: MockUpstream[] = [];
const providers: OpenAiProvider[] = [];

afterEach(async () => {
  await Promise.all(providers.splice(0).map((provider) => provider.close()));
  await Promise.all(mocks.splice(0).map((mock) => mock.close()));
});

async function startMock(options?: MockUpstreamOptions): Promise<MockUpstream> {
  const mock = await MockUpstream.start(options);
  mocks.push(mock);
  return mock;
}

function createProvider(
  baseUrl: string,
  options: Partial<OpenAiProviderOptions> = {},
): OpenAiProvider {
  const provider = new OpenAiProvider({ baseUrl, model: 'test-model', ...options });
  providers.push(provider);
  return provider;
}

function createRequest(overrides: Partial<GenerateRequest> = {}): GenerateRequest {
  return createRequestWith({ model: 'test-model', prompt: 'Say hello' }, overrides);
}

/** Collects chunks until the stream throws; fails the test if it does not. */
async function collectFailure(
  stream: AsyncIterable<GenerateChunk>,
): Promise<{ error: unknown; chunks: GenerateChunk[] }> {
  const chunks: GenerateChunk[] = [];
  try {
    for await (const chunk of stream) chunks.push(chunk);
  } catch (error) {
    return { error, chunks };
  }
  throw new Error(`Expected the stream to fail; it ended with ${JSON.stringify(chunks.at(-1))}`);
}

function tokensOf(chunks: GenerateChunk[]): string[] {
  return chunks.flatMap((chunk) => (chunk.type === 'token' ? [chunk.text] : []));
}

function expectProviderError(
  error: unknown,
  code: ProviderErrorCode,
  retryable: boolean,
): ProviderError {
  expect(error).toBeInstanceOf(ProviderError);
  const providerError = error as ProviderError;
  expect({ code: providerError.code, retryable: providerError.retryable }).toEqual({
    code,
    retryable,
  });
  return providerError;
}

/** Returns a port on 127.0.0.1 that nothing listens on. */
async function findClosedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const MULTILINGUAL = [
  'Привет',
  ', ',
  '世界',
  ' 😀',
  ' 👩‍💻',
  ' «ok»',
  ' "quoted" \\ back',
  '\n',
  'line\r\nbreak\r',
  ' data: [DONE]',
  ' ',
  'end',
];

describe('OpenAiProvider', () => {
  describe('a well-formed stream', () => {
    it('yields each token, then the usage, then the finish reason', async () => {
      const mock = await startMock();
      const provider = createProvider(mock.url);

      const chunks = await collect(provider.generate(createRequest({ prompt: 'Say hello' })));

      const tokens = echoTokens('Say hello');
      expect(chunks).toEqual([
        ...tokens.map((text) => ({ type: 'token', text })),
        {
          type: 'usage',
          usage: {
            promptTokens: 2,
            completionTokens: tokens.length,
            totalTokens: 2 + tokens.length,
          },
        },
        { type: 'finish', reason: 'stop' },
      ]);
    });

    it('yields usage from a final chunk whose choices are empty', async () => {
      const mock = await startMock({
        respond: {
          tokens: ['a', 'b'],
          usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
        },
      });

      const chunks = await collect(createProvider(mock.url).generate(createRequest()));

      expect(chunks.slice(-2)).toEqual([
        { type: 'usage', usage: { promptTokens: 3, completionTokens: 2, totalTokens: 5 } },
        { type: 'finish', reason: 'stop' },
      ]);
    });

    it('passes on the finish reason of the last choice', async () => {
      const mock = await startMock({ respond: { tokens: ['cut'], finishReason: 'length' } });

      const chunks = await collect(createProvider(mock.url).generate(createRequest()));

      expect(chunks.at(-1)).toEqual({ type: 'finish', reason: 'length' });
    });

    it('finishes with stop when [DONE] comes without a finish reason', async () => {
      const mock = await startMock({ respond: { tokens: ['x'], finishReason: null } });

      const chunks = await collect(createProvider(mock.url).generate(createRequest()));

      expect(chunks.at(-1)).toEqual({ type: 'finish', reason: 'stop' });
    });

    it('finishes normally when a finish reason came but the stream ends without [DONE]', async () => {
      const mock = await startMock({
        respond: { tokens: ['x'], finishReason: 'length', done: false },
      });

      const chunks = await collect(createProvider(mock.url).generate(createRequest()));

      expect(tokensOf(chunks)).toEqual(['x']);
      expect(chunks.at(-1)).toEqual({ type: 'finish', reason: 'length' });
    });

    it('reads a JSON completion from a server that ignores stream: true', async () => {
      const mock = await startMock({
        respond: {
          format: 'json',
          tokens: ['Whole', ' answer'],
          usage: { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 },
        },
      });

      const chunks = await collect(createProvider(mock.url).generate(createRequest()));

      expect(chunks).toEqual([
        { type: 'token', text: 'Whole answer' },
        { type: 'usage', usage: { promptTokens: 4, completionTokens: 2, totalTokens: 6 } },
        { type: 'finish', reason: 'stop' },
      ]);
    });

    it('reuses the kept-alive connection for the next request', async () => {
      const mock = await startMock();
      const provider = createProvider(mock.url);

      await collect(provider.generate(createRequest()));
      // The end of the body, after [DONE], is read in the background before the socket is free.
      await sleep(50);
      await collect(provider.generate(createRequest()));

      expect(mock.requests).toHaveLength(2);
      expect(mock.requests[1].remotePort).toBe(mock.requests[0].remotePort);
    });
  });

  describe('a stream cut into arbitrary pieces', () => {
    const expected = MULTILINGUAL.join('');
    const cases: Array<[string, MockChunking, '\n' | '\r\n' | '\r']> = [
      ['one byte per write, LF', 'bytes-1', '\n'],
      ['one byte per write, CRLF', 'bytes-1', '\r\n'],
      ['one byte per write, CR', 'bytes-1', '\r'],
      ['random cuts, seed 1, CRLF', { randomSeed: 1, maxChunk: 7 }, '\r\n'],
      ['random cuts, seed 2, CRLF', { randomSeed: 2, maxChunk: 3 }, '\r\n'],
      ['random cuts, seed 3, LF', { randomSeed: 3, maxChunk: 40 }, '\n'],
      ['random cuts, seed 4, CRLF', { randomSeed: 4, maxChunk: 2 }, '\r\n'],
      ['random cuts, seed 5, LF', { randomSeed: 5, maxChunk: 300 }, '\n'],
    ];

    it.each(cases)('delivers byte-identical text with %s', async (_name, chunking, lineEnding) => {
      const mock = await startMock({ respond: { tokens: MULTILINGUAL, chunking, lineEnding } });

      const chunks = await collect(createProvider(mock.url).generate(createRequest()));

      const text = tokensOf(chunks).join('');
      expect(tokensOf(chunks)).toEqual(MULTILINGUAL);
      expect(Buffer.from(text, 'utf8').equals(Buffer.from(expected, 'utf8'))).toBe(true);
      expect(text).not.toContain('\uFFFD');
      expect(chunks.at(-1)).toEqual({ type: 'finish', reason: 'stop' });
    });
  });

  describe('a malformed stream', () => {
    it('throws UPSTREAM_ERROR with the upstream message after yielding the tokens before it', async () => {
      const mock = await startMock({
        respond: {
          tokens: ['one', ' two', ' three'],
          errorAfterTokens: { afterIndex: 2, error: { message: 'context length exceeded' } },
        },
      });

      const { error, chunks } = await collectFailure(
        createProvider(mock.url).generate(createRequest()),
      );

      expect(tokensOf(chunks)).toEqual(['one', ' two']);
      const failure = expectProviderError(error, ProviderErrorCode.UPSTREAM_ERROR, false);
      expect(failure.message).toContain('context length exceeded');
    });

    it('skips chunks whose choices are null or missing', async () => {
      const choice = (content: string, finish: string | null) =>
        JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: finish }] });
      const mock = await startMock({
        respond: {
          rawEvents: [
            choice('before', null),
            JSON.stringify({ choices: null }),
            JSON.stringify({ id: 'no-choices' }),
            choice(' after', 'stop'),
            '[DONE]',
          ],
        },
      });

      const chunks = await collect(createProvider(mock.url).generate(createRequest()));

      expect(chunks).toEqual([
        { type: 'token', text: 'before' },
        { type: 'token', text: ' after' },
        { type: 'finish', reason: 'stop' },
      ]);
    });

    it('throws INCOMPLETE_STREAM when the stream ends with neither [DONE] nor a finish reason', async () => {
      const mock = await startMock({
        respond: { tokens: ['half'], finishReason: null, usage: null, done: false },
      });

      const { error, chunks } = await collectFailure(
        createProvider(mock.url).generate(createRequest()),
      );

      expect(tokensOf(chunks)).toEqual(['half']);
      expectProviderError(error, ProviderErrorCode.INCOMPLETE_STREAM, true);
    });

    it('throws a retryable NETWORK_ERROR when the connection breaks mid-stream', async () => {
      const mock = await startMock({ respond: { tokens: ['a', 'b', 'c'], dropAfterTokens: 2 } });

      const { error, chunks } = await collectFailure(
        createProvider(mock.url).generate(createRequest()),
      );

      expect(tokensOf(chunks)).toEqual(['a', 'b']);
      expectProviderError(error, ProviderErrorCode.NETWORK_ERROR, true);
    });

    it('throws PROTOCOL_ERROR for data that is not JSON', async () => {
      const mock = await startMock({ respond: { rawEvents: ['{"choices": [', '[DONE]'] } });

      const { error } = await collectFailure(createProvider(mock.url).generate(createRequest()));

      const failure = expectProviderError(error, ProviderErrorCode.PROTOCOL_ERROR, false);
      expect(failure.message).toContain('{"choices": [');
    });
  });

  describe('an HTTP error status', () => {
    it('makes 429 retryable after the seconds of Retry-After', async () => {
      const mock = await startMock({
        respond: {
          status: 429,
          headers: { 'retry-after': '7' },
          errorBody: { error: { message: 'Rate limit reached', type: 'rate_limit' } },
        },
      });

      const { error } = await collectFailure(createProvider(mock.url).generate(createRequest()));

      const failure = expectProviderError(error, ProviderErrorCode.UPSTREAM_ERROR, true);
      expect(failure).toMatchObject({ status: 429, retryAfterSeconds: 7 });
      expect(failure.message).toContain('Rate limit reached');
    });

    it('reads Retry-After given as an HTTP date', async () => {
      const at = new Date(Date.now() + 30_000).toUTCString();
      const mock = await startMock({ respond: { status: 503, headers: { 'retry-after': at } } });

      const { error } = await collectFailure(createProvider(mock.url).generate(createRequest()));

      const failure = expectProviderError(error, ProviderErrorCode.UPSTREAM_ERROR, true);
      expect(failure.retryAfterSeconds).toBeGreaterThanOrEqual(28);
      expect(failure.retryAfterSeconds).toBeLessThanOrEqual(30);
    });

    it.each([408, 409, 500, 502, 503])('makes %i retryable', async (status) => {
      const mock = await startMock({ respond: { status } });

      const { error } = await collectFailure(createProvider(mock.url).generate(createRequest()));

      expect(expectProviderError(error, ProviderErrorCode.UPSTREAM_ERROR, true).status).toBe(
        status,
      );
    });

    it.each([400, 401, 404, 422])('makes %i final', async (status) => {
      const mock = await startMock({
        respond: { status, errorBody: { error: { message: `refused with ${status}` } } },
      });

      const { error } = await collectFailure(createProvider(mock.url).generate(createRequest()));

      const failure = expectProviderError(error, ProviderErrorCode.UPSTREAM_ERROR, false);
      expect(failure).toMatchObject({ status, retryAfterSeconds: undefined });
      expect(failure.message).toContain(`refused with ${status}`);
    });

    it('quotes a plain-text error body', async () => {
      const mock = await startMock({
        respond: { status: 502, errorBody: 'Bad gateway from proxy' },
      });

      const { error } = await collectFailure(createProvider(mock.url).generate(createRequest()));

      expect((error as Error).message).toContain('Bad gateway from proxy');
    });

    it('reads only the first 64 KiB of a huge error body', async () => {
      const mock = await startMock({ respond: { status: 500, errorBody: 'x'.repeat(2 ** 20) } });

      const { error } = await collectFailure(createProvider(mock.url).generate(createRequest()));

      expectProviderError(error, ProviderErrorCode.UPSTREAM_ERROR, true);
      expect((error as Error).message.length).toBeLessThan(1000);
    });
  });

  describe('abort', () => {
    it('closes the upstream connection at once and throws the abort reason', async () => {
      const mock = await startMock({
        respond: { tokens: echoTokens('a b c d e f g h'), tokenDelayMs: 50 },
      });
      const controller = new AbortController();
      const reason = new Error('cancelled by the test');
      const stream = createProvider(mock.url).generate(
        createRequest({ signal: controller.signal }),
      );

      await stream.next();
      await stream.next();
      const abortedAt = Date.now();
      controller.abort(reason);

      // The generator is not resumed yet: the abort listener alone must close the socket.
      const record = await mock.waitForAbort(0, 2000);
      const closeDelayMs = (record.closedAt ?? Infinity) - abortedAt;
      // eslint-disable-next-line no-console
      console.info(`Upstream saw the request closed ${closeDelayMs} ms after the abort`);
      expect(closeDelayMs).toBeLessThan(500);
      await expect(stream.next()).rejects.toBe(reason);
    });

    it('throws the abort reason, not a ProviderError, while waiting for headers', async () => {
      const mock = await startMock({ respond: { hangBeforeHeaders: true } });
      const controller = new AbortController();
      const stream = createProvider(mock.url).generate(
        createRequest({ signal: controller.signal }),
      );
      const pending = stream.next();
      await mock.waitForRequests(1);

      controller.abort(new Error('shutdown'));

      await expect(pending).rejects.toThrow('shutdown');
      await mock.waitForAbort(0, 2000);
    });

    it('closes a hanging stream the upstream never ends', async () => {
      const mock = await startMock({ respond: { hang: true } });
      const controller = new AbortController();
      const stream = createProvider(mock.url).generate(
        createRequest({ signal: controller.signal }),
      );
      const pending = stream.next();
      await mock.waitForRequests(1);
      await sleep(20);

      controller.abort('timeout');

      await expect(pending).rejects.toBe('timeout');
      expect((await mock.waitForAbort(0, 2000)).aborted).toBe(true);
    });

    it('sends nothing when the signal has already fired', async () => {
      const mock = await startMock();
      const controller = new AbortController();
      controller.abort(new Error('too late'));

      const { error } = await collectFailure(
        createProvider(mock.url).generate(createRequest({ signal: controller.signal })),
      );

      expect(error).toBe(controller.signal.reason);
      expect(mock.requests).toHaveLength(0);
    });

    it('closes the connection when the consumer stops reading early', async () => {
      const mock = await startMock({ respond: { tokens: ['a', 'b', 'c', 'd'], tokenDelayMs: 30 } });

      for await (const chunk of createProvider(mock.url).generate(createRequest())) {
        expect(chunk).toEqual({ type: 'token', text: 'a' });
        break;
      }

      expect((await mock.waitForAbort(0, 2000)).aborted).toBe(true);
    });
  });

  describe('network failures and timeouts', () => {
    it('throws a retryable NETWORK_ERROR when the connection is refused', async () => {
      const port = await findClosedPort();
      const provider = createProvider(`http://127.0.0.1:${port}`);

      const { error } = await collectFailure(provider.generate(createRequest()));

      const failure = expectProviderError(error, ProviderErrorCode.NETWORK_ERROR, true);
      expect(failure.message).toContain('ECONNREFUSED');
    });

    it('times out when no response headers arrive', async () => {
      const mock = await startMock({ respond: { hangBeforeHeaders: true } });
      const provider = createProvider(mock.url, { requestTimeoutMs: 150 });
      const started = Date.now();

      const { error } = await collectFailure(provider.generate(createRequest()));

      const failure = expectProviderError(error, ProviderErrorCode.NETWORK_ERROR, true);
      expect(failure.message).toContain('no response headers for 150 ms');
      expect(Date.now() - started).toBeGreaterThanOrEqual(140);
      expect((await mock.waitForAbort(0, 2000)).aborted).toBe(true);
    });

    it('times out when the stream stalls after the headers', async () => {
      const mock = await startMock({ respond: { hang: true } });
      const provider = createProvider(mock.url, { requestTimeoutMs: 150 });

      const { error } = await collectFailure(provider.generate(createRequest()));

      const failure = expectProviderError(error, ProviderErrorCode.NETWORK_ERROR, true);
      expect(failure.message).toContain('no data for 150 ms');
    });

    it('times out between two tokens that come too far apart', async () => {
      const mock = await startMock({
        respond: { tokens: ['fast', 'slow'], firstTokenDelayMs: 0, tokenDelayMs: 1000 },
      });
      const provider = createProvider(mock.url, { requestTimeoutMs: 150 });

      const { error, chunks } = await collectFailure(provider.generate(createRequest()));

      expect(tokensOf(chunks)).toEqual(['fast']);
      expectProviderError(error, ProviderErrorCode.NETWORK_ERROR, true);
    });

    it('does not time out while the consumer, not the upstream, is slow', async () => {
      const mock = await startMock({ respond: { tokens: ['a', 'b', 'c'] } });
      const provider = createProvider(mock.url, { requestTimeoutMs: 100 });
      const chunks: GenerateChunk[] = [];

      for await (const chunk of provider.generate(createRequest())) {
        chunks.push(chunk);
        await sleep(150);
      }

      expect(tokensOf(chunks)).toEqual(['a', 'b', 'c']);
    });
  });

  describe('the request', () => {
    it('maps the system message, the prompt and every parameter', async () => {
      const mock = await startMock();
      const provider = createProvider(mock.url, { apiKey: 'sk-test-123' });

      await collect(
        provider.generate(
          createRequest({
            model: 'other-model',
            prompt: 'Write a haiku',
            system: 'You are terse.',
            params: { temperature: 0.2, topP: 0.9, maxTokens: 64, stop: ['\n\n', 'END'], seed: 42 },
          }),
        ),
      );

      const [request] = mock.requests;
      expect(request.method).toBe('POST');
      expect(request.path).toBe('/v1/chat/completions');
      expect(request.headers.authorization).toBe('Bearer sk-test-123');
      expect(request.headers['content-type']).toBe('application/json');
      expect(request.body).toEqual({
        model: 'other-model',
        messages: [
          { role: 'system', content: 'You are terse.' },
          { role: 'user', content: 'Write a haiku' },
        ],
        stream: true,
        stream_options: { include_usage: true },
        temperature: 0.2,
        top_p: 0.9,
        max_tokens: 64,
        stop: ['\n\n', 'END'],
        seed: 42,
      });
    });

    it('leaves out absent parameters, the system message and the Authorization header', async () => {
      const mock = await startMock();

      await collect(createProvider(mock.url).generate(createRequest({ prompt: 'Hi' })));

      const [request] = mock.requests;
      expect(request.headers.authorization).toBeUndefined();
      expect(request.body).toEqual({
        model: 'test-model',
        messages: [{ role: 'user', content: 'Hi' }],
        stream: true,
        stream_options: { include_usage: true },
      });
    });
  });

  describe('the base URL', () => {
    it.each([
      ['with /v1', (url: string) => url],
      ['with /v1/', (url: string) => `${url}/`],
      ['without /v1', (url: string) => url.replace(/\/v1$/, '')],
      ['without /v1, with a slash', (url: string) => url.replace(/\/v1$/, '/')],
    ])('reaches /v1/chat/completions %s', async (_name, toBaseUrl) => {
      const mock = await startMock();

      await collect(createProvider(toBaseUrl(mock.url)).generate(createRequest()));

      expect(mock.requests[0].path).toBe('/v1/chat/completions');
    });

    it('keeps a path that already names an API version', () => {
      const provider = createProvider('https://example.com/v1beta/openai/');

      expect(provider.endpoint).toBe('https://example.com/v1beta/openai/chat/completions');
    });

    it('rejects a URL that is not http or https, saying what came', () => {
      expect(() => createProvider('ftp://example.com/v1')).toThrow(
        /http:\/\/ or https:\/\/ URL.*got one with protocol "ftp:"/,
      );
      expect(() => createProvider('localhost:8080')).toThrow(/got one with protocol "localhost:"/);
      expect(() => createProvider('not a url')).toThrow(/got "not a url"/);
    });

    it('rejects an empty model and a timeout of zero', () => {
      expect(() => createProvider('http://127.0.0.1:1', { model: '' })).toThrow(/model must be/);
      expect(() => createProvider('http://127.0.0.1:1', { requestTimeoutMs: 0 })).toThrow(/got 0/);
    });

    it('rejects an API key with a line break without showing it', () => {
      expect(() => createProvider('http://127.0.0.1:1', { apiKey: 'sk-secret\n' })).toThrow(
        /^(?!.*sk-secret).*apiKey must be/,
      );
    });
  });

  describe('close', () => {
    it('can be called twice and refuses later requests', async () => {
      const provider = createProvider('http://127.0.0.1:1');

      await provider.close();
      await provider.close();

      await expect(provider.generate(createRequest()).next()).rejects.toThrow('after close()');
    });
  });
});
