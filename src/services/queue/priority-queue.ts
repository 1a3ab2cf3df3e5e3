import { ErrorCode, TaskwireError } from '../../errors';

/** An entry of a {@link PriorityQueue}. */
export interface QueueItem {
  /** Unique key within one queue. */
  readonly id: string;
  /** An integer. Items with a higher value run earlier. */
  readonly priority: number;
}

/** Options for {@link PriorityQueue}. */
export interface PriorityQueueOptions {
  /** Maximum number of items that a push without `force` accepts. An integer of at least 1. */
  capacity: number;
  /** Milliseconds of waiting that raise an item's effective priority by one. Greater than 0. */
  agingMs: number;
  /**
   * Clock that stamps items pushed without `enqueuedAt`, in milliseconds. Pass the clock the
   * caller's own `enqueuedAt` values come from.
   * @default Date.now
   */
  now?: () => number;
}

/** Options for {@link PriorityQueue.push}. */
export interface PushOptions {
  /**
   * Time the item was first queued, on the queue's `now` clock. A recovered item keeps its original
   * time, so its wait counts toward aging.
   * @default options.now()
   */
  enqueuedAt?: number;
  /** Accept the item even when the queue is full, for crash recovery and re-queueing. @default false */
  force?: boolean;
}

/** Raised by a push into a queue that has no free slot. Safe to show to clients. */
export class QueueFullError extends TaskwireError {
  readonly capacity: number;
  readonly depth: number;

  constructor(capacity: number, depth: number) {
    super(
      ErrorCode.QUEUE_FULL,
      `Queue is full: ${depth} of ${capacity} slots are taken. Retry later.`,
      { extensions: { capacity, depth } },
    );
    this.name = 'QueueFullError';
    this.capacity = capacity;
    this.depth = depth;
  }
}

interface Entry<T> {
  readonly item: T;
  readonly enqueuedAt: number;
  /** Push counter that breaks ties in arrival order. */
  readonly sequence: number;
}

interface TreapNode<T> {
  readonly entry: Entry<T>;
  /** Random heap key that keeps the tree balanced in expectation. */
  readonly weight: number;
  /** Number of nodes in this subtree, for rank queries. */
  size: number;
  left: TreapNode<T> | undefined;
  right: TreapNode<T> | undefined;
}

type Compare<T> = (a: Entry<T>, b: Entry<T>) => number;

function sizeOf<T>(node: TreapNode<T> | undefined): number {
  return node === undefined ? 0 : node.size;
}

function updateSize<T>(node: TreapNode<T>): void {
  node.size = 1 + sizeOf(node.left) + sizeOf(node.right);
}

/**
 * A treap (a binary search tree whose nodes also form a heap on random weights) with subtree sizes.
 * Insert, remove and rank take O(log n) expected time. Recursion depth is O(log n) expected too,
 * which is about 50 levels at a million nodes.
 */
class OrderStatisticTreap<T> {
  private root: TreapNode<T> | undefined;

  constructor(private readonly compare: Compare<T>) {}

  get size(): number {
    return sizeOf(this.root);
  }

  insert(entry: Entry<T>): TreapNode<T> {
    const node: TreapNode<T> = {
      entry,
      weight: Math.random(),
      size: 1,
      left: undefined,
      right: undefined,
    };
    this.root = this.insertNode(this.root, node);
    return node;
  }

  remove(node: TreapNode<T>): void {
    this.root = this.removeNode(this.root, node);
  }

  first(): TreapNode<T> | undefined {
    let node = this.root;
    while (node?.left !== undefined) {
      node = node.left;
    }
    return node;
  }

  /** Returns the 1-based rank of a node that is in the tree. */
  rank(target: TreapNode<T>): number {
    let rank = 0;
    let node = this.root;
    while (node !== undefined && node !== target) {
      if (this.compare(target.entry, node.entry) < 0) {
        node = node.left;
      } else {
        rank += sizeOf(node.left) + 1;
        node = node.right;
      }
    }
    return rank + sizeOf(node?.left) + 1;
  }

