import type { GgufMetadataValue } from './gguf-format';
import { GgufValueType, describeValueType } from './gguf-format';
import type { GgufFileInfo } from './gguf-reader';
import { GgufError, readGgufFile } from './gguf-reader';

/** Summary of a validated model file, for logs. */
export interface GgufModelSummary {
  path: string;
  architecture: string;
  /** `general.name`, when the file has one. */
  name?: string;
  /** Context length the model was trained with. */
  contextLength: number;
  vocabularySize: number;
  tensorCount: number;
  fileSize: number;
  hasChatTemplate: boolean;
}

const INTEGER_TYPES: ReadonlySet<GgufValueType> = new Set<GgufValueType>([
  GgufValueType.UINT8,
  GgufValueType.INT8,
  GgufValueType.UINT16,
  GgufValueType.INT16,
  GgufValueType.UINT32,
  GgufValueType.INT32,
  GgufValueType.UINT64,
  GgufValueType.INT64,
]);

/** Keys every language model needs, `{arch}` standing for `general.architecture`. */
const REQUIRED_INTEGER_KEYS = [
  '{arch}.context_length',
  '{arch}.embedding_length',
  '{arch}.block_count',
];

/**
 * Keys whose absence makes llama.cpp abort the process while loading a `llama` model, rather than
 * report an error.
 */
const REQUIRED_LLAMA_INTEGER_KEYS = ['llama.feed_forward_length', 'llama.attention.head_count'];

/**
 * Validates a GGUF file (see {@link readGgufFile}) and checks that it describes a language model
 * with a vocabulary: the architecture, its sizes and the tokenizer keys that generation needs.
 * @throws GgufError naming the file and the first defect found.
 */
export function readGgufModel(path: string): GgufModelSummary {
  const info = readGgufFile(path);
  const architecture = requireString(info, 'general.architecture');
  const keys = [...REQUIRED_INTEGER_KEYS.map((key) => key.replace('{arch}', architecture))];
  if (architecture === 'llama') keys.push(...REQUIRED_LLAMA_INTEGER_KEYS);
  for (const key of keys) requireInteger(info, key);
  if (architecture === 'llama')
    requireType(info, 'llama.attention.layer_norm_rms_epsilon', GgufValueType.FLOAT32);
  requireString(info, 'tokenizer.ggml.model');
  const tokens = info.metadata.get('tokenizer.ggml.tokens');
  if (
    tokens?.type !== GgufValueType.ARRAY ||
    tokens.itemType !== GgufValueType.STRING ||
    tokens.value.length === 0
  ) {
    throw new GgufError(
      path,
      'no vocabulary: "tokenizer.ggml.tokens" is missing, empty or not an array of strings',
    );
  }
  const name = info.metadata.get('general.name');
  return {
    path,
    architecture,
    name: name?.type === GgufValueType.STRING ? String(name.value) : undefined,
    contextLength: requireInteger(info, `${architecture}.context_length`),
    vocabularySize: tokens.value.length,
    tensorCount: info.tensors.length,
    fileSize: info.fileSize,
    hasChatTemplate: info.metadata.get('tokenizer.chat_template')?.type === GgufValueType.STRING,
  };
}

function requireEntry(info: GgufFileInfo, key: string): GgufMetadataValue {
  const entry = info.metadata.get(key);
  if (entry === undefined) {
    throw new GgufError(
      info.path,
      `the key "${key}" is missing; llama.cpp needs it to load the model`,
    );
  }
  return entry;
}

function requireType(info: GgufFileInfo, key: string, type: GgufValueType): GgufMetadataValue {
  const entry = requireEntry(info, key);
  if (entry.type !== type) {
    throw new GgufError(
      info.path,
      `key "${key}" has value type ${describeValueType(entry.type)}, expected ${describeValueType(type)}`,
    );
  }
  return entry;
}

function requireString(info: GgufFileInfo, key: string): string {
  return String(requireType(info, key, GgufValueType.STRING).value);
}

function requireInteger(info: GgufFileInfo, key: string): number {
  const entry = requireEntry(info, key);
  if (entry.type === GgufValueType.ARRAY || !INTEGER_TYPES.has(entry.type)) {
    throw new GgufError(
      info.path,
      `key "${key}" must be an integer, but its value type is ${describeValueType(entry.type)}`,
    );
  }
  const value = Number(entry.value);
  if (value <= 0)
    throw new GgufError(info.path, `key "${key}" is ${value}, expected a positive number`);
  return value;
}
