/**
 * Channel couplings and pruning surgery rules (OpDef.channels / OpDef.prune), shared by the op family modules.
 * A rule states, for one node, which axes of its inputs/outputs lose indices together (ChannelLink, with index
 * mappings for offsets, blocks and permutations); the dependency graph (depgraph/) does the rest. Surgery rules
 * fix what slicing initializers cannot: group counts, Split sizes, Slice bounds, Reshape targets, Gather indices.
 */
import { DataType } from '../ir/dtype.js';
import { attrInt, attrInts, type Attr } from '../ir/graph.js';
import { toNumbers, type Tensor } from '../ir/tensor.js';
import { gemmArgs, inputInts, nodeAxis, padArgs, present, reduceAxes, sliceArgs, softmaxAxis, type SliceArgs } from './args.js';
import type { AxisRef, ChannelContext, ChannelLink, ChannelRule, PruneRule } from './types.js';
import { IN, OUT, mapOf } from './links.js';


/** Identity links between every axis of input i and output o that have equal sizes. */
function sameShapeLinks(ctx: ChannelContext, i = 0, o = 0): ChannelLink[] {
  const x = ctx.inShape(i), y = ctx.outShape(o);
  if (!x || !y || x.length !== y.length) return [];
  const links: ChannelLink[] = [];
  for (let a = 0; a < x.length; a++) if (x[a] === y[a]) links.push({ a: IN(i, a), b: OUT(o, a) });
  return links;
}

// ------------------------------------------------------------------------------------------ pass-through

/** Elementwise unary ops and anything that maps input 0 to output 0 element by element. */
export const unaryChannels: ChannelRule = (ctx) => ({ links: sameShapeLinks(ctx) });

/** Multidirectional broadcasting (Add, Mul, Where, Sum, PRelu, ...): equal-size aligned axes are tied. */
export const broadcastChannels: ChannelRule = (ctx) => {
  const y = ctx.outShape(0);
  if (!y) return 'output shape unknown';
  const links: ChannelLink[] = [];
  for (let i = 0; i < ctx.node.inputs.length; i++) {
    if (!present(ctx, i)) continue;
    const x = ctx.inShape(i);
    if (!x) return `shape of input ${i} unknown`;
    const off = y.length - x.length;
    for (let a = 0; a < x.length; a++) if (x[a] === y[a + off] && x[a]! > 1) links.push({ a: IN(i, a), b: OUT(0, a + off) });
  }
  // Other outputs of the same shape (rare) follow output 0.
  return { links };
};

/** PRelu: broadcasting from opset 7; before, a 1-D slope of C elements is per channel (axis 1). */
export const preluChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0), s = ctx.inShape(1);
  if (ctx.opset < 7 && x && s && s.length === 1 && x.length >= 2 && s[0] === x[1] && s[0]! > 1) {
    return { links: [...sameShapeLinks(ctx), { a: IN(0, 1), b: IN(1, 0) }] };
  }
  return broadcastChannels(ctx);
};

// ------------------------------------------------------------------------------------------------- layers

/** Conv (and its group/depthwise forms): X[:,c] -> W[:, c/G...], W[o] -> Y[:, o], B[o]. */
export const convChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0), w = ctx.inShape(1), y = ctx.outShape(0);
  if (!x || !w || !y) return 'shapes unknown';
  const G = attrInt(ctx.node, 'group', 1);
  const cin = x[1]!, cout = w[0]!, cing = w[1]!;
  const links: ChannelLink[] = [{ a: IN(0, 0), b: OUT(0, 0) }, { a: IN(1, 0), b: OUT(0, 1), role: 'writes' }];
  if (present(ctx, 2)) links.push({ a: IN(1, 0), b: IN(2, 0) });
  if (G === 1) links.push({ a: IN(0, 1), b: IN(1, 1), role: 'reads' });
  else if (G === cin && cing === 1) {
    const m = cout / cin;
    links.push({ a: IN(0, 1), b: OUT(0, 1), map: mapOf(cout, (f) => Math.floor(f / m)) });
  } else {
    // Grouped: every group must keep the same width, so index k is removed from all groups at once.
    const coutg = cout / G;
    links.push({ a: IN(1, 1), b: IN(0, 1), map: mapOf(cin, (c) => c % cing), role: 'reads' });
    links.push({ a: IN(1, 0), b: IN(1, 0), map: mapOf(cout, (o) => o % coutg) });
  }
  return { links };
};

/** Depthwise Conv/ConvTranspose: the group count follows the channel count. */
export const convPrune: PruneRule = (ctx) => {
  const G = attrInt(ctx.node, 'group', 1);
  if (G === 1) return;
  const x = ctx.inShape(0)!;
  const kept = ctx.kept('in', 0, 1);
  if (G === x[1] && kept) ctx.node.attrs.set('group', { kind: 'int', value: kept.length });
};

