import http from 'node:http';
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Logger } from '../../logger';
import type { TokenUsage } from '../task-types';
import type { FinishReason, GenerateChunk, GenerateRequest, LlmProvider } from './provider';
import { ProviderError, ProviderErrorCode } from './provider';
import { SseLimitError, SseParser } from './sse-parser';

/** Options for {@link OpenAiProvider}. */
export interface OpenAiProviderOptions {
  /**
   * Base URL of an OpenAI-compatible API (OpenAI, Ollama, llama.cpp server, vLLM, …), with or without
   * the trailing `/v1`: `http://127.0.0.1:8080` and `http://127.0.0.1:8080/v1` both post to
   * `/v1/chat/completions`. A path that already names a version (`/v1beta/openai`) is kept as it is.
   */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>`; never logged. @default undefined (no Authorization header) */
  apiKey?: string;
  /** Model used when a task names none. */
  model: string;
  /**
   * Milliseconds to wait for the response headers, and then for each further piece of the body.
   * @default 60000
   */
  requestTimeoutMs?: number;
  /** Receives debug lines about each request; never the API key. @default undefined (no logging) */
  logger?: Logger;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
/** setTimeout fires at once for larger delays. */
const MAX_TIMEOUT_MS = 2_147_483_647;
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const MAX_COMPLETION_BODY_BYTES = 16 * 1024 * 1024;
/** How long the end of a body may lag behind its `[DONE]` before the connection is closed instead. */
const DRAIN_TIMEOUT_MS = 1000;
const FINISH_REASONS: ReadonlyMap<string, FinishReason> = new Map([
  ['stop', 'stop'],
  ['eos', 'stop'],
  ['length', 'length'],
  ['content_filter', 'content_filter'],
  ['tool_calls', 'tool_calls'],
  ['function_call', 'tool_calls'],
]);

type JsonObject = Record<string, unknown>;

/**
 * A provider for any server that speaks OpenAI's chat completions API with streaming. Each generation
 * is one `POST …/chat/completions` with `stream: true`, and the Server-Sent Events of the reply become
 * `token`, `usage` and `finish` chunks. Aborting the request's signal closes the connection at once.
 */
export class OpenAiProvider implements LlmProvider {
  readonly name = 'openai';
  readonly defaultModel: string;
  /** The URL generations are posted to, without credentials or query, for logs. */
  readonly endpoint: string;

  private readonly url: URL;
  private readonly headers: OutgoingHttpHeaders;
  private readonly requestTimeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly agent: http.Agent;
  private closing: Promise<void> | undefined;

  constructor(options: OpenAiProviderOptions) {
    this.url = createEndpointUrl(options.baseUrl);
    this.endpoint = `${this.url.origin}${this.url.pathname}`;
    this.defaultModel = validateModel(options.model);
    this.requestTimeoutMs = validateTimeout(options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
    this.headers = createHeaders(options.apiKey);
    this.logger = options.logger;
    // Keep-alive spares a TCP (and TLS) handshake per task.
    this.agent =
      this.url.protocol === 'https:'
        ? new https.Agent({ keepAlive: true })
        : new http.Agent({ keepAlive: true });
  }

  async *generate(request: GenerateRequest): AsyncGenerator<GenerateChunk, void, undefined> {
    const { signal } = request;
    signal.throwIfAborted();
    if (this.closing !== undefined) {
      throw new Error('OpenAiProvider: generate() called after close()');
    }
    const exchange = new UpstreamExchange(signal, this.requestTimeoutMs);
    const stream = new StreamState();
    const startedAt = performance.now();
    this.logger?.debug({ model: request.model, endpoint: this.endpoint }, 'upstream request');
    try {
      const body = JSON.stringify(createRequestBody(request));
      const response = await exchange.open(() => this.createRequest(body), body);
      const status = response.statusCode ?? 0;
      if (status < 200 || status > 299) throw await createStatusError(response, exchange, request);
      if (isJsonResponse(response)) {
        yield* readCompletion(exchange);
        return;
      }
      const parser = new SseParser();
      for (let bytes = await exchange.read(false); bytes !== undefined;) {
        parser.push(bytes);
        for (let event = parser.read(); event !== undefined; event = parser.read()) {
          if (signal.aborted) throw signal.reason;
          const text = stream.accept(event.data);
          if (text !== undefined) yield { type: 'token', text };
          if (stream.usage !== undefined) yield { type: 'usage', usage: stream.takeUsage() };
          if (stream.done) break;
        }
        if (stream.done) break;
        // Once the model has sent its finish reason, a connection lost before [DONE] loses nothing.
        bytes = await exchange.read(stream.finishReason !== undefined);
      }
      if (!stream.done && stream.finishReason === undefined) throw createIncompleteError(stream);
      this.logFinish(request, stream, startedAt);
      yield { type: 'finish', reason: stream.finishReason ?? 'stop' };
    } catch (error) {
      throw this.describeFailure(error, exchange, signal);
    } finally {
      exchange.dispose(stream.done);
    }
  }

  /** Closes pooled connections; requests still running fail with a network error. */
  close(): Promise<void> {
    if (this.closing === undefined) {
      this.agent.destroy();
      this.closing = Promise.resolve();
    }
    return this.closing;
  }

  /** Same as {@link close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private createRequest(body: string): ClientRequest {
    const headers = { ...this.headers, 'content-length': Buffer.byteLength(body) };
    const send = this.url.protocol === 'https:' ? https.request : http.request;
    return send(this.url, { method: 'POST', agent: this.agent, headers });
  }

  /** Turns whatever ended the exchange into what `generate` throws. */
  private describeFailure(
    error: unknown,
    exchange: UpstreamExchange,
    signal: AbortSignal,
  ): unknown {
    if (signal.aborted) return signal.reason;
    if (error instanceof ProviderError) return error;
    if (exchange.failure !== undefined) return exchange.failure;
    if (error instanceof SseLimitError) {
      const message = `The model server's stream broke a limit: ${error.message}`;
      return new ProviderError(ProviderErrorCode.PROTOCOL_ERROR, message, {
        retryable: false,
        cause: error,
      });
    }
    if (isSystemError(error)) {
      this.logger?.debug({ err: error, endpoint: this.endpoint }, 'upstream request failed');
      return new ProviderError(
        ProviderErrorCode.NETWORK_ERROR,
        `Could not complete the request to the model server: ${error.message}`,
        { retryable: true, cause: error },
      );
    }
    return error;
  }

  private logFinish(request: GenerateRequest, stream: StreamState, startedAt: number): void {
    this.logger?.debug(
      {
        model: request.model,
        tokens: stream.tokens,
        finishReason: stream.finishReason ?? 'stop',
        durationMs: Math.round(performance.now() - startedAt),
      },
      'upstream request finished',
    );
  }
}

