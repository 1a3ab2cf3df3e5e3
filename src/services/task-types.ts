/** Lifecycle states of a task. COMPLETED, FAILED and CANCELLED are terminal. */
export const TaskStatus = {
  QUEUED: 'QUEUED',
  RUNNING: 'RUNNING',
  COMPLETED: 'COMPLETED',
  FAILED: 'FAILED',
  CANCELLED: 'CANCELLED',
} as const;
export type TaskStatus = (typeof TaskStatus)[keyof typeof TaskStatus];

/** The statuses after which a task never changes again. */
export const TERMINAL_STATUSES: ReadonlySet<TaskStatus> = new Set([
  TaskStatus.COMPLETED,
  TaskStatus.FAILED,
  TaskStatus.CANCELLED,
]);

/** Returns whether a task in `status` can still change. */
export function isTerminal(status: TaskStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}

/** Kinds of events published on a task's topic. */
export const TaskEventKind = {
  QUEUED: 'QUEUED',
  STARTED: 'STARTED',
  TOKEN: 'TOKEN',
  RETRYING: 'RETRYING',
  COMPLETED: 'COMPLETED',
  FAILED: 'FAILED',
  CANCELLED: 'CANCELLED',
} as const;
export type TaskEventKind = (typeof TaskEventKind)[keyof typeof TaskEventKind];

/** Sampling and length settings passed to the model. Absent fields use the provider's default. */
export interface GenerationParams {
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  stop?: string[];
  seed?: number;
}

/** Token counts reported by the provider. */
export interface TokenUsage {
  promptTokens?: number;
  completionTokens?: number;
  totalTokens?: number;
}

/** A terminal error recorded on a failed or cancelled task. */
export interface TaskErrorInfo {
  code: string;
  message: string;
}

/** The full state of one task, as stored and as returned to clients. */
export interface TaskRecord {
  id: string;
  userId: string;
  status: TaskStatus;
  priority: number;
  prompt: string;
  system: string | null;
  model: string;
  params: GenerationParams;
  result: string | null;
  error: TaskErrorInfo | null;
  usage: TokenUsage | null;
  cacheKey: string | null;
  cached: boolean;
  /** Whether the task shared the generation of an identical task that was already running. */
  coalesced: boolean;
  attempts: number;
  idempotencyKey: string | null;
  /** Sequence number of the last event published for this task. */
  lastSeq: number;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}
