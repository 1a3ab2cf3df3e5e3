import { availableParallelism } from 'node:os';
import { basename } from 'node:path';
import type { Logger } from '../../logger';
import type { TokenUsage } from '../task-types';
import type { GgufModelSummary } from './gguf/gguf-model';
import { readGgufModel } from './gguf/gguf-model';
import type {
  LlamaWorkerInfo,
  WorkerGenerateRequest,
  WorkerGenerationEvent,
} from './llama-worker-client';
import { LlamaWorker } from './llama-worker-client';
import type { FinishReason, GenerateChunk, GenerateRequest, LlmProvider } from './provider';
import { ProviderError, ProviderErrorCode } from './provider';
import { StopSequenceFilter } from './stop-sequence-filter';

/** Options for {@link LlamaProvider}. */
export interface LlamaProviderOptions {
  /** Path of the GGUF model file. */
  modelPath: string;
  /** Name tasks record as their model. @default the file name without `.gguf` */
  modelName?: string;
  /**
   * Tokens of context per task, prompt and reply together; capped at the model's training context.
   * @default 4096
   */
  contextSize?: number;
  /**
   * Generations that run at once, each in its own context sequence; set it to `WORKERS`. @default 1
   */
  sequences?: number;
  /** CPU threads of llama.cpp. @default chooseLlamaThreads(os.availableParallelism()) */
  threads?: number;
  /** Milliseconds the worker may take to load the model before loading fails. @default 120000 */
  loadTimeoutMs?: number;
  /**
   * Milliseconds the worker waits after each token before it generates the next one, for tests and
   * demonstrations that need a slow stream. @default 0
   */
  tokenDelayMs?: number;
  logger: Logger;
}

const DEFAULT_CONTEXT_SIZE = 4096;
const DEFAULT_LOAD_TIMEOUT_MS = 120_000;

/**
 * Picks llama.cpp's CPU thread count: every core but one, and at least one.
 *
 * llama.cpp's threads wait for each other at every step, so one thread that the OS deschedules
 * stalls them all. Keeping a core for the server's event loop, the SQLite writer and other
 * processes avoids that. With node-llama-cpp 3.21.1's CPU build on 2 busy cores, 2 threads made the
 * built-in model 10 to 70 times slower than 1. The count does not grow with the number of
 * sequences, because llama.cpp evaluates all sequences of a context together, in one batch, on the
 * same threads.
 */
export function chooseLlamaThreads(availableCores = availableParallelism()): number {
  return Math.max(1, availableCores - 1);
}

/**
 * Runs GGUF models with llama.cpp through node-llama-cpp, in a worker process, so that a native
 * abort in llama.cpp ends the worker and not the server. The constructor validates the file and
 * starts loading it. Each generation takes a context sequence and formats the prompt with the
 * model's chat template. It then streams the tokens and frees the sequence when it ends, however it
 * ends.
 *
 * When the worker dies during a generation, that generation fails with a non-retryable
 * {@link ProviderError}, and the next request starts a new worker. When the model cannot be loaded,
 * every request fails at once with the load error until the server restarts. The loaded file
 * answers every task, whatever model the task names.
 */
export class LlamaProvider implements LlmProvider {
  readonly name = 'llama';
  readonly defaultModel: string;
  /** Summary of the model file's header. */
  readonly model: GgufModelSummary;

  private readonly options: Required<Omit<LlamaProviderOptions, 'modelName'>>;
  private readonly logger: Logger;
  private worker: LlamaWorker | undefined;
  private loadFailure: ProviderError | undefined;
  private closing: Promise<void> | undefined;

  /**
   * Validates the model file and starts a worker that loads it.
   * @throws GgufError when the file is missing or is not a valid GGUF language model.
   */
  constructor(options: LlamaProviderOptions) {
    this.options = validateOptions(options);
    this.logger = options.logger;
    this.model = readGgufModel(options.modelPath);
    this.defaultModel = options.modelName ?? basename(options.modelPath).replace(/\.gguf$/i, '');
    this.worker = this.startWorker();
  }

  /** Process id of the current worker, if one runs. */
  get workerPid(): number | undefined {
    return this.worker?.pid;
  }

