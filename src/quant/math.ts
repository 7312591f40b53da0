/**
 * Quantization arithmetic, as ONNX QuantizeLinear/DequantizeLinear define it:
 *   q = saturate(round_half_to_even(x / scale) + zero_point),   x' = (q - zero_point) * scale.
 * Activations: asymmetric uint8 (onnxruntime's x86 integer kernels want uint8 activations) or symmetric int8
 * (TensorRT). Weights: symmetric int8, per output channel or per tensor (zero point 0, range [-127, 127], or
 * [-63, 63] with reduce-range, the default for uint8 activations: see defaultReduceRange).
 * Bias: int32 with scale s_x * s_w and zero point 0.
 */
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import type { Tensor } from '../ir/tensor.js';
import { toFloat32 } from '../ir/tensor.js';

export type QType = 'uint8' | 'int8';

export interface QParams {
  scale: number;
  zeroPoint: number;
  type: QType;
}

export const QRANGE: Record<QType, [number, number]> = { uint8: [0, 255], int8: [-128, 127] };

/** Round half to even (banker's rounding), as QuantizeLinear rounds. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  // Math.round rounds .5 up; step back when that lands on an odd number at an exact tie.
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/** QuantizeLinear of one value (x / scale evaluated in float32, like onnxruntime). */
export function quantizeValue(x: number, p: QParams): number {
  const [lo, hi] = QRANGE[p.type];
  return clamp(roundHalfEven(Math.fround(x / p.scale)) + p.zeroPoint, lo, hi);
}

export function dequantizeValue(q: number, p: QParams): number {
  return Math.fround((q - p.zeroPoint) * p.scale);
}

/** x -> dequantize(quantize(x)): the value a Q/DQ pair lets through. */
export function fakeQuant(x: number, p: QParams): number {
  return dequantizeValue(quantizeValue(x, p), p);
}

/** The smallest scale used (a tensor that is all zeros still needs a positive scale). */
const MIN_SCALE = 1e-15;

/**
 * Scale and zero point for a calibrated range [lo, hi]. The range is widened to include 0 (so that zero, e.g.
 * padding, is exact). uint8: asymmetric, zero point round(-lo/scale); int8: symmetric, zero point 0.
 */
export function activationParams(lo: number, hi: number, type: QType = 'uint8'): QParams {
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || lo > hi) throw new ShearsError(`cannot quantize the range [${lo}, ${hi}]`);
  const rmin = Math.min(lo, 0);
  const rmax = Math.max(hi, 0);
  if (type === 'int8') {
    const a = Math.max(-rmin, rmax);
    return { scale: Math.fround(Math.max(a / 127, MIN_SCALE)), zeroPoint: 0, type };
  }
  const scale = Math.fround(Math.max((rmax - rmin) / 255, MIN_SCALE));
  const zeroPoint = clamp(roundHalfEven(-rmin / scale), 0, 255) + 0; // + 0: no negative zero
  return { scale, zeroPoint, type };
}

/**
 * Whether weights get 7 bits unless the caller says otherwise. onnxruntime's x86 kernels for uint8 activations x
 * int8 weights (U8S8: QLinearConv, QGemm, QLinearMatMul, DynamicQuantizeMatMul, MatMulInteger) add pairs of
 * u8*s8 products into int16 (vpmaddubsw) on CPUs without VNNI (AVX2, AVX-512 before VNNI, SSE4.1), which
 * saturates once a pair passes 32767: 255*127*2 = 64770 can, 255*63*2 = 32130 cannot. The result is silently
 * wrong there, and a quantized model is often deployed on another CPU than the one that built it, so uint8
 * activations get 7-bit weights by default; 8 bits are exact only on x86 with VNNI (AVX512-VNNI, AVX-VNNI) and on
 * ARM. int8 activations (the TensorRT form) keep 8 bits: onnxruntime's x86 CPU provider does not fuse them into
 * integer kernels, and TensorRT accumulates in int32.
 */