  /** Returns every entry in ascending order, without recursion. */
  entries(): Entry<T>[] {
    const result: Entry<T>[] = [];
    const stack: TreapNode<T>[] = [];
    let node = this.root;
    while (node !== undefined || stack.length > 0) {
      while (node !== undefined) {
        stack.push(node);
        node = node.left;
      }
      const next = stack.pop() as TreapNode<T>;
      result.push(next.entry);
      node = next.right;
    }
    return result;
  }

  private insertNode(root: TreapNode<T> | undefined, node: TreapNode<T>): TreapNode<T> {
    if (root === undefined) {
      return node;
    }
    if (node.weight > root.weight) {
      [node.left, node.right] = this.split(root, node.entry);
      updateSize(node);
      return node;
    }
    if (this.compare(node.entry, root.entry) < 0) {
      root.left = this.insertNode(root.left, node);
    } else {
      root.right = this.insertNode(root.right, node);
    }
    updateSize(root);
    return root;
  }

  private removeNode(
    root: TreapNode<T> | undefined,
    target: TreapNode<T>,
  ): TreapNode<T> | undefined {
    if (root === undefined) {
      return undefined;
    }
    if (root === target) {
      return this.merge(root.left, root.right);
    }
    if (this.compare(target.entry, root.entry) < 0) {
      root.left = this.removeNode(root.left, target);
    } else {
      root.right = this.removeNode(root.right, target);
    }
    updateSize(root);
    return root;
  }

  /** Splits a subtree into the nodes ordered before `pivot` and the rest. */
  private split(
    root: TreapNode<T> | undefined,
    pivot: Entry<T>,
  ): [TreapNode<T> | undefined, TreapNode<T> | undefined] {
    if (root === undefined) {
      return [undefined, undefined];
    }
    if (this.compare(root.entry, pivot) < 0) {
      const [before, after] = this.split(root.right, pivot);
      root.right = before;
      updateSize(root);
      return [root, after];
    }
    const [before, after] = this.split(root.left, pivot);
    root.left = after;
    updateSize(root);
    return [before, root];
  }

  /** Joins two subtrees where every node of `left` is ordered before every node of `right`. */
  private merge(
    left: TreapNode<T> | undefined,
    right: TreapNode<T> | undefined,
  ): TreapNode<T> | undefined {
    if (left === undefined) {
      return right;
    }
    if (right === undefined) {
      return left;
    }
    if (left.weight > right.weight) {
      left.right = this.merge(left.right, right);
      updateSize(left);
      return left;
    }
    right.left = this.merge(left, right.left);
    updateSize(right);
    return right;
  }
}

function validateOptions(options: PriorityQueueOptions): void {
  validateCapacity(options.capacity);
  if (!(options.agingMs > 0) || !Number.isFinite(options.agingMs)) {
    throw new RangeError(
      `Expected agingMs to be a finite number greater than 0, got ${String(options.agingMs)}.`,
    );
  }
}

function validateCapacity(capacity: number): void {
  if (!Number.isInteger(capacity) || capacity < 1) {
    throw new RangeError(
      `Expected capacity to be an integer of at least 1, got ${String(capacity)}.`,
    );
  }
}

function validateItem(item: QueueItem, enqueuedAt: number): void {
  if (!Number.isInteger(item.priority)) {
    throw new RangeError(
      `Expected the priority of item "${item.id}" to be a finite integer, got ${String(item.priority)}.`,
    );
  }
  if (!Number.isFinite(enqueuedAt)) {
    throw new RangeError(
      `Expected enqueuedAt of item "${item.id}" to be a finite number, got ${String(enqueuedAt)}.`,
    );
  }
}

/**
 * A bounded priority queue with aging. Higher priority runs first, ties run in arrival order, and
 * every `agingMs` of waiting adds one level of effective priority, so low priority never starves.
 *
 * `push`, `shift`, `remove` and `position` take O(log n) expected time, `values` O(n), and `has`,
 * `get` and `size` O(1).
 */
