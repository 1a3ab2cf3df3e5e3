// Load generator for the benchmarks, run as a child process (node:child_process fork) so that it
// has its own event loop and the server's figures do not include the client's work. It receives
// one job over IPC, runs it, sends back { type: 'result', ... } and exits. Every loop stops by
// itself after its duration or its operation budget, whichever comes first.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

/** Wall-clock milliseconds with sub-millisecond resolution, comparable between processes. */
const now = () => performance.timeOrigin + performance.now();

process.once('message', (job) => {
  run(job).then(
    (result) => process.send({ type: 'result', ...result }, () => process.exit(0)),
    (error) =>
      process.send({ type: 'error', message: String(error?.stack ?? error) }, () =>
        process.exit(1),
      ),
  );
});

async function run(job) {
  if (job.mode === 'http') return runHttp(job);
  if (job.mode === 'ws-ops') return runWsOps(job);
  if (job.mode === 'fanout') return runFanout(job);
  throw new Error(`Unknown job mode: ${job.mode}`);
}

/**
 * Runs `op` from `concurrency` workers in a closed loop: `warmupMs` unmeasured, then `durationMs`
 * or `maxOps` operations measured, whichever ends first.
 */
async function closedLoop(op, { concurrency, durationMs, maxOps, warmupMs = 0 }) {
  const latencies = [];
  let started = 0;
  let errors = 0;
  let measuring = false;
  let begin = now();
  let deadline = begin + warmupMs + durationMs;
  const warmupEnd = begin + warmupMs;
  const worker = async () => {
    while (now() < deadline && started < maxOps) {
      if (!measuring && now() >= warmupEnd) {
        measuring = true;
        begin = now();
        deadline = begin + durationMs;
      }
      const counted = measuring;
      if (counted) started += 1;
      const t0 = now();
      const ok = await op();
      if (!counted) continue;
      latencies.push(now() - t0);
      if (!ok) errors += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { ops: latencies.length, errors, elapsedMs: now() - begin, latencies };
}

/** Closed loop of HTTP POSTs of `body` over keep-alive connections. */
async function runHttp(job) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: job.concurrency });
  const target = new URL(job.url);
  const payload = Buffer.from(job.body);
  const result = await closedLoop(() => postOnce(agent, target, payload), job);
  agent.destroy();
  return result;
}

function postOnce(agent, target, payload) {
  return new Promise((resolve) => {
    const request = http.request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          'content-length': payload.length,
        },
      },
      (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve(response.statusCode === 200 && !text.includes('"errors"'));
        });
      },
    );
    request.on('error', () => resolve(false));
    request.end(payload);
  });
}

/** Opens a graphql-ws connection (connection_init, then waits for connection_ack). */
function openGraphqlWs(url) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, 'graphql-transport-ws');
    socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init' })));
    socket.once('error', reject);
    socket.on('message', function onAck(data) {
      const message = JSON.parse(data.toString());
      if (message.type !== 'connection_ack') return;
      socket.off('message', onAck);
      resolve(socket);
    });
  });
}

/** Closed loop over one graphql-ws socket: `concurrency` operations in flight at all times. */
async function runWsOps(job) {
  const socket = await openGraphqlWs(job.wsUrl);
  const waiting = new Map();
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString());
    const entry = waiting.get(message.id);
    if (entry === undefined) return;
    if (message.type === 'error' || message.payload?.errors) entry.ok = false;
    if (message.type === 'complete' || message.type === 'error') {
      waiting.delete(message.id);
      entry.resolve(entry.ok);
    }
  });
  const text = (id) => JSON.stringify({ id, type: 'subscribe', payload: { query: job.query } });
  const op = () =>
    new Promise((resolve) => {
      // A random UUID per operation, as the graphql-ws client makes.
      const id = randomUUID();
      waiting.set(id, { resolve, ok: true });
      socket.send(text(id));
    });
  const result = await closedLoop(op, job);
  socket.close();
  return result;
}

/**
 * Opens `count` sockets, subscribes each (graphql-ws, with a random UUID as the operation id, as
 * the graphql-ws client does) or just connects (raw), reports `ready`, then
 * records the delay of every message from the send time stamped in it (`ts:<ms>` in the text)
 * until each socket has seen the end or `timeoutMs` passes.
 */
async function runFanout({ wsUrl, count, protocol, query, variables, timeoutMs, openBatch }) {
  const latencies = [];
  const sockets = [];
  let finished = 0;
  let resolveAll;
  const allDone = new Promise((resolve) => (resolveAll = resolve));
  const onText = (text) => {
    const match = /ts:(\d+(?:\.\d+)?)/.exec(text);
    if (match) latencies.push(now() - Number(match[1]));
  };
  const onEnd = () => {
    finished += 1;
    if (finished === count) resolveAll();
  };
  for (let start = 0; start < count; start += openBatch) {
    const size = Math.min(openBatch, count - start);
    const opened = await Promise.all(
      Array.from({ length: size }, () =>
        protocol === 'raw'
          ? openRaw(wsUrl, onText, onEnd)
          : openSubscriber(wsUrl, randomUUID(), query, variables, onText, onEnd),
      ),
    );
    sockets.push(...opened);
  }
  // Subscriptions are registered on the server once it answered with the first `next` (the
  // current state); give the last batch a moment.
  await new Promise((resolve) => setTimeout(resolve, 500));
  latencies.length = 0;
  process.send({ type: 'ready', sockets: sockets.length });
  const timer = setTimeout(resolveAll, timeoutMs);
  await allDone;
  clearTimeout(timer);
  for (const socket of sockets) socket.terminate();
  return { ops: latencies.length, finished, errors: count - finished, latencies };
}

function openRaw(url, onText, onEnd) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.once('open', () => resolve(socket));
    socket.once('error', reject);
    socket.on('message', (data) => {
      const text = data.toString();
      if (text.includes('"type":"complete"')) onEnd();
      else onText(text);
    });
  });
}

async function openSubscriber(url, id, query, variables, onText, onEnd) {
  const socket = await openGraphqlWs(url);
  socket.on('message', (data) => {
    const text = data.toString();
    if (text.includes('"type":"complete"')) onEnd();
    else onText(text);
  });
  socket.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables } }));
  return socket;
}