/** ConvTranspose: W is [Cin, Cout/G, k...]. */
export const convTransposeChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0), w = ctx.inShape(1), y = ctx.outShape(0);
  if (!x || !w || !y) return 'shapes unknown';
  const G = attrInt(ctx.node, 'group', 1);
  const cin = x[1]!, coutg = w[1]!, cout = y[1]!;
  const links: ChannelLink[] = [{ a: IN(0, 0), b: OUT(0, 0) }, { a: IN(0, 1), b: IN(1, 0), role: 'reads' }];
  if (present(ctx, 2)) links.push({ a: OUT(0, 1), b: IN(2, 0) });
  if (G === 1) links.push({ a: IN(1, 1), b: OUT(0, 1), role: 'writes' });
  else if (G === cin && coutg === 1 && cout === cin) links.push({ a: IN(0, 1), b: OUT(0, 1) });
  else {
    const cing = cin / G;
    links.push({ a: IN(1, 0), b: IN(1, 0), map: mapOf(cin, (c) => c % cing) });
    links.push({ a: IN(1, 1), b: OUT(0, 1), map: mapOf(cout, (o) => o % coutg), role: 'writes' });
  }
  return { links };
};

/** Gemm: A[M,K] (transA), B[K,N] (transB), C broadcast to [M,N]. */
export const gemmChannels: ChannelRule = (ctx) => {
  const a = ctx.inShape(0), b = ctx.inShape(1), y = ctx.outShape(0);
  if (!a || !b || !y || a.length !== 2 || b.length !== 2) return 'shapes unknown';
  const { transA, transB } = gemmArgs(ctx.node);
  const aK = transA ? 0 : 1, aM = 1 - aK, bK = transB ? 1 : 0, bN = 1 - bK;
  const links: ChannelLink[] = [
    { a: IN(0, aK), b: IN(1, bK), role: 'reads' },
    { a: IN(1, bN), b: OUT(0, 1), role: 'writes' },
    { a: IN(0, aM), b: OUT(0, 0) },
  ];
  if (present(ctx, 2)) {
    const c = ctx.inShape(2);
    if (!c) return 'bias shape unknown';
    const off = 2 - c.length;
    for (let i = 0; i < c.length; i++) if (c[i] === y[i + off] && c[i]! > 1) links.push({ a: OUT(0, i + off), b: IN(2, i) });
  }
  return { links };
};

/** MatMul with numpy semantics (either operand may be the weight). */
export const matmulChannels: ChannelRule = (ctx) => {
  const a = ctx.inShape(0), b = ctx.inShape(1), y = ctx.outShape(0);
  if (!a || !b || !y) return 'shapes unknown';
  const ra = a.length, rb = b.length, ry = y.length;
  const links: ChannelLink[] = [];
  if (ra >= 2 && rb >= 2) {
    links.push({ a: IN(0, ra - 1), b: IN(1, rb - 2), role: 'reads' });
    links.push({ a: IN(1, rb - 1), b: OUT(0, ry - 1), role: 'writes' });
    links.push({ a: IN(0, ra - 2), b: OUT(0, ry - 2) });
    for (let i = 0; i < ry - 2; i++) {
      const ia = i - (ry - ra), ib = i - (ry - rb);
      if (ia >= 0 && a[ia] === y[i]) links.push({ a: IN(0, ia), b: OUT(0, i) });
      if (ib >= 0 && b[ib] === y[i]) links.push({ a: IN(1, ib), b: OUT(0, i) });
    }
  } else if (rb === 1 && ra >= 1) {
    links.push({ a: IN(0, ra - 1), b: IN(1, 0), role: 'reads' });
    for (let i = 0; i < ra - 1; i++) links.push({ a: IN(0, i), b: OUT(0, i) });
  } else if (ra === 1 && rb >= 2) {
    links.push({ a: IN(0, 0), b: IN(1, rb - 2), role: 'reads' });
    links.push({ a: IN(1, rb - 1), b: OUT(0, ry - 1), role: 'writes' });
    for (let i = 0; i < rb - 2; i++) links.push({ a: IN(1, i), b: OUT(0, i) });
  } else return 'unsupported ranks';
  return { links };
};

// ------------------------------------------------------------------------------------------ normalisation

/** BatchNormalization / InstanceNormalization: per-channel parameters on axis 1. */
export const channelNormChannels: ChannelRule = (ctx) => {
  const links = sameShapeLinks(ctx);
  for (let i = 1; i < ctx.node.inputs.length; i++) if (present(ctx, i)) links.push({ a: IN(0, 1), b: IN(i, 0) });
  for (let o = 1; o < ctx.node.outputs.length; o++) {
    if (ctx.node.outputs[o] && ctx.outShape(o)?.length === 1) links.push({ a: IN(0, 1), b: OUT(o, 0) });
  }
  return { links };
};

/** Why a normalised axis keeps its features unless ctx.normalized (shared by the fused norms, ops/contrib-transformer.ts). */
export const NORMALISED_AXIS_REASON = 'normalised axis: removing features changes the normalisation statistics (prune the hidden size with normalized/--hidden-size, then repair or fine-tune)';

