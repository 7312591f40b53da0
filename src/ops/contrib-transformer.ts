/**
 * onnxruntime's fused transformer ops besides attention (domain com.microsoft, registered in ops/registry.ts
 * CONTRIB_OPS): what its transformer optimizer and many optimum / transformers.js exports write for the residual
 * add + norm, the MLP activation and rotary position embeddings.
 *
 * - SkipLayerNormalization (input, skip, gamma, [beta], [bias]) and SkipSimplifiedLayerNormalization (input,
 *   skip, gamma, [bias]): s = input + skip (+ bias), output = LayerNorm(s) * gamma (+ beta), resp. RMSNorm(s) *
 *   gamma, over the last axis; outputs output, mean, inv_std_var ([..., 1], float) and input_skip_bias_sum (s).
 *   input is 2-D [tokens, H] or 3-D [B, S, H]; skip has input's shape, [1, S, H] or [S, H].
 * - FastGelu (X, [bias]), BiasGelu (A, B), Gelu, QuickGelu: elementwise, the bias 1-D over X's last axis.
 * - FusedMatMul (A, B; alpha, transA, transB): alpha * A' @ B' with the last two axes of A (B) swapped when transA
 *   (transB); numpy batch broadcasting as MatMul. The optimizer writes it for the attention scores Q K^T / sqrt(D).
 *   transBatchA/transBatchB (batch axes moved) are not modelled: output shape unknown, channels frozen.
 * - RotaryEmbedding (input, position_ids, cos_cache, sin_cache): input [B, S, H*D] or [B, H, S, D]; each head's D
 *   (or its first rotary_embedding_dim) elements are rotated in pairs (i, i + D/2), or (2i, 2i+1) when interleaved,
 *   by angles of the token's position; position_ids is [B, S] or one start offset.
 *
 * Structured pruning. The skip norms are the residual stream: input, skip, output and input_skip_bias_sum share
 * every axis element by element, gamma/beta/bias follow the hidden axis, and the hidden axis (normalised) freezes
 * unless ctx.normalized, as for LayerNormalization (ops/channels.ts layerNormChannels). The activations pass every
 * axis (MLP neurons prune through them exactly: a zeroed neuron stays zero). RotaryEmbedding removes whole heads
 * only: a head's elements are tied to its first one (the rotation mixes them), so head_size stays whole; a 3-D
 * input with a num_heads attribute gets the new head count. The head_size axis of a 4-D input freezes, and so
 * does the sequence axis when the positions are a start offset (removing a token would move the later ones).
 * FusedMatMul couples like MatMul on the transposed operands (heads prune through the attention scores).
 *
 * Gradients: the GELU family has rules (ops/grad/gelu.ts); the skip norms, RotaryEmbedding and FusedMatMul have none
 * (OpDef.noGrad): fine-tuning refuses such a model before any work. BiasAdd and BiasSplitGelu (schemas without an
 * onnxruntime CPU kernel) are not here.
 */
import { DataType } from '../ir/dtype.js';
import { attrInt, type Dim, type Node, type TensorType } from '../ir/graph.js';
import { opError, present } from './args.js';
import { broadcastChannels, matmulChannels, NORMALISED_AXIS_REASON, unaryChannels } from './channels.js';
import { flopsPerOutput, ZERO_COST } from './cost.js';
import { inferSame } from './elementwise.js';
import { fastGeluGrad, msGeluGrad, quickGeluGrad } from './grad/gelu.js';
import { fmtShape, isNum, staticProd } from './dims.js';
import { matmulShape } from './gemm.js';
import { checkDim, shapeOf, tt } from './shape-rules.js';
import type { AxisRef, ChannelContext, ChannelInfo, ChannelLink, ChannelRule, Cost, CostContext, InferContext, OpDef, PruneRule } from './types.js';
import { IN, OUT, mapOf } from './links.js';

/** Why fine-tuning refuses a model with one of these ops (OpDef.noGrad). */
const NO_GRAD = 'fine-tuning and training through onnxruntime\'s fused skip norms, rotary embeddings and FusedMatMul (com.microsoft) are not supported: prune without fine-tuning (unstructured or structured with l1/l2 importance)';


