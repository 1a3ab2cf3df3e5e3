import http from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One chat message of a request. The provider always sends text content. */
export interface MockChatMessage {
  role: string;
  content: string;
}

/** The JSON body of a chat completions request, as the mock received it. */
export interface MockRequestBody {
  model: string;
  messages: MockChatMessage[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  stop?: string | string[];
  seed?: number;
  [field: string]: unknown;
}

/** Token counts in OpenAI's wire names. */
export interface MockUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** An OpenAI-style error object. */
export interface MockErrorObject {
  message: string;
  type?: string;
  code?: string;
}

/**
 * How the response body is cut into socket writes. Each write is flushed on its own, with a turn of
 * the event loop between writes, so the client sees separate chunks.
 * - `event`: one write per SSE event.
 * - `bytes-1`: one write per byte.
 * - `{ randomSeed, maxChunk }`: writes of 1 to `maxChunk` bytes, sizes drawn from a seeded generator;
 *   a write may hold the end of one event and the start of the next.
 */
export type MockChunking = 'event' | 'bytes-1' | { randomSeed: number; maxChunk: number };

/**
 * The reply the mock sends to one request. Every field is optional; `{}` gives the echo reply's tokens
 * in OpenAI's exact format: a role chunk, one chunk per token, a chunk with the finish reason, a usage
 * chunk with `choices: []` (when the request asked for usage) and `data: [DONE]`.
 */
export interface MockReply {
  /** Content of the token chunks. @default the echo tokens, see {@link echoTokens} */
  tokens?: string[];
  /** Milliseconds before each token after the first. @default 0 */
  tokenDelayMs?: number;
  /** Milliseconds before the first token, after the headers and the role chunk. @default tokenDelayMs */
  firstTokenDelayMs?: number;
  /** Finish reason of the last content chunk; `null` sends no finish chunk. @default 'stop' */
  finishReason?: string | null;
  /**
   * The usage chunk's numbers; `null` sends none. Without this field a usage chunk is sent only when
   * the request set `stream_options.include_usage`, counting prompt words and tokens.
   * @default computed when asked for
   */
  usage?: MockUsage | null;
  /** Whether `data: [DONE]` ends the stream. @default true, or false with `rawEvents` */
  done?: boolean;
  /** HTTP status; anything outside 2xx sends `errorBody` instead of a stream. @default 200 */
  status?: number;
  /**
   * Body of a non-2xx response: a string is sent as text/plain, anything else as JSON.
   * @default { error: { message: 'Mock upstream error (HTTP <status>)', type: 'mock_error', … } }
   */
  errorBody?: unknown;
  /** Extra response headers, for example `{ 'retry-after': '3' }`. @default {} */
  headers?: Record<string, string>;
  /**
   * Sends an error object event (`data: {"error":{…}}`) in place of the token at `afterIndex`: the
   * tokens before that index go out, the rest do not, nor does the finish or usage chunk. `[DONE]`
   * still follows unless `done` is false. @default none
   */
  errorAfterTokens?: { afterIndex: number; error: MockErrorObject };
  /**
   * Destroys the socket after that many token chunks: no finish chunk, no `[DONE]`, and the chunked
   * body never ends, so the client sees a broken connection. @default none
   */
  dropAfterTokens?: number;
  /** Sends the headers, then nothing, until the client or {@link MockUpstream.close} closes the socket. @default false */
  hang?: boolean;
  /** Sends nothing at all, not even headers, until the socket is closed. @default false */
  hangBeforeHeaders?: boolean;
  /**
   * Data payloads sent verbatim as `data: <payload>` events (a payload with line breaks becomes several
   * data lines), replacing the role, token, finish and usage chunks. `[DONE]` is sent only when
   * `done` is true, so include it here or set `done` to test its absence. @default none
   */
  rawEvents?: string[];
  /** Line ending of the SSE stream. @default '\n' */
  lineEnding?: '\n' | '\r\n' | '\r';
  /** `json` answers with one `chat.completion` object, as servers that ignore `stream` do. @default 'sse' */
  format?: 'sse' | 'json';
  /** How the body is cut into writes. @default 'event' */
  chunking?: MockChunking;
}

/** Decides the reply to the request at position `index` of {@link MockUpstream.requests}. */
export type MockHandler = (body: MockRequestBody, index: number) => MockReply | Promise<MockReply>;

/** One request the mock received. Times are `Date.now()` values. */
export interface MockRequestRecord {
  index: number;
  method: string;
  /** Path with query, for example `/v1/chat/completions`. */
  path: string;
  headers: IncomingHttpHeaders;
  /** The client's port: equal ports on two requests mean a kept-alive connection was reused. */
  remotePort: number | undefined;
  /** Parsed JSON body; `{ model: '', messages: [] }` when the body was not JSON. */
  body: MockRequestBody;
  receivedAt: number;
  /** When the mock saw the connection or response close. */
  closedAt?: number;
  /** The client closed the connection before the mock finished its answer. */
  aborted: boolean;
  /** The mock sent its whole answer. */
  completed: boolean;
}

/** Options for {@link MockUpstream.start}. */
export interface MockUpstreamOptions {
  /** Initial reply, as for {@link MockUpstream.respondWith}. @default the echo reply */
  respond?: MockHandler | MockReply;
}

/** The path the mock serves; everything else gets an OpenAI-style 404. */
export const CHAT_COMPLETIONS_PATH = '/v1/chat/completions';

/**
 * The default reply's tokens: `'Echo'`, `':'`, then each whitespace-separated word of the prompt with
 * one leading space. `echoTokens('hi  there')` is `['Echo', ':', ' hi', ' there']`.
 */
export function echoTokens(prompt: string): string[] {
  const words = prompt.split(/\s+/).filter((word) => word !== '');
  return ['Echo', ':', ...words.map((word) => ` ${word}`)];
}

/** The full text of the default reply to `prompt`: `Echo: hi there` for `hi  there`. */
export function expectedEchoText(prompt: string): string {
  return echoTokens(prompt).join('');
}

interface Waiter {
  check: () => boolean;
  resolve: () => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** One step of a planned stream: wait, then send an event or break the connection. */
interface StreamStep {
  delayMs: number;
  payload?: string;
  drop?: boolean;
}

/** Per-response state shared by the planner, the writer and the close listener. */
interface Exchange {
  record: MockRequestRecord;
  response: ServerResponse;
  /** Fires when the response closes, for any reason; stops pending delays. */
  closed: AbortController;
  dropped: boolean;
}

/**
 * An OpenAI-compatible chat completions server on 127.0.0.1 for tests: it streams in OpenAI's exact
 * wire format, can misbehave on demand (errors, drops, hangs, malformed events, odd chunking) and
 * records every request, including when the client closed it.
 */
export class MockUpstream {
  /** Every request received, in order. */
  readonly requests: MockRequestRecord[] = [];
  /** Base URL to give a provider, ending in `/v1`. */
  readonly url: string;

  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private readonly waiters = new Set<Waiter>();
  private respond: MockHandler | MockReply;
  private closing: Promise<void> | undefined;

