import { EventEmitter, on } from 'node:events';
import SchemaBuilder from '@pothos/core';
import { createYoga } from 'graphql-yoga';
import { useSharedEventResults } from '../../src/http/shared-event-results';

interface Tick {
  n: number;
}

/**
 * Creates a yoga server whose subscriptions share one emitter, so every subscriber receives the
 * same payload object, and whose `label` resolver counts how often it runs.
 */
function createTestYoga(sharedFields: string[]) {
  const ticks = new EventEmitter();
  const calls = { label: 0 };
  const builder = new SchemaBuilder({});
  const TickRef = builder.objectRef<Tick>('Tick').implement({
    fields: (t) => ({
      label: t.string({
        args: { prefix: t.arg.string({ required: true }) },
        resolve: (tick, args) => {
          calls.label += 1;
          return `${args.prefix}${tick.n}`;
        },
      }),
    }),
  });
  const stream = async function* (count: number) {
    let seen = 0;
    for await (const [tick] of on(ticks, 'tick')) {
      yield tick as Tick;
      seen += 1;
      if (seen === count) return;
    }
  };
  builder.queryType({ fields: (t) => ({ ok: t.boolean({ resolve: () => true }) }) });
  builder.subscriptionType({
    fields: (t) => ({
      shared: t.field({
        type: TickRef,
        args: { count: t.arg.int({ required: true }) },
        subscribe: (_root, args) => stream(args.count),
        resolve: (tick) => tick,
      }),
      alone: t.field({
        type: TickRef,
        args: { count: t.arg.int({ required: true }) },
        subscribe: (_root, args) => stream(args.count),
        resolve: (tick) => tick,
      }),
      broken: t.field({
        type: TickRef,
        subscribe: (): AsyncIterable<Tick> => {
          throw new Error('no stream');
        },
        resolve: (tick) => tick,
      }),
    }),
  });
  const yoga = createYoga({
    schema: builder.toSchema(),
    logging: false,
    plugins: [useSharedEventResults(sharedFields)],
  });
  return { yoga, ticks, calls };
}

/** Opens an SSE subscription through yoga's fetch handler and collects its `next` payloads. */
async function openSse(
  yoga: ReturnType<typeof createTestYoga>['yoga'],
  query: string,
  variables: Record<string, unknown>,
): Promise<{ done: Promise<unknown[]> }> {
  const response = await yoga.fetch('http://127.0.0.1/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query, variables }),
  });
  const reader = response.body?.getReader();
  if (!reader) throw new Error('No response body');
  const done = (async () => {
    const decoder = new TextDecoder();
    let text = '';
    for (;;) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      text += decoder.decode(value, { stream: true });
      if (text.includes('event: complete')) break;
    }
    return text
      .split('\n\n')
      .filter((block) => block.startsWith('event: next'))
      .map((block) => JSON.parse(block.slice(block.indexOf('data: ') + 6)) as unknown);
  })();
  return { done };
}

const SHARED =
  'subscription S($count: Int!, $prefix: String!) { shared(count: $count) { label(prefix: $prefix) } }';
const ALONE =
  'subscription A($count: Int!, $prefix: String!) { alone(count: $count) { label(prefix: $prefix) } }';

/** Waits until `emitter` has `count` listeners of `event`: every subscriber is attached. */
async function listeners(emitter: EventEmitter, count: number): Promise<void> {
  while (emitter.listenerCount('tick') < count)
    await new Promise((resolve) => setImmediate(resolve));
}

describe('useSharedEventResults', () => {
  it('executes once per event and operation', async () => {
    const { yoga, ticks, calls } = createTestYoga(['shared']);
    const first = await openSse(yoga, SHARED, { count: 2, prefix: 'a' });
    const second = await openSse(yoga, SHARED, { count: 2, prefix: 'a' });
    const other = await openSse(yoga, SHARED, { count: 2, prefix: 'b' });
    await listeners(ticks, 3);
    ticks.emit('tick', { n: 1 });
    ticks.emit('tick', { n: 2 });

    const expectedA = [
      { data: { shared: { label: 'a1' } } },
      { data: { shared: { label: 'a2' } } },
    ];
    expect(await first.done).toEqual(expectedA);
    expect(await second.done).toEqual(expectedA);
    expect(await other.done).toEqual([
      { data: { shared: { label: 'b1' } } },
      { data: { shared: { label: 'b2' } } },
    ]);
    // Two events, two distinct operations (the prefix differs): four executions, not six.
    expect(calls.label).toBe(4);
  });

  it('leaves fields it was not given to run per subscriber', async () => {
    const { yoga, ticks, calls } = createTestYoga(['shared']);
    const first = await openSse(yoga, ALONE, { count: 1, prefix: 'a' });
    const second = await openSse(yoga, ALONE, { count: 1, prefix: 'a' });
    await listeners(ticks, 2);
    ticks.emit('tick', { n: 7 });

    const expected = [{ data: { alone: { label: 'a7' } } }];
    expect(await first.done).toEqual(expected);
    expect(await second.done).toEqual(expected);
    expect(calls.label).toBe(2);
  });

  it('reports an error of the subscribe resolver as a result, as graphql-js does', async () => {
    const { yoga } = createTestYoga(['broken']);
    const response = await yoga.fetch('http://127.0.0.1/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: 'subscription { broken { label(prefix: "x") } }' }),
    });
    const text = await response.text();
    expect(text).toContain('"message":"Unexpected error."');
  });
});
