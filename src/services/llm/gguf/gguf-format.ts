/**
 * Constants of the GGUF file format, version 3, as llama.cpp reads it (`ggml/src/gguf.cpp` and
 * `ggml/include/ggml.h` of the llama.cpp release bundled with node-llama-cpp 3.21.1). All numbers
 * in a GGUF file are little-endian.
 */

/** The first four bytes of every GGUF file. */
export const GGUF_MAGIC = 'GGUF';

/** Versions llama.cpp loads; version 1 is no longer supported there. */
export const GGUF_SUPPORTED_VERSIONS: readonly number[] = [2, 3];

/** Version written by the writer. */
export const GGUF_VERSION = 3;

/** Alignment of the data section and of each tensor when `general.alignment` is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** llama.cpp rejects longer strings. */
export const GGUF_MAX_STRING_LENGTH = 1024 * 1024 * 1024;

/** ggml tensors have at most four dimensions. */
export const GGUF_MAX_DIMS = 4;

/** ggml stores tensor names in a 64-byte buffer that ends with a NUL byte. */
export const GGUF_MAX_TENSOR_NAME_LENGTH = 63;

/** Type tags of metadata values. */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueType = (typeof GgufValueType)[keyof typeof GgufValueType];

/** Returns the name of a value type, for example `uint32`, for messages. */
export function describeValueType(type: number): string {
  const entry = Object.entries(GgufValueType).find(([, value]) => value === type);
  return entry ? entry[0].toLowerCase() : `unknown type ${type}`;
}

/** Byte size of each fixed-size value type; strings and arrays have none. */
export const GGUF_VALUE_SIZES: ReadonlyMap<GgufValueType, number> = new Map<GgufValueType, number>([
  [GgufValueType.UINT8, 1],
  [GgufValueType.INT8, 1],
  [GgufValueType.UINT16, 2],
  [GgufValueType.INT16, 2],
  [GgufValueType.UINT32, 4],
  [GgufValueType.INT32, 4],
  [GgufValueType.FLOAT32, 4],
  [GgufValueType.BOOL, 1],
  [GgufValueType.UINT64, 8],
  [GgufValueType.INT64, 8],
  [GgufValueType.FLOAT64, 8],
]);

/** A scalar metadata value: 64-bit integers are bigints, the other numbers are numbers. */
export type GgufScalar = number | bigint | boolean | string;

/**
 * One metadata value with its GGUF type. Arrays hold scalars of `itemType`; nesting is not allowed.
 */
export type GgufMetadataValue =
  | { type: Exclude<GgufValueType, typeof GgufValueType.ARRAY>; value: GgufScalar }
  | {
      type: typeof GgufValueType.ARRAY;
      itemType: Exclude<GgufValueType, typeof GgufValueType.ARRAY>;
      value: GgufScalar[];
    };

/** Block layout of a ggml tensor type: `blockSize` elements are stored in `typeSize` bytes. */
export interface GgmlTypeLayout {
  name: string;
  blockSize: number;
  typeSize: number;
}

/**
 * Tensor types llama.cpp defines, by type id. Ids 4, 5 and 31–33, 36–38 were removed from the
 * format and are rejected, as llama.cpp does. Sizes are `sizeof(block_*)` from `ggml-common.h`.
 */
export const GGML_TYPES: ReadonlyMap<number, GgmlTypeLayout> = new Map(
  (
    [
      [0, 'F32', 1, 4],
      [1, 'F16', 1, 2],
      [2, 'Q4_0', 32, 18],
      [3, 'Q4_1', 32, 20],
      [6, 'Q5_0', 32, 22],
      [7, 'Q5_1', 32, 24],
      [8, 'Q8_0', 32, 34],
      [9, 'Q8_1', 32, 36],
      [10, 'Q2_K', 256, 84],
      [11, 'Q3_K', 256, 110],
      [12, 'Q4_K', 256, 144],
      [13, 'Q5_K', 256, 176],
      [14, 'Q6_K', 256, 210],
      [15, 'Q8_K', 256, 292],
      [16, 'IQ2_XXS', 256, 66],
      [17, 'IQ2_XS', 256, 74],
      [18, 'IQ3_XXS', 256, 98],
      [19, 'IQ1_S', 256, 50],
      [20, 'IQ4_NL', 32, 18],
      [21, 'IQ3_S', 256, 110],
      [22, 'IQ2_S', 256, 82],
      [23, 'IQ4_XS', 256, 136],
      [24, 'I8', 1, 1],
      [25, 'I16', 1, 2],
      [26, 'I32', 1, 4],
      [27, 'I64', 1, 8],
      [28, 'F64', 1, 8],
      [29, 'IQ1_M', 256, 56],
      [30, 'BF16', 1, 2],
      [34, 'TQ1_0', 256, 54],
      [35, 'TQ2_0', 256, 66],
      [39, 'MXFP4', 32, 17],
      [40, 'NVFP4', 64, 36],
      [41, 'Q1_0', 128, 18],
      [42, 'Q2_0', 64, 18],
    ] as const
  ).map(([id, name, blockSize, typeSize]) => [id, { name, blockSize, typeSize }]),
);

/** Type id of 32-bit float tensors. */
export const GGML_TYPE_F32 = 0;

/** Rounds `offset` up to a multiple of `alignment`, a power of two. */
export function alignOffset(offset: number, alignment: number): number {
  return Math.ceil(offset / alignment) * alignment;
}