export class PriorityQueue<T extends QueueItem> {
  private readonly agingMs: number;
  private readonly now: () => number;
  private readonly tree: OrderStatisticTreap<T>;
  private readonly nodes = new Map<string, TreapNode<T>>();
  private maxSize: number;
  private sequence = 0;

  constructor(options: PriorityQueueOptions) {
    validateOptions(options);
    this.maxSize = options.capacity;
    this.agingMs = options.agingMs;
    this.now = options.now ?? Date.now;
    this.tree = new OrderStatisticTreap<T>((a, b) => this.compare(a, b));
  }

  /** Number of queued items. */
  get size(): number {
    return this.nodes.size;
  }

  /** Maximum number of items that a push without `force` accepts. */
  get capacity(): number {
    return this.maxSize;
  }

  /**
   * Sets the capacity. A value below `size` keeps the queued items, and pushes without `force` are
   * rejected until the queue drains below it.
   */
  set capacity(capacity: number) {
    validateCapacity(capacity);
    this.maxSize = capacity;
  }

  /**
   * Adds an item.
   * @throws {QueueFullError} when the queue is at capacity and `force` is not set.
   * @throws {Error} when an item with the same id is queued, or the priority is not an integer.
   */
  push(item: T, options: PushOptions = {}): void {
    const enqueuedAt = options.enqueuedAt ?? this.now();
    validateItem(item, enqueuedAt);
    if (this.nodes.has(item.id)) {
      throw new Error(`Item "${item.id}" is already in the queue.`);
    }
    if (options.force !== true) {
      this.assertCapacity();
    }
    const node = this.tree.insert({ item, enqueuedAt, sequence: this.sequence++ });
    this.nodes.set(item.id, node);
  }

  /**
   * Throws if a push without `force` would be rejected now, so a caller can reject a request before
   * it writes anything.
   * @throws {QueueFullError}
   */
  assertCapacity(): void {
    if (this.nodes.size >= this.maxSize) {
      throw new QueueFullError(this.maxSize, this.nodes.size);
    }
  }

  /** Removes and returns the item that runs next, or `undefined` when the queue is empty. */
  shift(): T | undefined {
    const node = this.tree.first();
    if (node === undefined) {
      return undefined;
    }
    this.delete(node);
    return node.entry.item;
  }

  /** Returns the item that runs next without removing it. */
  peek(): T | undefined {
    return this.tree.first()?.entry.item;
  }

  /** Removes the item with this id and returns it, or returns `undefined` when it is not queued. */
  remove(id: string): T | undefined {
    const node = this.nodes.get(id);
    if (node === undefined) {
      return undefined;
    }
    this.delete(node);
    return node.entry.item;
  }

  /** Returns whether an item with this id is queued. */
  has(id: string): boolean {
    return this.nodes.has(id);
  }

  /** Returns the queued item with this id. */
  get(id: string): T | undefined {
    return this.nodes.get(id)?.entry.item;
  }

  /** Returns the 1-based place of the item in run order (1 runs next), in O(log n) expected time. */
  position(id: string): number | undefined {
    const node = this.nodes.get(id);
    return node === undefined ? undefined : this.tree.rank(node);
  }

  /** Returns every queued item in run order, in O(n) time. */
  values(): T[] {
    return this.tree.entries().map((entry) => entry.item);
  }

  private delete(node: TreapNode<T>): void {
    this.tree.remove(node);
    this.nodes.delete(node.entry.item.id);
  }

  /**
   * Orders entries by effective priority, `priority + (now - enqueuedAt) / agingMs`. Both entries
   * gain the same amount as time passes, so their order never changes while they wait, and the tree
   * can be keyed once at insert. The comparison is `priority - enqueuedAt / agingMs`, multiplied by
   * `agingMs` so that integer inputs compare without rounding while the products stay below 2^53.
   */
  private compare(a: Entry<T>, b: Entry<T>): number {
    const lead = (a.item.priority - b.item.priority) * this.agingMs - (a.enqueuedAt - b.enqueuedAt);
    if (lead !== 0) {
      return lead > 0 ? -1 : 1;
    }
    return a.sequence - b.sequence;
  }
}