/**
 * LayerNormalization, RMSNormalization, SimplifiedLayerNormalization: scale/bias broadcast over the normalised
 * trailing axes, which freeze unless ctx.normalized (pruning them changes the statistics).
 */
export const layerNormChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0);
  if (!x) return 'shape unknown';
  const r = x.length;
  const axis = nodeAxis(ctx, r, -1);
  const links = sameShapeLinks(ctx);
  for (const i of [1, 2]) {
    const s = present(ctx, i) ? ctx.inShape(i) : undefined;
    if (!s) continue;
    const off = r - s.length;
    for (let j = 0; j < s.length; j++) if (j + off >= axis && s[j] === x[j + off] && s[j]! > 1) links.push({ a: IN(0, j + off), b: IN(i, j) });
  }
  for (let o = 1; o < ctx.node.outputs.length; o++) {
    const s = ctx.node.outputs[o] ? ctx.outShape(o) : undefined;
    if (s) for (let j = 0; j < axis && j < s.length; j++) if (s[j] === x[j]) links.push({ a: IN(0, j), b: OUT(o, j) });
  }
  if (ctx.normalized) return { links };
  const reason = NORMALISED_AXIS_REASON;
  const frozen = [];
  for (let a = axis; a < r; a++) frozen.push({ ref: IN(0, a), reason }, { ref: OUT(0, a), reason });
  return { links, frozen };
};

/** GroupNormalization: every group keeps the same width (index k is removed from all groups). */
export const groupNormChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0);
  if (!x) return 'shape unknown';
  const G = attrInt(ctx.node, 'num_groups', 1);
  const C = x[1]!;
  const cpg = C / G;
  const links = sameShapeLinks(ctx);
  links.push({ a: IN(0, 1), b: IN(0, 1), map: mapOf(C, (c) => c % cpg) });
  for (const i of [1, 2]) if (present(ctx, i) && ctx.inShape(i)?.[0] === C) links.push({ a: IN(0, 1), b: IN(i, 0) });
  return { links };
};

// ------------------------------------------------------------------------------------ pooling / reduction

/** Pools keep N and C (MaxPool's Indices output encodes channel positions, so it freezes). */
export const poolChannels: ChannelRule = (ctx) => {
  if (ctx.node.outputs[1]) return 'MaxPool Indices output encodes channel positions';
  return { links: [{ a: IN(0, 0), b: OUT(0, 0) }, { a: IN(0, 1), b: OUT(0, 1) }] };
};

/**
 * Reductions: kept axes pass through; the reduced axes may lose indices when zero channels add nothing
 * (`free`: ReduceSum, ReduceL1/L2, ReduceSumSquare), or for ReduceMean when ctx.normalized allows the statistics to
 * change ('normalized').
 */
export function reduceChannels(freeReduced: boolean | 'normalized'): ChannelRule {
  return (ctx) => {
    const x = ctx.inShape(0);
    if (!x) return 'shape unknown';
    const axes = reduceAxes(ctx, x.length);
    if (axes === 'axes') return 'reduction axes are not constant';
    const keep = attrInt(ctx.node, 'keepdims', 1);
    const links: ChannelLink[] = [];
    const free: AxisRef[] = [];
    let o = 0;
    for (let a = 0; a < x.length; a++) {
      if (axes.includes(a)) {
        if (freeReduced === true || (freeReduced === 'normalized' && ctx.normalized)) free.push(IN(0, a));
        if (keep) o++;
      } else links.push({ a: IN(0, a), b: OUT(0, o++) });
    }
    return { links, free };
  };
}

/** ArgMax/ArgMin: like a reduction over `axis` whose indices change when channels go. */
export const argChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0);
  if (!x) return 'shape unknown';
  const axis = nodeAxis(ctx, x.length);
  const keep = attrInt(ctx.node, 'keepdims', 1);
  const links: ChannelLink[] = [];
  let o = 0;
  for (let a = 0; a < x.length; a++) {
    if (a === axis) {
      if (keep) o++;
    } else links.push({ a: IN(0, a), b: OUT(0, o++) });
  }
  return { links };
};

/** Softmax/LogSoftmax/Hardmax: the normalised axes must keep all indices. */
export const softmaxChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0);
  if (!x) return 'shape unknown';
  const r = x.length;
  const axis = softmaxAxis(ctx, r);
  const links: ChannelLink[] = [];
  for (let a = 0; a < r; a++) {
    const normalised = ctx.opset >= 13 ? a === axis : a >= axis;
    if (!normalised) links.push({ a: IN(0, a), b: OUT(0, a) });
  }
  return { links };
};

// ---------------------------------------------------------------------------------------- data movement

