/**
 * Helpers shared by the op family modules: dimension arithmetic (numbers and symbols), broadcasting, axis
 * normalisation, attribute-or-input arguments, convolution/pooling window geometry, and small-tensor
 * construction for constant folding. Op modules use these instead of repeating the rules.
 */
import { ShearsError } from '../errors.js';
import { DataType, isFloatType } from '../ir/dtype.js';
import { attrInts, attrString, type Dim, type Node, type TensorType } from '../ir/graph.js';
import { numel, toNumbers, type Tensor } from '../ir/tensor.js';
import type { Cost, CostContext, InferContext, WeightSpec } from './types.js';

// ------------------------------------------------------------------------------------------------- errors

/** A ShearsError about the node of `ctx`. */
export function opError(ctx: InferContext, message: string): never {
  throw new ShearsError(`${ctx.node.opType}: ${message}`, { node: ctx.node.name || ctx.node.opType });
}

// ---------------------------------------------------------------------------------------------------- dims

export function isNum(d: Dim | undefined): d is number {
  return typeof d === 'number';
}

/** Product of dims: a number when all are numbers, otherwise a symbolic product (or null). */
export function dimProd(dims: readonly Dim[]): Dim {
  let acc: Dim = 1;
  for (const d of dims) acc = dimMul(acc, d);
  return acc;
}

/** Product of dims when all are fixed, else undefined. */
export function staticProd(dims: readonly Dim[] | undefined): number | undefined {
  if (!dims) return undefined;
  let n = 1;
  for (const d of dims) {
    if (!isNum(d)) return undefined;
    n *= d;
  }
  return n;
}

export function isStatic(shape: readonly Dim[] | undefined): shape is number[] {
  return shape !== undefined && shape.every(isNum);
}

function symText(d: string): string {
  return /^([A-Za-z_][\w.:]*|\d+)$/.test(d) ? d : `(${d})`;
}

export function dimMul(a: Dim, b: Dim): Dim {
  if (isNum(a) && isNum(b)) return a * b;
  if (a === 1) return b;
  if (b === 1) return a;
  if (a === 0 || b === 0) return 0;
  if (a === null || b === null) return null;
  return `${symText(String(a))}*${symText(String(b))}`;
}

export function dimAdd(a: Dim, b: Dim): Dim {
  if (isNum(a) && isNum(b)) return a + b;
  if (a === 0) return b;
  if (b === 0) return a;
  if (a === null || b === null) return null;
  return `${symText(String(a))}+${symText(String(b))}`;
}

export function dimSub(a: Dim, b: Dim): Dim {
  if (isNum(a) && isNum(b)) return a - b;
  if (b === 0) return a;
  if (a === null || b === null) return null;
  if (a === b) return 0;
  return `${symText(String(a))}-${symText(String(b))}`;
}

/** A dim as a product of factors: 'N*64' -> ['N', 64]; numbers and plain symbols are their own factor. */
export function dimFactors(d: Dim): Dim[] {
  if (typeof d !== 'string') return [d];
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of d) {
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    if (ch === '*' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  if (parts.length === 1) return [d];
  return parts.flatMap((p) => {
    const q = p.startsWith('(') && p.endsWith(')') ? p.slice(1, -1) : p;
    return /^\d+$/.test(q) ? [Number(q)] : dimFactors(q);
  });
}

/** Floor division. */
export function dimDiv(a: Dim, b: Dim): Dim {
  if (isNum(a) && isNum(b)) return b === 0 ? null : Math.floor(a / b);
  if (b === 1) return a;
  if (a === b && a !== null) return 1;
  return null;
}

/** Whether a dim or shape value is known to be >= 0: numbers >= 0 and symbols without a minus (a plain symbol is a size). */
export function dimNonNegative(d: Dim): boolean {
  return isNum(d) ? d >= 0 : d !== null && !d.includes('-');
}

/** min(a, b) of two sizes: a number when both are numbers, else the symbol `min(a,b)` (see broadcastDim). */
export function dimMin(a: Dim, b: Dim): Dim {
  if (isNum(a) && isNum(b)) return Math.min(a, b);
  if (a === b) return a;
  if (a === null || b === null) return null;
  return `min(${a},${b})`;
}

/** The arguments of a `min(...)` symbol made by dimMin, else undefined. */
function minArgs(d: Dim): Dim[] | undefined {
  if (typeof d !== 'string' || !d.startsWith('min(') || !d.endsWith(')')) return undefined;
  const args: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of d.slice(4, -1)) {
    if (ch === '(') depth++;
    else if (ch === ')' && --depth < 0) return undefined; // min(a)*min(b)
    if (ch === ',' && depth === 0) {
      args.push(cur);
      cur = '';
    } else cur += ch;
  }
  args.push(cur);
  return args.map((a) => (/^\d+$/.test(a) ? Number(a) : a));
}

