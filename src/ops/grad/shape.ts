/** Gradients of data-movement ops: reshapes, transposes, concat/split, slice/pad, gather, expand. */
import { ShearsError } from '../../errors.js';
import { attrInt, attrInts, attrString } from '../../ir/graph.js';
import type { GradRule } from '../types.js';
import { inputInts, nodeAxis, padArgs, sliceArgs } from '../args.js';
import { inversePerm, reshape, scatterAddBySource, transpose, unbroadcast, zeros } from './helpers.js';

/** Reshape, Flatten, Squeeze, Unsqueeze: the gradient is g reshaped back. */
export const reshapeGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  return [reshape(ctx.e, g, ctx.shape(ctx.input(0)))];
};

export const transposeGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const rank = ctx.shape(ctx.input(0)).length;
  const perm = attrInts(ctx.node, 'perm') ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
  return [transpose(ctx.e, g, inversePerm(perm))];
};

export const expandGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  return [unbroadcast(ctx.e, g, ctx.shape(ctx.output(0)), ctx.shape(ctx.input(0)))];
};

export const concatGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g) return [];
  const rank = ctx.shape(ctx.output(0)).length;
  const axis = nodeAxis(ctx, rank);
  const sizes = ctx.node.inputs.map((x) => ctx.shape(x)[axis]!);
  if (sizes.length === 1) return [g];
  const parts = ctx.e.opN('Split', [g, ctx.e.constI(sizes)], { axis }, sizes.length);
  return parts.map((p, i) => (ctx.needs(i) ? p : undefined));
};

export const splitGrad: GradRule = (ctx) => {
  if (!ctx.needs(0)) return [];
  const outs = ctx.node.outputs;
  const grads = outs.map((_, i) => ctx.gradOut(i));
  if (grads.every((g) => !g)) return [];
  const rank = ctx.shape(ctx.input(0)).length;
  const axis = nodeAxis(ctx, rank);
  const parts = outs.map((_, i) => grads[i] ?? zeros(ctx.e, ctx.shape(ctx.output(i))));
  return [parts.length === 1 ? parts[0]! : ctx.e.op('Concat', parts, { axis })];
};

/** Slice: Pad for step 1, a scatter of the picked elements otherwise. */
export const sliceGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const { e } = ctx;
  const xShape = ctx.shape(ctx.input(0));
  const rank = xShape.length;
  // The ends must be constant too, but the output shape already says where each slice stops.
  const args = sliceArgs(ctx, rank);
  if (typeof args === 'string') throw new ShearsError(`Slice gradient needs a constant ${args}`, { node: ctx.node.name });
  const { starts, axes, steps } = args;
  // Per axis: first index and step (full range for axes not sliced).
  const first = xShape.map(() => 0);
  const step = xShape.map(() => 1);
  const yShape = ctx.shape(ctx.output(0));
  axes.forEach((a, i) => {
    const d = xShape[a]!;
    const s = steps[i]!;
    let st = starts[i]!;
    if (st < 0) st += d;
    st = s > 0 ? Math.min(Math.max(st, 0), d) : Math.min(Math.max(st, -1), d - 1);
    first[a] = st;
    step[a] = s;
  });
  if (step.every((s) => s === 1)) {
    const pads = [...first, ...xShape.map((d, i) => d - first[i]! - yShape[i]!)];
    return [e.op('Pad', [g, e.constI(pads)], { mode: 'constant' })];
  }
  // General steps: the picked elements' positions, scattered with addition.
  const src = yShape.map((yl, a) => Array.from({ length: yl }, (_, o) => first[a]! + o * step[a]!));
  return [scatterAddBySource(e, g, xShape, yShape, src, ctx.opset)];
};

