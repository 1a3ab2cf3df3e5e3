import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GgufMetadataValue } from '../../src/services/llm/gguf/gguf-format';
import { GgufValueType } from '../../src/services/llm/gguf/gguf-format';
import { readGgufModel } from '../../src/services/llm/gguf/gguf-model';
import { GgufError, readGgufFile } from '../../src/services/llm/gguf/gguf-reader';
import type { GgufTensorSpec } from '../../src/services/llm/gguf/gguf-writer';
import { encodeGguf } from '../../src/services/llm/gguf/gguf-writer';
import { createTinyModel, getTinyModelVocabularySize } from '../../src/services/llm/tiny-model';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'taskwire-gguf-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeTemp(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

/** Returns the reason `read` rejects `bytes` with, or fails the test when it accepts them. */
async function rejectionOf(
  bytes: Uint8Array,
  read: (path: string) => unknown = readGgufFile,
): Promise<string> {
  const path = await writeTemp('bad.gguf', bytes);
  try {
    read(path);
  } catch (error) {
    expect(error).toBeInstanceOf(GgufError);
    expect((error as GgufError).message.startsWith(`${path}: `)).toBe(true);
    return (error as GgufError).reason;
  }
  throw new Error('The file was accepted');
}

const u32 = (value: number): GgufMetadataValue => ({ type: GgufValueType.UINT32, value });
const text = (value: string): GgufMetadataValue => ({ type: GgufValueType.STRING, value });

function smallFile(
  metadata: Array<[string, GgufMetadataValue]> = [['general.architecture', text('test')]],
  tensors: GgufTensorSpec[] = [
    { name: 'a', dims: [3], data: Float32Array.of(1, 2, 3) },
    { name: 'b', dims: [2, 2], data: Float32Array.of(4, 5, 6, 7) },
  ],
): Buffer {
  return encodeGguf({ metadata, tensors });
}

describe('GGUF writer and reader', () => {
  it('round-trips every value type and tensor info', async () => {
    const metadata: Array<[string, GgufMetadataValue]> = [
      ['u8', { type: GgufValueType.UINT8, value: 255 }],
      ['i8', { type: GgufValueType.INT8, value: -128 }],
      ['u16', { type: GgufValueType.UINT16, value: 65535 }],
      ['i16', { type: GgufValueType.INT16, value: -32768 }],
      ['u32', u32(4_000_000_000)],
      ['i32', { type: GgufValueType.INT32, value: -5 }],
      ['f32', { type: GgufValueType.FLOAT32, value: 0.5 }],
      ['bool', { type: GgufValueType.BOOL, value: true }],
      ['string', text('Grüße 🦙')],
      ['u64', { type: GgufValueType.UINT64, value: 2n ** 63n }],
      ['i64', { type: GgufValueType.INT64, value: -(2n ** 40n) }],
      ['f64', { type: GgufValueType.FLOAT64, value: Math.PI }],
      ['strings', { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: ['x', ''] }],
      ['floats', { type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT32, value: [1.5, -2] }],
    ];
    const path = await writeTemp('all.gguf', smallFile(metadata));

    const info = readGgufFile(path);

    expect(info.version).toBe(3);
    expect(info.alignment).toBe(32);
    expect([...info.metadata.entries()]).toEqual(metadata);
    expect(info.tensors).toEqual([
      { name: 'a', dims: [3], type: 0, typeName: 'F32', offset: 0, byteLength: 12 },
      { name: 'b', dims: [2, 2], type: 0, typeName: 'F32', offset: 32, byteLength: 16 },
    ]);
    expect(info.dataOffset % 32).toBe(0);
    expect(info.fileSize).toBe(info.dataOffset + 64);
  });

  it('reads the built-in model', async () => {
    const path = await writeTemp('tiny.gguf', createTinyModel());

    const summary = readGgufModel(path);

    expect(summary).toMatchObject({
      architecture: 'llama',
      contextLength: 4096,
      vocabularySize: getTinyModelVocabularySize(),
      tensorCount: 3 + 2 * 9,
      hasChatTemplate: true,
    });
  });
});