  /**
   * Resolves when the model is loaded and a worker is ready, starting one if the last one died.
   * @throws ProviderError when the model cannot be loaded or the provider is closed.
   */
  async ready(): Promise<LlamaWorkerInfo> {
    const { info } = await this.acquireWorker(undefined);
    return info;
  }

  async *generate(request: GenerateRequest): AsyncGenerator<GenerateChunk, void, undefined> {
    const { signal } = request;
    signal.throwIfAborted();
    const { worker } = await this.acquireWorker(signal);
    const events = new EventQueue<WorkerGenerationEvent | { type: 'abort' }>();
    const id = worker.generate(this.toWorkerRequest(request), (event) => {
      if (event.type === 'aborted') this.logAbort(event.generatedTokens);
      events.push(event);
    });
    let ended = false;
    const onAbort = () => {
      worker.abort(id);
      events.push({ type: 'abort' });
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      yield* this.stream(events, request, () => worker.abort(id));
      ended = true;
    } finally {
      signal.removeEventListener('abort', onAbort);
      // A consumer that stops early or an error on this side must still free the sequence.
      if (!ended) worker.abort(id);
    }
  }

  /** Tokenizes `text` with the model's tokenizer (no BOS token, special tokens as plain text). */
  async tokenize(text: string): Promise<number[]> {
    const { worker } = await this.acquireWorker(undefined);
    return worker.tokenize(text);
  }

  /** Turns tokens back into text with the model's tokenizer. */
  async detokenize(tokens: readonly number[]): Promise<string> {
    const { worker } = await this.acquireWorker(undefined);
    return worker.detokenize(tokens);
  }

  /** Stops the worker, which frees the model. Safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= this.worker?.close() ?? Promise.resolve();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private async *stream(
    events: EventQueue<WorkerGenerationEvent | { type: 'abort' }>,
    request: GenerateRequest,
    stopWorker: () => void,
  ): AsyncGenerator<GenerateChunk, void, undefined> {
    let filter = new StopSequenceFilter(request.params.stop ?? []);
    let promptTokens = 0;
    let completionTokens = 0;
    for (;;) {
      const event = await events.next();
      // Tokens the worker sent before it saw the abort are dropped, so none follow a cancel.
      if (request.signal.aborted) throw failureOf({ type: 'abort' }, request.signal);
      switch (event.type) {
        case 'abort':
        case 'aborted':
        case 'failed':
        case 'exit':
          throw failureOf(event, request.signal);
        case 'started':
          promptTokens = event.promptTokens;
          filter = new StopSequenceFilter([...(request.params.stop ?? []), ...event.stopStrings]);
          break;
        case 'token': {
          completionTokens += 1;
          const { text, stopped } = filter.push(event.text);
          if (text !== '') yield { type: 'token', text };
          if (stopped) {
            stopWorker();
            yield* finish('stop', promptTokens, completionTokens);
            return;
          }
          break;
        }
        case 'done': {
          const rest = filter.flush();
          if (rest !== '') yield { type: 'token', text: rest };
          yield* finish(event.reason, promptTokens, completionTokens);
          return;
        }
      }
    }
  }

  private logAbort(generatedTokens: number): void {
    this.logger.debug({ generatedTokens }, 'llama.cpp stopped a generation and freed its sequence');
  }

  private toWorkerRequest(request: GenerateRequest): WorkerGenerateRequest {
    const { params } = request;
    return {
      system: request.system,
      prompt: request.prompt,
      maxTokens: params.maxTokens,
      temperature: params.temperature,
      topP: params.topP,
      seed: params.seed,
      tokenDelayMs: this.options.tokenDelayMs,
    };
  }

  private startWorker(): LlamaWorker {
    const startedAt = Date.now();
    const worker = LlamaWorker.start({ ...this.options, logger: this.logger });
    let loaded = false;
    worker.ready.then(
      (info) => {
        loaded = true;
        this.logger.info(
          {
            workerPid: worker.pid,
            model: this.defaultModel,
            loadMs: Date.now() - startedAt,
            ...info,
          },
          'llama.cpp worker loaded the model',
        );
      },
      (error: unknown) => {
        this.recordLoadFailure(error);
        this.logger.error(
          { err: error, modelPath: this.options.modelPath },
          'llama.cpp could not load the model; every task fails until the server restarts with a working model',
        );
      },
    );
    worker.onExit((message) => {
      // A worker that dies while loading is a load failure, which `ready` reports; no restart.
      if (loaded) this.handleWorkerExit(worker, message);
    });
    return worker;
  }

  private handleWorkerExit(worker: LlamaWorker, message: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    if (this.closing === undefined) {
      this.logger.error({ workerPid: worker.pid }, `${message}; the next task starts a new worker`);
    }
  }

  private async acquireWorker(
    signal: AbortSignal | undefined,
  ): Promise<{ worker: LlamaWorker; info: LlamaWorkerInfo }> {
    if (this.closing !== undefined) {
      throw new ProviderError(ProviderErrorCode.UPSTREAM_ERROR, 'The llama provider is closed', {
        retryable: false,
      });
    }
    if (this.loadFailure) throw this.loadFailure;
    if (this.worker === undefined) {
      this.logger.warn(
        { modelPath: this.options.modelPath },
        'Starting a new llama.cpp worker after the last one exited',
      );
      this.worker = this.startWorker();
    }
    const worker = this.worker;
    try {
      return { worker, info: await abortable(worker.ready, signal) };
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw this.recordLoadFailure(error);
    }
  }

  /** Keeps the first load failure, which every later request fails with. */
  private recordLoadFailure(error: unknown): ProviderError {
    this.loadFailure ??= new ProviderError(ProviderErrorCode.UPSTREAM_ERROR, describe(error), {
      retryable: false,
      cause: error,
    });
    return this.loadFailure;
  }
}

