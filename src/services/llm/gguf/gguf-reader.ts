import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { GgufMetadataValue, GgufScalar } from './gguf-format';
import {
  GGML_TYPES,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_MAX_DIMS,
  GGUF_MAX_STRING_LENGTH,
  GGUF_MAX_TENSOR_NAME_LENGTH,
  GGUF_SUPPORTED_VERSIONS,
  GGUF_VALUE_SIZES,
  GgufValueType,
  alignOffset,
  describeValueType,
} from './gguf-format';

/** A file that is not a GGUF file llama.cpp can load; the message names the file and the defect. */
export class GgufError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = 'GgufError';
  }
}

/** One tensor's entry in the header. */
export interface GgufTensorInfo {
  name: string;
  /** Sizes of the dimensions, fastest-varying first. */
  dims: number[];
  /** ggml type id, for example 0 for F32. */
  type: number;
  typeName: string;
  /** Offset from the start of the data section, in bytes. */
  offset: number;
  byteLength: number;
}

/** The validated header of a GGUF file. */
export interface GgufFileInfo {
  path: string;
  version: number;
  fileSize: number;
  alignment: number;
  metadata: Map<string, GgufMetadataValue>;
  tensors: GgufTensorInfo[];
  /** Offset of the data section from the start of the file. */
  dataOffset: number;
}

/** Bytes read from disk at a time. */
const READ_CHUNK_BYTES = 1024 * 1024;
const HEADER_BYTES = 24;
/**
 * Maximum length of a metadata array. Real vocabularies have at most a few hundred thousand tokens,
 * so the limit only stops a corrupt length from filling the heap.
 */
const MAX_ARRAY_LENGTH = 1 << 24;

/**
 * Reads and validates a GGUF file's header, key/value section and tensor infos, and checks that the
 * data section contains exactly the tensors: the checks llama.cpp's `gguf_init_from_file` makes,
 * plus the file size. Every length is checked against the bytes left in the file before anything is
 * allocated, so a corrupt file fails fast instead of making a reader allocate without bound.
 * @throws GgufError naming the file and the first defect found.
 */
export function readGgufFile(path: string): GgufFileInfo {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT' ? 'file not found' : `the file cannot be opened (${code ?? String(error)})`;
    throw new GgufError(path, reason);
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw new GgufError(path, 'not a regular file');
    return parseGguf(new FileCursor(fd, stats.size, path));
  } finally {
    closeSync(fd);
  }
}

function parseGguf(cursor: FileCursor): GgufFileInfo {
  const { version, tensorCount, metadataCount } = readHeader(cursor);
  const metadata = readMetadata(cursor, metadataCount);
  const alignment = readAlignment(cursor, metadata);
  const tensors = readTensorInfos(cursor, tensorCount);
  const dataOffset = alignOffset(cursor.position, alignment);
  checkDataSection(cursor, tensors, dataOffset, alignment);
  return {
    path: cursor.path,
    version,
    fileSize: cursor.size,
    alignment,
    metadata,
    tensors,
    dataOffset,
  };
}

function readHeader(cursor: FileCursor) {
  if (cursor.size < HEADER_BYTES) {
    cursor.fail(
      `the file is ${cursor.size} bytes long, too short for a GGUF header (${HEADER_BYTES} bytes)`,
    );
  }
  const magic = cursor.take(4, 'the magic');
  if (magic.toString('latin1') !== GGUF_MAGIC) {
    cursor.fail(
      `not a GGUF file: it starts with the bytes ${magic.toString('hex')} (${JSON.stringify(magic.toString('latin1'))}), expected "${GGUF_MAGIC}"`,
    );
  }
  const version = cursor.u32('the version');
  if (!GGUF_SUPPORTED_VERSIONS.includes(version)) {
    cursor.fail(
      `GGUF version ${version} is not supported; llama.cpp reads versions ${GGUF_SUPPORTED_VERSIONS.join(' and ')}`,
    );
  }
  const tensorCount = cursor.count('the tensor count', 1);
  const metadataCount = cursor.count('the key/value count', 1);
  return { version, tensorCount, metadataCount };
}

function readMetadata(cursor: FileCursor, count: number): Map<string, GgufMetadataValue> {
  const metadata = new Map<string, GgufMetadataValue>();
  for (let index = 0; index < count; index += 1) {
    const key = cursor.string(`the name of key ${index}`);
    if (key === '') cursor.fail(`key ${index} has an empty name`);
    if (metadata.has(key)) cursor.fail(`key "${key}" occurs twice`);
    metadata.set(key, readValue(cursor, key));
  }
  return metadata;
}

