import type { GenerationParams, TokenUsage } from '../task-types';

/** One generation request as a provider receives it. */
export interface GenerateRequest {
  model: string;
  prompt: string;
  system: string | null;
  params: GenerationParams;
  /** Fired on cancel, timeout and shutdown; the provider must stop and release its resources. */
  signal: AbortSignal;
}

/** Why the model stopped, as reported by the provider. */
export type FinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls' | 'other';

/** A piece of a streamed generation. */
export type GenerateChunk =
  | { type: 'token'; text: string }
  | { type: 'usage'; usage: TokenUsage }
  | { type: 'finish'; reason: FinishReason };

/**
 * A source of generations. `generate` yields tokens as they arrive; the stream ends normally only
 * after a `finish` chunk, and any failure is thrown as a {@link ProviderError}.
 */
export interface LlmProvider {
  /** Short name used in logs, metrics and cache keys, for example `openai` or `demo`. */
  readonly name: string;
  /** Model used when a task names none. */
  readonly defaultModel: string;
  generate(request: GenerateRequest): AsyncIterable<GenerateChunk>;
  /** Resolves once the provider can serve, for one that loads a model; the server awaits it at start. */
  ready?(): Promise<unknown>;
  /** Releases connections, models and other resources. Safe to call more than once. */
  close(): Promise<void>;
}

/** Codes a {@link ProviderError} carries; they end up in `Task.error.code`. */
export const ProviderErrorCode = {
  /** The upstream answered with an error status or an error object. */
  UPSTREAM_ERROR: 'PROVIDER_ERROR',
  /** The upstream could not be reached or the connection broke. */
  NETWORK_ERROR: 'PROVIDER_NETWORK_ERROR',
  /** The stream ended without `[DONE]` or a finish reason. */
  INCOMPLETE_STREAM: 'PROVIDER_INCOMPLETE_STREAM',
  /** The upstream sent something that is not the expected wire format. */
  PROTOCOL_ERROR: 'PROVIDER_PROTOCOL_ERROR',
} as const;
export type ProviderErrorCode = (typeof ProviderErrorCode)[keyof typeof ProviderErrorCode];

/** Options for {@link ProviderError}. */
export interface ProviderErrorOptions {
  /** Whether trying the same request again may succeed (HTTP 429 and 5xx, network resets). */
  retryable: boolean;
  /** HTTP status of the upstream response, when there was one. */
  status?: number;
  /** Seconds the upstream asked us to wait (`Retry-After`), when it said. */
  retryAfterSeconds?: number;
  cause?: unknown;
}

/** A failure of the model call, with whether a retry may help. */
export class ProviderError extends Error {
  readonly code: ProviderErrorCode;
  readonly retryable: boolean;
  readonly status?: number;
  readonly retryAfterSeconds?: number;

  constructor(code: ProviderErrorCode, message: string, options: ProviderErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProviderError';
    this.code = code;
    this.retryable = options.retryable;
    this.status = options.status;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}
