import { setImmediate as nextTurn } from 'node:timers/promises';
import type { GenerateChunk, GenerateRequest, LlmProvider } from './provider';
import type { FinishReason } from './provider';

/** Options for {@link DemoProvider}. */
export interface DemoProviderOptions {
  /**
   * Milliseconds between two tokens. With 0 the first token waits for one turn of the event loop
   * (`setImmediate`), so the stream starts asynchronously, and the others follow at once: an
   * instant model. The abort signal is checked before every token either way.
   * @default 0
   */
  tokenDelayMs?: number;
}

/** Characters of the prompt quoted in the reply. */
const PROMPT_EXCERPT_LENGTH = 60;
const WORD_PATTERN = /\s*\S+/g;

/**
 * A stand-in for a language model, used when none is configured: it streams a fixed reply that quotes
 * the prompt, one word a token, and honours `maxTokens` (counted in words), stop sequences and the
 * abort signal. The same request always gives the same tokens.
 */
export class DemoProvider implements LlmProvider {
  readonly name = 'demo';
  readonly defaultModel = 'demo';

  private readonly tokenDelayMs: number;

  constructor(options: DemoProviderOptions = {}) {
    const tokenDelayMs = options.tokenDelayMs ?? 0;
    if (!Number.isFinite(tokenDelayMs) || tokenDelayMs < 0) {
      throw new RangeError(
        `DemoProvider: tokenDelayMs must be a number of milliseconds, 0 or more, got ${tokenDelayMs}`,
      );
    }
    this.tokenDelayMs = tokenDelayMs;
  }

  /** Returns the full reply the demo gives to `prompt`, before `maxTokens` and stop sequences. */
  static replyTo(prompt: string): string {
    const words = prompt.trim().split(/\s+/).join(' ');
    const codePoints = Array.from(words);
    const excerpt =
      codePoints.length > PROMPT_EXCERPT_LENGTH
        ? `${codePoints.slice(0, PROMPT_EXCERPT_LENGTH).join('')}…`
        : words;
    return `Demo reply to "${excerpt}": this text comes from the built-in demo provider, not a language model.`;
  }

  async *generate(request: GenerateRequest): AsyncGenerator<GenerateChunk, void, undefined> {
    const { signal } = request;
    signal.throwIfAborted();
    const { tokens, reason } = planReply(request);
    for (let index = 0; index < tokens.length; index += 1) {
      if (index === 0 || this.tokenDelayMs > 0) await pause(this.tokenDelayMs, signal);
      else signal.throwIfAborted();
      yield { type: 'token', text: tokens[index] };
    }
    if (tokens.length === 0) await pause(0, signal);
    signal.throwIfAborted();
    const promptTokens = countWords(request.prompt) + countWords(request.system ?? '');
    const completionTokens = tokens.length;
    yield {
      type: 'usage',
      usage: { promptTokens, completionTokens, totalTokens: promptTokens + completionTokens },
    };
    yield { type: 'finish', reason };
  }

  /** Nothing to release; safe to call any number of times. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * Cuts the reply before the earliest stop sequence (whitespace left before it is dropped), splits it
 * into words with their leading whitespace, and keeps at most `maxTokens` of them.
 */
function planReply(request: GenerateRequest): { tokens: string[]; reason: FinishReason } {
  let text = DemoProvider.replyTo(request.prompt);
  for (const stop of request.params.stop ?? []) {
    const index = stop === '' ? -1 : text.indexOf(stop);
    if (index !== -1) text = text.slice(0, index);
  }
  const tokens = text.match(WORD_PATTERN) ?? [];
  const { maxTokens } = request.params;
  if (maxTokens !== undefined && tokens.length > maxTokens) {
    return { tokens: tokens.slice(0, Math.max(0, maxTokens)), reason: 'length' };
  }
  return { tokens, reason: 'stop' };
}

function countWords(text: string): number {
  return text.match(WORD_PATTERN)?.length ?? 0;
}

/** Waits `ms` (or one event-loop turn for 0); rejects with the signal's reason when it fires. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  // One turn is short enough to check the signal after it instead of listening to it.
  if (ms === 0) return nextTurn().then(() => signal.throwIfAborted());
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const done = (): void => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    const timer = setTimeout(done, ms);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}