/** Equality of two shape values as 1/0, null when it depends on the symbols (sizes are never negative). */
export function dimEqual(a: Dim, b: Dim): Dim {
  if (isNum(a) && isNum(b)) return a === b ? 1 : 0;
  if (a !== null && a === b) return 1;
  if ((isNum(a) && a < 0 && dimNonNegative(b)) || (isNum(b) && b < 0 && dimNonNegative(a))) return 0;
  return null;
}

/** Elementwise dim arithmetic of shape values (as used in shape subgraphs), with numpy broadcasting. */
export function dimsBinary(a: readonly Dim[], b: readonly Dim[], f: (x: Dim, y: Dim) => Dim): Dim[] | undefined {
  if (a.length !== b.length && a.length !== 1 && b.length !== 1) return undefined;
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) out.push(f(a[a.length === 1 ? 0 : i]!, b[b.length === 1 ? 0 : i]!));
  return out;
}

// ----------------------------------------------------------------------------------------------- broadcast

/**
 * Whether broadcasting `a` with `m` = min(a, k...) (all k >= 1) gives `a`: m <= a, so either m = a, or m < a and
 * then m must be 1 (a = 1 would need m = 0 < 1 <= k). E.g. x[:T] of a [256, d] cache broadcast with [.., T, d].
 */
function isMinOf(a: Dim, m: Dim): boolean {
  const args = minArgs(m);
  if (a === null || !args?.includes(a)) return false;
  return args.every((k) => k === a || (isNum(k) && k >= 1));
}

/** Broadcasts two dims; throws (message only) when two fixed sizes differ and neither is 1. */
function broadcastDim(a: Dim, b: Dim): Dim {
  if (a === b) return a;
  if (a === 1) return b;
  if (b === 1) return a;
  if (isNum(a) && isNum(b)) throw new Error(`cannot broadcast ${a} with ${b}`);
  if (isNum(a)) return a;
  if (isNum(b)) return b;
  if (isMinOf(a, b)) return a;
  if (isMinOf(b, a)) return b;
  return null;
}

/** Numpy-style multidirectional broadcasting of several shapes; errors name the node. */
export function broadcastShapes(ctx: InferContext, shapes: readonly (readonly Dim[])[]): Dim[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: Dim[] = new Array<Dim>(rank).fill(1);
  for (const s of shapes) {
    const off = rank - s.length;
    for (let i = 0; i < s.length; i++) {
      try {
        out[off + i] = broadcastDim(out[off + i]!, s[i]!);
      } catch {
        opError(ctx, `input shapes ${shapes.map(fmtShape).join(' and ')} do not broadcast`);
      }
    }
  }
  return out;
}

export function fmtShape(s: readonly Dim[]): string {
  return `[${s.map((d) => (d === null ? '?' : String(d))).join(',')}]`;
}

// ---------------------------------------------------------------------------------------------------- axes

