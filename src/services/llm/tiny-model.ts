import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { GgufMetadataValue } from './gguf/gguf-format';
import { GgufValueType } from './gguf/gguf-format';
import type { GgufTensorSpec } from './gguf/gguf-writer';
import { encodeGguf } from './gguf/gguf-writer';

/**
 * The built-in test model: a tiny llama-architecture GGUF whose weights are set by hand, not
 * trained. Its vocabulary is SentencePiece-style with byte fallback: control tokens, the 256 byte
 * tokens `<0x00>`…`<0xFF>`, and one token per printable ASCII character plus a few accented
 * letters. Every other character is tokenized as its UTF-8 bytes.
 *
 * The weights make the model a lookup table: each token of {@link TINY_MODEL_REPLY}, and the
 * newline that ends the chat template's generation prompt, has its own one-hot embedding, and the
 * output row of the token that follows it is a scaled copy of that direction. The attention and
 * feed-forward weights are small and pseudo-random (seeded), so they barely move the residual
 * stream. Greedy decoding after a newline therefore yields the reply token by token and then the
 * end-of-sequence token, whatever the prompt is, with any thread count.
 */

/** File name of the built-in model under the data directory. */
export const TINY_MODEL_FILE_NAME = 'taskwire-tiny.gguf';

/** Text the model generates after a newline under greedy decoding, before it ends the sequence. */
export const TINY_MODEL_REPLY = 'abcdefghijklmnopqrstuvwxyz0123456789é✓';

/** Chat template in ChatML, the format Qwen and many other models use. */
export const TINY_MODEL_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const UNK_ID = 0;
const BOS_ID = 1;
const EOS_ID = 2;
const FIRST_BYTE_ID = 3;
const SPACE_PIECE = '\u2581';
const EXTRA_PIECES = ['é', 'ü', 'ö', 'ä', 'ß'];

/** llama.cpp's token types. */
const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, BYTE: 6 } as const;

const EMBEDDING_LENGTH = 64;
const FEED_FORWARD_LENGTH = 128;
const BLOCK_COUNT = 2;
const HEAD_COUNT = 4;
const CONTEXT_LENGTH = 4096;
/**
 * Scale of the output rows, which puts the right token's logit about 8 above the others. That is
 * far more than the random weights move it, so greedy decoding never misses. Sampling at
 * temperature 2 with top-p 1 still picks other tokens often, which lets tests see that sampling
 * settings apply.
 */
const OUTPUT_SCALE = 1;
/** Half-width of the uniform distribution of the pseudo-random weights. */
const NOISE_AMPLITUDE = 0.02;
const WEIGHT_SEED = 0x7a5c_317e;

interface Vocabulary {
  pieces: string[];
  types: number[];
  idByPiece: Map<string, number>;
}

let vocabulary: Vocabulary | undefined;

function getVocabulary(): Vocabulary {
  if (vocabulary) return vocabulary;
  const pieces = ['<unk>', '<s>', '</s>'];
  const types: number[] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL];
  for (let byte = 0; byte < 256; byte += 1) {
    pieces.push(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TokenType.BYTE);
  }
  const printable = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) =>
    String.fromCharCode(0x21 + i),
  );
  for (const piece of [SPACE_PIECE, ...printable, ...EXTRA_PIECES]) {
    pieces.push(piece);
    types.push(TokenType.NORMAL);
  }
  vocabulary = { pieces, types, idByPiece: new Map(pieces.map((piece, id) => [piece, id])) };
  return vocabulary;
}

/** Number of tokens in the built-in model's vocabulary. */
export function getTinyModelVocabularySize(): number {
  return getVocabulary().pieces.length;
}

/**
 * Tokenizes `text` the way llama.cpp does with the built-in model's vocabulary (no BOS): one token
 * per character that has a piece, with spaces as `▁`, and the UTF-8 bytes of every other character.
 */
export function tokenizeForTinyModel(text: string): number[] {
  const { idByPiece } = getVocabulary();
  const tokens: number[] = [];
  for (const character of text) {
    const id = idByPiece.get(character === ' ' ? SPACE_PIECE : character);
    if (id !== undefined) {
      tokens.push(id);
      continue;
    }
    for (const byte of Buffer.from(character, 'utf8')) tokens.push(FIRST_BYTE_ID + byte);
  }
  return tokens;
}