/**
 * One HTTP exchange with the upstream: the request, its response, the inactivity timer and the abort
 * listener. `dispose` releases all of them.
 */
class UpstreamExchange {
  /** Set when this side gave up on the upstream (a timeout) and closed the connection. */
  failure: ProviderError | undefined;

  private readonly signal: AbortSignal;
  private readonly timeoutMs: number;
  private request: ClientRequest | undefined;
  private response: IncomingMessage | undefined;
  private chunks: AsyncIterator<Buffer> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The upstream event the timer waits for; it does not run while the consumer is the slow side. */
  private waitingFor: 'response headers' | 'data' | undefined;

  constructor(signal: AbortSignal, timeoutMs: number) {
    this.signal = signal;
    this.timeoutMs = timeoutMs;
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Sends the request and resolves with the response once its headers arrived. */
  open(
    createRequest: () => ClientRequest,
    body: string,
    retryStaleSocket = true,
  ): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const request = createRequest();
      this.request = request;
      this.wait('response headers');
      request.once('response', (response) => {
        this.waitingFor = undefined;
        this.response = response;
        this.chunks = response[Symbol.asyncIterator]();
        resolve(response);
      });
      request.on('error', (error: Error) => {
        // A kept-alive socket the server closed while idle fails at once; Node's docs advise one retry.
        const stale =
          request.reusedSocket &&
          isSystemError(error) &&
          error.code === 'ECONNRESET' &&
          this.response === undefined;
        if (stale && retryStaleSocket && !this.signal.aborted && this.failure === undefined) {
          resolve(this.open(createRequest, body, false));
        } else {
          reject(error);
        }
      });
      request.once('close', () => {
        if (this.response === undefined)
          reject(new Error('The connection closed before a response'));
      });
      request.end(body);
    });
  }

  /**
   * Returns the next piece of the body, or `undefined` at its end. With `endOnError`, a broken
   * connection (but not an abort) also counts as the end.
   */
  async read(endOnError: boolean): Promise<Buffer | undefined> {
    if (this.chunks === undefined) throw new Error('UpstreamExchange: read() before open()');
    this.wait('data');
    try {
      const next = await this.chunks.next();
      return next.done === true ? undefined : next.value;
    } catch (error) {
      if (endOnError && !this.signal.aborted) return undefined;
      throw error;
    } finally {
      this.waitingFor = undefined;
    }
  }

  /** Reads the body as text, up to `limit` bytes; `truncated` is true when there was more. */
  async readText(
    limit: number,
    endOnError: boolean,
  ): Promise<{ text: string; truncated: boolean }> {
    const pieces: Buffer[] = [];
    let size = 0;
    for (let bytes = await this.read(endOnError); bytes !== undefined;) {
      pieces.push(bytes);
      size += bytes.length;
      if (size > limit) {
        return { text: Buffer.concat(pieces).toString('utf8', 0, limit), truncated: true };
      }
      bytes = await this.read(endOnError);
    }
    return { text: Buffer.concat(pieces).toString('utf8'), truncated: false };
  }

  /**
   * Stops the timer and removes the abort listener. A response read to its end returns its socket to
   * the agent for reuse. After `[DONE]` (`drain`), the end of the body is awaited in the background
   * for a moment for the same reason. Any other connection is closed at once.
   */
  dispose(drain: boolean): void {
    clearTimeout(this.timer);
    this.waitingFor = undefined;
    this.signal.removeEventListener('abort', this.onAbort);
    if (this.response?.readableEnded === true) return;
    if (drain && this.chunks !== undefined && this.failure === undefined && !this.signal.aborted) {
      void this.drain(this.chunks);
    } else {
      this.teardown();
    }
  }

  /** Reads and drops the rest of the body, so the kept-alive socket can serve the next request. */
  private async drain(chunks: AsyncIterator<Buffer>): Promise<void> {
    const timer = setTimeout(this.teardown, DRAIN_TIMEOUT_MS).unref();
    try {
      for (let next = await chunks.next(); next.done !== true; next = await chunks.next()) {
        // Whatever follows [DONE] means nothing.
      }
    } catch {
      // The connection broke or the grace period ran out after the reply was complete, so nothing is lost.
    } finally {
      clearTimeout(timer);
    }
  }

  private wait(awaited: 'response headers' | 'data'): void {
    this.waitingFor = awaited;
    if (this.timer === undefined) {
      // Unref'd: a consumer that drops the generator without return() must not keep the process alive.
      this.timer = setTimeout(this.onTimeout, this.timeoutMs).unref();
    } else {
      this.timer.refresh();
    }
  }

  private readonly onAbort = (): void => {
    clearTimeout(this.timer);
    this.teardown();
  };

  private readonly onTimeout = (): void => {
    if (this.waitingFor === undefined) return;
    this.failure = new ProviderError(
      ProviderErrorCode.NETWORK_ERROR,
      `The model server sent no ${this.waitingFor} for ${this.timeoutMs} ms`,
      { retryable: true },
    );
    this.teardown();
  };

  private readonly teardown = (): void => {
    this.response?.destroy();
    this.request?.destroy();
  };
}