/** Normalises a possibly negative axis into [0, rank); errors name the node. */
export function normAxis(ctx: InferContext, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) opError(ctx, `axis ${axis} is out of range for rank ${rank}`);
  return a;
}

export function normAxes(ctx: InferContext, axes: readonly number[], rank: number): number[] {
  const out = axes.map((a) => normAxis(ctx, a, rank));
  if (new Set(out).size !== out.length) opError(ctx, `repeated axes [${axes.join(',')}]`);
  return out;
}

// ---------------------------------------------------------------------------------------- arguments/types

/** Whether input i is present (not omitted). */
export function hasInput(ctx: InferContext, i: number): boolean {
  return i < ctx.inputCount && (ctx.node.inputs[i] ?? '') !== '';
}

/** Values of a constant input as numbers (undefined when absent or not constant). */
export function constNumbers(ctx: InferContext, i: number): number[] | undefined {
  if (!hasInput(ctx, i)) return undefined;
  const c = ctx.constant(i);
  if (c) return toNumbers(c);
  const v = ctx.value(i);
  return v && v.every(isNum) ? (v as number[]) : undefined;
}

/**
 * An int list that older opsets give as attribute and newer ones as input.
 * Returns undefined when it is not given at all, null when it is given but not constant.
 */
export function intsArg(ctx: InferContext, attr: string, input: number): number[] | null | undefined {
  const a = attrInts(ctx.node, attr);
  if (a !== undefined) return a;
  if (!hasInput(ctx, input)) return undefined;
  return constNumbers(ctx, input) ?? null;
}

/** The shape of input i when its type and rank are known. */
export function shapeOf(ctx: InferContext, i: number): Dim[] | undefined {
  return ctx.input(i)?.shape;
}

export function tt(elemType: number, shape?: Dim[]): TensorType {
  return shape ? { elemType, shape } : { elemType };
}

/** The input's type with another shape (unknown shape when `shape` is undefined). */
export function like(t: TensorType | undefined, shape: Dim[] | undefined): TensorType | undefined {
  return t ? tt(t.elemType, shape) : undefined;
}

/** Requires a known rank (returns undefined otherwise) and checks a minimum. */
export function requireRank(ctx: InferContext, i: number, min: number): Dim[] | undefined {
  const s = shapeOf(ctx, i);
  if (s && s.length < min) opError(ctx, `input ${i} has rank ${s.length}, expected at least ${min}`);
  return s;
}

/** Checks that two dims can be equal (fixed sizes must match); `what` may be lazy (costly messages). */
export function checkDim(ctx: InferContext, a: Dim | undefined, b: Dim | undefined, what: string | (() => string)): void {
  if (isNum(a) && isNum(b) && a !== b) opError(ctx, `${typeof what === 'string' ? what : what()}: ${a} vs ${b}`);
}

// ------------------------------------------------------------------------------------------------ windows

export interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  /** [begin..., end...] after resolving auto_pad for the given input sizes (undefined where it depends on an unknown size). */
  pads: (number | undefined)[];
  autoPad: string;
}

/**
 * Spatial window attributes of Conv/ConvTranspose/pooling: kernel (attribute or given), strides, dilations,
 * pads with auto_pad resolved against the spatial input sizes.
 */
export function windowAttrs(ctx: InferContext, spatial: readonly Dim[], kernel: number[]): Window {
  return nodeWindow(ctx.node, spatial, kernel, (msg) => opError(ctx, msg));
}

