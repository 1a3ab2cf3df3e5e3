// The llama.cpp worker process. LlamaProvider forks this script and exchanges the messages declared
// in llama-worker-client.ts with it over IPC.
//
// node-llama-cpp runs here rather than in the server for two reasons. It is ESM-only, while the
// server is CommonJS. And a native abort in llama.cpp, such as a failed GGML_ASSERT on a bad model,
// ends the whole process, so that process must not be the server.
//
// The script is plain JavaScript, so that `node dist/…`, tsx and jest can all fork it unchanged.

import { setTimeout as sleep } from 'node:timers/promises';
import { getLlama, LlamaLogLevel, resolveChatWrapper, SpecialTokensText } from 'node-llama-cpp';

/**
 * Maximum number of byte tokens in one character, since UTF-8 encodes a character in 1 to 4 bytes.
 */
const MAX_UTF8_SEQUENCE_TOKENS = 4;
/**
 * Tokens of context handed to the detokenizer, so that it can tell whether to drop a leading space.
 */
const DETOKENIZER_CONTEXT_TOKENS = 8;

/** The loaded llama, model, context and chat wrapper, once `load` has succeeded. */
let engine;
/** Generations by request id; `aborted` is checked before each further token. */
const generations = new Map();
/** Generations waiting for a free context sequence, in arrival order. */
const waiting = [];
/** The last error lines of llama.cpp's log; node-llama-cpp's own load error gives no reason. */
const recentErrors = [];
const RECENT_ERROR_LINES = 3;

process.on('message', (message) => {
  handleMessage(message).catch((error) =>
    send({ type: 'log', level: 'error', message: describe(error) }),
  );
});
// A worker whose server is gone, even one killed with SIGKILL, has nothing left to do.
process.on('disconnect', () => void close());

async function handleMessage(message) {
  switch (message.type) {
    case 'load':
      return load(message);
    case 'generate':
      return generate(message);
    case 'abort':
      return abort(message.id);
    case 'tokenize':
      return reply(message.id, () => engine.model.tokenize(message.text));
    case 'detokenize':
      return reply(message.id, () => engine.model.detokenize(message.tokens));
    case 'close':
      return close();
  }
}

function send(message) {
  if (process.connected) process.send(message);
}

function reply(id, compute) {
  try {
    send({ type: 'result', id, value: compute() });
  } catch (error) {
    send({ type: 'result', id, error: describe(error) });
  }
}

function describe(error) {
  return error instanceof Error ? error.message : String(error);
}

async function load({ modelPath, contextSize, sequences, threads }) {
  try {
    // With build 'never' a machine without a matching prebuilt binary gets NoBinaryFoundError
    // instead of a compile from source, and nothing is downloaded.
    const llama = await getLlama({
      gpu: false,
      build: 'never',
      skipDownload: true,
      maxThreads: threads,
      logLevel: LlamaLogLevel.warn,
      logger: forwardLog,
    });
    const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    const size = Math.min(contextSize, model.trainContextSize);
    const context = await model.createContext({ sequences, contextSize: size, threads });
    const chatWrapper = resolveChatWrapper(model);
    engine = { llama, model, context, chatWrapper };
    send({
      type: 'loaded',
      contextSize: context.contextSize,
      trainContextSize: model.trainContextSize,
      sequences: context.totalSequences,
      threads: context.idealThreads,
      chatWrapper: chatWrapper.wrapperName,
    });
  } catch (error) {
    const details = recentErrors.length === 0 ? '' : ` (llama.cpp: ${recentErrors.join('; ')})`;
    send({ type: 'load-failed', message: `${describe(error)}${details}` });
  }
}

function forwardLog(level, text) {
  const message = text.trim();
  if (message === '') return;
  if (level === LlamaLogLevel.error) {
    recentErrors.push(message);
    if (recentErrors.length > RECENT_ERROR_LINES) recentErrors.shift();
  }
  send({ type: 'log', level: String(level), message });
}

async function generate(request) {
  const generation = { request, aborted: false, sequence: undefined, generated: 0 };
  generations.set(request.id, generation);
  try {
    generation.sequence = await acquireSequence(generation);
    if (generation.aborted) return;
    await run(generation);
  } catch (error) {
    send({ type: 'failed', id: request.id, message: describe(error) });
  } finally {
    generations.delete(request.id);
    await releaseSequence(generation.sequence);
    if (generation.aborted) {
      send({ type: 'aborted', id: request.id, generatedTokens: generation.generated });
    }
  }
}

