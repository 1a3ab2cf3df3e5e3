import { ErrorCode } from '../../src/errors';
import { PriorityQueue, QueueFullError } from '../../src/services/queue/priority-queue';
import type { PriorityQueueOptions, QueueItem } from '../../src/services/queue/priority-queue';

interface Item extends QueueItem {
  readonly label?: string;
}

const AGING_MS = 1000;

/** Creates a queue with a manual clock that starts at 0. */
function createQueue(options: Partial<PriorityQueueOptions> = {}): {
  queue: PriorityQueue<Item>;
  clock: { now: number };
} {
  const clock = { now: 0 };
  const queue = new PriorityQueue<Item>({
    capacity: 100,
    agingMs: AGING_MS,
    now: () => clock.now,
    ...options,
  });
  return { queue, clock };
}

function ids(queue: PriorityQueue<Item>): string[] {
  return queue.values().map((item) => item.id);
}

function drain(queue: PriorityQueue<Item>): string[] {
  const order: string[] = [];
  for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
    order.push(item.id);
  }
  return order;
}

describe('PriorityQueue', () => {
  describe('options', () => {
    it.each([0, -1, 1.5, NaN])('rejects capacity %p', (capacity) => {
      expect(() => createQueue({ capacity })).toThrow(
        `Expected capacity to be an integer of at least 1, got ${String(capacity)}.`,
      );
    });

    it.each([0, -5, NaN, Infinity])('rejects agingMs %p', (agingMs) => {
      expect(() => createQueue({ agingMs })).toThrow(
        `Expected agingMs to be a finite number greater than 0, got ${String(agingMs)}.`,
      );
    });

    it('defaults the clock to Date.now', () => {
      const queue = new PriorityQueue<Item>({ capacity: 10, agingMs: AGING_MS });
      queue.push({ id: 'old', priority: 0 }, { enqueuedAt: Date.now() - 5 * AGING_MS });
      queue.push({ id: 'high', priority: 3 });

      expect(queue.peek()?.id).toBe('old');
    });
  });

  describe('order', () => {
    it('runs higher priority first', () => {
      const { queue } = createQueue();
      queue.push({ id: 'low', priority: 0 });
      queue.push({ id: 'high', priority: 5 });
      queue.push({ id: 'negative', priority: -3 });
      queue.push({ id: 'middle', priority: 2 });

      expect(ids(queue)).toEqual(['high', 'middle', 'low', 'negative']);
      expect(drain(queue)).toEqual(['high', 'middle', 'low', 'negative']);
    });

    it('runs equal priorities in arrival order', () => {
      const { queue } = createQueue();
      for (let i = 0; i < 20; i++) {
        queue.push({ id: `t${i}`, priority: 1 });
      }

      expect(drain(queue)).toEqual(Array.from({ length: 20 }, (_, i) => `t${i}`));
    });

    it('lets a long-waiting low item overtake a newer high one', () => {
      const { queue, clock } = createQueue();
      queue.push({ id: 'low', priority: 0 });
      clock.now = 3 * AGING_MS + 1;
      queue.push({ id: 'high', priority: 3 });

      expect(queue.peek()?.id).toBe('low');
      expect(queue.position('high')).toBe(2);
    });

    it('keeps a newer high item ahead before aging catches up', () => {
      const { queue, clock } = createQueue();
      queue.push({ id: 'low', priority: 0 });
      clock.now = 3 * AGING_MS - 1;
      queue.push({ id: 'high', priority: 3 });

      expect(queue.peek()?.id).toBe('high');
    });

    it('breaks an aged tie in arrival order', () => {
      const { queue, clock } = createQueue();
      queue.push({ id: 'low', priority: 0 });
      clock.now = 2 * AGING_MS;
      queue.push({ id: 'high', priority: 2 });

      expect(ids(queue)).toEqual(['low', 'high']);
    });

    it('orders recovered items by their enqueuedAt', () => {
      const { queue, clock } = createQueue();
      clock.now = 10 * AGING_MS;
      queue.push({ id: 'fresh', priority: 4 });
      queue.push({ id: 'recovered', priority: 0 }, { enqueuedAt: 0 });
      queue.push({ id: 'recent', priority: 0 }, { enqueuedAt: 9 * AGING_MS });

      expect(ids(queue)).toEqual(['recovered', 'fresh', 'recent']);
    });

    it('matches a reference sort under random operations', () => {
      const { queue, clock } = createQueue({ capacity: 10_000 });
      const reference: { id: string; key: number; sequence: number }[] = [];
      let sequence = 0;
      for (let step = 0; step < 3000; step++) {
        clock.now += Math.floor(Math.random() * 300);
        const roll = Math.random();
        if (roll < 0.6 || reference.length === 0) {
          const item = { id: `t${step}`, priority: Math.floor(Math.random() * 7) - 3 };
          queue.push(item);
          reference.push({ id: item.id, key: item.priority * AGING_MS - clock.now, sequence });
          sequence++;
        } else if (roll < 0.8) {
          const victim = reference.splice(Math.floor(Math.random() * reference.length), 1)[0];
          expect(queue.remove(victim.id)?.id).toBe(victim.id);
        } else {
          reference.sort((a, b) => b.key - a.key || a.sequence - b.sequence);
          expect(queue.shift()?.id).toBe(reference.shift()?.id);
        }
      }
      reference.sort((a, b) => b.key - a.key || a.sequence - b.sequence);

      expect(ids(queue)).toEqual(reference.map((entry) => entry.id));
      const positions = reference.map((entry) => queue.position(entry.id));
      expect(positions).toEqual(reference.map((_, index) => index + 1));
      expect(queue.size).toBe(reference.length);
    });

    it('pushes and shifts 100k items in order', () => {
      const count = 100_000;
      const { queue } = createQueue({ capacity: count });
      const started = performance.now();
      for (let i = 0; i < count; i++) {
        queue.push({ id: `t${i}`, priority: i % 10 });
      }
      let previous = Infinity;
      let shifted = 0;
      let outOfOrder = 0;
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
        if (item.priority > previous) {
          outOfOrder++;
        }
        previous = item.priority;
        shifted++;
      }
      const elapsedMs = performance.now() - started;

      expect(shifted).toBe(count);
      expect(outOfOrder).toBe(0);
      // Took about 0.5 s under jest on a 2-core AMD EPYC VM. An O(n) push or shift would take far longer.
      expect(elapsedMs).toBeLessThan(3000);
    });
  });

  describe('capacity', () => {
    it('rejects a push when full with capacity and depth', () => {
      const { queue } = createQueue({ capacity: 2 });
      queue.push({ id: 'a', priority: 0 });
      queue.push({ id: 'b', priority: 0 });

      let caught: unknown;
      try {
        queue.push({ id: 'c', priority: 9 });
      } catch (error) {
        caught = error;
      }

      expect(caught).toBeInstanceOf(QueueFullError);
      const error = caught as QueueFullError;
      expect(error.message).toBe('Queue is full: 2 of 2 slots are taken. Retry later.');
      expect(error.code).toBe(ErrorCode.QUEUE_FULL);
      expect(error.extensions).toEqual({ code: ErrorCode.QUEUE_FULL, capacity: 2, depth: 2 });
      expect(error.capacity).toBe(2);
      expect(error.depth).toBe(2);
      expect(queue.has('c')).toBe(false);
      expect(queue.size).toBe(2);
    });

    it('assertCapacity throws only when a push would fail', () => {
      const { queue } = createQueue({ capacity: 1 });

      expect(() => queue.assertCapacity()).not.toThrow();
      queue.push({ id: 'a', priority: 0 });
      expect(() => queue.assertCapacity()).toThrow(QueueFullError);
      queue.shift();
      expect(() => queue.assertCapacity()).not.toThrow();
    });

    it('accepts a forced push past capacity', () => {
      const { queue } = createQueue({ capacity: 1 });
      queue.push({ id: 'a', priority: 0 });
      queue.push({ id: 'b', priority: 1 }, { force: true });

      expect(queue.size).toBe(2);
      expect(queue.peek()?.id).toBe('b');
      expect(() => queue.push({ id: 'c', priority: 0 })).toThrow(
        'Queue is full: 2 of 1 slots are taken. Retry later.',
      );
    });

    it('keeps items when capacity shrinks below size', () => {
      const { queue } = createQueue({ capacity: 3 });
      queue.push({ id: 'a', priority: 0 });
      queue.push({ id: 'b', priority: 0 });
      queue.push({ id: 'c', priority: 0 });
      queue.capacity = 1;

      expect(queue.capacity).toBe(1);
      expect(queue.size).toBe(3);
      expect(() => queue.push({ id: 'd', priority: 0 })).toThrow(QueueFullError);
      queue.shift();
      queue.shift();
      expect(() => queue.push({ id: 'd', priority: 0 })).toThrow(QueueFullError);
      queue.shift();
      queue.push({ id: 'd', priority: 0 });
      expect(ids(queue)).toEqual(['d']);
    });

    it('validates a new capacity', () => {
      const { queue } = createQueue();

      expect(() => {
        queue.capacity = 0;
      }).toThrow('Expected capacity to be an integer of at least 1, got 0.');
      expect(queue.capacity).toBe(100);
    });
  });

  describe('push validation', () => {
    it('rejects a duplicate id', () => {
      const { queue } = createQueue();
      queue.push({ id: 'a', priority: 0 });

      expect(() => queue.push({ id: 'a', priority: 5 })).toThrow(
        'Item "a" is already in the queue.',
      );
      expect(() => queue.push({ id: 'a', priority: 5 }, { force: true })).toThrow(
        'Item "a" is already in the queue.',
      );
      expect(queue.get('a')?.priority).toBe(0);
      expect(queue.size).toBe(1);
    });

    it.each([1.5, NaN, Infinity, -Infinity])('rejects priority %p', (priority) => {
      const { queue } = createQueue();

      expect(() => queue.push({ id: 'a', priority })).toThrow(
        `Expected the priority of item "a" to be a finite integer, got ${String(priority)}.`,
      );
      expect(queue.size).toBe(0);
    });

    it('rejects a non-finite enqueuedAt', () => {
      const { queue } = createQueue();

      expect(() => queue.push({ id: 'a', priority: 0 }, { enqueuedAt: NaN })).toThrow(
        'Expected enqueuedAt of item "a" to be a finite number, got NaN.',
      );
    });
  });

  describe('lookup and removal', () => {
    it('reports 1-based positions in run order', () => {
      const { queue } = createQueue();
      queue.push({ id: 'a', priority: 0 });
      queue.push({ id: 'b', priority: 2 });
      queue.push({ id: 'c', priority: 1 });

      expect(queue.position('b')).toBe(1);
      expect(queue.position('c')).toBe(2);
      expect(queue.position('a')).toBe(3);
      expect(queue.position('missing')).toBeUndefined();
    });

    it('removes an item and moves the rest up', () => {
      const { queue } = createQueue();
      queue.push({ id: 'a', priority: 3, label: 'first' });
      queue.push({ id: 'b', priority: 2 });
      queue.push({ id: 'c', priority: 1 });

      expect(queue.remove('a')).toEqual({ id: 'a', priority: 3, label: 'first' });
      expect(queue.remove('a')).toBeUndefined();
      expect(queue.has('a')).toBe(false);
      expect(queue.get('a')).toBeUndefined();
      expect(queue.position('b')).toBe(1);
      expect(queue.position('c')).toBe(2);
      expect(queue.size).toBe(2);
    });

    it('peeks without removing', () => {
      const { queue } = createQueue();

      expect(queue.peek()).toBeUndefined();
      expect(queue.shift()).toBeUndefined();
      queue.push({ id: 'a', priority: 0 });
      expect(queue.peek()?.id).toBe('a');
      expect(queue.size).toBe(1);
    });

    it('returns the stored item from get', () => {
      const { queue } = createQueue();
      const item = { id: 'a', priority: 0, label: 'payload' };
      queue.push(item);

      expect(queue.get('a')).toBe(item);
      expect(queue.has('a')).toBe(true);
    });

    it('accepts an id again after it left', () => {
      const { queue } = createQueue();
      queue.push({ id: 'a', priority: 0 });
      queue.shift();
      queue.push({ id: 'a', priority: 1 });

      expect(queue.get('a')?.priority).toBe(1);
    });
  });
});