/** State of one streamed reply so far. */
class StreamState {
  finishReason: FinishReason | undefined;
  /** `[DONE]` arrived. */
  done = false;
  /** Usage from the last payload, until {@link takeUsage} hands it on. */
  usage: TokenUsage | undefined;
  tokens = 0;

  /** Interprets the data of one event; returns the token text it carries, if any. */
  accept(data: string): string | undefined {
    if (data === '[DONE]') {
      this.done = true;
      return undefined;
    }
    if (data.length === 0) return undefined;
    const payload = parsePayload(data);
    throwIfErrorPayload(payload);
    if (isObject(payload.usage)) this.usage = toUsage(payload.usage);
    const choices = payload.choices;
    // Usage-only chunks have `choices: []`; some servers send `null` or leave it out.
    if (!Array.isArray(choices) || choices.length === 0) return undefined;
    const choice: unknown = choices[0];
    if (!isObject(choice)) return undefined;
    if (typeof choice.finish_reason === 'string') {
      this.finishReason = toFinishReason(choice.finish_reason);
    }
    const content = isObject(choice.delta) ? choice.delta.content : undefined;
    if (typeof content !== 'string' || content.length === 0) return undefined;
    this.tokens += 1;
    return content;
  }

  takeUsage(): TokenUsage {
    const usage = this.usage ?? {};
    this.usage = undefined;
    return usage;
  }
}