/** Static dim (-1 in a channel context means symbolic). */
const known = (d: number | undefined): d is number => d !== undefined && d >= 0;

/** Checks that input i, when present and shaped, is 1-D of `hidden` elements. */
function checkHiddenVector(ctx: InferContext, i: number, hidden: Dim | undefined, what: string): void {
  if (!present(ctx, i)) return;
  const s = shapeOf(ctx, i);
  if (!s) return;
  if (s.length !== 1) opError(ctx, `${what} must be 1-D, got ${fmtShape(s)}`);
  checkDim(ctx, s[0], hidden, `${what} ${fmtShape(s)} differs from the hidden size ${String(hidden)}`);
}

// ------------------------------------------------------------------------------------------- skip norms

/** Inputs holding gamma, beta and bias (the parameters over the hidden axis), by name. */
const SKIP_LN_PARAMS: Record<number, string> = { 2: 'gamma', 3: 'beta', 4: 'bias' };
const SKIP_SLN_PARAMS: Record<number, string> = { 2: 'gamma', 3: 'bias' };
const indices = (params: Record<number, string>): number[] => Object.keys(params).map(Number);

function inferSkipNorm(params: Record<number, string>) {
  return (ctx: InferContext): (TensorType | undefined)[] => {
    const x = ctx.input(0);
    const xs = x?.shape;
    if (xs && xs.length !== 2 && xs.length !== 3) opError(ctx, `input must be 2-D or 3-D, got ${fmtShape(xs)}`);
    const s = shapeOf(ctx, 1);
    if (xs && s) {
      if (s.length < 2 || s.length > xs.length) opError(ctx, `skip ${fmtShape(s)} does not fit input ${fmtShape(xs)}`);
      const off = xs.length - s.length;
      s.forEach((d, j) => {
        if (!(j === 0 && off === 0 && d === 1 && xs.length === 3)) checkDim(ctx, d, xs[j + off], `skip ${fmtShape(s)} does not fit input ${fmtShape(xs)}`);
      });
    }
    const hidden = xs?.[xs.length - 1];
    for (const [i, what] of Object.entries(params)) checkHiddenVector(ctx, Number(i), hidden, what);
    const stat = x ? tt(DataType.FLOAT, xs ? [...xs.slice(0, -1), 1] : undefined) : undefined;
    return ctx.node.outputs.map((_, o) => (o === 1 || o === 2 ? stat : x));
  };
}

/**
 * The residual stream: input, skip (right-aligned, broadcast axes excepted), output and input_skip_bias_sum tied
 * axis by axis; gamma/beta/bias on the hidden axis; mean and inv_std_var on the leading axes. The hidden axis
 * freezes unless ctx.normalized.
 */
function skipNormChannels(params: readonly number[]): ChannelRule {
  return (ctx: ChannelContext): ChannelInfo | string => {
    const x = ctx.inShape(0);
    if (!x) return 'input shape unknown';
    const s = ctx.inShape(1);
    if (!s) return 'skip shape unknown';
    const r = x.length, h = r - 1;
    const links: ChannelLink[] = [];
    for (const o of [0, 3]) {
      const y = ctx.node.outputs[o] ? ctx.outShape(o) : undefined;
      if (y?.length === r) for (let a = 0; a < r; a++) if (y[a] === x[a]) links.push({ a: IN(0, a), b: OUT(o, a) });
    }
    const off = r - s.length;
    for (let j = 0; j < s.length; j++) if (s[j] === x[j + off] && s[j]! > 1) links.push({ a: IN(0, j + off), b: IN(1, j) });
    for (const i of params) {
      const p = present(ctx, i) ? ctx.inShape(i) : undefined;
      if (p?.length === 1 && p[0] === x[h]) links.push({ a: IN(0, h), b: IN(i, 0) });
    }
    for (const o of [1, 2]) {
      const st = ctx.node.outputs[o] ? ctx.outShape(o) : undefined;
      if (st) for (let a = 0; a < h && a < st.length; a++) if (st[a] === x[a]) links.push({ a: IN(0, a), b: OUT(o, a) });
    }
    if (ctx.normalized) return { links };
    return { links, frozen: [{ ref: IN(0, h), reason: NORMALISED_AXIS_REASON }, { ref: OUT(0, h), reason: NORMALISED_AXIS_REASON }] };
  };
}

