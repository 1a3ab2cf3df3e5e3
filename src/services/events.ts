import type { TaskEventKind, TaskRecord } from './task-types';
import { TaskEventKind as Kind } from './task-types';

/** One step in a task's life, as published on the task's topic. */
export interface TaskEvent {
  /** Per-task sequence number, starting at 1 and rising by one per event. */
  seq: number;
  kind: TaskEventKind;
  /** The task as it was when the event was published (shared by the TOKEN events of one run). */
  task: TaskRecord;
  /** The text of a TOKEN event. */
  delta: string | null;
  /** 1-based place in the queue, on QUEUED events. */
  queuePosition: number | null;
  at: Date;
}

/** What a publisher supplies; the bus adds `seq` and `at`. */
export interface TaskEventInput {
  kind: TaskEventKind;
  task: TaskRecord;
  delta?: string | null;
  queuePosition?: number | null;
  /** When it happened; now when absent. */
  at?: Date;
}

/** Options for {@link TaskEventBus}. */
export interface TaskEventBusOptions {
  /**
   * Milliseconds a finished task's events stay in memory, so a client that reconnects soon after the
   * end still gets an exact replay.
   * @default 30000
   */
  retainFinishedMs?: number;
  /**
   * Events a subscriber may have waiting before it is ended as too slow; protects memory from a
   * client that stops reading.
   * @default 100000
   */
  maxPendingPerSubscriber?: number;
  /**
   * Events of finished tasks kept in memory at most, across all of them. Past it, the oldest
   * finished tasks lose their buffers before `retainFinishedMs`, so a burst of short tasks cannot
   * hold every event it made for the whole retention time. A task that lost its buffer replays its
   * final state only.
   * @default 200000
   */
  maxRetainedEvents?: number;
}

const DEFAULT_RETAIN_FINISHED_MS = 30_000;
const DEFAULT_MAX_PENDING = 100_000;
const DEFAULT_MAX_RETAINED_EVENTS = 200_000;

const TERMINAL_KINDS: ReadonlySet<TaskEventKind> = new Set([
  Kind.COMPLETED,
  Kind.FAILED,
  Kind.CANCELLED,
]);

/** Returns whether an event of `kind` is the last one of its task. */
export function isTerminalEvent(kind: TaskEventKind): boolean {
  return TERMINAL_KINDS.has(kind);
}

/** Thrown into a subscription that fell too far behind or whose bus closed. */
export class SubscriptionEndedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SubscriptionEndedError';
  }
}

/**
 * Per-task topics with a replay buffer. Publishing and subscribing run synchronously in one process,
 * so a subscriber copies the buffer and registers for live events in the same tick: nothing published
 * in between can be lost or delivered twice.
 */
export class TaskEventBus {
  private readonly topics = new Map<string, Topic>();
  private readonly retainFinishedMs: number;
  private readonly maxPending: number;
  private readonly maxRetainedEvents: number;
  /** Open subscriptions across all topics, kept as a count so reading it costs nothing. */
  private openSubscribers = 0;
  /** Finished topics by task id, oldest end first (a Map keeps insertion order). */
  private readonly finishedTopics = new Map<string, Topic>();
  /** Events buffered by the topics in `finishedTopics`. */
  private retainedEvents = 0;

  constructor(options: TaskEventBusOptions = {}) {
    this.retainFinishedMs = options.retainFinishedMs ?? DEFAULT_RETAIN_FINISHED_MS;
    this.maxPending = options.maxPendingPerSubscriber ?? DEFAULT_MAX_PENDING;
    this.maxRetainedEvents = options.maxRetainedEvents ?? DEFAULT_MAX_RETAINED_EVENTS;
  }

  /** Opens the topic of a live task. `lastSeq` continues numbering after a restart. */
  open(taskId: string, lastSeq = 0): void {
    const existing = this.topics.get(taskId);
    if (existing?.finished === false) return;
    if (existing) this.drop(taskId);
    this.topics.set(taskId, new Topic(lastSeq));
  }

  /**
   * Opens the topic of a task that is already over, with `count` events that `build` makes only
   * when someone subscribes: a task served from the cache needs no event objects unless it is
   * watched. The last event must be terminal.
   */
  openFinished(taskId: string, count: number, build: () => TaskEventInput[]): void {
    if (this.topics.has(taskId)) this.drop(taskId);
    const topic = new Topic(0);
    topic.pending = { count, build };
    topic.seq = count;
    this.topics.set(taskId, topic);
    this.finish(taskId, topic);
  }

  /** Returns whether the task has an open or recently finished topic. */
  has(taskId: string): boolean {
    return this.topics.has(taskId);
  }

  /** Returns whether anyone is listening to the task right now. */
  hasSubscribers(taskId: string): boolean {
    return (this.topics.get(taskId)?.subscribers.size ?? 0) > 0;
  }

  /** Sequence number of the task's last event, or undefined without a topic. */
  lastSeq(taskId: string): number | undefined {
    return this.topics.get(taskId)?.seq;
  }

  /**
   * Publishes an event and returns it, or returns undefined when the topic is missing or already
   * ended. A terminal event ends the topic; its buffer is kept for `retainFinishedMs`.
   */
  publish(taskId: string, input: TaskEventInput): TaskEvent | undefined {
    const topic = this.topics.get(taskId);
    if (!topic || topic.finished) return undefined;
    const event = topic.append(input);
    for (const subscriber of topic.subscribers) subscriber.push(event);
    if (isTerminalEvent(input.kind)) this.finish(taskId, topic);
    return event;
  }