/** windowAttrs for any caller (gradient rules, ...): `fail` reports attributes that do not fit. */
export function nodeWindow(node: Node, spatial: readonly Dim[], kernel: number[], fail: (msg: string) => never): Window {
  const k = kernel.length;
  const strides = attrInts(node, 'strides') ?? new Array<number>(k).fill(1);
  const dilations = attrInts(node, 'dilations') ?? new Array<number>(k).fill(1);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  if (strides.length !== k || dilations.length !== k) fail(`strides/dilations do not match the ${k} spatial axes`);
  let pads: (number | undefined)[] = attrInts(node, 'pads') ?? new Array<number>(2 * k).fill(0);
  if (pads.length !== 2 * k) fail(`pads has ${pads.length} values, expected ${2 * k}`);
  if (autoPad === 'VALID') pads = new Array<number>(2 * k).fill(0);
  else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    pads = new Array<number | undefined>(2 * k);
    for (let i = 0; i < k; i++) {
      const n = spatial[i];
      if (!isNum(n)) continue;
      const out = Math.ceil(n / strides[i]!);
      const total = Math.max(0, (out - 1) * strides[i]! + (kernel[i]! - 1) * dilations[i]! + 1 - n);
      const small = Math.floor(total / 2);
      pads[i] = autoPad === 'SAME_UPPER' ? small : total - small;
      pads[i + k] = total - pads[i]!;
    }
  } else if (autoPad !== 'NOTSET') fail(`unknown auto_pad '${autoPad}'`);
  return { kernel, strides, dilations, pads, autoPad };
}

/** Output size of a sliding window along one axis (Conv, pools). */
export function windowOut(ctx: InferContext, w: Window, axis: number, n: Dim, ceilMode = false): Dim {
  const k = w.kernel.length;
  const s = w.strides[axis]!;
  const d = w.dilations[axis]!;
  const ext = (w.kernel[axis]! - 1) * d + 1;
  if (w.autoPad === 'SAME_UPPER' || w.autoPad === 'SAME_LOWER') return isNum(n) ? Math.ceil(n / s) : s === 1 ? n : null;
  const pb = w.pads[axis];
  const pe = w.pads[axis + k];
  if (pb === undefined || pe === undefined) return null;
  if (!isNum(n)) return s === 1 && pb + pe === ext - 1 ? n : null;
  const span = n + pb + pe - ext;
  if (span < 0) opError(ctx, `window of extent ${ext} does not fit the input size ${n} (pads ${pb}+${pe})`);
  if (!ceilMode) return Math.floor(span / s) + 1;
  let out = Math.ceil(span / s) + 1;
  // The last window must start inside the input or the begin padding.
  if ((out - 1) * s >= n + pb) out--;
  return out;
}

/** The kernel sizes of a window op: its kernel_shape attribute or the weight's trailing dims. */
export function kernelShape(ctx: InferContext, weight: readonly Dim[] | undefined, spatialRank: number): number[] | undefined {
  const k = attrInts(ctx.node, 'kernel_shape');
  if (k) {
    if (k.length !== spatialRank) opError(ctx, `kernel_shape has ${k.length} values for ${spatialRank} spatial axes`);
    return k;
  }
  const ws = weight?.slice(2);
  return ws && isStatic(ws) ? ws : undefined;
}

// ---------------------------------------------------------------------------------------------------- cost

export const ZERO_COST: Cost = { macs: 0, flops: 0 };

/** Number of elements of output i when static (0 when unknown). */
export function outElems(ctx: CostContext, i = 0): number {
  return staticProd(ctx.output(i)?.shape) ?? 0;
}

/** A cost function charging `perElement` flops per element of output 0. */
export function flopsPerOutput(perElement: number): (ctx: CostContext) => Cost {
  return (ctx) => ({ macs: 0, flops: perElement * outElems(ctx) });
}

// --------------------------------------------------------------------------------------- folding helpers

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

export function isIntLike(dtype: number): boolean {
  return !isFloatType(dtype) && dtype !== DataType.STRING && dtype !== DataType.UNDEFINED;
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

/** A weight spec without its bias when the node omits the bias input. */
export function withBias(node: Node, s: WeightSpec): WeightSpec {
  if (s.bias === undefined || (node.inputs[s.bias] ?? '') !== '') return s;
  return { input: s.input, outAxis: s.outAxis, inAxis: s.inAxis };
}