export function defaultReduceRange(activations: QType): boolean {
  return activations === 'uint8';
}

export interface WeightQuant {
  /** int8 data, same dims as the float weight. */
  q: Tensor;
  /** One scale per channel along `axis` (length 1 per tensor). */
  scales: Float32Array;
  /** The axis the scales run along (undefined: per tensor). */
  axis: number | undefined;
}

/**
 * Symmetric int8 quantization of a weight: scale_c = max|w_c| / 127 per channel along `axis` (or one scale
 * for the whole tensor when axis is undefined), q in [-127, 127], zero point 0. `reduceRange` uses 7 bits
 * ([-63, 63]; see defaultReduceRange). `minScales` (per channel or one) raises scales where an int32 bias would
 * overflow (see minWeightScales).
 */
export function quantizeWeight(w: Tensor, axis: number | undefined, reduceRange = false, minScales?: Float32Array): WeightQuant {
  const x = toFloat32(w);
  const qmax = reduceRange ? 63 : 127;
  const dims = w.dims;
  const channels = axis === undefined ? 1 : dims[axis]!;
  const inner = axis === undefined ? x.length : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const amax = new Float32Array(channels);
  for (let i = 0; i < x.length; i++) {
    const c = axis === undefined ? 0 : Math.floor(i / inner) % channels;
    const a = Math.abs(x[i]!);
    if (a > amax[c]!) amax[c] = a;
  }
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) scales[c] = Math.max(amax[c]! / qmax, MIN_SCALE, minScales?.[minScales.length === 1 ? 0 : c] ?? 0);
  const q = new Int8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const c = axis === undefined ? 0 : Math.floor(i / inner) % channels;
    q[i] = clamp(roundHalfEven(Math.fround(x[i]! / scales[c]!)), -qmax, qmax);
  }
  return { q: { dtype: DataType.INT8, dims: [...dims], data: q }, scales, axis };
}

/** int32 bias with scale s_x * s_w[c] (per channel) and zero point 0. */
export function quantizeBias(b: Tensor, inputScale: number, weightScales: Float32Array): { q: Tensor; scales: Float32Array } {
  const x = toFloat32(b);
  const scales = new Float32Array(x.length);
  const q = new Int32Array(x.length);
  for (let c = 0; c < x.length; c++) {
    const s = Math.fround(inputScale * weightScales[weightScales.length === 1 ? 0 : c]!);
    scales[c] = s;
    q[c] = clamp(roundHalfEven(x[c]! / s), -(2 ** 31), 2 ** 31 - 1);
  }
  return { q: { dtype: DataType.INT32, dims: [...b.dims], data: q }, scales };
}

export function scalarTensor(dtype: number, v: number): Tensor {
  switch (dtype) {
    case DataType.FLOAT: return { dtype, dims: [], data: Float32Array.of(v) };
    case DataType.UINT8: return { dtype, dims: [], data: Uint8Array.of(v) };
    case DataType.INT8: return { dtype, dims: [], data: Int8Array.of(v) };
    case DataType.INT32: return { dtype, dims: [], data: Int32Array.of(v) };
    default: throw new Error(`scalarTensor: unsupported dtype ${dtype}`);
  }
}

export function qtypeDtype(t: QType): number {
  return t === 'uint8' ? DataType.UINT8 : DataType.INT8;
}

const INT32_MAX = 2 ** 31 - 1;

/**
 * Smallest weight scales that keep an int32 bias in range: |b_c| / (s_x * s_w_c) <= 2^31 - 1 (tiny input scales
 * times small weight scales would otherwise saturate the bias).
 */
export function minWeightScales(b: Tensor, inputScale: number): Float32Array {
  const x = toFloat32(b);
  const out = new Float32Array(x.length);
  for (let c = 0; c < x.length; c++) out[c] = (Math.abs(x[c]!) / (inputScale * INT32_MAX)) * (1 + 1e-6);
  return out;
}