/** The expected output of greedy decoding after the chat template, cut as the provider cuts it. */
export interface TinyModelPrediction {
  text: string;
  /** Tokens generated, the end-of-sequence token not included. */
  completionTokens: number;
  finishReason: 'stop' | 'length';
}

/**
 * Predicts the built-in model's greedy reply when at most `maxTokens` tokens may be generated. A
 * character whose UTF-8 bytes are cut off by the limit is left out of the text, as the provider
 * does.
 */
export function predictTinyModelReply(maxTokens = Infinity): TinyModelPrediction {
  const tokens = tokenizeForTinyModel(TINY_MODEL_REPLY);
  if (maxTokens >= tokens.length) {
    return { text: TINY_MODEL_REPLY, completionTokens: tokens.length, finishReason: 'stop' };
  }
  const generated = tokens.slice(0, Math.max(0, maxTokens));
  const text = decodeTokens(generated).replace(/\uFFFD+$/, '');
  return { text, completionTokens: generated.length, finishReason: 'length' };
}

function decodeTokens(tokens: readonly number[]): string {
  const { pieces, types } = getVocabulary();
  const bytes = tokens.flatMap((id) => {
    if (types[id] === TokenType.BYTE) return [id - FIRST_BYTE_ID];
    return [...Buffer.from(pieces[id].replace(SPACE_PIECE, ' '), 'utf8')];
  });
  return Buffer.from(bytes).toString('utf8');
}

/** Creates the built-in model's GGUF file in memory; the same bytes every time. */
export function createTinyModel(): Buffer {
  return encodeGguf({ metadata: createMetadata(), tensors: createTensors() });
}

/**
 * Writes the built-in model to `path`, creating its folder, unless the file there already has the
 * same bytes. Writes to a temporary file first, so that a reader never sees half a model.
 * @returns whether the file was written.
 */
export function writeTinyModel(path: string): boolean {
  const model = createTinyModel();
  if (readIfExists(path)?.equals(model)) return false;
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, model);
  renameSync(temporary, path);
  return true;
}