/** A fused skip norm whose parameter inputs are `params`, at `flops` per output element. */
function skipNorm(params: Record<number, string>, flops: number): OpDef {
  return {
    noGrad: NO_GRAD,
    infer: inferSkipNorm(params),
    cost: flopsPerOutput(flops),
    paramInputs: indices(params),
    channels: skipNormChannels(indices(params)),
    featureNorm: true,
  };
}

// input + skip (+ bias), then mean, variance, normalise, scale and shift; the simplified form has no mean and shift.
const skipLayerNorm = skipNorm(SKIP_LN_PARAMS, 8);
const skipSimplifiedLayerNorm = skipNorm(SKIP_SLN_PARAMS, 6);

// ------------------------------------------------------------------------------------------- activations

/** X with an optional 1-D bias over its last axis (FastGelu, BiasGelu). */
function inferBiasAct(bias: number) {
  return (ctx: InferContext): (TensorType | undefined)[] => {
    const x = ctx.input(0);
    const xs = x?.shape;
    checkHiddenVector(ctx, bias, xs?.[xs.length - 1], 'bias');
    return [x];
  };
}

const fastGelu: OpDef = { grad: fastGeluGrad, infer: inferBiasAct(1), cost: flopsPerOutput(9), paramInputs: [1], channels: broadcastChannels };
const biasGelu: OpDef = { grad: msGeluGrad, infer: inferBiasAct(1), cost: flopsPerOutput(9), paramInputs: [1], channels: broadcastChannels };
const gelu: OpDef = { grad: msGeluGrad, infer: inferSame, cost: flopsPerOutput(8), channels: unaryChannels };
const quickGelu: OpDef = { grad: quickGeluGrad, infer: inferSame, cost: flopsPerOutput(5), channels: unaryChannels };

// ------------------------------------------------------------------------------------------------ rotary

/** Why a 4-D input's head_size axis keeps every element. */
const ROTARY_HEAD_SIZE = 'head_size axis of a rotary embedding: it rotates pairs of a head\'s elements with cos/sin caches sized by the head (whole heads prune)';

/** Head size of a 3-D input [B, S, H*D]: hidden / num_heads, or twice the cache width without num_heads. */
function rotaryHeadSize(ctx: { readonly node: Node }, hidden: Dim | undefined, cos: Dim[] | undefined): Dim {
  const nh = attrInt(ctx.node, 'num_heads', 0);
  if (nh > 0) {
    if (!isNum(hidden)) return null;
    if (hidden % nh !== 0) opError(ctx, `hidden size ${hidden} is not a multiple of num_heads ${nh}`);
    return hidden / nh;
  }
  if (attrInt(ctx.node, 'rotary_embedding_dim', 0) > 0) opError(ctx, 'rotary_embedding_dim needs num_heads');
  const w = cos?.[1];
  if (!isNum(w)) return null;
  if (isNum(hidden) && hidden % (2 * w) !== 0) opError(ctx, `hidden size ${hidden} is not a multiple of the head size ${2 * w} (twice the cos_cache width)`);
  return 2 * w;
}