describe('GGUF validation', () => {
  it('rejects a missing file', () => {
    const path = join(dir, 'missing.gguf');
    expect(() => readGgufFile(path)).toThrow(`${path}: file not found`);
  });

  it('rejects a directory', () => {
    expect(() => readGgufFile(dir)).toThrow('not a regular file');
  });

  it('rejects a file shorter than the header', async () => {
    expect(await rejectionOf(Buffer.from('GGUF'))).toContain('too short for a GGUF header');
  });

  it('rejects a wrong magic', async () => {
    const bytes = Buffer.from(smallFile());
    bytes.write('PK\x03\x04', 0, 'latin1');
    expect(await rejectionOf(bytes)).toBe(
      'not a GGUF file: it starts with the bytes 504b0304 ("PK\\u0003\\u0004"), expected "GGUF"',
    );
  });

  it('rejects GGUF version 1', async () => {
    const bytes = Buffer.from(smallFile());
    bytes.writeUInt32LE(1, 4);
    expect(await rejectionOf(bytes)).toContain('GGUF version 1 is not supported');
  });

  it('rejects a header followed by garbage', async () => {
    const garbage = Buffer.alloc(64 * 1024);
    for (let i = 0; i < garbage.length; i += 1) garbage[i] = (i * 7919 + 13) % 251;
    const bytes = Buffer.concat([smallFile().subarray(0, 24), garbage]);
    expect(await rejectionOf(bytes)).toMatch(/key 0/);
  });

  it('rejects counts larger than the file', async () => {
    const bytes = Buffer.from(smallFile());
    bytes.writeBigUInt64LE(1n << 40n, 16);
    expect(await rejectionOf(bytes)).toContain('the key/value count at byte 16 is 1099511627776');
  });

  it.each([
    ['inside the metadata', 60],
    ['inside the tensor infos', 120],
    ['inside the data section', -20],
  ])('rejects a file truncated %s', async (_where, cut) => {
    const bytes = smallFile();
    expect(await rejectionOf(bytes.subarray(0, cut < 0 ? bytes.length + cut : cut))).toMatch(
      /truncated/,
    );
  });

  it('rejects bytes after the last tensor', async () => {
    const bytes = Buffer.concat([smallFile(), Buffer.alloc(32)]);
    expect(await rejectionOf(bytes)).toContain('but its tensors end at byte');
  });

  it('rejects an unknown value type', async () => {
    const bytes = Buffer.from(smallFile());
    // 24 bytes of header, then the key "general.architecture" (8 + 20 bytes), then its type.
    bytes.writeUInt32LE(77, 24 + 8 + 20);
    expect(await rejectionOf(bytes)).toBe(
      'key "general.architecture" has an unknown value type 77',
    );
  });

  it('rejects an unknown tensor type', async () => {
    const patched = Buffer.from(smallFile());
    patched.writeUInt32LE(4, findTensorInfoEnd(patched) - 12);
    expect(await rejectionOf(patched)).toBe('tensor "b" has an unknown ggml type 4');
  });

  it('rejects tensors that do not follow each other', async () => {
    const patched = Buffer.from(smallFile());
    patched.writeBigUInt64LE(64n, findTensorInfoEnd(patched) - 8);
    expect(await rejectionOf(patched)).toBe(
      'tensor "b" starts at data offset 64, expected 32 (the tensors must follow each other, aligned to 32 bytes)',
    );
  });

  it('rejects a file without tensors', async () => {
    expect(await rejectionOf(smallFile(undefined, []))).toContain('contains no tensors');
  });

  it('rejects a model without the keys llama.cpp needs', async () => {
    const reason = await rejectionOf(
      smallFile([['general.architecture', text('llama')]]),
      readGgufModel,
    );
    expect(reason).toBe(
      'the key "llama.context_length" is missing; llama.cpp needs it to load the model',
    );
  });

  it('rejects a model key of the wrong type', async () => {
    const metadata: Array<[string, GgufMetadataValue]> = [
      ['general.architecture', text('qwen2')],
      ['qwen2.context_length', text('4096')],
    ];
    expect(await rejectionOf(smallFile(metadata), readGgufModel)).toBe(
      'key "qwen2.context_length" must be an integer, but its value type is string',
    );
  });
});

/** Offset just past the tensor infos of `smallFile()`: the end of the last info. */
function findTensorInfoEnd(bytes: Buffer): number {
  const nameB = Buffer.concat([Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('b')]);
  const start = bytes.indexOf(nameB);
  // name (8 + 1), dimension count (4), two dimensions (16), type (4), offset (8)
  return start + 9 + 4 + 16 + 4 + 8;
}
