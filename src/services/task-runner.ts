import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../logger';
import { ErrorCode } from '../errors';
import type { FinishReason, LlmProvider } from './llm/provider';
import { ProviderError, ProviderErrorCode } from './llm/provider';
import type { LiveTask, LiveTaskRegistry } from './live-tasks';
import type { Metrics } from './metrics/metrics';
import type { TaskErrorInfo, TokenUsage } from './task-types';
import { TaskStatus } from './task-types';

/** Options for {@link TaskRunner}. */
export interface TaskRunnerOptions {
  provider: LlmProvider;
  tasks: LiveTaskRegistry;
  logger: Logger;
  /** Attempts per task, counting the first. */
  maxAttempts: number;
  /** Milliseconds before the first retry; each further retry doubles it. */
  retryBaseMs: number;
  /** Receives request, token and error figures. */
  metrics?: Metrics;
}

/** Longest wait between two attempts, whatever the upstream's `Retry-After` says. */
const MAX_RETRY_DELAY_MS = 30_000;

/** The outcome of one attempt that did not complete. */
type AttemptFailure = { retry: true; error: TaskErrorInfo; delayMs: number } | { retry: false };

/**
 * Runs one task: streams from the provider into the task's events, retries transient provider
 * errors with exponential backoff, and ends the task COMPLETED or FAILED. Cancel and timeout arrive
 * through the abort signal; the registry has then already decided the end, so the runner only stops.
 */
export class TaskRunner {
  constructor(private readonly options: TaskRunnerOptions) {}

  /** Runs `live` until it ends or `signal` fires. */
  async run(live: LiveTask, signal: AbortSignal): Promise<void> {
    for (;;) {
      if (!this.options.tasks.start(live)) return;
      const failure = await this.attempt(live, signal);
      if (!failure?.retry) return;
      if (!this.options.tasks.retry(live, failure.error)) return;
      this.options.metrics?.llmRetried();
      this.options.logger.warn(
        { taskId: live.record.id, attempt: live.record.attempts, delayMs: failure.delayMs },
        `Retrying after a transient provider error: ${failure.error.message}`,
      );
      try {
        await sleep(failure.delayMs, undefined, { signal });
      } catch {
        return;
      }
    }
  }

  /** Runs one attempt; returns undefined when the task ended, or what to do next. */
  private async attempt(live: LiveTask, signal: AbortSignal): Promise<AttemptFailure | undefined> {
    const { provider, tasks } = this.options;
    const { record } = live;
    let usage: TokenUsage | null = null;
    let finishReason: FinishReason | undefined;
    const metrics = this.options.metrics;
    const requestedAt = performance.now();
    let firstTokenAt: number | undefined;
    metrics?.llmRequest();
    try {
      const stream = provider.generate({
        model: record.model,
        prompt: record.prompt,
        system: record.system,
        params: record.params,
        signal,
      });
      for await (const chunk of stream) {
        if (signal.aborted) return undefined;
        if (chunk.type === 'token') {
          if (firstTokenAt === undefined) {
            firstTokenAt = performance.now();
            metrics?.llmFirstToken((firstTokenAt - requestedAt) / 1000);
          }
          if (!tasks.appendToken(live, chunk.text)) return undefined;
        } else if (chunk.type === 'usage') {
          usage = chunk.usage;
        } else {
          finishReason = chunk.reason;
        }
      }
      if (finishReason === undefined) {
        throw new ProviderError(
          ProviderErrorCode.INCOMPLETE_STREAM,
          `The ${provider.name} provider ended the stream without a finish reason.`,
          { retryable: true },
        );
      }
      const result = live.parts.join('');
      const generationSeconds = (performance.now() - (firstTokenAt ?? requestedAt)) / 1000;
      metrics?.llmCompleted(live.parts.length, generationSeconds, usage);
      tasks.finish(live, { status: TaskStatus.COMPLETED, result, usage, finishReason });
      return undefined;
    } catch (error) {
      if (signal.aborted || live.record.status !== TaskStatus.RUNNING) return undefined;
      metrics?.llmFailed(describeFailure(error).code);
      return this.handleFailure(live, error);
    }
  }

  private handleFailure(live: LiveTask, error: unknown): AttemptFailure {
    const { tasks, logger, maxAttempts } = this.options;
    const info = describeFailure(error);
    const retryable = error instanceof ProviderError && error.retryable;
    if (retryable && live.record.attempts < maxAttempts) {
      return { retry: true, error: info, delayMs: this.retryDelay(live.record.attempts, error) };
    }
    if (!(error instanceof ProviderError)) {
      logger.error({ err: error, taskId: live.record.id }, 'Task failed with an unexpected error');
    } else {
      logger.info({ taskId: live.record.id, code: info.code }, `Task failed: ${info.message}`);
    }
    tasks.finish(live, { status: TaskStatus.FAILED, error: info });
    return { retry: false };
  }

  private retryDelay(attempt: number, error: ProviderError): number {
    const backoff = this.options.retryBaseMs * 2 ** (attempt - 1);
    const jittered = backoff / 2 + Math.random() * (backoff / 2);
    const requested = (error.retryAfterSeconds ?? 0) * 1000;
    return Math.min(MAX_RETRY_DELAY_MS, Math.max(jittered, requested));
  }
}

/** Turns a thrown value into the error a client sees; unexpected errors are masked. */
export function describeFailure(error: unknown): TaskErrorInfo {
  if (error instanceof ProviderError) return { code: error.code, message: error.message };
  return { code: ErrorCode.INTERNAL, message: 'The task failed with an unexpected server error.' };
}
