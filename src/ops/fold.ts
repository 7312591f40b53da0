/** Building blocks of constant folding (OpDef.fold): typed tensors from numbers, strides, elementwise and gather loops. */
import { DataType } from '../ir/dtype.js';
import { numel, toNumbers, type Tensor } from '../ir/tensor.js';

/** Largest output (elements) that constant folding computes in JS. */
export const FOLD_LIMIT = 1_000_000;

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

/** A tensor of `dtype` from JS numbers (rounding/clamping into the dtype's storage). */
export function makeTensor(dtype: number, dims: number[], values: ArrayLike<number>): Tensor | undefined {
  const n = values.length;
  switch (dtype) {
    case DataType.FLOAT: return { dtype, dims, data: Float32Array.from(values) };
    case DataType.DOUBLE: return { dtype, dims, data: Float64Array.from(values) };
    case DataType.INT64: {
      const d = new BigInt64Array(n);
      for (let i = 0; i < n; i++) d[i] = toInt64(values[i]!);
      return { dtype, dims, data: d };
    }
    case DataType.INT32: return { dtype, dims, data: Int32Array.from(values, Math.trunc) };
    case DataType.INT16: return { dtype, dims, data: Int16Array.from(values, Math.trunc) };
    case DataType.INT8: return { dtype, dims, data: Int8Array.from(values, Math.trunc) };
    case DataType.UINT8: return { dtype, dims, data: Uint8Array.from(values, Math.trunc) };
    case DataType.UINT16: return { dtype, dims, data: Uint16Array.from(values, Math.trunc) };
    case DataType.UINT32: return { dtype, dims, data: Uint32Array.from(values, Math.trunc) };
    case DataType.BOOL: return { dtype, dims, data: Uint8Array.from(values, (v) => (v ? 1 : 0)) };
    default: return undefined;
  }
}

function toInt64(v: number): bigint {
  if (Number.isNaN(v)) return 0n;
  if (v >= 9.2233720368547758e18) return INT64_MAX;
  if (v <= -9.2233720368547758e18) return INT64_MIN;
  return BigInt(Math.trunc(v));
}

/** Whether a tensor's values can be read as JS numbers for folding. */
export function foldable(t: Tensor | undefined): t is Tensor {
  if (!t || Array.isArray(t.data)) return false;
  return t.dtype === DataType.FLOAT || t.dtype === DataType.DOUBLE || t.dtype === DataType.BOOL ||
    (t.dtype >= DataType.UINT8 && t.dtype <= DataType.INT64) || t.dtype === DataType.UINT32;
}

/** Same tensor data under new dims (no copy: tensor data is immutable by convention). */
export function reshaped(t: Tensor, dims: number[]): Tensor {
  return { dtype: t.dtype, dims, data: t.data };
}

/** Strides of a row-major shape. */
export function stridesOf(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= dims[i]!;
  }
  return s;
}

/**
 * Evaluates an elementwise function over broadcast inputs into a tensor of `dtype` (undefined when too big or
 * not representable).
 */
export function foldElementwise(outDims: number[], dtype: number, inputs: Tensor[], f: (args: number[]) => number): Tensor | undefined {
  const n = numel(outDims);
  if (n > FOLD_LIMIT || !inputs.every(foldable)) return undefined;
  const vals = inputs.map((t) => toNumbers(t));
  const rank = outDims.length;
  const outStrides = stridesOf(outDims);
  const inStrides = inputs.map((t) => {
    const st = stridesOf(t.dims);
    const off = rank - t.dims.length;
    return outDims.map((_, a) => (a < off || t.dims[a - off] === 1 ? 0 : st[a - off]!));
  });
  const out = new Array<number>(n);
  const args = new Array<number>(inputs.length);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < inputs.length; j++) {
      let idx = 0;
      let rem = i;
      const s = inStrides[j]!;
      for (let a = 0; a < rank; a++) {
        const q = Math.floor(rem / outStrides[a]!);
        rem -= q * outStrides[a]!;
        idx += q * s[a]!;
      }
      args[j] = vals[j]![idx]!;
    }
    out[i] = f(args);
  }
  return makeTensor(dtype, outDims, out);
}

/** Gathers elements of a row-major tensor by flat source index. */
export function gatherFlat(t: Tensor, dims: number[], index: (i: number) => number): Tensor | undefined {
  const n = numel(dims);
  if (n > FOLD_LIMIT || Array.isArray(t.data)) return undefined;
  const src = t.data;
  const Ctor = src.constructor as { new (n: number): typeof src };
  const out = new Ctor(n);
  for (let i = 0; i < n; i++) (out as unknown as ArrayLike<unknown> & Record<number, unknown>)[i] = src[index(i)];
  return { dtype: t.dtype, dims, data: out };
}
