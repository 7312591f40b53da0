/**
 * Data movement and shape ops: Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split,
 * Slice, Gather(Elements/ND), Expand, Tile, Pad, Resize/Upsample, DepthToSpace/SpaceToDepth, Identity,
 * Dropout, NonZero, Scatter*. Most of them fold on constants and carry symbolic shape values (Shape(x)[0] = N)
 * so that exporter shape subgraphs resolve. No arithmetic cost (data movement) except Resize (per element).
 */
import { DataType } from '../ir/dtype.js';
import { attrFloats, attrInt, attrInts, attrString, type Dim, type TensorType } from '../ir/graph.js';
import { int64Tensor, numel, type Tensor } from '../ir/tensor.js';
import type { InferContext, OpDef } from './types.js';
import { inputInts, intsArg, nodeAxis, normAxes, numericSlice, opError, padArgs, present, sliceArgs } from './args.js';
import { broadcastShapes } from './broadcast.js';
import { flopsPerOutput } from './cost.js';
import { dimAdd, dimDiv, dimFactors, dimMin, dimMul, dimNonNegative, dimProd, dimSub, fmtShape, isNum, isStatic, staticProd } from './dims.js';
import { FOLD_LIMIT, foldElementwise, gatherFlat, reshaped, stridesOf } from './fold.js';
import { axesCount, checkDim, like, shapeOf, tt } from './shape-rules.js';
import { inferSame, symbolicSame } from './elementwise.js';

// ----------------------------------------------------------------------------------------- Shape, Size

function shapeRange(ctx: InferContext, rank: number): [number, number] {
  const clamp = (v: number) => Math.min(rank, Math.max(0, v < 0 ? v + rank : v));
  return [clamp(attrInt(ctx.node, 'start', 0)), clamp(attrInt(ctx.node, 'end', rank))];
}

function shapeValue(ctx: InferContext): Dim[] | undefined {
  const s = shapeOf(ctx, 0);
  if (!s) return undefined;
  const [a, b] = shapeRange(ctx, s.length);
  return s.slice(a, b);
}

const Shape: OpDef = {
  infer(ctx) {
    const v = shapeValue(ctx);
    return [tt(DataType.INT64, v ? [v.length] : [null])];
  },
  symbolic: (ctx) => [shapeValue(ctx)],
  fold(ctx) {
    const v = shapeValue(ctx);
    return v && isStatic(v) ? [int64Tensor([v.length], v)] : undefined;
  },
};

const Size: OpDef = {
  infer: () => [tt(DataType.INT64, [])],
  symbolic(ctx) {
    const s = shapeOf(ctx, 0);
    return [s ? [dimProd(s)] : undefined];
  },
  fold(ctx) {
    const n = staticProd(shapeOf(ctx, 0));
    return n === undefined ? undefined : [int64Tensor([], [n])];
  },
};

// ---------------------------------------------------------------------------------------------- Reshape

/** Removes from `pool` one element equal to each of `dims` where possible; returns what was not matched. */
function cancelDims(pool: Dim[], dims: readonly Dim[]): Dim[] {
  const rest: Dim[] = [];
  for (const d of dims) {
    const j = d === null ? -1 : pool.indexOf(d);
    if (j >= 0) pool.splice(j, 1);
    else rest.push(d);
  }
  return rest;
}

/**
 * pool / rest when what is left of rest is numbers that divide pool's numbers: the quotient times pool's symbols
 * ([N,2,4,T,32] to [0,8,-1,32] leaves pool [2,4,T], rest [8]: T).
 */
function quotient(pool: readonly Dim[], rest: readonly Dim[]): Dim {
  const numRest = staticProd(rest);
  const numPool = staticProd(pool.filter(isNum));
  if (numRest === undefined || numPool === undefined || numRest === 0 || numPool % numRest !== 0) return null;
  return dimProd([numPool / numRest, ...pool.filter((d) => !isNum(d))]);
}

