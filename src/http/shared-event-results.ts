import type { Plugin } from 'graphql-yoga';
import type {
  DocumentNode,
  ExecutionArgs,
  ExecutionResult,
  OperationDefinitionNode,
} from 'graphql';
import { Kind, createSourceEventStream, execute, getOperationAST } from 'graphql';

type PromiseOrValue<T> = T | Promise<T>;

/** Results already computed for one event, by operation (see `operationKey`). */
type ResultsByOperation = Map<string, PromiseOrValue<ExecutionResult>>;

/**
 * Executes the selection of a subscription once per event and operation, however many clients
 * subscribed with that operation. Without it, a token streamed to 2,000 subscribers of one task
 * runs the same GraphQL execution 2,000 times.
 *
 * It applies only to operations whose one root field is in `fields`. Those fields' payloads must
 * be shared objects, one object per event handed to every subscriber. Their selection must give
 * every subscriber the same result, so nothing under them may depend on the caller. Taskwire's
 * `taskEvents` qualifies because each subscriber was checked when it subscribed, and a task's
 * fields are the same whoever reads them. The results live as long as their event does.
 */
export function useSharedEventResults(fields: readonly string[]): Plugin {
  const shared = new WeakMap<object, ResultsByOperation>();
  return {
    onSubscribe: ({ args, setSubscribeFn }) => {
      const operation = getOperationAST(args.document, args.operationName);
      if (!operation || !hasOneRootField(operation, fields)) return;
      const key = operationKey(args.document, args.operationName, args.variableValues);
      if (key === undefined) return;
      setSubscribeFn((subscribeArgs) => subscribeShared(subscribeArgs, key, shared));
    },
  };
}

function hasOneRootField(operation: OperationDefinitionNode, fields: readonly string[]): boolean {
  const { selections } = operation.selectionSet;
  if (selections.length !== 1) return false;
  const [selection] = selections;
  return selection.kind === Kind.FIELD && fields.includes(selection.name.value);
}

/** Builds the key of an operation: its document text, operation name and variables. */
function operationKey(
  document: DocumentNode,
  operationName: string | null | undefined,
  variables: ExecutionArgs['variableValues'],
): string | undefined {
  const text = document.loc?.source.body;
  if (text === undefined) return undefined;
  return `${text}\u0000${operationName ?? ''}\u0000${JSON.stringify(variables ?? {})}`;
}

/**
 * Subscribes as graphql-js does (source stream, then one execution per event with the event as
 * the root value), taking the execution of an event from `shared` when another subscriber with
 * the same operation has already run it.
 */
async function subscribeShared(
  args: ExecutionArgs,
  key: string,
  shared: WeakMap<object, ResultsByOperation>,
): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> {
  const source = await createSourceEventStream(args);
  if (!isAsyncIterable(source)) return source;
  return new SharedResultStream(source[Symbol.asyncIterator](), args, key, shared);
}

/** A class rather than an object of closures: one of these lives as long as its subscription. */
class SharedResultStream implements AsyncIterableIterator<ExecutionResult> {
  constructor(
    private readonly source: AsyncIterator<unknown>,
    private readonly args: ExecutionArgs,
    private readonly key: string,
    private readonly shared: WeakMap<object, ResultsByOperation>,
  ) {}

  async next(): Promise<IteratorResult<ExecutionResult>> {
    const step = await this.source.next();
    if (step.done) return { value: undefined, done: true };
    return { value: await this.resultOf(step.value), done: false };
  }

  async return(): Promise<IteratorResult<ExecutionResult>> {
    await this.source.return?.();
    return { value: undefined, done: true };
  }

  async throw(error?: unknown): Promise<IteratorResult<ExecutionResult>> {
    if (this.source.throw) await this.source.throw(error);
    throw error;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ExecutionResult> {
    return this;
  }

  private resultOf(payload: unknown): PromiseOrValue<ExecutionResult> {
    if (typeof payload !== 'object' || payload === null) {
      return execute({ ...this.args, rootValue: payload });
    }
    let results = this.shared.get(payload);
    if (results === undefined) {
      results = new Map();
      this.shared.set(payload, results);
    }
    let result = results.get(this.key);
    if (result === undefined) {
      result = execute({ ...this.args, rootValue: payload });
      results.set(this.key, result);
    }
    return result;
  }
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}
