/**
 * A small Taskwire client: submits a prompt over graphql-ws and prints the tokens as they arrive.
 *
 *   npm run client -- "Why is the sky blue?"
 *   TASKWIRE_URL=ws://127.0.0.1:4000/graphql npm run client -- --priority 5 "Hello"
 *   TASKWIRE_API_KEY=tw_... npm run client -- "Hello"     # when the server uses AUTH_MODE=apikey
 */
import { createClient } from 'graphql-ws';
import type { Client } from 'graphql-ws';
import WebSocket from 'ws';
import { graphql } from './generated';
import type { TypedDocumentString } from './generated/graphql';

const SubmitTask = graphql(`
  mutation SubmitTask($input: SubmitTaskInput!) {
    submitTask(input: $input) {
      id
      status
      model
    }
  }
`);

const TaskEvents = graphql(`
  subscription TaskEvents($id: ID!, $afterSeq: Int) {
    taskEvents(id: $id, afterSeq: $afterSeq) {
      seq
      kind
      delta
      queuePosition
      task {
        status
        result
        cached
        error {
          code
          message
        }
        usage {
          promptTokens
          completionTokens
        }
      }
    }
  }
`);

interface Options {
  prompt: string;
  priority: number;
  url: string;
}

function parseArgs(argv: string[]): Options {
  let priority = 0;
  let rawPriority: string | undefined;
  const words: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--priority') {
      rawPriority = argv[i + 1];
      priority = Number(rawPriority);
      i += 1;
    } else {
      words.push(argv[i]);
    }
  }
  const prompt = words.join(' ').trim();
  if (!prompt) {
    console.error('Usage: npm run client -- [--priority N] "your prompt"');
    process.exit(2);
  }
  if (!Number.isInteger(priority) || priority < -100 || priority > 100) {
    console.error(
      `--priority expects an integer from -100 to 100, got ${JSON.stringify(rawPriority)}.`,
    );
    process.exit(2);
  }
  return { prompt, priority, url: serverUrl() };
}

/** Returns the graphql-ws endpoint: TASKWIRE_URL, or the local server on PORT (4000 by default). */
function serverUrl(): string {
  return process.env.TASKWIRE_URL ?? `ws://127.0.0.1:${process.env.PORT ?? '4000'}/graphql`;
}

/** Runs one typed operation over graphql-ws and yields its results. */
async function* run<TResult, TVariables>(
  client: Client,
  document: TypedDocumentString<TResult, TVariables>,
  variables: TVariables,
): AsyncGenerator<TResult> {
  const query = document.toString();
  for await (const result of client.iterate({
    query,
    variables: variables as Record<string, unknown>,
  })) {
    if (result.errors?.length) {
      const [error] = result.errors;
      throw new Error(`${error.extensions?.code ?? 'ERROR'}: ${error.message}`);
    }
    yield result.data as TResult;
  }
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const apiKey = process.env.TASKWIRE_API_KEY;
  const client = createClient({
    url: options.url,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    connectionParams: apiKey ? { authorization: `Bearer ${apiKey}` } : undefined,
  });
  try {
    const input = { prompt: options.prompt, priority: options.priority };
    for await (const { submitTask } of run(client, SubmitTask, { input })) {
      console.error(`task ${submitTask.id} (model ${submitTask.model})`);
      await streamTask(client, submitTask.id);
    }
  } finally {
    await client.dispose();
  }
}

async function streamTask(client: Client, id: string): Promise<void> {
  let printed = false;
  for await (const { taskEvents: event } of run(client, TaskEvents, { id })) {
    if (event.kind === 'QUEUED') console.error(`queued at position ${event.queuePosition ?? '?'}`);
    if (event.kind === 'RETRYING') console.error('\n[retrying: the text restarts]');
    if (event.kind === 'TOKEN' && event.delta) {
      process.stdout.write(event.delta);
      printed = true;
    }
    if (event.kind === 'COMPLETED') {
      // A late subscriber gets only the final state, with the whole text in `result`.
      if (!printed && event.task.result) process.stdout.write(event.task.result);
      process.stdout.write('\n');
    }
    if (event.kind === 'FAILED' || event.kind === 'CANCELLED') {
      console.error(`\n${event.kind}: ${event.task.error?.code} ${event.task.error?.message}`);
      process.exitCode = 1;
    }
  }
}

main().catch((error: unknown) => {
  console.error(`Failed: ${describeError(error)}`);
  process.exit(1);
});

/** One line for an error, including the close event graphql-ws rejects with when a connection fails. */
function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  const event = error as { code?: number; reason?: string; type?: string };
  if (typeof event.code === 'number') {
    return `the WebSocket closed with code ${event.code}${event.reason ? `: ${event.reason}` : ''}. Is the server running at ${serverUrl()}?`;
  }
  if (event.type === 'error') return `could not connect. Is the server running at ${serverUrl()}?`;
  return String(error);
}