function readValue(cursor: FileCursor, key: string): GgufMetadataValue {
  const type = readValueType(cursor, key);
  if (type !== GgufValueType.ARRAY) return { type, value: readScalar(cursor, type, key) };
  const itemType = readValueType(cursor, key);
  if (itemType === GgufValueType.ARRAY) cursor.fail(`key "${key}" is an array of arrays`);
  const minimumItemBytes = GGUF_VALUE_SIZES.get(itemType) ?? 8;
  const length = cursor.count(`the length of key "${key}"`, minimumItemBytes);
  if (length > MAX_ARRAY_LENGTH) {
    cursor.fail(
      `key "${key}" is an array of ${length} items; this reader accepts ${MAX_ARRAY_LENGTH}`,
    );
  }
  const value: GgufScalar[] = [];
  for (let index = 0; index < length; index += 1) value.push(readScalar(cursor, itemType, key));
  return { type, itemType, value };
}

type ScalarType = Exclude<GgufValueType, typeof GgufValueType.ARRAY>;

function readValueType(cursor: FileCursor, key: string): GgufValueType {
  const type = cursor.u32(`the type of key "${key}"`) as GgufValueType;
  const known =
    type === GgufValueType.ARRAY || type === GgufValueType.STRING || GGUF_VALUE_SIZES.has(type);
  if (!known) cursor.fail(`key "${key}" has an unknown value type ${type}`);
  return type;
}

function readScalar(cursor: FileCursor, type: ScalarType, key: string): GgufScalar {
  const what = `the value of key "${key}"`;
  if (type === GgufValueType.STRING) return cursor.string(what);
  const size = GGUF_VALUE_SIZES.get(type) ?? 0;
  const bytes = cursor.take(size, what);
  switch (type) {
    case GgufValueType.UINT8:
      return bytes.readUInt8();
    case GgufValueType.INT8:
      return bytes.readInt8();
    case GgufValueType.UINT16:
      return bytes.readUInt16LE();
    case GgufValueType.INT16:
      return bytes.readInt16LE();
    case GgufValueType.UINT32:
      return bytes.readUInt32LE();
    case GgufValueType.INT32:
      return bytes.readInt32LE();
    case GgufValueType.FLOAT32:
      return bytes.readFloatLE();
    case GgufValueType.BOOL:
      return bytes.readUInt8() !== 0;
    case GgufValueType.UINT64:
      return bytes.readBigUInt64LE();
    case GgufValueType.INT64:
      return bytes.readBigInt64LE();
    case GgufValueType.FLOAT64:
      return bytes.readDoubleLE();
  }
}

function readAlignment(cursor: FileCursor, metadata: Map<string, GgufMetadataValue>): number {
  const entry = metadata.get('general.alignment');
  if (entry === undefined) return GGUF_DEFAULT_ALIGNMENT;
  if (entry.type !== GgufValueType.UINT32) {
    cursor.fail(
      `key "general.alignment" must be a uint32, but its type is ${describeValueType(entry.type)}`,
    );
  }
  const alignment = Number(entry.value);
  if (alignment === 0 || (alignment & (alignment - 1)) !== 0) {
    cursor.fail(`general.alignment is ${alignment}, not a power of two`);
  }
  return alignment;
}

function readTensorInfos(cursor: FileCursor, count: number): GgufTensorInfo[] {
  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let index = 0; index < count; index += 1) {
    const tensor = readTensorInfo(cursor, index);
    if (names.has(tensor.name)) cursor.fail(`tensor "${tensor.name}" occurs twice`);
    names.add(tensor.name);
    tensors.push(tensor);
  }
  return tensors;
}

function readTensorInfo(cursor: FileCursor, index: number): GgufTensorInfo {
  const name = cursor.string(`the name of tensor ${index}`);
  if (Buffer.byteLength(name) > GGUF_MAX_TENSOR_NAME_LENGTH) {
    cursor.fail(`tensor ${index} has a name longer than ${GGUF_MAX_TENSOR_NAME_LENGTH} bytes`);
  }
  const dimCount = cursor.u32(`the dimension count of tensor "${name}"`);
  if (dimCount > GGUF_MAX_DIMS) {
    cursor.fail(
      `tensor "${name}" has ${dimCount} dimensions; ggml allows at most ${GGUF_MAX_DIMS}`,
    );
  }
  const dims: number[] = [];
  for (let dim = 0; dim < dimCount; dim += 1) {
    dims.push(cursor.u64(`dimension ${dim} of tensor "${name}"`));
  }
  const type = cursor.u32(`the type of tensor "${name}"`);
  const layout = GGML_TYPES.get(type);
  if (layout === undefined) cursor.fail(`tensor "${name}" has an unknown ggml type ${type}`);
  const offset = cursor.u64(`the offset of tensor "${name}"`);
  const byteLength = computeByteLength(cursor, name, dims, layout);
  return { name, dims, type, typeName: layout.name, offset, byteLength };
}

