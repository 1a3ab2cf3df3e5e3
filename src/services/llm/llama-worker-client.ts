import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../logger';

/** The worker script; `npm run build` copies it next to the compiled provider. */
export const LLAMA_WORKER_SCRIPT = join(__dirname, 'llama-worker.mjs');

/** Options for {@link LlamaWorker.start}. */
export interface LlamaWorkerOptions {
  /** Path of a GGUF file that has been validated. */
  modelPath: string;
  /** Tokens of context per sequence; the worker caps it at the model's training context. */
  contextSize: number;
  /** Number of sequences in the context, which is the number of generations that run at once. */
  sequences: number;
  /** CPU threads llama.cpp uses for one evaluation. */
  threads: number;
  /** Milliseconds the model may take to load before the worker is killed. */
  loadTimeoutMs: number;
  logger: Logger;
}

/** Context settings the worker reports once the model is loaded. */
export interface LlamaWorkerInfo {
  contextSize: number;
  trainContextSize: number;
  sequences: number;
  threads: number;
  /** node-llama-cpp's name for the chat format it derived from the model, for example `ChatML`. */
  chatWrapper: string;
}

/** A generation request as the worker receives it. */
export interface WorkerGenerateRequest {
  system: string | null;
  prompt: string;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  tokenDelayMs: number;
}

/** Events of one generation, from the worker or, for `exit`, from the worker's end. */
export type WorkerGenerationEvent =
  | { type: 'started'; promptTokens: number; stopStrings: string[] }
  | { type: 'token'; text: string }
  | { type: 'done'; reason: 'stop' | 'length' }
  | { type: 'failed'; message: string }
  | { type: 'aborted'; generatedTokens: number }
  | { type: 'exit'; message: string };

type WorkerMessage =
  | ({ type: 'loaded' } & LlamaWorkerInfo)
  | { type: 'load-failed'; message: string }
  | { type: 'log'; level: string; message: string }
  | { type: 'result'; id: number; value?: unknown; error?: string }
  | ({ id: number } & Exclude<WorkerGenerationEvent, { type: 'exit' }>);

/** Error of a worker that cannot load the model, or that exits. The message gives the reason. */
export class LlamaWorkerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LlamaWorkerError';
  }
}

/** Bytes of the worker's stderr kept to explain a crash. */
const STDERR_TAIL_BYTES = 4096;
/** Milliseconds a closing worker gets to free the model before it is killed. */
const CLOSE_GRACE_MS = 5000;

/**
 * One llama.cpp worker process: forks `llama-worker.mjs`, loads the model there, and passes
 * generation requests and their events over IPC. When the process exits, every pending request
 * receives an `exit` event or a rejection, so nothing waits forever.
 */
export class LlamaWorker {
  /**
   * Resolves when the model is loaded; rejects with a {@link LlamaWorkerError} when it cannot be.
   */
  readonly ready: Promise<LlamaWorkerInfo>;

  private readonly child: ChildProcess;
  private readonly logger: Logger;
  private readonly listeners = new Map<number, (event: WorkerGenerationEvent) => void>();
  private readonly calls = new Map<
    number,
    { resolve(value: unknown): void; reject(error: Error): void }
  >();
  private readonly exitListeners: Array<(message: string) => void> = [];
  private nextId = 1;
  private stderrTail = '';
  private exitMessage: string | undefined;
  private closing: Promise<void> | undefined;
  private settleLoad: (result: LlamaWorkerInfo | Error) => void = () => undefined;

  private constructor(options: LlamaWorkerOptions) {
    this.logger = options.logger;
    this.child = forkWorker();
    this.child.stderr?.on('data', (chunk: Buffer) => this.keepStderr(chunk));
    this.child.stdout?.on('data', (chunk: Buffer) =>
      this.logger.debug(
        { workerPid: this.child.pid, output: chunk.toString().trim() },
        'llama.cpp worker output',
      ),
    );
    this.ready = this.waitForLoad(options);
    // The provider reads the failure from `ready` when it needs it; this keeps it from being
    // unhandled.
    this.ready.catch(() => undefined);
    this.child.on('message', (message: WorkerMessage) => this.handleMessage(message));
    this.child.on('exit', (code, signal) => this.handleExit(code, signal));
    // A message sent while the worker is exiting fails here; its exit is reported by `handleExit`.
    this.child.on('error', (error) =>
      this.logger.warn({ err: error, workerPid: this.child.pid }, 'llama.cpp worker IPC failed'),
    );
    this.child.send({
      type: 'load',
      modelPath: options.modelPath,
      contextSize: options.contextSize,
      sequences: options.sequences,
      threads: options.threads,
    });
  }

  /**
   * Forks a worker and starts loading the model.
   * @throws LlamaWorkerError when the worker script is missing (a build without its copy step).
   */
  static start(options: LlamaWorkerOptions): LlamaWorker {
    if (!existsSync(LLAMA_WORKER_SCRIPT)) {
      throw new LlamaWorkerError(
        `The llama.cpp worker script ${LLAMA_WORKER_SCRIPT} is missing; run \`npm run build\`, which copies it next to the compiled code`,
      );
    }
    return new LlamaWorker(options);
  }

  /** Process id of the worker, for logs and for tests that kill it. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Whether the worker process has exited. */
  get exited(): boolean {
    return this.exitMessage !== undefined;
  }

  /** Registers `listener` for the worker's exit; it receives a description of how it ended. */
  onExit(listener: (message: string) => void): void {
    this.exitListeners.push(listener);
  }