  private constructor(server: http.Server, respond: MockHandler | MockReply) {
    this.server = server;
    this.respond = respond;
    const { port } = server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}/v1`;
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      void this.handle(request, response);
    });
  }

  /** Starts a mock on a free port of 127.0.0.1. */
  static async start(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
    const server = http.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new MockUpstream(server, options.respond ?? {});
  }

  /** Sets the reply to every later request: a fixed reply, or a function of the request. */
  respondWith(respond: MockHandler | MockReply): void {
    this.respond = respond;
  }

  /** Resolves with the requests once at least `count` have arrived. */
  async waitForRequests(count: number, timeoutMs = 5000): Promise<MockRequestRecord[]> {
    await this.waitFor(
      () => this.requests.length >= count,
      timeoutMs,
      () => `${this.requests.length} of ${count} requests arrived`,
    );
    return this.requests;
  }

  /** Resolves with the request once the client has closed it before the mock finished. */
  async waitForAbort(index: number, timeoutMs = 5000): Promise<MockRequestRecord> {
    await this.waitFor(
      () => this.requests[index]?.aborted === true,
      timeoutMs,
      () => `request ${index} was not aborted (${JSON.stringify(this.describe(index))})`,
    );
    return this.requests[index];
  }

  /** Destroys open sockets and stops the server; safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      for (const waiter of this.waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error('MockUpstream: closed while a test was waiting on it'));
      }
      this.waiters.clear();
      this.server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
    });
    return this.closing;
  }

  /** Same as {@link close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const receivedAt = Date.now();
    const body = parseRequestBody(await readRequestBody(request));
    const record: MockRequestRecord = {
      index: this.requests.length,
      method: request.method ?? '',
      path: request.url ?? '',
      headers: request.headers,
      remotePort: request.socket.remotePort,
      body: body ?? { model: '', messages: [] },
      receivedAt,
      aborted: false,
      completed: false,
    };
    const exchange: Exchange = { record, response, closed: new AbortController(), dropped: false };
    this.track(exchange);
    this.requests.push(record);
    this.notify();
    try {
      await this.answer(exchange, body !== undefined);
    } catch (error) {
      if (!exchange.closed.signal.aborted) sendError(response, 500, handlerFailure(error));
    }
  }

  private track(exchange: Exchange): void {
    const { record, response } = exchange;
    if (response.destroyed) {
      // The client left while the mock read the body, before there was a listener to notice.
      record.closedAt = Date.now();
      record.aborted = true;
      exchange.closed.abort();
      return;
    }
    response.once('finish', () => {
      record.completed = true;
      this.notify();
    });
    response.once('close', () => {
      record.closedAt = Date.now();
      record.aborted = !record.completed && !exchange.dropped && this.closing === undefined;
      exchange.closed.abort();
      this.notify();
    });
  }

  private async answer(exchange: Exchange, validBody: boolean): Promise<void> {
    const { record, response } = exchange;
    if (record.method !== 'POST' || !record.path.startsWith(CHAT_COMPLETIONS_PATH)) {
      sendError(response, 404, openAiError(`Unknown request URL: ${record.method} ${record.path}`));
      return;
    }
    if (!validBody) {
      sendError(response, 400, openAiError('The request body must be JSON with a messages array'));
      return;
    }
    const reply =
      typeof this.respond === 'function'
        ? await this.respond(record.body, record.index)
        : this.respond;
    await sendReply(exchange, reply);
  }

  private describe(index: number): Partial<MockRequestRecord> | undefined {
    const record = this.requests[index];
    if (record === undefined) return undefined;
    const { aborted, completed, closedAt, receivedAt } = record;
    return { aborted, completed, closedAt, receivedAt };
  }

  private waitFor(check: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
    if (check()) return Promise.resolve();
    if (this.closing !== undefined) {
      return Promise.reject(new Error('MockUpstream: already closed'));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        check,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(new Error(`MockUpstream: timed out after ${timeoutMs} ms: ${describe()}`));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  private notify(): void {
    for (const waiter of this.waiters) {
      if (!waiter.check()) continue;
      clearTimeout(waiter.timer);
      this.waiters.delete(waiter);
      waiter.resolve();
    }
  }
}

async function sendReply(exchange: Exchange, reply: MockReply): Promise<void> {
  const { response } = exchange;
  if (reply.hangBeforeHeaders === true) return;
  const status = reply.status ?? 200;
  if (status < 200 || status > 299) {
    const body = reply.errorBody ?? openAiError(`Mock upstream error (HTTP ${status})`);
    sendError(response, status, body, reply.headers);
    return;
  }
  if (reply.format === 'json') {
    sendJsonCompletion(exchange, reply);
    return;
  }
  response.writeHead(status, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    ...reply.headers,
  });
  response.flushHeaders();
  if (reply.hang === true) return;
  await sendStream(exchange, planStream(exchange.record.body, reply), reply);
}

/** Writes the planned events, grouping those sent without a pause so a write may span events. */
async function sendStream(
  exchange: Exchange,
  steps: StreamStep[],
  reply: MockReply,
): Promise<void> {
  const { response, closed } = exchange;
  const eol = reply.lineEnding ?? '\n';
  const writer = new ChunkWriter(response, reply.chunking ?? 'event', closed.signal);
  for (const step of steps) {
    if (step.delayMs > 0) {
      await writer.flush();
      await sleep(step.delayMs, closed.signal);
    }
    if (closed.signal.aborted) return;
    if (step.drop === true) {
      await writer.flush();
      exchange.dropped = true;
      response.socket?.destroy();
      return;
    }
    writer.add(formatEvent(step.payload ?? '', eol));
  }
  await writer.flush();
  if (!closed.signal.aborted) response.end();
}

/** Cuts bytes into writes as a {@link MockChunking} specifies and writes them one event-loop turn apart. */
class ChunkWriter {
  private pending: Buffer[] = [];
  private readonly random: (() => number) | undefined;

  constructor(
    private readonly response: ServerResponse,
    private readonly chunking: MockChunking,
    private readonly closed: AbortSignal,
  ) {
    this.random = typeof chunking === 'object' ? createRandom(chunking.randomSeed) : undefined;
  }

  add(text: string): void {
    this.pending.push(Buffer.from(text, 'utf8'));
  }

  async flush(): Promise<void> {
    const bytes = Buffer.concat(this.pending);
    const events = this.pending;
    this.pending = [];
    if (this.chunking === 'event') {
      for (const event of events) await this.write(event);
      return;
    }
    for (let offset = 0; offset < bytes.length;) {
      const size = this.nextSize();
      await this.write(bytes.subarray(offset, offset + size));
      offset += size;
    }
  }

  private nextSize(): number {
    if (this.chunking === 'bytes-1' || this.random === undefined) return 1;
    const max = typeof this.chunking === 'object' ? Math.max(1, this.chunking.maxChunk) : 1;
    return 1 + Math.floor(this.random() * max);
  }

  private async write(bytes: Buffer): Promise<void> {
    if (this.closed.aborted) return;
    await new Promise<void>((resolve) => this.response.write(bytes, () => resolve()));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** Lays out the events of a streamed answer in OpenAI's order. */
function planStream(body: MockRequestBody, reply: MockReply): StreamStep[] {
  if (reply.rawEvents !== undefined) {
    const steps: StreamStep[] = reply.rawEvents.map((payload) => ({ delayMs: 0, payload }));
    if (reply.done === true) steps.push({ delayMs: 0, payload: '[DONE]' });
    return steps;
  }
  const chunk = createChunkFactory(body);
  const tokens = reply.tokens ?? echoTokens(lastUserText(body));
  const steps: StreamStep[] = [
    { delayMs: 0, payload: chunk({ role: 'assistant', content: '', refusal: null }, null) },
  ];
  const errorAt = reply.errorAfterTokens?.afterIndex;
  const dropAt =
    reply.dropAfterTokens === undefined
      ? undefined
      : Math.min(reply.dropAfterTokens, tokens.length);
  for (let index = 0; index <= tokens.length; index += 1) {
    if (index === dropAt) return [...steps, { delayMs: 0, drop: true }];
    if (
      index === errorAt ||
      (index === tokens.length && errorAt !== undefined && errorAt > index)
    ) {
      const error = JSON.stringify({
        error: { type: 'server_error', code: null, ...reply.errorAfterTokens?.error },
      });
      steps.push({ delayMs: 0, payload: error });
      if (reply.done !== false) steps.push({ delayMs: 0, payload: '[DONE]' });
      return steps;
    }
    if (index === tokens.length) break;
    const delayMs =
      index === 0
        ? (reply.firstTokenDelayMs ?? reply.tokenDelayMs ?? 0)
        : (reply.tokenDelayMs ?? 0);
    steps.push({ delayMs, payload: chunk({ content: tokens[index] }, null) });
  }
  if (reply.finishReason !== null)
    steps.push({ delayMs: 0, payload: chunk({}, reply.finishReason ?? 'stop') });
  const usage = chooseUsage(body, reply, tokens.length);
  if (usage !== undefined) steps.push({ delayMs: 0, payload: chunk(undefined, null, usage) });
  if (reply.done !== false) steps.push({ delayMs: 0, payload: '[DONE]' });
  return steps;
}

/**
 * Returns a function that makes `chat.completion.chunk` payloads for one response. With no delta it
 * makes the usage chunk, whose `choices` is empty.
 */
function createChunkFactory(body: MockRequestBody) {
  const base = {
    id: `chatcmpl-mock${Math.random().toString(36).slice(2, 12)}`,
    object: 'chat.completion.chunk',
    created: Math.floor(Date.now() / 1000),
    model: body.model,
    system_fingerprint: 'fp_mock',
  };
  // OpenAI adds `usage: null` to every chunk but the last when the request asked for usage.
  const usageField = body.stream_options?.include_usage === true ? { usage: null } : {};
  return (
    delta: Record<string, unknown> | undefined,
    finishReason: string | null,
    usage?: MockUsage,
  ): string => {
    if (delta === undefined) return JSON.stringify({ ...base, choices: [], usage });
    const choice = { index: 0, delta, logprobs: null, finish_reason: finishReason };
    return JSON.stringify({ ...base, choices: [choice], ...usageField });
  };
}

function chooseUsage(
  body: MockRequestBody,
  reply: MockReply,
  completionTokens: number,
): MockUsage | undefined {
  if (reply.usage === null) return undefined;
  if (reply.usage !== undefined) return reply.usage;
  if (body.stream_options?.include_usage !== true) return undefined;
  const promptTokens = body.messages.reduce((sum, message) => sum + countWords(textOf(message)), 0);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}

function sendJsonCompletion(exchange: Exchange, reply: MockReply): void {
  const { body } = exchange.record;
  const tokens = reply.tokens ?? echoTokens(lastUserText(body));
  const usage =
    reply.usage === null
      ? undefined
      : (reply.usage ??
        chooseUsage({ ...body, stream_options: { include_usage: true } }, reply, tokens.length));
  const completion = {
    id: `chatcmpl-mock${Math.random().toString(36).slice(2, 12)}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: body.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: tokens.join(''), refusal: null },
        logprobs: null,
        finish_reason: reply.finishReason === undefined ? 'stop' : reply.finishReason,
      },
    ],
    usage,
  };
  exchange.response.writeHead(200, { 'content-type': 'application/json', ...reply.headers });
  exchange.response.end(JSON.stringify(completion));
}