function abort(id) {
  const generation = generations.get(id);
  if (!generation) return;
  generation.aborted = true;
  const index = waiting.findIndex((entry) => entry.generation === generation);
  if (index !== -1) waiting.splice(index, 1)[0].resolve(undefined);
}

function acquireSequence(generation) {
  if (engine.context.sequencesLeft > 0) return Promise.resolve(engine.context.getSequence());
  return new Promise((resolve) => waiting.push({ generation, resolve }));
}

/** Disposing a sequence clears its cache and frees its slot, which the next waiting task takes. */
async function releaseSequence(sequence) {
  if (sequence === undefined) return;
  await sequence.dispose();
  const next = waiting.shift();
  if (next) next.resolve(engine.context.getSequence());
}

async function run(generation) {
  const { request, sequence } = generation;
  const { tokens, stopStrings } = renderPrompt(request);
  const available = sequence.contextSize - tokens.length;
  if (available <= 0) {
    throw new Error(
      `The prompt is ${tokens.length} tokens long, but the context has room for ${sequence.contextSize} tokens per task. Shorten the prompt or raise LLM_CONTEXT_SIZE.`,
    );
  }
  send({ type: 'started', id: request.id, promptTokens: tokens.length, stopStrings });
  const limit = Math.min(request.maxTokens ?? Infinity, available);
  const reason = await streamTokens(generation, tokens, limit);
  if (reason !== undefined) send({ type: 'done', id: request.id, reason });
}

/** Formats the conversation with the model's chat template and tokenizes it. */
function renderPrompt({ system, prompt }) {
  const chatHistory = [];
  if (system !== null && system !== undefined) chatHistory.push({ type: 'system', text: system });
  chatHistory.push({ type: 'user', text: prompt }, { type: 'model', response: [] });
  const state = engine.chatWrapper.generateContextState({ chatHistory });
  return {
    tokens: state.contextText.tokenize(engine.model.tokenizer),
    stopStrings: state.stopGenerationTriggers.flatMap(textOfTrigger),
  };
}

/**
 * Returns a stop trigger's text. Triggers that contain a special token such as EOS are dropped:
 * those tokens are end-of-generation tokens, which end the evaluation by themselves.
 */
function textOfTrigger(trigger) {
  let text = '';
  for (const value of trigger.values) {
    if (typeof value === 'string') text += value;
    else if (value instanceof SpecialTokensText) text += value.value;
    else return [];
  }
  return text === '' ? [] : [text];
}

/**
 * Generates up to `limit` tokens and sends each as it comes. Returns the finish reason, or
 * undefined when the generation was aborted. The abort flag is checked before every further
 * evaluation, so at most the token being computed when an abort arrives is generated after it.
 */
async function streamTokens(generation, tokens, limit) {
  const { request, sequence } = generation;
  if (limit <= 0) return 'length';
  const decoder = createDecoder();
  for await (const token of sequence.evaluate(tokens, samplingOptions(request))) {
    generation.generated += 1;
    if (generation.aborted) return undefined;
    send({ type: 'token', id: request.id, text: decoder(token) });
    if (generation.generated >= limit) return 'length';
    if (request.tokenDelayMs > 0) await sleep(request.tokenDelayMs);
    if (generation.aborted) return undefined;
  }
  return generation.aborted ? undefined : 'stop';
}

function samplingOptions({ temperature, topP, seed }) {
  const options = { temperature: temperature ?? 0, yieldEogToken: false };
  if (topP !== undefined && topP !== null) options.topP = topP;
  if (seed !== undefined && seed !== null) options.seed = seed;
  return options;
}

/**
 * Creates a function that turns tokens into text one at a time. A byte token that ends inside a
 * multi-byte character yields '' until the character is complete. A character that is still
 * incomplete when the generation ends is never sent.
 */
function createDecoder() {
  let pending = [];
  let context = [];
  return (token) => {
    pending.push(token);
    const text = engine.model.detokenize(pending, false, context);
    if (text.endsWith('\uFFFD') && pending.length < MAX_UTF8_SEQUENCE_TOKENS) return '';
    context = [...context, ...pending].slice(-DETOKENIZER_CONTEXT_TOKENS);
    pending = [];
    return text;
  };
}

async function close() {
  for (const generation of generations.values()) generation.aborted = true;
  try {
    await engine?.llama.dispose();
  } finally {
    process.exit(0);
  }
}