/** Returns the error a generation ends with after an abort, a worker failure or a worker exit. */
function failureOf(
  event: Extract<
    WorkerGenerationEvent | { type: 'abort' },
    { type: 'abort' | 'aborted' | 'failed' | 'exit' }
  >,
  signal: AbortSignal,
): unknown {
  if (signal.aborted) return signal.reason;
  let message = 'The llama.cpp worker stopped the generation without being asked to';
  if (event.type === 'failed') message = `llama.cpp failed to generate: ${event.message}`;
  if (event.type === 'exit') {
    message = `${event.message}. The generation is lost, and the next task starts a new worker.`;
  }
  return new ProviderError(ProviderErrorCode.UPSTREAM_ERROR, message, { retryable: false });
}

function validateOptions(
  options: LlamaProviderOptions,
): Required<Omit<LlamaProviderOptions, 'modelName'>> {
  const resolved = {
    modelPath: options.modelPath,
    contextSize: options.contextSize ?? DEFAULT_CONTEXT_SIZE,
    sequences: options.sequences ?? 1,
    threads: options.threads ?? chooseLlamaThreads(),
    loadTimeoutMs: options.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS,
    tokenDelayMs: options.tokenDelayMs ?? 0,
    logger: options.logger,
  };
  for (const key of ['contextSize', 'sequences', 'threads', 'loadTimeoutMs'] as const) {
    if (!Number.isInteger(resolved[key]) || resolved[key] < 1) {
      throw new RangeError(
        `LlamaProvider: ${key} must be a positive integer, got ${resolved[key]}`,
      );
    }
  }
  if (!Number.isFinite(resolved.tokenDelayMs) || resolved.tokenDelayMs < 0) {
    throw new RangeError(
      `LlamaProvider: tokenDelayMs must be 0 or more milliseconds, got ${resolved.tokenDelayMs}`,
    );
  }
  return resolved;
}

function* finish(
  reason: FinishReason,
  promptTokens: number,
  completionTokens: number,
): Generator<GenerateChunk> {
  const usage: TokenUsage = {
    promptTokens,
    completionTokens,
    totalTokens: promptTokens + completionTokens,
  };
  yield { type: 'usage', usage };
  yield { type: 'finish', reason };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Waits for `promise`, or rejects with the signal's reason as soon as it fires. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** An unbounded queue whose `next()` waits for the next pushed item. */
class EventQueue<T> {
  private readonly items: T[] = [];
  private waiter: ((item: T) => void) | undefined;

  push(item: T): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) waiter(item);
    else this.items.push(item);
  }

  next(): Promise<T> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise((resolve) => (this.waiter = resolve));
  }
}