/** Output shape of Reshape(x, target) with 0 (copy, unless allowzero) and -1 (infer) entries. */
function reshapeShape(ctx: InferContext, x: readonly Dim[] | undefined, target: readonly Dim[]): Dim[] {
  const allowZero = attrInt(ctx.node, 'allowzero', 0) !== 0;
  const out = target.map((d, i): Dim => {
    if (d === 0 && !allowZero) {
      if (!x) return null;
      if (i >= x.length) opError(ctx, `shape entry ${i} is 0 (copy) but the input has rank ${x.length}`);
      return x[i]!;
    }
    if (isNum(d) && d < -1) opError(ctx, `invalid shape entry ${d}`);
    return d;
  });
  const inferAt = out.indexOf(-1);
  if (out.lastIndexOf(-1) !== inferAt) opError(ctx, 'more than one -1 in the shape');
  if (!x) {
    if (inferAt >= 0) out[inferAt] = null;
    return out;
  }
  // Cancel equal dims (numbers or symbols) between input and target; what is left decides the -1 or the check.
  const pool = x.flatMap(dimFactors);
  const others = out.filter((_, i) => i !== inferAt).flatMap(dimFactors);
  // (A zero-sized dim absorbs everything: compare whole products then.)
  const rest = x.includes(0) || others.includes(0) ? others : cancelDims(pool, others);
  const numPool = staticProd(pool);
  const numRest = staticProd(rest);
  if (inferAt >= 0) {
    if (rest.length === 0) out[inferAt] = dimProd(pool);
    else if (numPool !== undefined && numRest !== undefined) {
      if (numRest === 0 || numPool % numRest !== 0) opError(ctx, `cannot reshape ${fmtShape(x)} to ${fmtShape(target)}`);
      out[inferAt] = numPool / numRest;
    } else out[inferAt] = quotient(pool, rest);
  } else if (numPool !== undefined && numRest !== undefined && numPool !== numRest) {
    opError(ctx, `cannot reshape ${fmtShape(x)} to ${fmtShape(target)}: element counts differ`);
  }
  return out;
}

function reshapeTarget(ctx: InferContext): Dim[] | undefined {
  return ctx.value(1);
}

const Reshape: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    if (!x) return [undefined];
    const target = reshapeTarget(ctx);
    if (target) return [tt(x.elemType, reshapeShape(ctx, x.shape, target))];
    const s = shapeOf(ctx, 1);
    return [tt(x.elemType, s && isNum(s[0]) ? new Array<Dim>(s[0]).fill(null) : undefined)];
  },
  symbolic: symbolicSame,
  foldCopies: true,
  fold(ctx, inputs) {
    const x = inputs[0];
    const target = reshapeTarget(ctx);
    if (!x || !target) return undefined;
    const out = reshapeShape(ctx, x.dims, target);
    return isStatic(out) ? [reshaped(x, out)] : undefined;
  },
  concretize(ctx) {
    if (ctx.constant(1)) return undefined;
    const x = shapeOf(ctx, 0);
    const target = reshapeTarget(ctx);
    if (!x || !target) return undefined;
    const allowZero = attrInt(ctx.node, 'allowzero', 0) !== 0;
    let free = target.includes(-1) ? 1 : 0;
    const vals: number[] = [];
    for (let i = 0; i < target.length; i++) {
      const d = target[i]!;
      if (isNum(d)) vals.push(d);
      else if (!allowZero && i < x.length && x[i] === d) vals.push(0);
      else if (free++ === 0) vals.push(-1);
      else return undefined;
    }
    return { input: 1, tensor: int64Tensor([vals.length], vals) };
  },
};

const Flatten: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    if (!x?.shape) return [x && tt(x.elemType, [null, null])];
    const r = x.shape.length;
    let axis = attrInt(ctx.node, 'axis', 1);
    if (axis < 0) axis += r;
    if (axis < 0 || axis > r) opError(ctx, `axis ${attrInt(ctx.node, 'axis', 1)} is out of range for rank ${r}`);
    return [tt(x.elemType, [dimProd(x.shape.slice(0, axis)), dimProd(x.shape.slice(axis))])];
  },
  foldCopies: true,
  fold(ctx, inputs) {
    const x = inputs[0];
    const out = x && this.infer(ctx)[0]?.shape;
    return x && out && isStatic(out) ? [reshaped(x, out)] : undefined;
  },
};