export const concatChannels: ChannelRule = (ctx) => {
  const y = ctx.outShape(0);
  if (!y) return 'shape unknown';
  const axis = nodeAxis(ctx, y.length);
  const links: ChannelLink[] = [];
  let off = 0;
  for (let i = 0; i < ctx.node.inputs.length; i++) {
    const x = ctx.inShape(i);
    if (!x) return `shape of input ${i} unknown`;
    const n = x[axis]!;
    const start = off;
    if (n > 0) links.push({ a: IN(i, axis), b: OUT(0, axis), map: mapOf(y[axis]!, (j) => (j >= start && j < start + n ? j - start : -1)) });
    off += n;
    for (let a = 0; a < y.length; a++) if (a !== axis && x[a] === y[a]) links.push({ a: IN(i, a), b: OUT(0, a) });
  }
  return { links };
};

export const splitChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0);
  if (!x) return 'shape unknown';
  const axis = nodeAxis(ctx, x.length);
  if (present(ctx, 1) && !ctx.constant(1)) return 'split sizes are not constant';
  const links: ChannelLink[] = [];
  let off = 0;
  for (let o = 0; o < ctx.node.outputs.length; o++) {
    const y = ctx.outShape(o);
    if (!y) return `shape of output ${o} unknown`;
    const start = off;
    links.push({ a: IN(0, axis), b: OUT(o, axis), map: mapOf(y[axis]!, (j) => start + j) });
    off += y[axis]!;
    for (let a = 0; a < x.length; a++) if (a !== axis && x[a] === y[a]) links.push({ a: IN(0, a), b: OUT(o, a) });
  }
  return { links };
};

function intTensorLike(like: Tensor | undefined, values: number[]): Tensor {
  if (like && like.dtype === DataType.INT32) return { dtype: DataType.INT32, dims: [values.length], data: Int32Array.from(values) };
  return { dtype: DataType.INT64, dims: [values.length], data: BigInt64Array.from(values.map((v) => BigInt(v))) };
}

export const splitPrune: PruneRule = (ctx) => {
  const x = ctx.inShape(0)!;
  const axis = nodeAxis(ctx, x.length);
  if (!ctx.kept('in', 0, axis)) return;
  const sizes: number[] = [];
  for (let o = 0; o < ctx.node.outputs.length; o++) sizes.push(ctx.kept('out', o, axis)?.length ?? ctx.outShape(o)![axis]!);
  if (ctx.opset >= 13) {
    ctx.node.attrs.delete('num_outputs');
    ctx.node.attrs.delete('split');
    ctx.setConstant(1, intTensorLike(present(ctx, 1) ? ctx.constant(1) : undefined, sizes));
  } else ctx.node.attrs.set('split', { kind: 'ints', value: sizes });
};

function clampIndex(v: number, dim: number): number {
  if (v < 0) v += dim;
  return Math.max(0, Math.min(dim, v));
}

export const sliceChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0), y = ctx.outShape(0);
  if (!x || !y) return 'shapes unknown';
  const decoded = sliceArgs(ctx, x.length);
  const args = typeof decoded === 'string' ? undefined : decoded;
  const links: ChannelLink[] = [];
  for (let a = 0; a < x.length; a++) {
    const k = args ? args.axes.indexOf(a) : -1;
    if (k < 0) {
      if (args && x[a] === y[a]) links.push({ a: IN(0, a), b: OUT(0, a) });
      continue;
    }
    if (args!.steps[k] !== 1) continue;
    const s = clampIndex(args!.starts[k]!, x[a]!);
    links.push({ a: IN(0, a), b: OUT(0, a), map: mapOf(y[a]!, (j) => s + j) });
  }
  return { links };
};

function keptBefore(kept: Int32Array, v: number): number {
  let n = 0;
  for (const k of kept) if (k < v) n++;
  return n;
}

export const slicePrune: PruneRule = (ctx) => {
  const x = ctx.inShape(0)!;
  const args = sliceArgs(ctx, x.length) as SliceArgs<number>;
  let changed = false;
  const starts = [...args.starts], ends = [...args.ends];
  args.axes.forEach((a, k) => {
    const kept = ctx.kept('in', 0, a);
    if (!kept) return;
    const s = clampIndex(args.starts[k]!, x[a]!);
    const e = Math.max(s, clampIndex(args.ends[k]!, x[a]!));
    const ns = keptBefore(kept, s);
    starts[k] = ns;
    ends[k] = ns + keptBefore(kept, e) - keptBefore(kept, s);
    changed = true;
  });
  if (!changed) return;
  if (ctx.opset < 10) {
    ctx.node.attrs.set('starts', { kind: 'ints', value: starts });
    ctx.node.attrs.set('ends', { kind: 'ints', value: ends });
  } else {
    ctx.setConstant(1, intTensorLike(ctx.constant(1), starts));
    ctx.setConstant(2, intTensorLike(ctx.constant(2), ends));
  }
};