  /**
   * Subscribes to a task's events after `afterSeq`: first the buffered ones, then live ones, ending
   * after the terminal event. Returns undefined when the task has no topic. A client whose `afterSeq`
   * is ahead of the topic (the server restarted and numbering began again) gets the whole buffer.
   */
  subscribe(taskId: string, afterSeq = 0): AsyncIterableIterator<TaskEvent> | undefined {
    const topic = this.topics.get(taskId);
    if (!topic) return undefined;
    topic.materialize();
    const from = afterSeq > topic.seq ? 0 : afterSeq;
    const subscriber = new Subscriber(this.maxPending, () => {
      if (topic.subscribers.delete(subscriber)) this.openSubscribers -= 1;
    });
    for (const event of topic.buffer) {
      if (event.seq > from) subscriber.push(event);
    }
    if (!subscriber.ended) {
      topic.subscribers.add(subscriber);
      this.openSubscribers += 1;
    }
    return subscriber;
  }

  /** Ends every subscription with an error and forgets every topic; used at shutdown. */
  closeAll(reason: Error): void {
    for (const [taskId, topic] of this.topics) {
      // Each failing subscriber detaches itself, which keeps the count right.
      for (const subscriber of [...topic.subscribers]) subscriber.fail(reason);
      clearTimeout(topic.dropTimer);
      this.topics.delete(taskId);
    }
    this.finishedTopics.clear();
    this.retainedEvents = 0;
  }

  /** Number of open subscriptions across all tasks. */
  get subscriberCount(): number {
    return this.openSubscribers;
  }

  private finish(taskId: string, topic: Topic): void {
    topic.finished = true;
    this.openSubscribers -= topic.subscribers.size;
    topic.subscribers.clear();
    topic.dropTimer = setTimeout(() => this.drop(taskId), this.retainFinishedMs);
    topic.dropTimer.unref();
    this.finishedTopics.set(taskId, topic);
    this.retainedEvents += topic.size;
    for (const [oldestId] of this.finishedTopics) {
      if (this.retainedEvents <= this.maxRetainedEvents) break;
      this.drop(oldestId);
    }
  }

  private drop(taskId: string): void {
    const topic = this.topics.get(taskId);
    if (topic) clearTimeout(topic.dropTimer);
    this.topics.delete(taskId);
    const finished = this.finishedTopics.get(taskId);
    if (finished) {
      this.finishedTopics.delete(taskId);
      this.retainedEvents -= finished.size;
    }
  }
}

class Topic {
  readonly buffer: TaskEvent[] = [];
  readonly subscribers = new Set<Subscriber>();
  finished = false;
  dropTimer?: NodeJS.Timeout;
  /** Events of a finished task not made yet (see `openFinished`). */
  pending?: { count: number; build: () => TaskEventInput[] };

  constructor(public seq: number) {}

  /** Events the topic holds, made or not. */
  get size(): number {
    return this.pending?.count ?? this.buffer.length;
  }

  /** Makes the events of `pending`, numbered from 1. */
  materialize(): void {
    if (!this.pending) return;
    const { build } = this.pending;
    this.pending = undefined;
    this.seq = 0;
    for (const input of build()) this.append(input);
  }

  append(input: TaskEventInput): TaskEvent {
    this.seq += 1;
    const event: TaskEvent = {
      seq: this.seq,
      kind: input.kind,
      task: input.task,
      delta: input.delta ?? null,
      queuePosition: input.queuePosition ?? null,
      at: input.at ?? new Date(),
    };
    this.buffer.push(event);
    return event;
  }
}

/** An async iterator fed by the bus; ends after a terminal event, on `return()` or on failure. */
class Subscriber implements AsyncIterableIterator<TaskEvent> {
  private readonly pending: TaskEvent[] = [];
  private waiting?: { resolve: (r: IteratorResult<TaskEvent>) => void; reject: (e: Error) => void };
  private error?: Error;
  ended = false;

  constructor(
    private readonly maxPending: number,
    private readonly detach: () => void,
  ) {}

  push(event: TaskEvent): void {
    if (this.ended) return;
    if (isTerminalEvent(event.kind)) this.ended = true;
    if (this.waiting) {
      const { resolve } = this.waiting;
      this.waiting = undefined;
      resolve({ value: event, done: false });
    } else if (this.pending.length >= this.maxPending) {
      this.fail(new SubscriptionEndedError('Subscription ended: the client fell too far behind.'));
    } else {
      this.pending.push(event);
    }
    if (this.ended) this.detach();
  }

  fail(error: Error): void {
    if (this.error) return;
    this.error = error;
    this.ended = true;
    this.detach();
    if (this.waiting) {
      const { reject } = this.waiting;
      this.waiting = undefined;
      reject(error);
    }
  }

  next(): Promise<IteratorResult<TaskEvent>> {
    const event = this.pending.shift();
    if (event) return Promise.resolve({ value: event, done: false });
    if (this.error) return Promise.reject(this.error);
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<TaskEvent>> {
    this.ended = true;
    this.pending.length = 0;
    this.detach();
    if (this.waiting) {
      const { resolve } = this.waiting;
      this.waiting = undefined;
      resolve({ value: undefined, done: true });
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<TaskEvent> {
    return this;
  }
}