// ----------------------------------------------------------------------------------- Squeeze, Unsqueeze

function squeezeShape(ctx: InferContext, x: readonly Dim[]): Dim[] | undefined {
  const axes = intsArg(ctx, 'axes', 1);
  if (axes === null) {
    const k = axesCount(ctx, 1);
    return k !== undefined && k > 0 && k <= x.length ? x.map(() => null as Dim).slice(k) : undefined;
  }
  if (axes === undefined) {
    if (!x.every(isNum)) return undefined;
    return x.filter((d) => d !== 1);
  }
  const ax = normAxes(ctx, axes, x.length);
  for (const a of ax) if (isNum(x[a]) && x[a] !== 1) opError(ctx, `cannot squeeze axis ${a} of size ${x[a]}`);
  return x.filter((_, i) => !ax.includes(i));
}

function unsqueezeShape(ctx: InferContext, x: readonly Dim[]): Dim[] | undefined {
  const axes = intsArg(ctx, 'axes', 1);
  if (axes === null) {
    const k = axesCount(ctx, 1);
    return k === undefined ? undefined : Array.from({ length: x.length + k }, () => null);
  }
  if (axes === undefined) opError(ctx, 'axes are required');
  const r = x.length + axes.length;
  const ax = normAxes(ctx, axes, r);
  const out: Dim[] = [];
  let j = 0;
  for (let i = 0; i < r; i++) out.push(ax.includes(i) ? 1 : x[j++]!);
  return out;
}

function reshapeLike(rule: (ctx: InferContext, x: readonly Dim[]) => Dim[] | undefined): OpDef {
  return {
    infer(ctx) {
      const x = ctx.input(0);
      return [x && like(x, x.shape ? rule(ctx, x.shape) : undefined)];
    },
    symbolic: symbolicSame,
    foldCopies: true,
    fold(ctx, inputs) {
      const x = inputs[0];
      const out = x && rule(ctx, x.dims);
      return x && out && isStatic(out) ? [reshaped(x, out)] : undefined;
    },
  };
}

// -------------------------------------------------------------------------------------------- Transpose

function permOf(ctx: InferContext, rank: number): number[] {
  const perm = attrInts(ctx.node, 'perm') ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
  if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    opError(ctx, `perm [${perm.join(',')}] is not a permutation of ${rank} axes`);
  }
  return perm;
}

const Transpose: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    if (!x?.shape) return [x];
    const perm = permOf(ctx, x.shape.length);
    return [tt(x.elemType, perm.map((p) => x.shape![p]!))];
  },
  symbolic: (ctx) => [shapeOf(ctx, 0)?.length === 1 ? ctx.value(0) : undefined],
  fold(ctx, inputs) {
    const x = inputs[0];
    if (!x) return undefined;
    const perm = permOf(ctx, x.dims.length);
    const outDims = perm.map((p) => x.dims[p]!);
    const inStr = stridesOf(x.dims);
    const outStr = stridesOf(outDims);
    const t = gatherFlat(x, outDims, (i) => {
      let src = 0;
      for (let a = 0; a < outDims.length; a++) {
        const q = Math.floor(i / outStr[a]!) % outDims[a]!;
        src += q * inStr[perm[a]!]!;
      }
      return src;
    });
    return t && [t];
  },
};

// ----------------------------------------------------------------------------------------------- Concat

