import type { GgufMetadataValue, GgufScalar } from './gguf-format';
import {
  GGML_TYPE_F32,
  GGUF_VALUE_SIZES,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgufValueType,
  alignOffset,
} from './gguf-format';

/** A 32-bit float tensor to write. */
export interface GgufTensorSpec {
  /** Tensor name, for example `blk.0.attn_q.weight`. */
  name: string;
  /** Sizes of the dimensions, fastest-varying first (ggml's `ne`). */
  dims: readonly number[];
  /** Elements in ggml order: the first dimension varies fastest. */
  data: Float32Array;
}

/** Everything a GGUF file contains. */
export interface GgufFileSpec {
  /** Key/value pairs, written in this order. */
  metadata: ReadonlyArray<readonly [string, GgufMetadataValue]>;
  /** Tensors, written in this order with contiguous, aligned offsets. */
  tensors: readonly GgufTensorSpec[];
}

/**
 * Encodes a GGUF version 3 file with 32-bit float tensors, aligned to 32 bytes as llama.cpp
 * expects.
 * @throws RangeError when a tensor's data does not match its dimensions.
 */
export function encodeGguf(spec: GgufFileSpec): Buffer {
  const parts: Buffer[] = [encodeHeader(spec)];
  for (const [key, value] of spec.metadata) parts.push(encodeString(key), encodeValue(value));
  let dataOffset = 0;
  for (const tensor of spec.tensors) {
    parts.push(encodeTensorInfo(tensor, dataOffset));
    dataOffset = alignOffset(dataOffset + tensor.data.byteLength, GGUF_DEFAULT_ALIGNMENT);
  }
  const headerLength = parts.reduce((sum, part) => sum + part.length, 0);
  parts.push(Buffer.alloc(alignOffset(headerLength, GGUF_DEFAULT_ALIGNMENT) - headerLength));
  for (const tensor of spec.tensors) {
    const bytes = Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
    parts.push(toLittleEndianFloats(bytes));
    const padded = alignOffset(bytes.length, GGUF_DEFAULT_ALIGNMENT);
    parts.push(Buffer.alloc(padded - bytes.length));
  }
  return Buffer.concat(parts);
}

function encodeHeader(spec: GgufFileSpec): Buffer {
  const header = Buffer.alloc(24);
  header.write(GGUF_MAGIC, 0, 'latin1');
  header.writeUInt32LE(GGUF_VERSION, 4);
  header.writeBigUInt64LE(BigInt(spec.tensors.length), 8);
  header.writeBigUInt64LE(BigInt(spec.metadata.length), 16);
  return header;
}

function encodeTensorInfo(tensor: GgufTensorSpec, offset: number): Buffer {
  const elements = tensor.dims.reduce((product, size) => product * size, 1);
  if (elements !== tensor.data.length) {
    throw new RangeError(
      `Tensor ${tensor.name} has dimensions [${tensor.dims.join(', ')}] (${elements} elements) but ${tensor.data.length} values`,
    );
  }
  const info = Buffer.alloc(4 + 8 * tensor.dims.length + 4 + 8);
  let position = info.writeUInt32LE(tensor.dims.length, 0);
  for (const size of tensor.dims) position = info.writeBigUInt64LE(BigInt(size), position);
  position = info.writeUInt32LE(GGML_TYPE_F32, position);
  info.writeBigUInt64LE(BigInt(offset), position);
  return Buffer.concat([encodeString(tensor.name), info]);
}

function encodeValue(value: GgufMetadataValue): Buffer {
  const type = Buffer.alloc(4);
  type.writeUInt32LE(value.type);
  if (value.type !== GgufValueType.ARRAY) {
    return Buffer.concat([type, encodeScalar(value.type, value.value)]);
  }
  const arrayHeader = Buffer.alloc(12);
  arrayHeader.writeUInt32LE(value.itemType, 0);
  arrayHeader.writeBigUInt64LE(BigInt(value.value.length), 4);
  const items = value.value.map((item) => encodeScalar(value.itemType, item));
  return Buffer.concat([type, arrayHeader, ...items]);
}

function encodeScalar(type: GgufValueType, value: GgufScalar): Buffer {
  if (type === GgufValueType.STRING) return encodeString(String(value));
  const buffer = Buffer.alloc(GGUF_VALUE_SIZES.get(type) ?? 0);
  switch (type) {
    case GgufValueType.UINT8:
    case GgufValueType.BOOL:
      buffer.writeUInt8(Number(value));
      break;
    case GgufValueType.INT8:
      buffer.writeInt8(Number(value));
      break;
    case GgufValueType.UINT16:
      buffer.writeUInt16LE(Number(value));
      break;
    case GgufValueType.INT16:
      buffer.writeInt16LE(Number(value));
      break;
    case GgufValueType.UINT32:
      buffer.writeUInt32LE(Number(value));
      break;
    case GgufValueType.INT32:
      buffer.writeInt32LE(Number(value));
      break;
    case GgufValueType.FLOAT32:
      buffer.writeFloatLE(Number(value));
      break;
    case GgufValueType.UINT64:
      buffer.writeBigUInt64LE(BigInt(value));
      break;
    case GgufValueType.INT64:
      buffer.writeBigInt64LE(BigInt(value));
      break;
    case GgufValueType.FLOAT64:
      buffer.writeDoubleLE(Number(value));
      break;
    default:
      throw new RangeError(`GGUF value type ${type} cannot be written as a scalar`);
  }
  return buffer;
}

function encodeString(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(bytes.length));
  return Buffer.concat([length, bytes]);
}

/** Copies float bytes, swapping them on a big-endian host, since GGUF is little-endian. */
function toLittleEndianFloats(bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  return new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? copy : copy.swap32();
}
