/** ONNX TensorProto.DataType values. */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
  UINT4: 21,
  INT4: 22,
  FLOAT4E2M1: 23,
} as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

const NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(DataType).map(([k, v]) => [v, k.toLowerCase()]),
);

export function dtypeName(t: number): string {
  return NAMES[t] ?? `dtype(${t})`;
}

/** Bits per element as stored in raw_data (4 for the packed 4-bit types, 0 for strings/unknown). */
export function dtypeBits(t: number): number {
  switch (t) {
    case DataType.FLOAT: case DataType.INT32: case DataType.UINT32: return 32;
    case DataType.DOUBLE: case DataType.INT64: case DataType.UINT64: case DataType.COMPLEX64: return 64;
    case DataType.COMPLEX128: return 128;
    case DataType.FLOAT16: case DataType.BFLOAT16: case DataType.INT16: case DataType.UINT16: return 16;
    case DataType.UINT8: case DataType.INT8: case DataType.BOOL:
    case DataType.FLOAT8E4M3FN: case DataType.FLOAT8E4M3FNUZ: case DataType.FLOAT8E5M2: case DataType.FLOAT8E5M2FNUZ:
      return 8;
    case DataType.UINT4: case DataType.INT4: case DataType.FLOAT4E2M1: return 4;
    default: return 0;
  }
}

export function isFloatType(t: number): boolean {
  return t === DataType.FLOAT || t === DataType.DOUBLE || t === DataType.FLOAT16 || t === DataType.BFLOAT16 ||
    (t >= DataType.FLOAT8E4M3FN && t <= DataType.FLOAT8E5M2FNUZ) || t === DataType.FLOAT4E2M1;
}

export function isIntegerType(t: number): boolean {
  return t === DataType.INT8 || t === DataType.UINT8 || t === DataType.INT16 || t === DataType.UINT16 ||
    t === DataType.INT32 || t === DataType.UINT32 || t === DataType.INT64 || t === DataType.UINT64 ||
    t === DataType.INT4 || t === DataType.UINT4;
}

/** The onnxruntime-js tensor type name of a dtype, where onnxruntime-js has one. */
export function ortTypeName(t: number): string | undefined {
  switch (t) {
    case DataType.FLOAT: return 'float32';
    case DataType.DOUBLE: return 'float64';
    case DataType.INT8: return 'int8';
    case DataType.UINT8: return 'uint8';
    case DataType.INT16: return 'int16';
    case DataType.UINT16: return 'uint16';
    case DataType.INT32: return 'int32';
    case DataType.UINT32: return 'uint32';
    case DataType.INT64: return 'int64';
    case DataType.UINT64: return 'uint64';
    case DataType.BOOL: return 'bool';
    case DataType.FLOAT16: return 'float16';
    case DataType.STRING: return 'string';
    default: return undefined;
  }
}