/** Concatenates row-major tensors along `axis` (same dtype). */
function concatTensors(ts: Tensor[], axis: number): Tensor | undefined {
  const first = ts[0]!;
  if (ts.some((t) => Array.isArray(t.data) || t.dtype !== first.dtype)) return undefined;
  const outer = numel(first.dims.slice(0, axis));
  const dims = [...first.dims];
  dims[axis] = ts.reduce((s, t) => s + t.dims[axis]!, 0);
  const n = numel(dims);
  if (n > FOLD_LIMIT) return undefined;
  const Ctor = first.data.constructor as new (n: number) => Exclude<Tensor['data'], Uint8Array[]>;
  const out = new Ctor(n) as Float32Array;
  let off = 0;
  for (let o = 0; o < outer; o++) {
    for (const t of ts) {
      const block = numel(t.dims.slice(axis));
      const src = t.data as Float32Array;
      out.set(src.subarray(o * block, (o + 1) * block), off);
      off += block;
    }
  }
  return { dtype: first.dtype, dims, data: out };
}

const Concat: OpDef = {
  infer(ctx) {
    const ins = Array.from({ length: ctx.inputCount }, (_, i) => ctx.input(i));
    const base = ins.find((t) => t);
    if (!base) return [undefined];
    const shapes = ins.map((t) => t?.shape);
    const known = shapes.filter((s): s is Dim[] => s !== undefined);
    if (known.length === 0) return [tt(base.elemType)];
    const rank = known[0]!.length;
    if (known.some((s) => s.length !== rank)) opError(ctx, `inputs have different ranks: ${known.map(fmtShape).join(', ')}`);
    const axis = nodeAxis(ctx, rank);
    const out: Dim[] = [...known[0]!];
    for (let a = 0; a < rank; a++) {
      if (a === axis) continue;
      for (const s of known) {
        checkDim(ctx, out[a], s[a], () => `inputs differ on axis ${a}: ${known.map(fmtShape).join(', ')}`);
        if (!isNum(out[a])) out[a] = s[a]!;
      }
    }
    out[axis] = shapes.every((s) => s) ? shapes.reduce<Dim>((acc, s) => dimAdd(acc, s![axis]!), 0) : null;
    return [tt(base.elemType, out)];
  },
  symbolic(ctx) {
    const vals: Dim[] = [];
    for (let i = 0; i < ctx.inputCount; i++) {
      const v = ctx.value(i);
      if (!v || (shapeOf(ctx, i)?.length ?? 0) > 1) return [undefined];
      vals.push(...v);
    }
    return [vals];
  },
  fold(ctx, inputs) {
    const ts = inputs.slice(0, ctx.inputCount);
    if (!ts.every((t): t is Tensor => t !== undefined) || ts.length === 0) return undefined;
    const t = concatTensors(ts, nodeAxis(ctx, ts[0]!.dims.length));
    return t && [t];
  },
};

// ------------------------------------------------------------------------------------------------ Split

/** Sizes of the Split outputs along the axis (entries null where unknown). */
function splitSizes(ctx: InferContext, n: Dim): Dim[] | undefined {
  const outs = ctx.node.outputs.length;
  const given = ctx.opset < 13 ? attrInts(ctx.node, 'split') : present(ctx, 1) ? inputInts(ctx, 1) ?? null : undefined;
  if (given === null) return undefined;
  if (given && given.length > 0) {
    if (given.length !== outs) opError(ctx, `split has ${given.length} sizes for ${outs} outputs`);
    const total = given.reduce((a, b) => a + b, 0);
    if (isNum(n) && total !== n) opError(ctx, `split sizes sum to ${total}, the axis has ${n}`);
    return given;
  }
  const parts = attrInt(ctx.node, 'num_outputs', outs);
  if (!isNum(n)) return new Array<Dim>(outs).fill(dimDiv(n, parts) === 1 && parts === 1 ? n : null);
  const chunk = Math.ceil(n / parts);
  if (n % parts !== 0 && ctx.opset < 18) opError(ctx, `axis size ${n} does not split evenly into ${parts} outputs`);
  return Array.from({ length: outs }, (_, i) => (i < outs - 1 ? chunk : n - chunk * (outs - 1)));
}