/** Reads a complete (non-streamed) chat completion, sent by servers that ignore `stream: true`. */
async function* readCompletion(exchange: UpstreamExchange): AsyncGenerator<GenerateChunk, void> {
  const { text, truncated } = await exchange.readText(MAX_COMPLETION_BODY_BYTES, false);
  if (truncated) {
    throw new ProviderError(
      ProviderErrorCode.PROTOCOL_ERROR,
      `The model server's JSON completion is larger than ${MAX_COMPLETION_BODY_BYTES} bytes`,
      { retryable: false },
    );
  }
  const payload = parsePayload(text);
  throwIfErrorPayload(payload);
  const choice: unknown = Array.isArray(payload.choices) ? payload.choices[0] : undefined;
  if (!isObject(choice)) {
    throw new ProviderError(
      ProviderErrorCode.PROTOCOL_ERROR,
      `The model server's JSON completion has no choices: ${snippet(text)}`,
      { retryable: false },
    );
  }
  const content = isObject(choice.message) ? choice.message.content : undefined;
  if (typeof content === 'string' && content.length > 0) yield { type: 'token', text: content };
  if (isObject(payload.usage)) yield { type: 'usage', usage: toUsage(payload.usage) };
  const reason = typeof choice.finish_reason === 'string' ? choice.finish_reason : 'stop';
  yield { type: 'finish', reason: toFinishReason(reason) };
}

async function createStatusError(
  response: IncomingMessage,
  exchange: UpstreamExchange,
  request: GenerateRequest,
): Promise<ProviderError> {
  const status = response.statusCode ?? 0;
  // The status matters most, so a body cut short by a broken connection still yields an error.
  const { text } = await exchange.readText(MAX_ERROR_BODY_BYTES, true);
  const detail = extractErrorMessage(text) ?? response.statusMessage ?? 'no details given';
  const retryable = status === 408 || status === 409 || status === 429 || status >= 500;
  return new ProviderError(
    ProviderErrorCode.UPSTREAM_ERROR,
    `The model server answered HTTP ${status} for model "${request.model}": ${detail}`,
    { retryable, status, retryAfterSeconds: retryable ? parseRetryAfter(response) : undefined },
  );
}

function createIncompleteError(stream: StreamState): ProviderError {
  return new ProviderError(
    ProviderErrorCode.INCOMPLETE_STREAM,
    `The model server ended the stream after ${stream.tokens} tokens without [DONE] or a finish reason`,
    { retryable: true },
  );
}

function createRequestBody(request: GenerateRequest): JsonObject {
  const { params } = request;
  const messages: JsonObject[] = [];
  if (request.system !== null) messages.push({ role: 'system', content: request.system });
  messages.push({ role: 'user', content: request.prompt });
  const body: JsonObject = {
    model: request.model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
  };
  if (params.temperature !== undefined) body.temperature = params.temperature;
  if (params.topP !== undefined) body.top_p = params.topP;
  if (params.maxTokens !== undefined) body.max_tokens = params.maxTokens;
  if (params.stop !== undefined && params.stop.length > 0) body.stop = params.stop;
  if (params.seed !== undefined) body.seed = params.seed;
  return body;
}

function createHeaders(apiKey: string | undefined): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {
    'content-type': 'application/json',
    accept: 'text/event-stream, application/json',
    'user-agent': 'taskwire',
  };
  if (apiKey === undefined) return headers;
  // The key itself never appears in a message: messages end up in logs.
  if (!/^[!-~]+$/.test(apiKey)) {
    throw new Error(
      `OpenAiProvider: apiKey must be non-empty printable ASCII without spaces, got a value of ${apiKey.length} characters that is not (the value is not shown)`,
    );
  }
  headers.authorization = `Bearer ${apiKey}`;
  return headers;
}

/** Resolves the chat completions URL from a base URL given with or without its `/v1`. */
function createEndpointUrl(baseUrl: string): URL {
  const expected =
    'OpenAiProvider: baseUrl must be an absolute http:// or https:// URL such as http://127.0.0.1:11434/v1';
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch (error) {
    throw new Error(`${expected}, got ${JSON.stringify(baseUrl)}`, { cause: error });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`${expected}, got one with protocol "${url.protocol}"`);
  }
  const path = url.pathname.replace(/\/+$/, '');
  const versioned = path.split('/').some((segment) => /^v\d+/.test(segment));
  url.pathname = `${versioned ? path : `${path}/v1`}/chat/completions`;
  url.hash = '';
  return url;
}