  /**
   * Starts a generation; `listener` receives its events until `done`, `failed`, `aborted` or
   * `exit`.
   */
  generate(
    request: WorkerGenerateRequest,
    listener: (event: WorkerGenerationEvent) => void,
  ): number {
    const id = this.nextId++;
    if (this.exitMessage !== undefined) {
      queueMicrotask(() => listener({ type: 'exit', message: this.exitMessage ?? '' }));
      return id;
    }
    this.listeners.set(id, listener);
    this.child.send({ type: 'generate', id, ...request });
    return id;
  }

  /** Asks the worker to stop generation `id` before its next token and free its sequence. */
  abort(id: number): void {
    if (this.exitMessage === undefined && this.child.connected) {
      this.child.send({ type: 'abort', id });
    }
  }

  /** Tokenizes `text` with the model's tokenizer, special tokens as plain text. */
  tokenize(text: string): Promise<number[]> {
    return this.call('tokenize', { text }) as Promise<number[]>;
  }

  /** Turns tokens back into text. */
  detokenize(tokens: readonly number[]): Promise<string> {
    return this.call('detokenize', { tokens }) as Promise<string>;
  }

  /**
   * Asks the worker to free the model and exit, and kills it if it has not exited after 5 seconds.
   * Safe to call more than once.
   */
  close(): Promise<void> {
    this.closing ??= this.stop();
    return this.closing;
  }

  private async stop(): Promise<void> {
    if (this.exitMessage !== undefined) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    if (this.child.connected) this.child.send({ type: 'close' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), CLOSE_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }

  private waitForLoad(options: LlamaWorkerOptions): Promise<LlamaWorkerInfo> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new LlamaWorkerError(
            `Loading the model timed out after ${options.loadTimeoutMs} ms (LLM_LOAD_TIMEOUT_MS), so the worker was stopped`,
          ),
        );
        this.child.kill('SIGKILL');
      }, options.loadTimeoutMs);
      const settle = (result: LlamaWorkerInfo | Error) => {
        clearTimeout(timer);
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      this.settleLoad = settle;
    });
  }

  private handleMessage(message: WorkerMessage): void {
    switch (message.type) {
      case 'loaded':
        this.settleLoad({
          contextSize: message.contextSize,
          trainContextSize: message.trainContextSize,
          sequences: message.sequences,
          threads: message.threads,
          chatWrapper: message.chatWrapper,
        });
        return;
      case 'load-failed':
        this.settleLoad(
          new LlamaWorkerError(`llama.cpp could not load the model: ${message.message}`),
        );
        return;
      case 'log':
        this.logLlamaLine(message.level, message.message);
        return;
      case 'result':
        this.settleCall(message);
        return;
      default:
        this.dispatch(message);
    }
  }

  private dispatch(
    message: { id: number } & Exclude<WorkerGenerationEvent, { type: 'exit' }>,
  ): void {
    const listener = this.listeners.get(message.id);
    if (!listener) return;
    const { id, ...event } = message;
    if (event.type === 'done' || event.type === 'failed' || event.type === 'aborted') {
      this.listeners.delete(id);
    }
    listener(event);
  }

  private logLlamaLine(level: string, text: string): void {
    if (text === '') return;
    const fields = { source: 'llama.cpp', workerPid: this.child.pid };
    if (level === 'error' || level === 'fatal') this.logger.error(fields, text);
    else if (level === 'warn') this.logger.warn(fields, text);
    else this.logger.debug(fields, text);
  }

  private call(type: string, payload: Record<string, unknown>): Promise<unknown> {
    if (this.exitMessage !== undefined) {
      return Promise.reject(new LlamaWorkerError(this.exitMessage));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.child.send({ type, id, ...payload });
    });
  }

  private settleCall(result: { id: number; value?: unknown; error?: string }): void {
    const call = this.calls.get(result.id);
    this.calls.delete(result.id);
    if (result.error === undefined) call?.resolve(result.value);
    else call?.reject(new LlamaWorkerError(result.error));
  }

  private keepStderr(chunk: Buffer): void {
    this.stderrTail = (this.stderrTail + chunk.toString()).slice(-STDERR_TAIL_BYTES);
  }

  private handleExit(code: number | null, signal: NodeJS.Signals | null): void {
    const worker = `The llama.cpp worker process (pid ${this.child.pid}) exited ${signal === null ? `with code ${code}` : `on signal ${signal}`}`;
    const output = this.stderrTail.trim();
    const tail = output === '' ? '' : `; its last output: ${output}`;
    this.exitMessage = `${worker}${tail}`;
    this.settleLoad(new LlamaWorkerError(`${worker} before the model was loaded${tail}`));
    for (const listener of this.listeners.values()) {
      listener({ type: 'exit', message: this.exitMessage });
    }
    this.listeners.clear();
    for (const call of this.calls.values()) call.reject(new LlamaWorkerError(this.exitMessage));
    this.calls.clear();
    for (const listener of this.exitListeners) listener(this.exitMessage);
  }
}

function forkWorker(): ChildProcess {
  return fork(LLAMA_WORKER_SCRIPT, [], {
    // Flags of the parent (a loader such as tsx, or jest's) do not apply to the plain ESM worker.
    execArgv: [],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    serialization: 'json',
    // On a failed assertion ggml would otherwise attach gdb to print a backtrace: seconds of delay,
    // and the assertion's own line, which the crash report quotes, would scroll out of view.
    env: { ...process.env, GGML_NO_BACKTRACE: '1' },
  });
}
