import { ErrorCode, TaskwireError } from '../errors';
import type { TaskEvent } from './events';
import { createTaskId } from './ids';
import type { ValidSubmission } from './task-input';
import type { Caller } from './task-service';
import type { TaskRecord } from './task-types';
import { TaskEventKind, TaskStatus as Status, isTerminal } from './task-types';

/** Builds the QUEUED record of a new task. */
export function newTaskRecord(
  submission: ValidSubmission,
  caller: Caller,
  cacheKey: string | null,
  defaultModel: string,
): TaskRecord {
  return {
    id: createTaskId(),
    userId: caller.userId,
    status: Status.QUEUED,
    priority: submission.priority,
    prompt: submission.prompt,
    system: submission.system,
    model: submission.model ?? defaultModel,
    params: submission.params,
    result: null,
    error: null,
    usage: null,
    cacheKey,
    cached: false,
    coalesced: false,
    attempts: 0,
    idempotencyKey: submission.idempotencyKey,
    lastSeq: 0,
    createdAt: new Date(),
    startedAt: null,
    finishedAt: null,
  };
}

/** Rejects reusing an idempotency key for a different request, as payment APIs do. */
export function assertSameRequest(
  existing: TaskRecord,
  submission: ValidSubmission,
  key: string,
): void {
  const same =
    existing.prompt === submission.prompt &&
    existing.system === submission.system &&
    (submission.model === null || existing.model === submission.model) &&
    JSON.stringify(existing.params) === JSON.stringify(submission.params);
  if (!same) {
    throw new TaskwireError(
      ErrorCode.CONFLICT,
      `Idempotency key ${JSON.stringify(key)} was already used for a different request (task ${existing.id}). Use a new key for a new request.`,
      { extensions: { taskId: existing.id } },
    );
  }
}

/** Returns whether the caller may see the task: its owner, or an admin. */
export function canSee(caller: Caller, record: TaskRecord): boolean {
  return caller.isAdmin || record.userId === caller.userId;
}

/** The NOT_FOUND error for a task id, the same whether the task is missing or someone else's. */
export function notFound(id: string): TaskwireError {
  // A task id is a 36-character UUID: a longer one is quoted in part only.
  const quotedId = id.length > 64 ? `${id.slice(0, 64)}…` : id;
  return new TaskwireError(ErrorCode.NOT_FOUND, `Task ${quotedId} was not found.`, {
    extensions: { id: quotedId },
  });
}

const TERMINAL_EVENT_KIND = {
  [Status.COMPLETED]: TaskEventKind.COMPLETED,
  [Status.FAILED]: TaskEventKind.FAILED,
  [Status.CANCELLED]: TaskEventKind.CANCELLED,
} as const;

/** One event with a finished task's final state, or none when the client has seen it. */
export async function* finalStateReplay(
  record: TaskRecord,
  afterSeq: number,
): AsyncGenerator<TaskEvent> {
  if (!isTerminal(record.status)) return;
  const seq = Math.max(record.lastSeq, 1);
  // A client at the last event has missed nothing. One ahead of it counts from another numbering
  // (a value from before a restart, or made up) and gets the final state, as a live topic does.
  if (afterSeq === seq) return;
  const kind = TERMINAL_EVENT_KIND[record.status as keyof typeof TERMINAL_EVENT_KIND];
  yield {
    seq,
    kind,
    task: record,
    delta: null,
    queuePosition: null,
    at: record.finishedAt ?? new Date(),
  };
}