function validateModel(model: string): string {
  if (typeof model !== 'string' || model.trim() === '') {
    throw new Error(
      `OpenAiProvider: model must be a non-empty string, got ${JSON.stringify(model)}`,
    );
  }
  return model;
}

function validateTimeout(timeoutMs: number): number {
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMEOUT_MS) {
    throw new RangeError(
      `OpenAiProvider: requestTimeoutMs must be a number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, got ${timeoutMs}`,
    );
  }
  return timeoutMs;
}

function isJsonResponse(response: IncomingMessage): boolean {
  const type = response.headers['content-type'];
  return type !== undefined && /^application\/([\w.+-]*\+)?json\b/i.test(type.trim());
}

function parsePayload(data: string): JsonObject {
  let payload: unknown;
  try {
    payload = JSON.parse(data);
  } catch (error) {
    throw new ProviderError(
      ProviderErrorCode.PROTOCOL_ERROR,
      `The model server sent data that is not JSON: ${snippet(data)}`,
      { retryable: false, cause: error },
    );
  }
  if (!isObject(payload)) {
    throw new ProviderError(
      ProviderErrorCode.PROTOCOL_ERROR,
      `The model server sent JSON that is not an object: ${snippet(data)}`,
      { retryable: false },
    );
  }
  return payload;
}

/** Throws the error an OpenAI-style (`{error: {...}}`) or vLLM-style (`{object: 'error'}`) payload carries. */
function throwIfErrorPayload(payload: JsonObject): void {
  const hasError = payload.error !== undefined && payload.error !== null;
  if (!hasError && payload.object !== 'error') return;
  const message = findErrorMessage(payload) ?? snippet(JSON.stringify(payload));
  throw new ProviderError(
    ProviderErrorCode.UPSTREAM_ERROR,
    `The model server reported an error: ${message}`,
    { retryable: false },
  );
}

/** Finds the human-readable message in the error shapes OpenAI-compatible servers use. */
function findErrorMessage(payload: JsonObject): string | undefined {
  const { error } = payload;
  if (isObject(error) && typeof error.message === 'string') return error.message;
  if (typeof error === 'string') return error;
  if (typeof payload.message === 'string') return payload.message;
  if (typeof payload.detail === 'string') return payload.detail;
  return undefined;
}

function extractErrorMessage(body: string): string | undefined {
  if (body.trim() === '') return undefined;
  try {
    const payload: unknown = JSON.parse(body);
    if (isObject(payload)) return findErrorMessage(payload) ?? snippet(body);
  } catch {
    // Not JSON: proxies reply with HTML or plain text.
  }
  return snippet(body.trim());
}

/** Reads `retry-after-ms` (Azure) or `Retry-After` as seconds or an HTTP date. */
function parseRetryAfter(response: IncomingMessage): number | undefined {
  const millis = response.headers['retry-after-ms'];
  if (typeof millis === 'string' && /^\d+(\.\d+)?$/.test(millis.trim())) {
    return Number(millis.trim()) / 1000;
  }
  const value = response.headers['retry-after']?.trim();
  if (value === undefined || value === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

function toUsage(raw: JsonObject): TokenUsage {
  const usage: TokenUsage = {};
  if (typeof raw.prompt_tokens === 'number') usage.promptTokens = raw.prompt_tokens;
  if (typeof raw.completion_tokens === 'number') usage.completionTokens = raw.completion_tokens;
  if (typeof raw.total_tokens === 'number') usage.totalTokens = raw.total_tokens;
  else if (usage.promptTokens !== undefined && usage.completionTokens !== undefined) {
    usage.totalTokens = usage.promptTokens + usage.completionTokens;
  }
  return usage;
}

function toFinishReason(reason: string): FinishReason {
  return FINISH_REASONS.get(reason) ?? 'other';
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Node's socket and stream errors carry a string `code` (`ECONNRESET`, `ERR_STREAM_PREMATURE_CLOSE`). */
function isSystemError(error: unknown): error is NodeJS.ErrnoException {
  // Duck-typed: errors from Node's own realm fail `instanceof Error` under jest's VM contexts.
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return typeof code === 'string' && typeof message === 'string';
}

function snippet(text: string): string {
  return text.length <= 300 ? text : `${text.slice(0, 300)}…`;
}