const Split: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    const outs = ctx.node.outputs.length;
    if (!x?.shape) return new Array<TensorType | undefined>(outs).fill(x && tt(x.elemType));
    const axis = nodeAxis(ctx, x.shape.length);
    const sizes = splitSizes(ctx, x.shape[axis]!);
    return Array.from({ length: outs }, (_, i) => {
      const s = [...x.shape!];
      s[axis] = sizes ? sizes[i]! : null;
      return tt(x.elemType, s);
    });
  },
  symbolic(ctx) {
    const v = ctx.value(0);
    const sizes = v && shapeOf(ctx, 0)?.length === 1 ? splitSizes(ctx, v.length) : undefined;
    if (!v || !sizes || !sizes.every(isNum)) return undefined;
    let off = 0;
    return sizes.map((k) => v.slice(off, (off += k)));
  },
  fold(ctx, inputs) {
    const x = inputs[0];
    if (!x) return undefined;
    const axis = nodeAxis(ctx, x.dims.length);
    const sizes = splitSizes(ctx, x.dims[axis]!);
    if (!sizes || !sizes.every(isNum)) return undefined;
    const inner = numel(x.dims.slice(axis + 1));
    const n = x.dims[axis]!;
    const out: Tensor[] = [];
    let off = 0;
    for (const k of sizes) {
      const dims = [...x.dims];
      dims[axis] = k;
      const start = off;
      const t = gatherFlat(x, dims, (i) => {
        const o = Math.floor(i / (k * inner));
        const r = i % (k * inner);
        return (o * n + start) * inner + r;
      });
      if (!t) return undefined;
      out.push(t);
      off += k;
    }
    return out;
  },
};

// ------------------------------------------------------------------------------------------------ Slice

/** Effective [start, step, count] of a slice along a dim of size n. */
function sliceRange(n: number, start: number, end: number, step: number): [number, number, number] {
  let s = start < 0 ? start + n : start;
  let e = end < 0 ? end + n : end;
  if (step > 0) {
    s = Math.min(Math.max(s, 0), n);
    e = Math.min(Math.max(e, 0), n);
    return [s, step, Math.max(0, Math.ceil((e - s) / step))];
  }
  s = Math.min(Math.max(s, 0), n - 1);
  e = Math.min(Math.max(e, -1), n - 1);
  return [s, step, Math.max(0, Math.ceil((s - e) / -step))];
}

function sliceDim(n: Dim, start: Dim, end: Dim, step: number): Dim {
  if (isNum(start) && isNum(end)) {
    if (isNum(n)) return sliceRange(n, start, end, step)[2];
    // x[start:] of an unknown size n: n - start (other forms depend on n in ways a symbol cannot say).
    if (step === 1 && start >= 0 && end >= 2 ** 31 - 1) return dimSub(n, start);
    return null;
  }
  // x[:e] with a size e taken from another shape: min(e, n).
  if (start === 0 && step === 1 && dimNonNegative(end)) return dimMin(end, n);
  return null;
}

function sliceShape(ctx: InferContext, x: readonly Dim[]): Dim[] | undefined {
  const sp = sliceArgs(ctx, x.length);
  if (typeof sp === 'string') return undefined;
  const out = [...x];
  sp.axes.forEach((a, i) => (out[a] = sliceDim(x[a]!, sp.starts[i]!, sp.ends[i]!, sp.steps[i]!)));
  return out;
}