function inferRotary(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  const xs = x?.shape;
  if (xs && xs.length !== 3 && xs.length !== 4) opError(ctx, `input must be 3-D [B,S,H*D] or 4-D [B,H,S,D], got ${fmtShape(xs)}`);
  const cos = shapeOf(ctx, 2), sin = shapeOf(ctx, 3);
  for (const [c, what] of [[cos, 'cos_cache'], [sin, 'sin_cache']] as const) if (c && c.length !== 2) opError(ctx, `${what} must be 2-D, got ${fmtShape(c)}`);
  if (cos && sin) checkDim(ctx, sin[1], cos[1], `sin_cache ${fmtShape(sin)} and cos_cache ${fmtShape(cos)} differ`);
  const pos = shapeOf(ctx, 1);
  if (pos && pos.length !== 1 && pos.length !== 2) opError(ctx, `position_ids must be 1-D or 2-D, got ${fmtShape(pos)}`);
  if (xs && attrInt(ctx.node, 'is_packed_batching', 0) === 0) {
    const d = xs.length === 4 ? xs[3]! : rotaryHeadSize(ctx, xs[2], cos);
    const rot = attrInt(ctx.node, 'rotary_embedding_dim', 0) || d;
    if (isNum(rot) && isNum(d) && rot > d) opError(ctx, `rotary_embedding_dim ${rot} exceeds the head size ${d}`);
    if (cos && isNum(rot)) checkDim(ctx, cos[1], rot / 2, `cos_cache ${fmtShape(cos)}: width differs from half the rotary dimension ${rot}`);
  }
  return [x];
}

/**
 * 3-D: the hidden axis ties each element to the first element of its head (whole heads). 4-D: the head axis
 * passes, head_size freezes. Batch passes; the sequence axis passes with position_ids [B, S] (sliced with it)
 * and freezes with a start offset.
 */
const rotaryChannels: ChannelRule = (ctx) => {
  if (attrInt(ctx.node, 'is_packed_batching', 0)) return 'packed (ragged) batching';
  const x = ctx.inShape(0), y = ctx.outShape(0);
  if (!x || !y || (x.length !== 3 && x.length !== 4)) return 'input or output shape unknown';
  const pos = ctx.inShape(1);
  const seq = x.length === 3 ? 1 : 2;
  const links: ChannelLink[] = [{ a: IN(0, 0), b: OUT(0, 0) }, { a: IN(0, seq), b: OUT(0, seq) }];
  const frozen: NonNullable<ChannelInfo['frozen']> = [];
  if (pos?.length === 2) {
    if (pos[0] === x[0]) links.push({ a: IN(0, 0), b: IN(1, 0) });
    links.push({ a: IN(0, seq), b: IN(1, 1) });
  } else frozen.push({ ref: IN(0, seq), reason: 'positions from a start offset (position_ids of one element): removing a token moves the later ones' });
  if (x.length === 4) {
    links.push({ a: IN(0, 1), b: OUT(0, 1) });
    frozen.push({ ref: IN(0, 3), reason: ROTARY_HEAD_SIZE }, { ref: OUT(0, 3), reason: ROTARY_HEAD_SIZE });
    return { links, frozen };
  }
  const hidden = x[2];
  if (!known(hidden)) return 'hidden size unknown';
  const cos = ctx.inShape(2);
  const d = rotaryHeadSize(ctx, hidden, cos && known(cos[1]) ? cos : undefined);
  if (!isNum(d)) return 'head size unknown';
  links.push({ a: IN(0, 2), b: IN(0, 2), map: mapOf(hidden, (j) => Math.floor(j / d) * d) }, { a: IN(0, 2), b: OUT(0, 2) });
  return { links, frozen };
};

/** A 3-D input with a num_heads attribute: the attribute follows the heads kept. */
const rotaryPrune: PruneRule = (ctx) => {
  const x = ctx.inShape(0)!;
  const nh = attrInt(ctx.node, 'num_heads', 0);
  const kept = x.length === 3 && nh > 0 ? ctx.kept('in', 0, 2) : undefined;
  if (!kept) return;
  ctx.node.attrs.set('num_heads', { kind: 'int', value: kept.length / (x[2]! / nh) });
};

const rotaryEmbedding: OpDef = {
  noGrad: NO_GRAD,
  infer: inferRotary,
  // Two products and a sum per rotated element.
  cost: flopsPerOutput(3),
  channels: rotaryChannels,
  prune: rotaryPrune,
};

// ------------------------------------------------------------------------------------------- FusedMatMul