export const gatherChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0), y = ctx.outShape(0);
  const idx = inputInts(ctx, 1);
  const idt = ctx.constant(1);
  if (!x || !y) return 'shapes unknown';
  const axis = nodeAxis(ctx, x.length);
  const ri = idt ? idt.dims.length : (ctx.inShape(1)?.length ?? -1);
  if (ri < 0) return 'indices rank unknown';
  const links: ChannelLink[] = [];
  for (let a = 0; a < axis; a++) links.push({ a: IN(0, a), b: OUT(0, a) });
  for (let a = axis + 1; a < x.length; a++) links.push({ a: IN(0, a), b: OUT(0, a + ri - 1) });
  if (!idx) return { links };
  const norm = idx.map((v) => (v < 0 ? v + x[axis]! : v));
  if (ri === 1) {
    links.push({ a: IN(0, axis), b: OUT(0, axis), map: Int32Array.from(norm) });
    return { links };
  }
  // Other index ranks: the gathered input rows stay, the rest may go.
  return { links, free: [IN(0, axis)], frozen: [{ ref: IN(0, axis), indices: norm, reason: 'gathered by index' }] };
};

export const gatherPrune: PruneRule = (ctx) => {
  const x = ctx.inShape(0)!;
  const axis = nodeAxis(ctx, x.length);
  const kept = ctx.kept('in', 0, axis);
  if (!kept) return;
  const t = ctx.constant(1)!;
  const pos = new Map<number, number>();
  kept.forEach((k, i) => pos.set(k, i));
  const keptOut = ctx.kept('out', 0, axis);
  let idx = toNumbers(t).map((v) => (v < 0 ? v + x[axis]! : v));
  if (t.dims.length === 1 && keptOut) idx = Array.from(keptOut, (j) => idx[j]!);
  const nv = idx.map((v) => pos.get(v) ?? -1);
  if (nv.some((v) => v < 0)) return 'a gathered index was removed';
  const dims = t.dims.length === 1 ? [nv.length] : t.dims;
  const out = intTensorLike(t, nv);
  ctx.setConstant(1, { ...out, dims });
  return undefined;
};

/**
 * TopK: the other axes pass through to Values and Indices; the selected axis keeps every input index (which entries
 * are the top K depends on all of them) and its K outputs are positions in the ranking, not channels.
 */
export const topkChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0);
  if (!x) return 'shape unknown';
  const axis = nodeAxis(ctx, x.length, -1);
  const links: ChannelLink[] = [];
  const frozen: { ref: AxisRef; reason: string }[] = [{ ref: IN(0, axis), reason: 'TopK selects among every entry of this axis' }];
  for (let o = 0; o < ctx.node.outputs.length; o++) {
    if (!ctx.node.outputs[o]) continue;
    for (let a = 0; a < x.length; a++) {
      if (a !== axis) links.push({ a: IN(0, a), b: OUT(o, a) });
      else frozen.push({ ref: OUT(o, a), reason: 'TopK outputs are ranks, not channels' });
    }
  }
  return { links, frozen };
};

/**
 * GatherElements: the output has the indices' shape (tied axis by axis); the data's other axes tie to the output's
 * where sizes agree; the data's gathered axis keeps every index (the indices address it).
 */
export const gatherElementsChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0), idx = ctx.inShape(1), y = ctx.outShape(0);
  if (!x || !idx || !y) return 'shapes unknown';
  const axis = nodeAxis(ctx, x.length);
  const links: ChannelLink[] = [];
  for (let a = 0; a < y.length; a++) {
    links.push({ a: IN(1, a), b: OUT(0, a) });
    if (a !== axis && x[a] === y[a]) links.push({ a: IN(0, a), b: OUT(0, a) });
  }
  const frozen: { ref: AxisRef; reason: string }[] = [{ ref: IN(0, axis), reason: 'GatherElements addresses this axis by index' }];
  for (let a = 0; a < x.length; a++) if (a !== axis && x[a] !== y[a]) frozen.push({ ref: IN(0, a), reason: 'GatherElements reads a part of this axis' });
  return { links, frozen };
};

export const transposeChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0);
  if (!x) return 'shape unknown';
  const perm = attrInts(ctx.node, 'perm') ?? x.map((_, i) => x.length - 1 - i);
  return { links: perm.map((p, i) => ({ a: IN(0, p), b: OUT(0, i) })) };
};

/**
 * How a Reshape ties an axis that it splits or merges: a split of one input axis into output axes (hidden ->
 * heads x head_dim) ties each input element to the innermost output axis of size > 1 ('inner': positions within
 * a block, head_dim entries, shuffled channels) or to the one before it ('block': whole heads, channel groups; a
 * leading q/k/v axis stays outside); a merge of input axes into one output axis ties each output element to the
 * outermost input axis ('outer': the block it came from) or to the innermost ('inner': its position in the block).
 */
export interface ReshapeTies {
  split: 'inner' | 'block';
  merge: 'outer' | 'inner';
}

/**
 * Reshape/Flatten/Squeeze/Unsqueeze from static shapes: axes are grouped where prefix products meet. Within a
 * group, a one-to-one axis is tied directly; a merge or a split is tied as `ties` says (default: the channel
 * shuffle convention, split to the innermost axis, merge to the outermost). Groups that are neither freeze.
 */