function readIfExists(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function u32(value: number): GgufMetadataValue {
  return { type: GgufValueType.UINT32, value };
}

function f32(value: number): GgufMetadataValue {
  return { type: GgufValueType.FLOAT32, value };
}

function bool(value: boolean): GgufMetadataValue {
  return { type: GgufValueType.BOOL, value };
}

function text(value: string): GgufMetadataValue {
  return { type: GgufValueType.STRING, value };
}

function createMetadata(): Array<[string, GgufMetadataValue]> {
  const { pieces, types } = getVocabulary();
  return [
    ['general.architecture', text('llama')],
    ['general.name', text('Taskwire tiny test model')],
    ['general.file_type', u32(0)],
    ['llama.context_length', u32(CONTEXT_LENGTH)],
    ['llama.embedding_length', u32(EMBEDDING_LENGTH)],
    ['llama.block_count', u32(BLOCK_COUNT)],
    ['llama.feed_forward_length', u32(FEED_FORWARD_LENGTH)],
    ['llama.attention.head_count', u32(HEAD_COUNT)],
    ['llama.attention.head_count_kv', u32(HEAD_COUNT)],
    ['llama.rope.dimension_count', u32(EMBEDDING_LENGTH / HEAD_COUNT)],
    ['llama.rope.freq_base', f32(10_000)],
    ['llama.attention.layer_norm_rms_epsilon', f32(1e-5)],
    ['tokenizer.ggml.model', text('llama')],
    [
      'tokenizer.ggml.tokens',
      { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: pieces },
    ],
    [
      'tokenizer.ggml.scores',
      {
        type: GgufValueType.ARRAY,
        itemType: GgufValueType.FLOAT32,
        value: pieces.map((_, id) => -id),
      },
    ],
    [
      'tokenizer.ggml.token_type',
      { type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, value: types },
    ],
    ['tokenizer.ggml.bos_token_id', u32(BOS_ID)],
    ['tokenizer.ggml.eos_token_id', u32(EOS_ID)],
    ['tokenizer.ggml.unknown_token_id', u32(UNK_ID)],
    ['tokenizer.ggml.add_bos_token', bool(true)],
    ['tokenizer.ggml.add_eos_token', bool(false)],
    ['tokenizer.ggml.add_space_prefix', bool(false)],
    ['tokenizer.chat_template', text(TINY_MODEL_CHAT_TEMPLATE)],
  ];
}

/** Returns the tokens of the chain: the newline that ends the generation prompt, then the reply. */
function getChainTokens(): number[] {
  return [...tokenizeForTinyModel('\n'), ...tokenizeForTinyModel(TINY_MODEL_REPLY)];
}

function createTensors(): GgufTensorSpec[] {
  const random = createRandom(WEIGHT_SEED);
  const noise = (length: number) =>
    Float32Array.from({ length }, () => (random() * 2 - 1) * NOISE_AMPLITUDE);
  const ones = (length: number) => new Float32Array(length).fill(1);
  const vocabularySize = getTinyModelVocabularySize();
  const square = EMBEDDING_LENGTH * EMBEDDING_LENGTH;
  const feedForward = EMBEDDING_LENGTH * FEED_FORWARD_LENGTH;
  const tensors: GgufTensorSpec[] = [
    {
      name: 'token_embd.weight',
      dims: [EMBEDDING_LENGTH, vocabularySize],
      data: createEmbeddings(noise),
    },
    { name: 'output_norm.weight', dims: [EMBEDDING_LENGTH], data: ones(EMBEDDING_LENGTH) },
    { name: 'output.weight', dims: [EMBEDDING_LENGTH, vocabularySize], data: createOutput() },
  ];
  for (let block = 0; block < BLOCK_COUNT; block += 1) {
    const name = (tensor: string) => `blk.${block}.${tensor}.weight`;
    tensors.push(
      { name: name('attn_norm'), dims: [EMBEDDING_LENGTH], data: ones(EMBEDDING_LENGTH) },
      { name: name('attn_q'), dims: [EMBEDDING_LENGTH, EMBEDDING_LENGTH], data: noise(square) },
      { name: name('attn_k'), dims: [EMBEDDING_LENGTH, EMBEDDING_LENGTH], data: noise(square) },
      { name: name('attn_v'), dims: [EMBEDDING_LENGTH, EMBEDDING_LENGTH], data: noise(square) },
      {
        name: name('attn_output'),
        dims: [EMBEDDING_LENGTH, EMBEDDING_LENGTH],
        data: noise(square),
      },
      { name: name('ffn_norm'), dims: [EMBEDDING_LENGTH], data: ones(EMBEDDING_LENGTH) },
      {
        name: name('ffn_gate'),
        dims: [EMBEDDING_LENGTH, FEED_FORWARD_LENGTH],
        data: noise(feedForward),
      },
      {
        name: name('ffn_up'),
        dims: [EMBEDDING_LENGTH, FEED_FORWARD_LENGTH],
        data: noise(feedForward),
      },
      {
        name: name('ffn_down'),
        dims: [FEED_FORWARD_LENGTH, EMBEDDING_LENGTH],
        data: noise(feedForward),
      },
    );
  }
  return tensors;
}

/** Chain token `i` gets the one-hot direction `i`; every other token a small random vector. */
function createEmbeddings(noise: (length: number) => Float32Array): Float32Array {
  const vocabularySize = getTinyModelVocabularySize();
  const embeddings = noise(EMBEDDING_LENGTH * vocabularySize);
  getChainTokens().forEach((token, direction) => {
    const row = embeddings.subarray(token * EMBEDDING_LENGTH, (token + 1) * EMBEDDING_LENGTH);
    row.fill(0);
    row[direction] = 1;
  });
  return embeddings;
}

/**
 * Creates the output matrix, in which the row of each chain token's successor points along that
 * token's direction.
 */
function createOutput(): Float32Array {
  const output = new Float32Array(EMBEDDING_LENGTH * getTinyModelVocabularySize());
  const chain = getChainTokens();
  chain.forEach((_, direction) => {
    const successor = chain[direction + 1] ?? EOS_ID;
    output[successor * EMBEDDING_LENGTH + direction] = OUTPUT_SCALE;
  });
  return output;
}

/** mulberry32: a small seeded generator, so that the file is the same on every machine. */
function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
