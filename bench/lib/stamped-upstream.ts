import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { now, sleep } from './stats';

/** Options for {@link startStampedUpstream}. */
export interface StampedUpstreamOptions {
  /** Token chunks per response. */
  tokens: number;
  /** Milliseconds between two tokens. */
  tokenDelayMs: number;
  /** Milliseconds before the first token, after the role chunk. */
  firstTokenDelayMs: number;
  /** Awaited before the first token's delay starts, so a scenario can connect its clients first. */
  gate?: () => Promise<void>;
}

/** A running {@link startStampedUpstream} server. */
export interface StampedUpstream {
  /** Base URL to give the openai provider, ending in `/v1`. */
  url: string;
  /** Requests received so far. */
  requests(): number;
  close(): Promise<void>;
}

/**
 * Starts an OpenAI-compatible chat completions server on 127.0.0.1 whose token text is
 * `ts:<ms> `, the wall-clock time (performance.timeOrigin + performance.now()) at which that token
 * is written to the socket. tests/helpers/mock-upstream.ts fixes a reply's tokens when the request
 * arrives, so it cannot stamp a token with the time it is sent. This server writes the stamp at send time.
 */
export async function startStampedUpstream(
  options: StampedUpstreamOptions,
): Promise<StampedUpstream> {
  let requests = 0;
  const server = createServer((request, response) => {
    requests += 1;
    void answer(request, response, options);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests: () => requests,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function answer(
  request: IncomingMessage,
  response: ServerResponse,
  options: StampedUpstreamOptions,
): Promise<void> {
  for await (const piece of request) void piece;
  response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const base = { id: 'chatcmpl-bench', object: 'chat.completion.chunk', model: 'bench' };
  const send = (delta: Record<string, string>, finishReason: string | null) => {
    const choice = { index: 0, delta, finish_reason: finishReason };
    response.write(`data: ${JSON.stringify({ ...base, choices: [choice] })}\n\n`);
  };
  send({ role: 'assistant', content: '' }, null);
  await options.gate?.();
  for (let index = 0; index < options.tokens; index += 1) {
    await sleep(index === 0 ? options.firstTokenDelayMs : options.tokenDelayMs);
    if (response.destroyed) return;
    send({ content: `ts:${now().toFixed(3)} ` }, null);
  }
  send({}, 'stop');
  response.end('data: [DONE]\n\n');
}

/** Reads the send time stamped in a token's text, or undefined when there is none. */
export function readStamp(text: string): number | undefined {
  const match = /ts:(\d+(?:\.\d+)?)/.exec(text);
  return match ? Number(match[1]) : undefined;
}