function sendError(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers?: Record<string, string>,
): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const type = typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json';
  response.writeHead(status, { 'content-type': type, ...headers });
  response.end(text);
}

function openAiError(message: string): unknown {
  return { error: { message, type: 'mock_error', param: null, code: null } };
}

function handlerFailure(error: unknown): unknown {
  const message = error instanceof Error ? error.message : String(error);
  return openAiError(`MockUpstream handler threw: ${message}`);
}

/** Formats one SSE event; a payload with line breaks becomes several `data:` lines. */
function formatEvent(payload: string, eol: string): string {
  let event = '';
  for (const line of payload.split(/\r\n|\r|\n/)) event += `data: ${line}${eol}`;
  return event + eol;
}

function readRequestBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const pieces: Buffer[] = [];
    request.on('data', (piece: Buffer) => pieces.push(piece));
    request.on('end', () => resolve(Buffer.concat(pieces).toString('utf8')));
    request.on('error', () => resolve(Buffer.concat(pieces).toString('utf8')));
  });
}

/** Returns the body, or undefined when it is not JSON with a `messages` array. */
function parseRequestBody(text: string): MockRequestBody | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    const messages: unknown = (parsed as { messages?: unknown } | null)?.messages;
    if (Array.isArray(messages)) return parsed as MockRequestBody;
  } catch {
    // Not JSON: the client gets a 400.
  }
  return undefined;
}

function lastUserText(body: MockRequestBody): string {
  const user = body.messages.filter((message) => message.role === 'user').at(-1);
  return user === undefined ? '' : textOf(user);
}

/** Reads a message's text, also from the `[{ type: 'text', text }]` content form. */
function textOf(message: MockChatMessage): string {
  const content: unknown = message.content;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: { text?: unknown }) => (typeof part.text === 'string' ? part.text : ''))
    .join(' ');
}

function countWords(text: string): number {
  return text.split(/\s+/).filter((word) => word !== '').length;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(finish, ms);
    function finish(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', finish);
      resolve();
    }
    signal.addEventListener('abort', finish, { once: true });
  });
}

/** mulberry32: a small seeded generator, so a failing cut pattern can be replayed. */
function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