export function reshapeLinks(x: number[], y: number[], ties: ReshapeTies = { split: 'inner', merge: 'outer' }): ChannelLink[] {
  const links: ChannelLink[] = [];
  const xi = x.map((d, i) => [d, i] as const).filter(([d]) => d !== 1);
  const yi = y.map((d, i) => [d, i] as const).filter(([d]) => d !== 1);
  let i = 0, j = 0;
  while (i < xi.length && j < yi.length) {
    const gx: (readonly [number, number])[] = [xi[i++]!];
    const gy: (readonly [number, number])[] = [yi[j++]!];
    let px = gx[0]![0], py = gy[0]![0];
    if (px < 0 || py < 0) {
      // Symbolic dims: only an exact match continues.
      if (px !== py) return links;
      continue;
    }
    while (px !== py) {
      if (px < py) {
        if (i >= xi.length || xi[i]![0] < 0) return links;
        gx.push(xi[i]!);
        px *= xi[i++]![0];
      } else {
        if (j >= yi.length || yi[j]![0] < 0) return links;
        gy.push(yi[j]!);
        py *= yi[j++]![0];
      }
    }
    if (gx.length === 1 && gy.length === 1) links.push({ a: IN(0, gx[0]![1]), b: OUT(0, gy[0]![1]) });
    else if (gy.length === 1) {
      if (ties.merge === 'outer') {
        // Merge: output element f -> coordinate of the outermost input axis.
        const [d0, a0] = gx[0]!;
        const inner = px / d0;
        links.push({ a: IN(0, a0), b: OUT(0, gy[0]![1]), map: mapOf(py, (f) => Math.floor(f / inner)) });
      } else {
        const [dl, al] = gx[gx.length - 1]!;
        links.push({ a: IN(0, al), b: OUT(0, gy[0]![1]), map: mapOf(py, (f) => f % dl) });
      }
    } else if (gx.length === 1) {
      const [dl, bl] = gy[gy.length - 1]!;
      if (ties.split === 'inner') links.push({ a: OUT(0, bl), b: IN(0, gx[0]![1]), map: mapOf(px, (c) => c % dl) });
      else {
        const [dh, bh] = gy[gy.length - 2]!;
        links.push({ a: OUT(0, bh), b: IN(0, gx[0]![1]), map: mapOf(px, (c) => Math.floor(c / dl) % dh) });
      }
    }
  }
  return links;
}

const sameLinks = (a: ChannelLink[], b: ChannelLink[]): boolean =>
  a.length === b.length && a.every((l, k) => {
    const m = b[k]!;
    const same = (r: AxisRef, q: AxisRef) => r.io === q.io && r.index === q.index && r.axis === q.axis;
    if (!same(l.a, m.a) || !same(l.b, m.b) || !l.map !== !m.map) return false;
    return !l.map || (l.map.length === m.map!.length && l.map.every((v, t) => v === m.map![t]));
  });

/**
 * A Reshape's couplings: splits and merges tie whole blocks first (attention heads: the hidden axis split into
 * heads x head_dim and merged back), or positions within blocks when ctx.splitUnits is 'positions'; the other
 * conventions are alternatives the dependency graph falls back to where the first freezes an axis here (a
 * channel shuffle merges what it split along the other axis).
 */
export const reshapeChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0), y = ctx.outShape(0);
  if (!x || !y) return 'shapes unknown';
  const order: ReshapeTies[] = ctx.splitUnits === 'positions'
    ? [{ split: 'inner', merge: 'inner' }, { split: 'inner', merge: 'outer' }, { split: 'block', merge: 'outer' }, { split: 'block', merge: 'inner' }]
    : [{ split: 'block', merge: 'outer' }, { split: 'inner', merge: 'outer' }, { split: 'block', merge: 'inner' }, { split: 'inner', merge: 'inner' }];
  const options: ChannelLink[][] = [];
  for (const t of order) {
    const l = reshapeLinks(x, y, t);
    if (!options.some((o) => sameLinks(o, l))) options.push(l);
  }
  const [first, ...rest] = options;
  return { links: first!, ...(rest.length ? { alternatives: rest.map((links) => ({ links })) } : {}) };
};

/** Reshape whose target lists a changed dimension explicitly gets a new target. */
export const reshapePrune: PruneRule = (ctx) => {
  const y = ctx.outShape(0)!;
  const changed: number[] = [];
  for (let a = 0; a < y.length; a++) if (ctx.kept('out', 0, a)) changed.push(a);
  if (changed.length === 0) return;
  const t = ctx.constant(1);
  if (!t) return 'the target shape is not constant';
  const target = toNumbers(t);
  if (target.length !== y.length) return 'target rank differs from the output rank';
  const x = ctx.inShape(0)!;
  const nt = [...target];
  for (const a of changed) {
    const kept = ctx.kept('out', 0, a)!.length;
    if (target[a] === -1) continue;
    if (target[a] === 0 && attrInt(ctx.node, 'allowzero', 0) === 0) {
      const kin = ctx.kept('in', 0, a);
      if (x[a] === y[a] && (kin?.length ?? x[a]) === kept) continue;
    }
    nt[a] = kept;
  }
  // A second -1 cannot appear; the output size must be determined: fix any remaining -1 if another dim changed.
  ctx.setConstant(1, intTensorLike(t, nt));
  return undefined;
};