const Slice: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    if (!x?.shape) return [x];
    return [tt(x.elemType, sliceShape(ctx, x.shape) ?? x.shape.map(() => null))];
  },
  symbolic(ctx) {
    const v = ctx.value(0);
    const sp = v && shapeOf(ctx, 0)?.length === 1 ? numericSlice(sliceArgs(ctx, 1)) : undefined;
    if (!v || !sp) return [undefined];
    const [s, step, count] = sliceRange(v.length, sp.starts[0]!, sp.ends[0]!, sp.steps[0]!);
    return [Array.from({ length: count }, (_, i) => v[s + i * step]!)];
  },
  fold(ctx, inputs) {
    const x = inputs[0];
    const sp = x && numericSlice(sliceArgs(ctx, x.dims.length));
    if (!x || !sp) return undefined;
    const starts = x.dims.map(() => 0);
    const steps = x.dims.map(() => 1);
    const dims = [...x.dims];
    sp.axes.forEach((a, i) => {
      const [s, st, c] = sliceRange(x.dims[a]!, sp.starts[i]!, sp.ends[i]!, sp.steps[i]!);
      starts[a] = s;
      steps[a] = st;
      dims[a] = c;
    });
    const inStr = stridesOf(x.dims);
    const outStr = stridesOf(dims);
    const t = gatherFlat(x, dims, (i) => {
      let src = 0;
      for (let a = 0; a < dims.length; a++) src += (starts[a]! + (Math.floor(i / outStr[a]!) % dims[a]!) * steps[a]!) * inStr[a]!;
      return src;
    });
    return t && [t];
  },
};

// ----------------------------------------------------------------------------------------------- Gather

const Gather: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    const idx = shapeOf(ctx, 1);
    if (!x?.shape || !idx) return [x && tt(x.elemType)];
    if (x.shape.length === 0) opError(ctx, 'data must have rank >= 1');
    const axis = nodeAxis(ctx, x.shape.length);
    const n = x.shape[axis];
    const iv = inputInts(ctx, 1);
    if (iv && isNum(n)) for (const i of iv) if (i < -n || i >= n) opError(ctx, `index ${i} is out of range for size ${n} on axis ${axis}`);
    return [tt(x.elemType, [...x.shape.slice(0, axis), ...idx, ...x.shape.slice(axis + 1)])];
  },
  symbolic(ctx) {
    const v = ctx.value(0);
    const iv = inputInts(ctx, 1);
    if (!v || !iv || shapeOf(ctx, 0)?.length !== 1) return [undefined];
    return [iv.map((i) => v[i < 0 ? i + v.length : i] ?? null)];
  },
  paramInputs: [0],
  fold(ctx, inputs) {
    const [x, ind] = inputs;
    if (!x || !ind) return undefined;
    const axis = nodeAxis(ctx, x.dims.length);
    const iv = inputInts(ctx, 1);
    if (!iv) return undefined;
    const n = x.dims[axis]!;
    const inner = numel(x.dims.slice(axis + 1));
    const dims = [...x.dims.slice(0, axis), ...ind.dims, ...x.dims.slice(axis + 1)];
    const block = iv.length * inner;
    const t = gatherFlat(x, dims, (i) => {
      const o = Math.floor(i / block);
      const r = i % block;
      const k = iv[Math.floor(r / inner)]!;
      return (o * n + (k < 0 ? k + n : k)) * inner + (r % inner);
    });
    return t && [t];
  },
};

const GatherElements: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    return [x && like(x, shapeOf(ctx, 1))];
  },
};

const GatherND: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    const d = shapeOf(ctx, 0);
    const i = shapeOf(ctx, 1);
    if (!x || !d || !i) return [x && tt(x.elemType)];
    const b = attrInt(ctx.node, 'batch_dims', 0);
    const last = i[i.length - 1];
    if (!isNum(last)) return [tt(x.elemType)];
    return [tt(x.elemType, [...i.slice(0, -1), ...d.slice(b + last)])];
  },
};

// -------------------------------------------------------------------------------------- Expand and Tile