/** A shape with its last two axes swapped when `t` (rank >= 2). */
const swapLast = <T>(s: T[], t: boolean): T[] => (t && s.length >= 2 ? [...s.slice(0, -2), s[s.length - 1]!, s[s.length - 2]!] : s);

function fusedMatMulArgs(node: Node): { transA: boolean; transB: boolean; batchMoved: boolean } {
  return {
    transA: attrInt(node, 'transA', 0) !== 0,
    transB: attrInt(node, 'transB', 0) !== 0,
    batchMoved: attrInt(node, 'transBatchA', 0) !== 0 || attrInt(node, 'transBatchB', 0) !== 0,
  };
}

function inferFusedMatMul(ctx: InferContext): (TensorType | undefined)[] {
  const elem = ctx.input(0)?.elemType ?? ctx.input(1)?.elemType;
  if (elem === undefined) return [undefined];
  const { transA, transB, batchMoved } = fusedMatMulArgs(ctx.node);
  const a = shapeOf(ctx, 0), b = shapeOf(ctx, 1);
  if (batchMoved || !a || !b) return [tt(elem)];
  if ((transA && a.length < 2) || (transB && b.length < 2)) opError(ctx, `a transposed operand must be at least 2-D, got ${fmtShape(a)} and ${fmtShape(b)}`);
  return [tt(elem, matmulShape(ctx, swapLast(a, transA), swapLast(b, transB)))];
}

/** batch*M*N*K = prod(output) * K. */
function fusedMatMulCost(ctx: CostContext): Cost {
  const { transA, batchMoved } = fusedMatMulArgs(ctx.node);
  const out = staticProd(ctx.output(0)?.shape);
  const a = shapeOf(ctx, 0);
  const k = a && !batchMoved ? swapLast(a, transA)[a.length - 1] : undefined;
  return out === undefined || !isNum(k) ? ZERO_COST : { macs: out * k, flops: 0 };
}

/** MatMul's couplings on the transposed views, mapped back to the stored axes. */
const fusedMatMulChannels: ChannelRule = (ctx) => {
  const { transA, transB, batchMoved } = fusedMatMulArgs(ctx.node);
  if (batchMoved) return 'transBatchA/transBatchB (batch axes moved into the matrices) are not modelled';
  const a = ctx.inShape(0), b = ctx.inShape(1);
  if (!a || !b) return 'shapes unknown';
  const trans = [transA && a.length >= 2, transB && b.length >= 2];
  const view: ChannelContext = {
    node: ctx.node,
    opset: ctx.opset,
    inShape: (i) => (i === 0 ? swapLast(a, trans[0]!) : i === 1 ? swapLast(b, trans[1]!) : ctx.inShape(i)),
    outShape: (i) => ctx.outShape(i),
    constant: (i) => ctx.constant(i),
  };
  const info = matmulChannels(view);
  if (typeof info === 'string') return info;
  const back = (r: AxisRef): AxisRef => {
    const rank = r.index === 0 ? a.length : b.length;
    return r.io === 'in' && r.index <= 1 && trans[r.index] && r.axis >= rank - 2 ? { ...r, axis: 2 * rank - 3 - r.axis } : r;
  };
  return { links: info.links.map((l) => ({ ...l, a: back(l.a), b: back(l.b) })) };
};

const fusedMatMul: OpDef = {
  noGrad: NO_GRAD,
  infer: inferFusedMatMul,
  cost: fusedMatMulCost,
  paramInputs: [0, 1],
  channels: fusedMatMulChannels,
};

/** onnxruntime's fused transformer ops other than attention (domain com.microsoft). */
export const CONTRIB_TRANSFORMER_OPS = {
  SkipLayerNormalization: skipLayerNorm,
  SkipSimplifiedLayerNormalization: skipSimplifiedLayerNorm,
  FastGelu: fastGelu,
  BiasGelu: biasGelu,
  Gelu: gelu,
  QuickGelu: quickGelu,
  RotaryEmbedding: rotaryEmbedding,
  FusedMatMul: fusedMatMul,
} satisfies Record<string, OpDef>;
