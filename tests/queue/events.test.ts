import { SubscriptionEndedError, TaskEventBus } from '../../src/services/events';
import type { TaskEvent } from '../../src/services/events';
import type { TaskRecord } from '../../src/services/task-types';
import { TaskEventKind } from '../../src/services/task-types';

const task = { id: 'task-1' } as TaskRecord;

/** Publishes `tokens` TOKEN events and, when `end` is set, COMPLETED. */
function publishRun(bus: TaskEventBus, taskId: string, tokens: number, end = true): void {
  bus.open(taskId);
  for (let index = 0; index < tokens; index += 1) {
    bus.publish(taskId, { kind: TaskEventKind.TOKEN, task, delta: `t${index}` });
  }
  if (end) bus.publish(taskId, { kind: TaskEventKind.COMPLETED, task });
}

async function drain(iterator: AsyncIterableIterator<TaskEvent>): Promise<TaskEvent[]> {
  const events: TaskEvent[] = [];
  for await (const event of iterator) events.push(event);
  return events;
}

describe('TaskEventBus', () => {
  it('replays the buffer after afterSeq, then delivers live events until the end', async () => {
    const bus = new TaskEventBus();
    publishRun(bus, 'a', 3, false);
    const iterator = bus.subscribe('a', 1);
    if (!iterator) throw new Error('expected a topic');
    bus.publish('a', { kind: TaskEventKind.COMPLETED, task });

    const events = await drain(iterator);
    expect(events.map((event) => [event.seq, event.kind, event.delta])).toEqual([
      [2, 'TOKEN', 't1'],
      [3, 'TOKEN', 't2'],
      [4, 'COMPLETED', null],
    ]);
  });

  it('counts open subscriptions and forgets them when they end, however they end', async () => {
    const bus = new TaskEventBus();
    publishRun(bus, 'a', 1, false);
    publishRun(bus, 'b', 1, false);
    bus.subscribe('a');
    const second = bus.subscribe('a');
    const third = bus.subscribe('b');
    expect(bus.subscriberCount).toBe(3);

    await second?.return?.();
    expect(bus.subscriberCount).toBe(2);
    bus.publish('a', { kind: TaskEventKind.COMPLETED, task });
    expect(bus.subscriberCount).toBe(1);
    // A subscriber to a finished task gets the replay and is never counted.
    bus.subscribe('a');
    expect(bus.subscriberCount).toBe(1);
    bus.closeAll(new SubscriptionEndedError('closing'));
    expect(bus.subscriberCount).toBe(0);
    await expect(third?.next()).resolves.toMatchObject({ value: { kind: 'TOKEN' } });
    await expect(third?.next()).rejects.toThrow('closing');
  });

  it('drops the buffers of the oldest finished tasks past maxRetainedEvents', async () => {
    const bus = new TaskEventBus({ maxRetainedEvents: 10 });
    publishRun(bus, 'old', 4); // 5 events
    publishRun(bus, 'middle', 4); // 5 events: 10 retained, at the limit
    expect(bus.has('old')).toBe(true);
    publishRun(bus, 'new', 2); // 3 events: 13, so the oldest goes
    expect(bus.has('old')).toBe(false);
    expect(bus.has('middle')).toBe(true);
    expect(bus.has('new')).toBe(true);

    const replay = bus.subscribe('middle');
    if (!replay) throw new Error('expected a topic');
    expect((await drain(replay)).map((event) => event.seq)).toEqual([1, 2, 3, 4, 5]);
    // A running task's events never count against the limit.
    publishRun(bus, 'running', 20, false);
    expect(bus.has('middle')).toBe(true);
  });

  it('makes the events of a task opened as finished only when someone subscribes', async () => {
    const bus = new TaskEventBus({ maxRetainedEvents: 3 });
    const at = new Date(1_000);
    const build = jest.fn(() => [
      { kind: TaskEventKind.STARTED, task, at },
      { kind: TaskEventKind.TOKEN, task, delta: 'hi', at },
      { kind: TaskEventKind.COMPLETED, task, at },
    ]);
    bus.openFinished('cached', 3, build);
    expect(build).not.toHaveBeenCalled();
    expect(bus.lastSeq('cached')).toBe(3);

    const replay = bus.subscribe('cached', 1);
    if (!replay) throw new Error('expected a topic');
    const events = await drain(replay);
    expect(events.map((event) => [event.seq, event.kind, event.delta, event.at])).toEqual([
      [2, 'TOKEN', 'hi', at],
      [3, 'COMPLETED', null, at],
    ]);
    expect(build).toHaveBeenCalledTimes(1);
    await drain(bus.subscribe('cached') as AsyncIterableIterator<TaskEvent>);
    expect(build).toHaveBeenCalledTimes(1);
    // Its three events count against the limit before they exist.
    publishRun(bus, 'next', 0);
    expect(bus.has('cached')).toBe(false);
  });

  it('drops a finished task after retainFinishedMs', async () => {
    const bus = new TaskEventBus({ retainFinishedMs: 20 });
    publishRun(bus, 'a', 1);
    expect(bus.has('a')).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(bus.has('a')).toBe(false);
  });

  it('ends a subscriber that falls more than maxPendingPerSubscriber events behind', async () => {
    const bus = new TaskEventBus({ maxPendingPerSubscriber: 2 });
    publishRun(bus, 'a', 0, false);
    const iterator = bus.subscribe('a');
    if (!iterator) throw new Error('expected a topic');
    publishRun(bus, 'a', 3, false);
    await expect(drain(iterator)).rejects.toBeInstanceOf(SubscriptionEndedError);
    expect(bus.subscriberCount).toBe(0);
  });
});