const Expand: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    const v = ctx.value(1);
    if (!x) return [undefined];
    if (x.shape && v) return [tt(x.elemType, broadcastShapes(ctx, [x.shape, v]))];
    // A runtime shape of known length: the rank is known, and every axis where X is not 1 keeps X's size.
    const k = axesCount(ctx, 1);
    if (x.shape && k !== undefined) {
      const r = Math.max(x.shape.length, k);
      const off = r - x.shape.length;
      return [tt(x.elemType, Array.from({ length: r }, (_, i): Dim => {
        const d = i >= off ? x.shape![i - off]! : 1;
        return isNum(d) && d !== 1 ? d : null;
      }))];
    }
    return [tt(x.elemType)];
  },
  fold(ctx, inputs) {
    const x = inputs[0];
    const out = x && this.infer(ctx)[0]?.shape;
    if (!x || !out || !isStatic(out)) return undefined;
    const t = foldElementwise(out, x.dtype, [x], (a) => a[0]!);
    return t && [t];
  },
  concretize(ctx) {
    if (ctx.constant(1)) return undefined;
    const x = shapeOf(ctx, 0);
    const v = ctx.value(1);
    if (!x || !v) return undefined;
    const off = v.length - x.length;
    const vals: number[] = [];
    for (let i = 0; i < v.length; i++) {
      const d = v[i]!;
      if (isNum(d)) vals.push(d);
      else if (i >= off && x[i - off] === d) vals.push(1);
      else return undefined;
    }
    return { input: 1, tensor: int64Tensor([vals.length], vals) };
  },
};

const Tile: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    if (!x?.shape) return [x];
    const r = ctx.value(1);
    if (!r) return [tt(x.elemType, x.shape.map(() => null))];
    if (r.length !== x.shape.length) opError(ctx, `repeats has ${r.length} values for rank ${x.shape.length}`);
    return [tt(x.elemType, x.shape.map((d, i) => dimMul(d, r[i]!)))];
  },
  fold(ctx, inputs) {
    const x = inputs[0];
    const out = x && this.infer(ctx)[0]?.shape;
    if (!x || !out || !isStatic(out)) return undefined;
    const inStr = stridesOf(x.dims);
    const outStr = stridesOf(out);
    const t = gatherFlat(x, out, (i) => {
      let src = 0;
      for (let a = 0; a < out.length; a++) src += ((Math.floor(i / outStr[a]!) % out[a]!) % x.dims[a]!) * inStr[a]!;
      return src;
    });
    return t && [t];
  },
};

// -------------------------------------------------------------------------------------------------- Pad

const Pad: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    if (!x?.shape) return [x];
    const pads = padArgs(ctx, x.shape.length);
    if (typeof pads === 'string') return [tt(x.elemType, x.shape.map(() => null))];
    const out = x.shape.map((d, a) => dimAdd(d, pads.begin[a]! + pads.end[a]!));
    out.forEach((d, a) => {
      if (isNum(d) && d < 0) opError(ctx, `padding makes axis ${a} negative`);
    });
    return [tt(x.elemType, out)];
  },
  cost: flopsPerOutput(0),
};

// ----------------------------------------------------------------------------------------------- Resize

/** Resize/Upsample output: sizes when given, else floor(dim * scale). */
function resizeShape(ctx: InferContext, x: readonly Dim[]): Dim[] {
  const upsample = ctx.node.opType === 'Upsample';
  const r = x.length;
  const axesAttr = attrInts(ctx.node, 'axes');
  const axes = axesAttr ? normAxes(ctx, axesAttr, r) : x.map((_, i) => i);
  const scaleIdx = upsample || ctx.opset < 11 ? 1 : 2;
  const sizes = !upsample && ctx.opset >= 11 && present(ctx, 3) ? ctx.value(3) : undefined;
  const scalesAttr = upsample ? attrFloats(ctx.node, 'scales') : undefined;
  const scales = scalesAttr ?? (present(ctx, scaleIdx) ? inputInts(ctx, scaleIdx) : undefined);
  const out = [...x];
  if (sizes && sizes.length > 0) {
    if (sizes.length !== axes.length) opError(ctx, `sizes has ${sizes.length} values for ${axes.length} axes`);
    const policy = attrString(ctx.node, 'keep_aspect_ratio_policy', 'stretch');
    if (policy !== 'stretch' && sizes.every(isNum) && axes.every((a) => isNum(x[a]))) {
      const ratios = axes.map((a, i) => (sizes[i] as number) / (x[a] as number));
      const s = policy === 'not_larger' ? Math.min(...ratios) : Math.max(...ratios);
      axes.forEach((a) => (out[a] = Math.round(s * (x[a] as number))));
    } else axes.forEach((a, i) => (out[a] = sizes[i]!));
    return out;
  }
  if (scales && scales.length > 0) {
    if (scales.length !== axes.length) opError(ctx, `scales has ${scales.length} values for ${axes.length} axes`);
    axes.forEach((a, i) => {
      const d = x[a]!;
      const s = scales[i]!;
      out[a] = isNum(d) ? Math.floor(d * s) : Number.isInteger(s) ? dimMul(d, s) : null;
    });
    return out;
  }
  return x.map(() => null);
}

