/** Gradients of data-movement ops: reshapes, transposes, concat/split, slice/pad, gather, expand. */
import { ShearsError } from '../../errors.js';
import { attrInt, attrInts, attrString } from '../../ir/graph.js';
import { toNumbers } from '../../ir/tensor.js';
import type { GradContext, GradRule } from '../types.js';
import { inversePerm, normAxes, reshape, scatterAddBySource, transpose, unbroadcast, zeros } from './helpers.js';

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
  const axis = normAxes([attrInt(ctx.node, 'axis', 0)], rank)[0]!;
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
  const axis = normAxes([attrInt(ctx.node, 'axis', 0)], rank)[0]!;
  const parts = outs.map((_, i) => grads[i] ?? zeros(ctx.e, ctx.shape(ctx.output(i))));
  return [parts.length === 1 ? parts[0]! : ctx.e.op('Concat', parts, { axis })];
};

function constInts(ctx: GradContext, i: number, what: string): number[] | undefined {
  const name = ctx.node.inputs[i];
  if (!name) return undefined;
  const t = ctx.constant(i);
  if (!t) throw new ShearsError(`${ctx.node.opType} gradient needs a constant ${what}`, { node: ctx.node.name });
  return toNumbers(t);
}

/** Slice: Pad for step 1, a scatter of the picked elements otherwise. */
export const sliceGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const { e } = ctx;
  const xShape = ctx.shape(ctx.input(0));
  const rank = xShape.length;
  // The ends must be constant too, but the output shape already says where each slice stops.
  let starts: number[];
  let axes: number[];
  let steps: number[];
  if (ctx.opset >= 10) {
    starts = constInts(ctx, 1, 'starts')!;
    constInts(ctx, 2, 'ends');
    axes = constInts(ctx, 3, 'axes') ?? starts.map((_, i) => i);
    steps = constInts(ctx, 4, 'steps') ?? starts.map(() => 1);
  } else {
    starts = attrInts(ctx.node, 'starts')!;
    axes = attrInts(ctx.node, 'axes') ?? starts.map((_, i) => i);
    steps = starts.map(() => 1);
  }
  axes = normAxes(axes, rank);
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
  return [scatterAddBySource(e, g, xShape, yShape, src)];
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
  let pads = ctx.opset >= 11 ? constInts(ctx, 1, 'pads')! : attrInts(node, 'pads')!;
  const axesIn = ctx.opset >= 18 ? constInts(ctx, 3, 'axes') : undefined;
  if (axesIn) {
    const ax = normAxes(axesIn, rank);
    const full = new Array<number>(2 * rank).fill(0);
    ax.forEach((a, i) => {
      full[a] = pads[i]!;
      full[a + rank] = pads[i + ax.length]!;
    });
    pads = full;
  }
  const begin = xShape.map((_, i) => pads[i]!);
  if (mode !== 'constant') {
    // Every output element copies one input element (clamped, mirrored or wrapped): scatter g back onto it.
    const yShape = xShape.map((d, i) => d + pads[i]! + pads[i + rank]!);
    const src = xShape.map((n, a) => Array.from({ length: yShape[a]! }, (_, o) => padSource(o - begin[a]!, n, mode)));
    return [scatterAddBySource(e, g, xShape, yShape, src)];
  }
  // Positive pad -> slice it off; negative pad (crop) -> pad the gradient back with zeros.
  const starts = begin.map((b) => Math.max(b, 0));
  const ends = xShape.map((d, i) => starts[i]! + d + Math.min(begin[i]!, 0) + Math.min(pads[i + rank]!, 0));
  let r = e.op('Slice', [g, e.constI(starts), e.constI(ends), e.constI(xShape.map((_, i) => i))]);
  const back = [...begin.map((b) => Math.max(-b, 0)), ...xShape.map((_, i) => Math.max(-pads[i + rank]!, 0))];
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
  const axis = normAxes([attrInt(ctx.node, 'axis', 0)], rank)[0]!;
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
  const reps = constInts(ctx, 1, 'repeats')!;
  // Y viewed as [r0, d0, r1, d1, ...]: sum over the repeat axes.
  const split: number[] = [];
  xShape.forEach((dd, i) => split.push(reps[i]!, dd));
  const r = reshape(ctx.e, g, split);
  const s = ctx.e.op('ReduceSum', [r, ctx.e.constI(xShape.map((_, i) => 2 * i))], { keepdims: 0 });
  return [s];
};
