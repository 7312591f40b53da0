import { DataType, dtypeBits, dtypeName } from './dtype.js';

/**
 * Element storage by dtype:
 * - float32/float64/int8/uint8/int16/uint16/int32/uint32/int64/uint64: the matching typed array;
 * - bool and the 8-bit floats: Uint8Array; float16 and bfloat16: Uint16Array of the bit patterns;
 * - complex64/complex128: Float32Array/Float64Array of interleaved (re, im);
 * - int4/uint4/float4e2m1: Uint8Array of packed nibbles, as in raw_data (two elements a byte, low nibble first);
 * - string: an array of byte strings.
 */
export type NumericData =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;
export type TensorData = NumericData | Uint8Array[];

export interface Tensor {
  dtype: number;
  dims: number[];
  data: TensorData;
}

export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** Element layout around an axis: index = (o * len + c) * inner + i. */
export function axisLayout(dims: readonly number[], axis: number): { outer: number; len: number; inner: number } {
  let outer = 1;
  let inner = 1;
  for (let d = 0; d < axis; d++) outer *= dims[d]!;
  for (let d = axis + 1; d < dims.length; d++) inner *= dims[d]!;
  return { outer, len: dims[axis]!, inner };
}

type TypedCtor = { new (buf: ArrayBufferLike, off: number, len: number): NumericData; new (len: number): NumericData; BYTES_PER_ELEMENT: number };

export function typedArrayCtor(dtype: number): TypedCtor | undefined {
  switch (dtype) {
    case DataType.FLOAT: case DataType.COMPLEX64: return Float32Array as unknown as TypedCtor;
    case DataType.DOUBLE: case DataType.COMPLEX128: return Float64Array as unknown as TypedCtor;
    case DataType.INT8: return Int8Array as unknown as TypedCtor;
    case DataType.UINT8: case DataType.BOOL: case DataType.FLOAT8E4M3FN: case DataType.FLOAT8E4M3FNUZ:
    case DataType.FLOAT8E5M2: case DataType.FLOAT8E5M2FNUZ: case DataType.UINT4: case DataType.INT4:
    case DataType.FLOAT4E2M1:
      return Uint8Array as unknown as TypedCtor;
    case DataType.INT16: return Int16Array as unknown as TypedCtor;
    case DataType.UINT16: case DataType.FLOAT16: case DataType.BFLOAT16: return Uint16Array as unknown as TypedCtor;
    case DataType.INT32: return Int32Array as unknown as TypedCtor;
    case DataType.UINT32: return Uint32Array as unknown as TypedCtor;
    case DataType.INT64: return BigInt64Array as unknown as TypedCtor;
    case DataType.UINT64: return BigUint64Array as unknown as TypedCtor;
    default: return undefined;
  }
}

/** Number of typed-array slots that hold `n` elements of `dtype`. */
export function storageLength(dtype: number, n: number): number {
  if (dtype === DataType.COMPLEX64 || dtype === DataType.COMPLEX128) return 2 * n;
  if (dtypeBits(dtype) === 4) return Math.ceil(n / 2);
  return n;
}

/**
 * Views little-endian raw bytes as the dtype's typed array: zero-copy when the bytes are aligned for the
 * element size, one copy otherwise.
 */
export function fromRawBytes(dtype: number, bytes: Uint8Array, n: number): NumericData {
  const Ctor = typedArrayCtor(dtype);
  if (!Ctor) throw new Error(`cannot hold raw data of ${dtypeName(dtype)}`);
  const len = storageLength(dtype, n);
  const need = len * Ctor.BYTES_PER_ELEMENT;
  if (bytes.byteLength !== need) {
    throw new Error(`raw_data holds ${bytes.byteLength} bytes, ${dtypeName(dtype)} of ${n} elements needs ${need}`);
  }
  if (bytes.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) return new Ctor(bytes.buffer, bytes.byteOffset, len);
  const copy = new Uint8Array(need);
  copy.set(bytes);
  return new Ctor(copy.buffer, 0, len);
}

export function toRawBytes(data: NumericData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export function createTensor(dtype: number, dims: number[], data?: TensorData): Tensor {
  const n = numel(dims);
  if (data === undefined) {
    if (dtype === DataType.STRING) data = Array.from({ length: n }, () => new Uint8Array(0));
    else {
      const Ctor = typedArrayCtor(dtype);
      if (!Ctor) throw new Error(`cannot create a tensor of ${dtypeName(dtype)}`);
      data = new Ctor(storageLength(dtype, n));
    }
  }
  return { dtype, dims, data };
}

export function floatTensor(dims: number[], values?: ArrayLike<number>): Tensor {
  const data = new Float32Array(numel(dims));
  if (values) data.set(values);
  return { dtype: DataType.FLOAT, dims, data };
}

/** A float32 tensor over `data` itself (no copy, unlike floatTensor). */
export function floatView(dims: number[], data: Float32Array): Tensor {
  return { dtype: DataType.FLOAT, dims, data };
}

export function int64Tensor(dims: number[], values: ArrayLike<number | bigint>): Tensor {
  const data = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]!);
  return { dtype: DataType.INT64, dims, data };
}

/** Elements as JS numbers (int64 converted; large values lose precision). Not for strings or packed types. */
export function toNumbers(t: Tensor): number[] {
  const d = t.data;
  if (Array.isArray(d)) throw new Error('string tensor has no numeric values');
  if (t.dtype === DataType.FLOAT16) return Array.from(d as Uint16Array, halfToFloat);
  if (t.dtype === DataType.BFLOAT16) return Array.from(d as Uint16Array, (b) => bf16ToFloat(b));
  if (dtypeBits(t.dtype) === 4) throw new Error(`${dtypeName(t.dtype)} values are packed`);
  const out = new Array<number>(d.length);
  for (let i = 0; i < d.length; i++) out[i] = Number(d[i]);
  return out;
}

/** Elements as float32 (copy unless already float32). */
export function toFloat32(t: Tensor): Float32Array {
  if (t.data instanceof Float32Array && t.dtype === DataType.FLOAT) return t.data;
  return Float32Array.from(toNumbers(t));
}

/** One float32 and its bits, for conversions between float formats. */
const scratchFloat = new Float32Array(1);
const scratchBits = new Uint32Array(scratchFloat.buffer);

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

export function floatToHalf(v: number): number {
  scratchFloat[0] = v;
  const x = scratchBits[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

export function bf16ToFloat(b: number): number {
  scratchBits[0] = b << 16;
  return scratchFloat[0]!;
}