const Resize: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    return [x && like(x, x.shape ? resizeShape(ctx, x.shape) : undefined)];
  },
  cost: flopsPerOutput(4),
};

// ---------------------------------------------------------------------------- DepthToSpace, SpaceToDepth

function inferBlocks(toSpace: boolean) {
  return (ctx: InferContext): (TensorType | undefined)[] => {
    const x = ctx.input(0);
    if (!x?.shape) return [x];
    if (x.shape.length !== 4) opError(ctx, `input must be 4-D, got ${fmtShape(x.shape)}`);
    const b = attrInt(ctx.node, 'blocksize', 1);
    const [n, c, h, w] = x.shape as [Dim, Dim, Dim, Dim];
    const bb = b * b;
    if (toSpace) {
      if (isNum(c) && c % bb !== 0) opError(ctx, `channels ${c} not divisible by blocksize^2 ${bb}`);
      return [tt(x.elemType, [n, dimDiv(c, bb), dimMul(h, b), dimMul(w, b)])];
    }
    for (const d of [h, w]) if (isNum(d) && d % b !== 0) opError(ctx, `spatial size ${d} not divisible by blocksize ${b}`);
    return [tt(x.elemType, [n, dimMul(c, bb), dimDiv(h, b), dimDiv(w, b)])];
  };
}

// ---------------------------------------------------------------------------------------------- others

const Identity: OpDef = {
  infer: inferSame,
  passthrough: true,
  foldCopies: true,
  symbolic: symbolicSame,
  fold: (_ctx, inputs) => (inputs[0] ? [inputs[0]] : undefined),
};

const Dropout: OpDef = {
  infer(ctx) {
    const x = ctx.input(0);
    return [x, x && tt(DataType.BOOL, x.shape)];
  },
  passthrough: true,
};

const NonZero: OpDef = {
  infer(ctx) {
    const s = shapeOf(ctx, 0);
    return [tt(DataType.INT64, [s ? s.length : null, null])];
  },
};

export const SHAPE_OPS = {
  Shape,
  Size,
  Reshape: { ...Reshape, quant: { kind: 'move' } },
  Flatten: { ...Flatten, quant: { kind: 'move' } },
  Squeeze: { ...reshapeLike(squeezeShape), quant: { kind: 'move' } },
  Unsqueeze: { ...reshapeLike(unsqueezeShape), quant: { kind: 'move' } },
  Transpose: { ...Transpose, quant: { kind: 'move' } },
  Concat: { ...Concat, quant: { kind: 'compute', inputs: 'all' } },
  Split: { ...Split, quant: { kind: 'move' } },
  Slice: { ...Slice, quant: { kind: 'move' } },
  Gather,
  GatherElements,
  GatherND,
  Expand,
  Tile,
  Pad,
  Resize: { ...Resize, quant: { kind: 'move', keepFloat32: [1, 2] } },
  Upsample: { ...Resize, quant: { kind: 'move', keepFloat32: [1] } },
  DepthToSpace: { infer: inferBlocks(true) },
  SpaceToDepth: { infer: inferBlocks(false) },
  Identity,
  Dropout,
  NonZero,
  ScatterND: { infer: inferSame },
  ScatterElements: { infer: inferSame },
  Scatter: { infer: inferSame },
  ReverseSequence: { infer: inferSame },
} satisfies Record<string, OpDef>;