export const flattenChannels: ChannelRule = reshapeChannels;

export const padChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0), y = ctx.outShape(0);
  if (!x || !y) return 'shapes unknown';
  const mode = ctx.node.attrs.get('mode');
  const constantMode = !mode || (mode.kind === 'string' && mode.value === 'constant');
  const pads = padArgs(ctx, x.length);
  if (pads === 'pads') return 'pads are not constant';
  if (pads === 'axes') return 'pad axes are not constant';
  const links: ChannelLink[] = [];
  for (let a = 0; a < x.length; a++) {
    const pb = pads.begin[a]!, pe = pads.end[a]!;
    if (pb === 0 && pe === 0) links.push({ a: IN(0, a), b: OUT(0, a) });
    else if (constantMode && pb >= 0 && pe >= 0) links.push({ a: IN(0, a), b: OUT(0, a), map: mapOf(y[a]!, (j) => (j - pb >= 0 && j - pb < x[a]! ? j - pb : -1)) });
  }
  return { links };
};

/** Resize/Upsample: axes whose size does not change pass through. */
export const resizeChannels: ChannelRule = (ctx) => ({ links: sameShapeLinks(ctx) });

export const resizePrune: PruneRule = (ctx) => {
  const y = ctx.outShape(0)!;
  if (!present(ctx, 3)) return;
  const sizes = ctx.constant(3);
  const changed = y.some((_, a) => ctx.kept('out', 0, a));
  if (!changed) return;
  if (!sizes) return 'sizes are not constant';
  const v = toNumbers(sizes);
  if (v.length !== y.length) return 'sizes with axes are not supported';
  const nv = v.map((d, a) => ctx.kept('out', 0, a)?.length ?? d);
  ctx.setConstant(3, intTensorLike(sizes, nv));
  return undefined;
};

export const expandChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0), y = ctx.outShape(0);
  if (!x || !y) return 'shapes unknown';
  const off = y.length - x.length;
  const links: ChannelLink[] = [];
  for (let a = 0; a < x.length; a++) if (x[a] === y[a + off] && x[a]! > 1) links.push({ a: IN(0, a), b: OUT(0, a + off) });
  return { links };
};

export const expandPrune: PruneRule = (ctx) => {
  const y = ctx.outShape(0)!;
  const t = ctx.constant(1);
  const changed = y.some((_, a) => ctx.kept('out', 0, a));
  if (!changed) return;
  if (!t) return 'the target shape is not constant';
  const v = toNumbers(t);
  const off = y.length - v.length;
  const nv = v.map((d, i) => (d > 1 ? (ctx.kept('out', 0, i + off)?.length ?? d) : d));
  ctx.setConstant(1, intTensorLike(t, nv));
  return undefined;
};

export const tileChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0), y = ctx.outShape(0);
  if (!x || !y || x.length !== y.length) return 'shapes unknown';
  return { links: x.map((d, a) => ({ a: IN(0, a), b: OUT(0, a), ...(d === y[a] ? {} : { map: mapOf(y[a]!, (j) => j % d) }) })) };
};

/** Shape: axes outside [start, end) do not affect the result. */
export const shapeChannels: ChannelRule = (ctx) => {
  const x = ctx.inShape(0);
  if (!x) return 'shape unknown';
  const r = x.length;
  const start = clampIndex(attrInt(ctx.node, 'start', 0), r);
  const endA = ctx.node.attrs.get('end') as Attr | undefined;
  const end = endA && endA.kind === 'int' ? clampIndex(endA.value, r) : r;
  const free: AxisRef[] = [];
  for (let a = 0; a < r; a++) if (a < start || a >= end) free.push(IN(0, a));
  return { links: [], free };
};

/** The rules by op family, for the op modules to reference. */
export const CHANNELS = {
  unary: { channels: unaryChannels },
  broadcast: { channels: broadcastChannels },
  conv: { channels: convChannels, prune: convPrune },
  convTranspose: { channels: convTransposeChannels, prune: convPrune },
  gemm: { channels: gemmChannels },
  matmul: { channels: matmulChannels },
  channelNorm: { channels: channelNormChannels },
  layerNorm: { channels: layerNormChannels },
  groupNorm: { channels: groupNormChannels },
  pool: { channels: poolChannels },
  reduceFree: { channels: reduceChannels(true) },
  reduce: { channels: reduceChannels(false) },
  /** ReduceMean: a mean over fewer features (RMSNorm statistics) when ctx.normalized allows it. */
  reduceMean: { channels: reduceChannels('normalized') },
  arg: { channels: argChannels },
  softmax: { channels: softmaxChannels },
  concat: { channels: concatChannels },
  split: { channels: splitChannels, prune: splitPrune },
  slice: { channels: sliceChannels, prune: slicePrune },
  gather: { channels: gatherChannels, prune: gatherPrune },
  gatherElements: { channels: gatherElementsChannels },
  topk: { channels: topkChannels },
  transpose: { channels: transposeChannels },
  reshape: { channels: reshapeChannels, prune: reshapePrune },
  flatten: { channels: flattenChannels },
  squeeze: { channels: reshapeChannels },
  pad: { channels: padChannels },
  resize: { channels: resizeChannels, prune: resizePrune },
  expand: { channels: expandChannels, prune: expandPrune },
  tile: { channels: tileChannels },
  shape: { channels: shapeChannels },
} as const;