function computeByteLength(
  cursor: FileCursor,
  name: string,
  dims: readonly number[],
  layout: { name: string; blockSize: number; typeSize: number },
): number {
  const rowLength = dims[0] ?? 1;
  if (rowLength % layout.blockSize !== 0) {
    cursor.fail(
      `tensor "${name}" of type ${layout.name} has ${rowLength} elements per row, not a multiple of the block size ${layout.blockSize}`,
    );
  }
  const elements = dims.reduce((product, size) => product * size, 1);
  const byteLength = (elements / layout.blockSize) * layout.typeSize;
  if (!Number.isSafeInteger(byteLength) || byteLength > cursor.size) {
    cursor.fail(
      `tensor "${name}" with dimensions [${dims.join(', ')}] needs ${byteLength} bytes, more than the file's ${cursor.size}`,
    );
  }
  return byteLength;
}

/**
 * Checks that the tensors follow each other at aligned offsets, as llama.cpp requires, and that the
 * file ends where the last tensor ends (with or without its final padding).
 */
function checkDataSection(
  cursor: FileCursor,
  tensors: readonly GgufTensorInfo[],
  dataOffset: number,
  alignment: number,
): void {
  if (tensors.length === 0)
    cursor.fail('the file contains no tensors, so it contains no model weights');
  let expectedOffset = 0;
  for (const tensor of tensors) {
    if (tensor.offset !== expectedOffset) {
      cursor.fail(
        `tensor "${tensor.name}" starts at data offset ${tensor.offset}, expected ${expectedOffset} (the tensors must follow each other, aligned to ${alignment} bytes)`,
      );
    }
    expectedOffset = alignOffset(tensor.offset + tensor.byteLength, alignment);
  }
  const last = tensors[tensors.length - 1];
  const minimumSize = dataOffset + last.offset + last.byteLength;
  const maximumSize = dataOffset + expectedOffset;
  if (cursor.size < minimumSize) {
    cursor.fail(
      `the file is truncated: it is ${cursor.size} bytes long, but its tensors end at byte ${minimumSize}`,
    );
  }
  if (cursor.size > maximumSize) {
    cursor.fail(
      `the file is ${cursor.size} bytes long, but its tensors end at byte ${maximumSize}: the header does not describe the data that follows it`,
    );
  }
}

/** Sequential reads from a file descriptor through a buffer, with every length bounds-checked. */
class FileCursor {
  position = 0;
  private buffer = Buffer.alloc(0);
  private bufferStart = 0;

  constructor(
    private readonly fd: number,
    readonly size: number,
    readonly path: string,
  ) {}

  fail(reason: string): never {
    throw new GgufError(this.path, reason);
  }

  take(length: number, what: string): Buffer {
    const remaining = this.size - this.position;
    if (length > remaining) {
      this.fail(
        `the file is truncated or corrupt: ${what} needs ${length} bytes at byte ${this.position}, but only ${remaining} remain`,
      );
    }
    const end = this.position + length;
    if (end > this.bufferStart + this.buffer.length) this.fill(length);
    const bytes = this.buffer.subarray(this.position - this.bufferStart, end - this.bufferStart);
    this.position = end;
    return bytes;
  }

  u32(what: string): number {
    return this.take(4, what).readUInt32LE();
  }

  u64(what: string): number {
    const value = this.take(8, what).readBigUInt64LE();
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      this.fail(`${what} is ${value}, larger than any file this reader accepts`);
    }
    return Number(value);
  }

  /** Reads a count of items that each take at least `minimumItemBytes` of the rest of the file. */
  count(what: string, minimumItemBytes: number): number {
    const position = this.position;
    const value = this.u64(what);
    const limit = Math.floor((this.size - this.position) / minimumItemBytes);
    if (value > limit) {
      this.fail(
        `${what} at byte ${position} is ${value}, but the ${this.size - this.position} bytes left hold at most ${limit}`,
      );
    }
    return value;
  }

  string(what: string): string {
    const length = this.u64(`the length of ${what}`);
    if (length > GGUF_MAX_STRING_LENGTH) {
      this.fail(
        `${what} is ${length} bytes long; llama.cpp accepts at most ${GGUF_MAX_STRING_LENGTH}`,
      );
    }
    return this.take(length, what).toString('utf8');
  }

  private fill(length: number): void {
    const size = Math.min(Math.max(length, READ_CHUNK_BYTES), this.size - this.position);
    const buffer = Buffer.alloc(size);
    let filled = 0;
    while (filled < size) {
      const read = readSync(this.fd, buffer, filled, size - filled, this.position + filled);
      if (read === 0)
        this.fail(`the file changed while it was read: it ended at byte ${this.position + filled}`);
      filled += read;
    }
    this.buffer = buffer;
    this.bufferStart = this.position;
  }
}