/** Pad (constant mode): the gradient is the slice of g over the original extent. */
export const padGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const { e, node } = ctx;
  const mode = attrString(node, 'mode', 'constant');
  if (!['constant', 'edge', 'reflect', 'wrap'].includes(mode)) throw new ShearsError(`Pad gradient: unknown mode '${mode}'`, { node: node.name });
  const xShape = ctx.shape(ctx.input(0));
  const rank = xShape.length;
  const pads = padArgs(ctx, rank);
  if (typeof pads === 'string') throw new ShearsError(`Pad gradient needs a constant ${pads}`, { node: node.name });
  const { begin, end } = pads;
  if (mode !== 'constant') {
    // Every output element copies one input element (clamped, mirrored or wrapped): scatter g back onto it.
    const yShape = xShape.map((d, i) => d + begin[i]! + end[i]!);
    const src = xShape.map((n, a) => Array.from({ length: yShape[a]! }, (_, o) => padSource(o - begin[a]!, n, mode)));
    return [scatterAddBySource(e, g, xShape, yShape, src, ctx.opset)];
  }
  // Positive pad -> slice it off; negative pad (crop) -> pad the gradient back with zeros.
  const starts = begin.map((b) => Math.max(b, 0));
  const ends = xShape.map((d, i) => starts[i]! + d + Math.min(begin[i]!, 0) + Math.min(end[i]!, 0));
  let r = e.op('Slice', [g, e.constI(starts), e.constI(ends), e.constI(xShape.map((_, i) => i))]);
  const back = [...begin, ...end].map((p) => Math.max(-p, 0));
  if (back.some((p) => p > 0)) r = e.op('Pad', [r, e.constI(back)], { mode: 'constant' });
  return [r];
};

/** Input index that output index i (relative to the start of the input) of an edge/reflect/wrap Pad copies. */
function padSource(i: number, n: number, mode: string): number {
  if (mode === 'edge') return Math.min(Math.max(i, 0), n - 1);
  if (mode === 'wrap') return ((i % n) + n) % n;
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  const k = ((i % period) + period) % period;
  return k < n ? k : period - k;
}

/** Gather: a scatter-add of g into zeros along the gathered axis (ScatterND over the axis moved to the front). */
export const gatherGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const { e } = ctx;
  const xShape = ctx.shape(ctx.input(0));
  const rank = xShape.length;
  const axis = nodeAxis(ctx, rank);
  const idxShape = ctx.shape(ctx.input(1));
  const q = idxShape.length;
  const d = xShape[axis]!;
  // Normalise negative indices.
  let idx = ctx.input(1);
  const idx64 = e.op('Cast', [idx], { to: 7 });
  idx = e.op('Where', [e.op('Less', [idx64, e.constI([0], [])]), e.op('Add', [idx64, e.constI([d], [])]), idx64]);
  // g has shape x[:axis] + idx + x[axis+1:]; move the idx dims to the front.
  const gRank = rank - 1 + q;
  let gt = g;
  if (axis > 0) {
    const perm = [...Array.from({ length: q }, (_, i) => axis + i), ...Array.from({ length: axis }, (_, i) => i), ...Array.from({ length: gRank - axis - q }, (_, i) => axis + q + i)];
    gt = transpose(e, g, perm);
  }
  const movedShape = [d, ...xShape.slice(0, axis), ...xShape.slice(axis + 1)];
  const sc = e.op('ScatterND', [zeros(e, movedShape), e.op('Unsqueeze', [idx, e.constI([-1])]), gt], { reduction: 'add' });
  if (axis === 0) return [sc];
  const back = [...Array.from({ length: axis }, (_, i) => i + 1), 0, ...Array.from({ length: rank - axis - 1 }, (_, i) => axis + 1 + i)];
  return [transpose(e, sc, back)];
};

export const tileGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const xShape = ctx.shape(ctx.input(0));
  const reps = inputInts(ctx, 1);
  if (!reps) throw new ShearsError('Tile gradient needs a constant repeats', { node: ctx.node.name });
  // Y viewed as [r0, d0, r1, d1, ...]: sum over the repeat axes.
  const split: number[] = [];
  xShape.forEach((dd, i) => split.push(reps[i]!, dd));
  const r = reshape(ctx.e, g, split);
  const s = ctx.e.op('ReduceSum', [r, ctx.e.constI(xShape.map((_, i) => 2 * i))], { keepdims: 0 });
  return [s];
};

/** Trilu: the kept triangle is a fixed mask, so the gradient is the same Trilu (same k and upper) of g. */
export const triluGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const k = ctx.input(1);
  return [ctx.e.op('Trilu', k ? [g, k] : [g], { upper: attrInt(ctx.node, 'upper') ?? 1 })];
};

/**
 * CumSum: y_i = sum of x_j over j <= i (j < i when exclusive; j >= i / j > i when reverse), so x_j's gradient
 * sums g_i over the i that read it: the cumulative sum of g in the other direction, with the same exclusive flag.
 */
export const cumSumGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const reverse = attrInt(ctx.node, 'reverse') ?? 0;
  return [ctx.e.op('CumSum', [g, ctx.input(1)], { exclusive: attrInt(ctx.node, 'exclusive') ?? 0, reverse: reverse ? 0 : 1 })];
};