/**
 * Channel rules by op type, attached to the registry entries (ops/registry.ts). Ops absent here have no
 * channel rule: the depgraph freezes the channels they touch.
 */
export const CHANNEL_RULES: Record<string, { channels: ChannelRule; prune?: PruneRule; residualJoin?: boolean }> = {
  Conv: CHANNELS.conv,
  ConvTranspose: CHANNELS.convTranspose,
  Gemm: CHANNELS.gemm,
  MatMul: CHANNELS.matmul,
  BatchNormalization: CHANNELS.channelNorm,
  InstanceNormalization: CHANNELS.channelNorm,
  LayerNormalization: CHANNELS.layerNorm,
  RMSNormalization: CHANNELS.layerNorm,
  SimplifiedLayerNormalization: CHANNELS.layerNorm,
  GroupNormalization: CHANNELS.groupNorm,
  MaxPool: CHANNELS.pool,
  AveragePool: CHANNELS.pool,
  LpPool: CHANNELS.pool,
  GlobalAveragePool: CHANNELS.pool,
  GlobalMaxPool: CHANNELS.pool,
  GlobalLpPool: CHANNELS.pool,
  ReduceSum: CHANNELS.reduceFree,
  ReduceSumSquare: CHANNELS.reduceFree,
  ReduceL1: CHANNELS.reduceFree,
  ReduceL2: CHANNELS.reduceFree,
  ReduceMean: CHANNELS.reduceMean,
  ReduceMax: CHANNELS.reduce,
  ReduceMin: CHANNELS.reduce,
  ReduceProd: CHANNELS.reduce,
  ReduceLogSum: CHANNELS.reduce,
  ReduceLogSumExp: CHANNELS.reduce,
  ArgMax: CHANNELS.arg,
  ArgMin: CHANNELS.arg,
  Softmax: CHANNELS.softmax,
  LogSoftmax: CHANNELS.softmax,
  Hardmax: CHANNELS.softmax,
  Concat: CHANNELS.concat,
  Split: CHANNELS.split,
  Slice: CHANNELS.slice,
  Gather: CHANNELS.gather,
  GatherElements: CHANNELS.gatherElements,
  TopK: CHANNELS.topk,
  Transpose: CHANNELS.transpose,
  Reshape: CHANNELS.reshape,
  Flatten: CHANNELS.flatten,
  Squeeze: CHANNELS.squeeze,
  Unsqueeze: CHANNELS.squeeze,
  Pad: CHANNELS.pad,
  Resize: CHANNELS.resize,
  Upsample: CHANNELS.resize,
  Expand: CHANNELS.expand,
  Tile: CHANNELS.tile,
  Shape: CHANNELS.shape,
  Add: { ...CHANNELS.broadcast, residualJoin: true },
  Sum: { ...CHANNELS.broadcast, residualJoin: true },
  Sub: CHANNELS.broadcast, Mul: CHANNELS.broadcast, Div: CHANNELS.broadcast, Pow: CHANNELS.broadcast,
  Max: CHANNELS.broadcast, Min: CHANNELS.broadcast, Mean: CHANNELS.broadcast, Where: CHANNELS.broadcast,
  PRelu: { channels: preluChannels }, Equal: CHANNELS.broadcast, Less: CHANNELS.broadcast, Greater: CHANNELS.broadcast,
  LessOrEqual: CHANNELS.broadcast, GreaterOrEqual: CHANNELS.broadcast, And: CHANNELS.broadcast, Or: CHANNELS.broadcast,
  Xor: CHANNELS.broadcast, Mod: CHANNELS.broadcast,
  ...Object.fromEntries([
    'Relu', 'LeakyRelu', 'ThresholdedRelu', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Tanh', 'Elu', 'Selu', 'Celu',
    'Softplus', 'Softsign', 'Mish', 'Gelu', 'Clip', 'Shrink', 'Neg', 'Abs', 'Sign', 'Floor', 'Ceil', 'Round',
    'Sqrt', 'Reciprocal', 'Exp', 'Log', 'Erf', 'Sin', 'Cos', 'Tan', 'Asin', 'Acos', 'Atan', 'Sinh', 'Cosh',
    'Asinh', 'Acosh', 'Atanh', 'Not', 'IsNaN', 'IsInf', 'Identity', 'Dropout', 'Cast', 'CastLike',
  ].map((k) => [k, CHANNELS.unary])),
};
