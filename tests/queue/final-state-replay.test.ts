import { finalStateReplay } from '../../src/services/task-records';
import type { TaskEvent } from '../../src/services/events';
import type { TaskRecord } from '../../src/services/task-types';

const finished = {
  id: 'task-1',
  status: 'COMPLETED',
  lastSeq: 7,
  finishedAt: new Date(5_000),
} as TaskRecord;

async function collect(afterSeq: number, record: TaskRecord = finished): Promise<TaskEvent[]> {
  const events: TaskEvent[] = [];
  for await (const event of finalStateReplay(record, afterSeq)) events.push(event);
  return events;
}

describe('finalStateReplay', () => {
  it('sends the final state to a client behind', async () => {
    expect(await collect(0)).toEqual([
      expect.objectContaining({ seq: 7, kind: 'COMPLETED', task: finished, at: new Date(5_000) }),
    ]);
    expect(await collect(6)).toHaveLength(1);
  });

  it('sends nothing to a client that has seen the last event', async () => {
    expect(await collect(7)).toEqual([]);
  });

  it('sends the final state to a client ahead', async () => {
    expect(await collect(2_000_000_000)).toEqual([expect.objectContaining({ seq: 7 })]);
  });

  it('sends nothing for a task that has not ended', async () => {
    expect(await collect(0, { ...finished, status: 'RUNNING' })).toEqual([]);
  });
});
