import http from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { MockReply, MockRequestBody } from '../helpers/mock-upstream';
import { MockUpstream, echoTokens, expectedEchoText } from '../helpers/mock-upstream';

const mocks: MockUpstream[] = [];

afterEach(async () => {
  await Promise.all(mocks.splice(0).map((mock) => mock.close()));
});

async function startMock(respond?: MockReply): Promise<MockUpstream> {
  const mock = await MockUpstream.start({ respond });
  mocks.push(mock);
  return mock;
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** How many pieces the body arrived in. */
  reads: number;
}

/** Posts `body` with plain node:http and reads the raw answer. */
async function post(url: string, body: unknown, path = '/chat/completions'): Promise<RawResponse> {
  const response = await new Promise<IncomingMessage>((resolve, reject) => {
    const request = http.request(`${url}${path}`, { method: 'POST' }, resolve);
    request.on('error', reject);
    request.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
  const pieces: Buffer[] = [];
  for await (const piece of response) pieces.push(piece as Buffer);
  const text = Buffer.concat(pieces).toString('utf8');
  return {
    status: response.statusCode ?? 0,
    headers: response.headers,
    text,
    reads: pieces.length,
  };
}

function chatBody(prompt: string, includeUsage = true): MockRequestBody {
  return {
    model: 'm1',
    messages: [{ role: 'user', content: prompt }],
    stream: true,
    stream_options: { include_usage: includeUsage },
  };
}

/** Splits a raw SSE body into its data payloads. */
function payloadsOf(text: string): string[] {
  return text
    .split('\n\n')
    .filter((event) => event !== '')
    .map((event) => event.replace(/^data: /, ''));
}

describe('MockUpstream', () => {
  it('streams the echo reply in OpenAI wire format', async () => {
    const mock = await startMock();

    const response = await post(mock.url, chatBody('hello   there'));

    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(response.text.endsWith('data: [DONE]\n\n')).toBe(true);
    const payloads = payloadsOf(response.text);
    const chunks = payloads.slice(0, -1).map((payload) => JSON.parse(payload));
    expect(chunks[0]).toMatchObject({
      object: 'chat.completion.chunk',
      model: 'm1',
      choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }],
      usage: null,
    });
    const tokens = chunks.slice(1, -2).map((chunk) => chunk.choices[0].delta.content);
    expect(tokens).toEqual(['Echo', ':', ' hello', ' there']);
    expect(tokens.join('')).toBe(expectedEchoText('hello   there'));
    expect(chunks.at(-2).choices[0]).toEqual({
      index: 0,
      delta: {},
      logprobs: null,
      finish_reason: 'stop',
    });
    expect(chunks.at(-1)).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 2, completion_tokens: 4, total_tokens: 6 },
    });
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
  });

  it('sends no usage chunk when the request did not ask for usage', async () => {
    const mock = await startMock();

    const response = await post(mock.url, chatBody('x', false));

    expect(response.text).not.toContain('"usage"');
  });

  it('writes one byte at a time with bytes-1 chunking', async () => {
    const mock = await startMock({ tokens: ['Привет', ' 😀'], chunking: 'bytes-1' });

    const response = await post(mock.url, chatBody('x'));

    const bytes = Buffer.byteLength(response.text);
    expect(response.reads).toBeGreaterThan(bytes / 2);
    expect(response.text).toContain('"content":"Привет"');
  });

  it('answers a non-2xx status with the error body and headers', async () => {
    const mock = await startMock({
      status: 429,
      headers: { 'retry-after': '2' },
      errorBody: { error: { message: 'slow down' } },
    });

    const response = await post(mock.url, chatBody('x'));

    expect(response.status).toBe(429);
    expect(response.headers['retry-after']).toBe('2');
    expect(JSON.parse(response.text)).toEqual({ error: { message: 'slow down' } });
    expect(mock.requests[0]).toMatchObject({ completed: true, aborted: false });
  });

  it('passes the body and the request index to the handler', async () => {
    const mock = await startMock();
    const seen: Array<[string, number]> = [];
    mock.respondWith((body, index) => {
      seen.push([body.messages[0].content, index]);
      return { tokens: [`#${index}`] };
    });

    await post(mock.url, chatBody('first'));
    const second = await post(mock.url, chatBody('second'));

    expect(seen).toEqual([
      ['first', 0],
      ['second', 1],
    ]);
    expect(second.text).toContain('"content":"#1"');
  });

  it('answers 404 to other paths and 400 to a body that is not JSON, and records both', async () => {
    const mock = await startMock();

    const missing = await post(mock.url, chatBody('x'), '/completions');
    const broken = await post(mock.url, 'not json');

    expect([missing.status, broken.status]).toEqual([404, 400]);
    expect(mock.requests.map((request) => request.path)).toEqual([
      '/v1/completions',
      '/v1/chat/completions',
    ]);
  });

  it('records a request the client closes as aborted, with the time it saw the close', async () => {
    const mock = await startMock({ hang: true });
    const request = http.request(`${mock.url}/chat/completions`, { method: 'POST' });
    request.on('error', () => undefined);
    request.end(JSON.stringify(chatBody('x')));
    await mock.waitForRequests(1);

    const closedAt = Date.now();
    request.destroy();

    const record = await mock.waitForAbort(0);
    expect(record.completed).toBe(false);
    expect(record.closedAt).toBeGreaterThanOrEqual(closedAt);
  });

  it('does not count its own dropped connection as an abort', async () => {
    const mock = await startMock({ tokens: ['a', 'b'], dropAfterTokens: 1 });

    await expect(post(mock.url, chatBody('x'))).rejects.toThrow();

    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(mock.requests[0]).toMatchObject({ aborted: false, completed: false });
    expect(mock.requests[0].closedAt).toBeDefined();
  });

  it('rejects a wait that times out, saying what it saw', async () => {
    const mock = await startMock();

    await expect(mock.waitForRequests(1, 30)).rejects.toThrow('0 of 1 requests arrived');
  });

  it('closes promptly with a request still hanging', async () => {
    const mock = await startMock({ hangBeforeHeaders: true });
    const request = http.request(`${mock.url}/chat/completions`, { method: 'POST' });
    request.on('error', () => undefined);
    request.end(JSON.stringify(chatBody('x')));
    await mock.waitForRequests(1);

    const started = Date.now();
    await mock.close();

    expect(Date.now() - started).toBeLessThan(500);
    expect(mock.requests[0].aborted).toBe(false);
  });

  it('derives the echo tokens from the words of the prompt', () => {
    expect(echoTokens('  a\tb\nc ')).toEqual(['Echo', ':', ' a', ' b', ' c']);
    expect(expectedEchoText('')).toBe('Echo:');
  });
});
