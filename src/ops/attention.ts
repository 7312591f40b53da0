/**
 * Fused attention ops: onnxruntime's contrib Attention, MultiHeadAttention and GroupQueryAttention (domain
 * com.microsoft, registered in ops/registry.ts CONTRIB_OPS) and ONNX Attention (opset 23, default domain).
 *
 * Layouts (H query heads, G key/value heads, D the query/key head size, Dv the value head size, B batch, S query
 * length, L key/value length, P past length, T = total key length):
 * - com.microsoft.Attention: input [B,S,Din] @ weights [Din, Hq+Hk+Hv] (+ bias) gives Q|K|V side by side
 *   (Hq = Hk = H*D, Hv = H*Dv; qkv_hidden_sizes when they differ); output [B,S,Hv]; past/present
 *   [2,B,H,P|T,D]; attention_bias [B|1, H|1, S, T].
 * - MultiHeadAttention: query [B,S,H*D], key [B,L,H*D] or [B,H,L,D], value [B,L,H*Dv] or [B,H,L,Dv], bias
 *   [2*H*D + H*Dv]; output [B,S,H*Dv]; past/present key and value [B,H,P|T,D|Dv]; qk [B,H,S,T].
 * - GroupQueryAttention: query [B,S,H*D] (or packed Q|K|V [B,S,(H+2G)*D]), key/value [B,L,G*D]; output
 *   [B,S,H*D]; past/present [B,G,P|T,D]; attention_bias [B|1,H|1,S,T]; head_sink [H]; output_qk [B,H,S,T].
 * - ONNX Attention: Q/K/V 3-D [B,S,H*D], [B,L,G*D], [B,L,G*Dv] (q_num_heads, kv_num_heads) or 4-D
 *   [B,H,S,D], [B,G,L,D], [B,G,L,Dv]; Y like Q (last axis H*Dv); present [B,G,T,D|Dv]; attn_mask broadcast to
 *   [B,H,S,T]; qk_matmul_output [B,H,S,T].
 * Query head h reads key/value head floor(h / (H/G)) (G = H without grouping).
 *
 * Cost: the input projection of contrib Attention (B*S*Din*(Hq+Hk+Hv) MACs), then Q K^T (B*S*T*H*D) and the
 * weighted sum of V (B*S*T*H*Dv). All of it is read from tensor shapes (hidden sizes, not head counts), so that
 * the structured planner prices resized tensors before the attributes follow; softmax and scaling count as
 * FLOPs (about 5 per score).
 *
 * Structured pruning removes whole heads: head_size never changes (rotary embeddings, per-head norms and the
 * default 1/sqrt(head_size) scale stay valid). A unit is one head: its D columns in the Q and K projections, its
 * Dv columns in V, its Dv rows of the output (so the output projection's rows), and its index on every head axis
 * (past/present caches, attention_bias, head_sink, qk outputs). With grouped-query attention (G < H) a unit is a
 * key/value head with the H/G query heads that share it, so the grouping survives any removal. The elements of
 * a unit are tied by links from the unit's axis to itself (element j -> first element of its head or group),
 * which the dependency graph unions within one space. Zeroed heads contribute exactly zero: their queries and
 * keys are zero, so their scores are uniform, and their values are zero, so their outputs are zero.
 *
 * Frozen (the node's channels keep every index, with the reason): layouts onnxruntime's CPU kernels do not run
 * (MultiHeadAttention packed QKV [B,S,H,3,D] and packed KV [B,L,H,2,D]), quantized KV caches of
 * GroupQueryAttention (k_scale/v_scale), head counts that do not divide the hidden sizes, unknown shapes. Masks
 * without a head axis (mask_index, key_padding_mask, seqlens) do not depend on the heads and need no change.
 */
import { attrInt, attrInts, attrString, type Dim, type Node, type TensorType } from '../ir/graph.js';
import { inputInts, opError, present, withBias } from './args.js';
import { ZERO_COST } from './cost.js';
import { dimAdd, dimMul, fmtShape, isNum, staticProd } from './dims.js';
import { checkDim, shapeOf, tt } from './shape-rules.js';
import type { AxisRef, ChannelContext, ChannelInfo, ChannelLink, Cost, CostContext, InferContext, LayerOpDef, OpDef, PruneContext, PruneRule, WeightSpec } from './types.js';
import { IN, OUT, mapOf } from './links.js';

/** Why fine-tuning refuses a model with one of these ops (OpDef.noGrad). */
const NO_GRAD = 'fine-tuning and training through fused attention ops are not supported: prune without fine-tuning (unstructured or structured with l1/l2 importance)';


function heads(ctx: { readonly node: Node }, name: string): number {
  const h = attrInt(ctx.node, name);
  if (h === undefined) return opError(ctx, `attribute ${name} is required`);
  if (h <= 0) return opError(ctx, `${name} must be positive, got ${h}`);
  return h;
}

/** hidden / count when both are numbers (checked to divide), else a symbolic or unknown dim. */
function perHead(ctx: { readonly node: Node }, hidden: Dim | undefined, count: number, what: string): Dim {
  if (!isNum(hidden)) return null;
  if (hidden % count !== 0) opError(ctx, `${what} ${hidden} is not a multiple of ${count} heads`);
  return hidden / count;
}

function rankIs(ctx: { readonly node: Node }, s: Dim[] | undefined, ranks: number[], what: string): void {
  if (s && !ranks.includes(s.length)) opError(ctx, `${what} must be ${ranks.join('-D or ')}-D, got ${fmtShape(s)}`);
}

/** MACs of Q K^T and of the weighted sum of V: B*S*T*(hidden of Q + hidden of the output). */
function scoreMacs(batchSeq: Dim[], total: Dim, qHidden: Dim, outHidden: Dim): number | undefined {
  const bst = staticProd([...batchSeq, total]);
  if (bst === undefined || !isNum(qHidden) || !isNum(outHidden)) return undefined;
  return bst * (qHidden + outHidden);
}

function scoreFlops(batchSeq: Dim[], total: Dim, h: number): number {
  return 5 * h * (staticProd([...batchSeq, total]) ?? 0);
}

/** Static dim or undefined (-1 in a channel context means symbolic). */
const known = (d: number | undefined): d is number => d !== undefined && d >= 0;

/** A link tying the elements of `ref` to the unit anchor: element j of ref -> anchor element rep(j). */
const tie = (anchor: AxisRef, ref: AxisRef, n: number, rep: (j: number) => number): ChannelLink => ({ a: anchor, b: ref, map: mapOf(n, rep) });

/** The head axis (size `h`) of an input/output when it has that size (size 1 broadcasts: no link). */
function headAxisLink(anchor: AxisRef, ref: AxisRef, dims: number[] | undefined, h: number, rep: (head: number) => number): ChannelLink | undefined {
  if (!dims || dims[ref.axis] !== h || h <= 1) return undefined;
  return tie(anchor, ref, h, rep);
}

// ------------------------------------------------------------------------------ com.microsoft.Attention

interface MsAttentionSizes {
  h: number;
  /** Hidden sizes of Q, K, V. */
  q: number;
  k: number;
  v: number;
  d: number;
  dv: number;
}

function msAttentionSizes(ctx: { readonly node: Node }, w: Dim | undefined): MsAttentionSizes | undefined {
  const h = heads(ctx, 'num_heads');
  const given = attrInts(ctx.node, 'qkv_hidden_sizes');
  let q: number, k: number, v: number;
  if (given) {
    if (given.length !== 3) opError(ctx, `qkv_hidden_sizes must have 3 values, got ${given.length}`);
    [q, k, v] = given as [number, number, number];
    if (isNum(w) && w !== q + k + v) opError(ctx, `weights have ${w} columns, qkv_hidden_sizes [${given.join(',')}] sum to ${q + k + v}`);
  } else {
    if (!isNum(w)) return undefined;
    if (w % 3 !== 0) opError(ctx, `weights have ${w} columns, not 3 equal Q/K/V parts (give qkv_hidden_sizes)`);
    q = k = v = w / 3;
  }
  if (q !== k) opError(ctx, `Q and K hidden sizes differ (${q} vs ${k})`);
  if (q % h !== 0 || v % h !== 0) opError(ctx, `hidden sizes ${q}, ${v} are not multiples of num_heads ${h}`);
  return { h, q, k, v, d: q / h, dv: v / h };
}

function inferMsAttention(ctx: InferContext): (TensorType | undefined)[] {
  const elem = ctx.input(0)?.elemType;
  const x = shapeOf(ctx, 0), w = shapeOf(ctx, 1), bias = present(ctx, 2) ? shapeOf(ctx, 2) : undefined;
  rankIs(ctx, x, [3], 'input');
  rankIs(ctx, w, [2], 'weights');
  if (x && w) checkDim(ctx, x[2], w[0], `input ${fmtShape(x)} and weights ${fmtShape(w)} differ in input hidden size`);
  const sz = msAttentionSizes(ctx, w?.[1]);
  if (bias && w) checkDim(ctx, bias[0], w[1], `bias ${fmtShape(bias)} differs from the weights' columns`);
  if (elem === undefined) return [undefined, undefined];
  const out: Dim[] | undefined = x && sz ? [x[0]!, x[1]!, sz.v] : undefined;
  let pres: Dim[] | undefined;
  if (ctx.node.outputs[1] && x && sz) {
    const past = present(ctx, 4) ? shapeOf(ctx, 4) : undefined;
    rankIs(ctx, past, [5], 'past');
    if (past) {
      checkDim(ctx, past[2], sz.h, `past ${fmtShape(past)}: heads differ from num_heads`);
      const t = attrInt(ctx.node, 'past_present_share_buffer', 0) ? past[3]! : dimAdd(past[3]!, x[1]!);
      pres = [2, x[0]!, sz.h, t, sz.d];
    } else pres = [2, x[0]!, sz.h, x[1]!, sz.d];
  }
  return [tt(elem, out), ...(ctx.node.outputs.length > 1 ? [tt(elem, pres)] : [])];
}

function msTotal(ctx: InferContext, x: Dim[]): Dim {
  const past = present(ctx, 4) ? shapeOf(ctx, 4) : undefined;
  if (!past || past.length !== 5) return x[1]!;
  return attrInt(ctx.node, 'past_present_share_buffer', 0) ? past[3]! : dimAdd(past[3]!, x[1]!);
}

function msAttentionCost(ctx: CostContext): Cost {
  const x = shapeOf(ctx, 0), w = shapeOf(ctx, 1), y = ctx.output(0)?.shape;
  if (!x || !w || !y || x.length !== 3 || w.length !== 2 || y.length !== 3) return ZERO_COST;
  const proj = staticProd([x[0]!, x[1]!, w[0]!, w[1]!]);
  const [cols, hv] = [w[1]!, y[2]!];
  if (proj === undefined || !isNum(cols) || !isNum(hv)) return ZERO_COST;
  const t = msTotal(ctx, x);
  const scores = scoreMacs([x[0]!, x[1]!], t, (cols - hv) / 2, hv) ?? 0;
  return { macs: proj + scores, flops: (staticProd([x[0]!, x[1]!, cols]) ?? 0) + scoreFlops([x[0]!, x[1]!], t, attrInt(ctx.node, 'num_heads', 1)) };
}

/**
 * Anchor: the weights' column axis, each column tied to the first Q column of its head (Q, K and V parts alike).
 * The input's hidden axis is read by the weights' rows like any linear layer.
 */
const msAttentionChannels = (ctx: ChannelContext): ChannelInfo | string => {
  const w = ctx.inShape(1);
  if (!w || w.length !== 2 || !known(w[1])) return 'weights shape unknown';
  const sz = msAttentionSizes(ctx, w[1]);
  if (!sz) return 'Q/K/V sizes unknown';
  const { h, q, k, d, dv } = sz;
  const anchor = IN(1, 1);
  const headOfCol = (j: number) => (j < q ? Math.floor(j / d) : j < q + k ? Math.floor((j - q) / d) : Math.floor((j - q - k) / dv));
  const links: ChannelLink[] = [
    { a: IN(0, 2), b: IN(1, 0), role: 'reads' },
    tie(anchor, anchor, w[1], (j) => headOfCol(j) * d),
    { ...tie(anchor, OUT(0, 2), sz.v, (j) => Math.floor(j / dv) * d), role: 'writes' },
  ];
  if (present(ctx, 2)) links.push({ a: anchor, b: IN(2, 0) });
  const opt = [
    headAxisLink(anchor, IN(4, 2), ctx.inShape(4), h, (i) => i * d),
    headAxisLink(anchor, IN(5, 1), ctx.inShape(5), h, (i) => i * d),
    ctx.node.outputs[1] ? headAxisLink(anchor, OUT(1, 2), ctx.outShape(1), h, (i) => i * d) : undefined,
  ];
  for (const l of opt) if (l) links.push(l);
  return { links };
};

const msAttentionPrune: PruneRule = (ctx: PruneContext) => {
  const kept = ctx.kept('in', 1, 1);
  if (!kept) return;
  const sz = msAttentionSizes(ctx, ctx.inShape(1)![1])!;
  let kq = 0, kk = 0, kv = 0;
  for (const j of kept) {
    if (j < sz.q) kq++;
    else if (j < sz.q + sz.k) kk++;
    else kv++;
  }
  ctx.node.attrs.set('num_heads', { kind: 'int', value: kq / sz.d });
  if (ctx.node.attrs.has('qkv_hidden_sizes')) ctx.node.attrs.set('qkv_hidden_sizes', { kind: 'ints', value: [kq, kk, kv] });
};

/** The merged Q|K|V weights [Din, Hq+Hk+Hv] as the layer weight (unstructured and N:M pruning along Din). */
function msAttentionWeight(node: Node, dims?: readonly number[]): WeightSpec | undefined {
  return dims !== undefined && dims.length !== 2 ? undefined : withBias(node, { input: 1, outAxis: 1, inAxis: 0, bias: 2 });
}

const msAttention: LayerOpDef = {
  weight: msAttentionWeight,
  noGrad: NO_GRAD,
  infer: inferMsAttention,
  cost: msAttentionCost,
  paramInputs: [1, 2],
  channels: msAttentionChannels,
  prune: msAttentionPrune,
};

// ----------------------------------------------------------------------- com.microsoft.MultiHeadAttention

/** Key/value length and layout of MultiHeadAttention. */
function mhaKvLength(k: Dim[] | undefined, q: Dim[]): Dim {
  if (!k) return q.length === 5 ? q[1]! : null;
  return k.length === 4 ? k[2]! : k[1]!;
}

function mhaTotal(ctx: InferContext, q: Dim[]): Dim {
  const l = mhaKvLength(present(ctx, 1) ? shapeOf(ctx, 1) : undefined, q);
  const past = present(ctx, 6) ? shapeOf(ctx, 6) : undefined;
  if (!past || past.length !== 4) return l;
  // Buffer sharing (past_sequence_length given): the caches hold max_sequence_length positions.
  return present(ctx, 8) ? past[2]! : dimAdd(past[2]!, l);
}

function inferMha(ctx: InferContext): (TensorType | undefined)[] {
  const elem = ctx.input(0)?.elemType;
  const h = heads(ctx, 'num_heads');
  const q = shapeOf(ctx, 0), k = present(ctx, 1) ? shapeOf(ctx, 1) : undefined, v = present(ctx, 2) ? shapeOf(ctx, 2) : undefined;
  rankIs(ctx, q, [3, 5], 'query');
  rankIs(ctx, k, [3, 4, 5], 'key');
  rankIs(ctx, v, [3, 4], 'value');
  const n = ctx.node.outputs.length;
  if (elem === undefined) return Array.from({ length: n }, () => undefined);
  if (!q) return Array.from({ length: n }, (_, i) => (ctx.node.outputs[i] ? tt(elem) : undefined));
  let qHidden: Dim, outHidden: Dim;
  if (q.length === 5) {
    checkDim(ctx, q[2], h, `packed QKV ${fmtShape(q)}: heads differ from num_heads`);
    qHidden = outHidden = dimMul(q[2]!, q[4]!);
  } else {
    qHidden = q[2]!;
    outHidden = v ? (v.length === 3 ? v[2]! : dimMul(v[1]!, v[3]!)) : qHidden;
  }
  const d = perHead(ctx, qHidden, h, 'query hidden size');
  const dv = perHead(ctx, outHidden, h, 'value hidden size');
  if (k && k.length === 3) checkDim(ctx, k[2], qHidden, `key ${fmtShape(k)} differs from query ${fmtShape(q)} in hidden size`);
  if (k && k.length === 4) checkDim(ctx, k[1], h, `key ${fmtShape(k)}: heads differ from num_heads`);
  const t = mhaTotal(ctx, q);
  const outs: (TensorType | undefined)[] = [tt(elem, [q[0]!, q[1]!, outHidden])];
  if (n > 1) outs.push(ctx.node.outputs[1] ? tt(elem, [q[0]!, h, t, d]) : undefined);
  if (n > 2) outs.push(ctx.node.outputs[2] ? tt(elem, [q[0]!, h, t, dv]) : undefined);
  if (n > 3) outs.push(ctx.node.outputs[3] ? tt(elem, [q[0]!, h, q[1]!, t]) : undefined);
  return outs;
}

function mhaCost(ctx: CostContext): Cost {
  const q = shapeOf(ctx, 0), y = ctx.output(0)?.shape;
  if (!q || !y || (q.length !== 3 && q.length !== 5) || y.length !== 3) return ZERO_COST;
  const qHidden = q.length === 5 ? dimMul(q[2]!, q[4]!) : q[2]!;
  const t = mhaTotal(ctx, q);
  const macs = scoreMacs([q[0]!, q[1]!], t, qHidden, y[2]!);
  return macs === undefined ? ZERO_COST : { macs, flops: scoreFlops([q[0]!, q[1]!], t, attrInt(ctx.node, 'num_heads', 1)) };
}

/** Anchor: the query's hidden axis, each element tied to the first element of its head. */
const mhaChannels = (ctx: ChannelContext): ChannelInfo | string => {
  const h = heads(ctx, 'num_heads');
  const q = ctx.inShape(0), k = present(ctx, 1) ? ctx.inShape(1) : undefined, v = present(ctx, 2) ? ctx.inShape(2) : undefined;
  if (!q) return 'query shape unknown';
  if (q.length === 5) return 'packed QKV query [B,S,H,3,D] (onnxruntime has no CPU kernel for it; not pruned)';
  if (k?.length === 5) return 'packed KV key [B,L,H,2,D] (onnxruntime has no CPU kernel for it; not pruned)';
  if (!present(ctx, 1) || !present(ctx, 2)) return 'key or value missing';
  if (!k || !v) return 'key or value shape unknown';
  if (q.length !== 3 || !known(q[2])) return 'query hidden size unknown';
  const y = ctx.outShape(0);
  if (!y || !known(y[2])) return 'output hidden size unknown';
  if (q[2] % h !== 0 || y[2] % h !== 0) return `hidden sizes ${q[2]}, ${y[2]} are not multiples of num_heads ${h}`;
  const d = q[2] / h, dv = y[2] / h;
  const anchor = IN(0, 2);
  const links: ChannelLink[] = [
    tie(anchor, anchor, q[2], (j) => Math.floor(j / d) * d),
    tie(anchor, OUT(0, 2), y[2], (j) => Math.floor(j / dv) * d),
  ];
  if (k.length === 3) {
    if (k[2] !== q[2]) return 'key and query differ in hidden size';
    links.push({ a: anchor, b: IN(1, 2) });
  } else links.push(tie(anchor, IN(1, 1), h, (i) => i * d));
  if (v.length === 3) links.push(tie(anchor, IN(2, 2), y[2], (j) => Math.floor(j / dv) * d));
  else links.push(tie(anchor, IN(2, 1), h, (i) => i * d));
  if (present(ctx, 3)) {
    const b = ctx.inShape(3);
    if (!b || b[0] !== 2 * q[2] + y[2]) return 'bias size differs from 2 x query hidden + value hidden';
    const hq = q[2];
    links.push(tie(anchor, IN(3, 0), b[0], (j) => (j < hq ? j : j < 2 * hq ? j - hq : Math.floor((j - 2 * hq) / dv) * d)));
  }
  const opt = [
    headAxisLink(anchor, IN(5, 1), ctx.inShape(5), h, (i) => i * d),
    headAxisLink(anchor, IN(6, 1), ctx.inShape(6), h, (i) => i * d),
    headAxisLink(anchor, IN(7, 1), ctx.inShape(7), h, (i) => i * d),
    ...[1, 2, 3].map((o) => (ctx.node.outputs[o] ? headAxisLink(anchor, OUT(o, 1), ctx.outShape(o), h, (i) => i * d) : undefined)),
  ];
  for (const l of opt) if (l) links.push(l);
  return { links };
};

const mhaPrune: PruneRule = (ctx) => {
  const kept = ctx.kept('in', 0, 2);
  if (!kept) return;
  const d = ctx.inShape(0)![2]! / heads(ctx, 'num_heads');
  ctx.node.attrs.set('num_heads', { kind: 'int', value: kept.length / d });
};

const mha: OpDef = {
  noGrad: NO_GRAD,
  infer: inferMha,
  cost: mhaCost,
  paramInputs: [3],
  channels: mhaChannels,
  prune: mhaPrune,
};

// ---------------------------------------------------------------------- com.microsoft.GroupQueryAttention

interface GqaSizes {
  h: number;
  g: number;
  packed: boolean;
}

function gqaSizes(ctx: { readonly node: Node }): GqaSizes {
  const h = heads(ctx, 'num_heads'), g = heads(ctx, 'kv_num_heads');
  if (h % g !== 0) opError(ctx, `num_heads ${h} is not a multiple of kv_num_heads ${g}`);
  return { h, g, packed: !present(ctx, 1) };
}

/**
 * Length of the present caches: max(past length, total_sequence_length) (the past is a shared buffer when it
 * is the longer). Without the total: the query length when there is no past (a prompt), unknown otherwise;
 * `estimate` (for MACs) then takes past + new positions.
 */
function gqaTotal(ctx: InferContext, q: Dim[], estimate = false): Dim {
  const tsl = inputInts(ctx, 6)?.[0];
  const past = present(ctx, 3) ? shapeOf(ctx, 3) : undefined;
  const p = past?.length === 4 ? past[2]! : undefined;
  if (tsl !== undefined) return isNum(p) ? Math.max(p, tsl) : p === undefined ? tsl : null;
  if (p === undefined) return q[1]!;
  return estimate ? dimAdd(p, q[1]!) : null;
}

function inferGqa(ctx: InferContext): (TensorType | undefined)[] {
  const elem = ctx.input(0)?.elemType;
  const { h, g, packed } = gqaSizes(ctx);
  const q = shapeOf(ctx, 0), k = packed ? undefined : shapeOf(ctx, 1), v = present(ctx, 2) ? shapeOf(ctx, 2) : undefined;
  rankIs(ctx, q, [3], 'query');
  rankIs(ctx, k, [3], 'key');
  rankIs(ctx, v, [3], 'value');
  const n = ctx.node.outputs.length;
  if (elem === undefined) return Array.from({ length: n }, () => undefined);
  if (!q) return Array.from({ length: n }, (_, i) => (ctx.node.outputs[i] ? tt(elem) : undefined));
  const d = perHead(ctx, q[2], packed ? h + 2 * g : h, packed ? 'packed QKV hidden size' : 'query hidden size');
  if (k) checkDim(ctx, k[2], isNum(d) ? g * d : null, `key ${fmtShape(k)}: hidden size differs from kv_num_heads x head_size`);
  if (v) checkDim(ctx, v[2], isNum(d) ? g * d : null, `value ${fmtShape(v)}: hidden size differs from kv_num_heads x head_size`);
  const past = present(ctx, 3) ? shapeOf(ctx, 3) : undefined;
  rankIs(ctx, past, [4], 'past_key');
  if (past) checkDim(ctx, past[1], g, `past_key ${fmtShape(past)}: heads differ from kv_num_heads`);
  const t = gqaTotal(ctx, q);
  const cacheElem = (present(ctx, 3) ? ctx.input(3)?.elemType : undefined) ?? elem;
  const outs: (TensorType | undefined)[] = [tt(elem, [q[0]!, q[1]!, isNum(d) ? h * d : null])];
  const pres = [q[0]!, g, t, d];
  if (n > 1) outs.push(ctx.node.outputs[1] ? tt(cacheElem, pres) : undefined);
  if (n > 2) outs.push(ctx.node.outputs[2] ? tt(cacheElem, pres) : undefined);
  if (n > 3) outs.push(ctx.node.outputs[3] ? tt(elem, [q[0]!, h, q[1]!, t]) : undefined);
  return outs;
}

function gqaCost(ctx: CostContext): Cost {
  const q = shapeOf(ctx, 0), y = ctx.output(0)?.shape;
  if (!q || !y || q.length !== 3 || y.length !== 3) return ZERO_COST;
  const t = gqaTotal(ctx, q, true);
  // Query heads and output heads have the same size: Q K^T and the V sum each cost B*S*T*H*D.
  const macs = scoreMacs([q[0]!, q[1]!], t, y[2]!, y[2]!);
  return macs === undefined ? ZERO_COST : { macs, flops: scoreFlops([q[0]!, q[1]!], t, attrInt(ctx.node, 'num_heads', 1)) };
}

/**
 * Anchor: the query's hidden axis. A unit is a KV group: KV head g and query heads g*r .. g*r+r-1 (r = H/G),
 * all tied to the first element of query head g*r.
 */
const gqaChannels = (ctx: ChannelContext): ChannelInfo | string => {
  const { h, g, packed } = gqaSizes(ctx);
  if (present(ctx, 12) || present(ctx, 13) || attrString(ctx.node, 'k_quant_type', 'NONE') !== 'NONE' || attrString(ctx.node, 'v_quant_type', 'NONE') !== 'NONE') {
    return 'quantized KV cache (k_scale/v_scale): its scales are not sliced by shears';
  }
  const q = ctx.inShape(0);
  if (!q || q.length !== 3 || !known(q[2])) return 'query hidden size unknown';
  if (!packed && !present(ctx, 2)) return 'value missing';
  const per = packed ? h + 2 * g : h;
  if (q[2] % per !== 0) return `query hidden size ${q[2]} is not a multiple of ${per} heads`;
  const d = q[2] / per, r = h / g, qh = h * d, kh = g * d;
  const anchor = IN(0, 2);
  const group = (j: number) => Math.floor(j / (r * d)) * r * d; // query element -> its group's anchor
  const kvRep = (j: number) => Math.floor(j / d) * r * d; // key/value element -> its group's anchor
  const links: ChannelLink[] = [
    tie(anchor, anchor, q[2], (j) => (j < qh ? group(j) : j < qh + kh ? kvRep(j - qh) : kvRep(j - qh - kh))),
    tie(anchor, OUT(0, 2), qh, (j) => j),
  ];
  if (!packed) {
    const k = ctx.inShape(1), v = ctx.inShape(2);
    if (!k || !v || k[2] !== kh || v[2] !== kh) return 'key or value hidden size differs from kv_num_heads x head_size';
    links.push(tie(anchor, IN(1, 2), kh, kvRep), tie(anchor, IN(2, 2), kh, kvRep));
  }
  const opt = [
    headAxisLink(anchor, IN(3, 1), ctx.inShape(3), g, (i) => i * r * d),
    headAxisLink(anchor, IN(4, 1), ctx.inShape(4), g, (i) => i * r * d),
    headAxisLink(anchor, IN(10, 1), ctx.inShape(10), h, (i) => i * d),
    headAxisLink(anchor, IN(11, 0), ctx.inShape(11), h, (i) => i * d),
    ...[1, 2].map((o) => (ctx.node.outputs[o] ? headAxisLink(anchor, OUT(o, 1), ctx.outShape(o), g, (i) => i * r * d) : undefined)),
    ctx.node.outputs[3] ? headAxisLink(anchor, OUT(3, 1), ctx.outShape(3), h, (i) => i * d) : undefined,
  ];
  for (const l of opt) if (l) links.push(l);
  return { links };
};

const gqaPrune: PruneRule = (ctx) => {
  const kept = ctx.kept('in', 0, 2);
  if (!kept) return;
  const { h, g, packed } = gqaSizes(ctx);
  const d = ctx.inShape(0)![2]! / (packed ? h + 2 * g : h);
  let kq = 0;
  for (const j of kept) if (j < h * d) kq++;
  const nh = kq / d;
  ctx.node.attrs.set('num_heads', { kind: 'int', value: nh });
  ctx.node.attrs.set('kv_num_heads', { kind: 'int', value: nh / (h / g) });
};

const gqa: OpDef = {
  noGrad: NO_GRAD,
  infer: inferGqa,
  cost: gqaCost,
  paramInputs: [11],
  channels: gqaChannels,
  prune: gqaPrune,
};

// ---------------------------------------------------------------------------------- ONNX Attention (23)

interface OnnxAttentionSizes {
  rank: 3 | 4;
  h: Dim;
  g: Dim;
}

function onnxAttentionSizes(ctx: InferContext | ChannelContext, q: Dim[] | undefined, k: Dim[] | undefined): OnnxAttentionSizes | undefined {
  if (!q) return undefined;
  if (q.length === 3) {
    if (k && k.length !== 3) opError(ctx, `Q ${fmtShape(q)} is 3-D but K ${fmtShape(k)} is not`);
    return { rank: 3, h: heads(ctx, 'q_num_heads'), g: heads(ctx, 'kv_num_heads') };
  }
  if (q.length !== 4) opError(ctx, `Q must be 3-D or 4-D, got ${fmtShape(q)}`);
  if (k && k.length !== 4) opError(ctx, `Q ${fmtShape(q)} is 4-D but K ${fmtShape(k)} is not`);
  return { rank: 4, h: q[1]!, g: k ? k[1]! : null };
}

function onnxTotal(ctx: InferContext, k: Dim[] | undefined, rank: number): Dim {
  const l = k ? (rank === 3 ? k[1]! : k[2]!) : null;
  const past = present(ctx, 4) ? shapeOf(ctx, 4) : undefined;
  return past?.length === 4 ? dimAdd(past[2]!, l) : l;
}

/** ONNX Attention exists from opset 23; an older model's default-domain Attention is someone's custom op. */
const ONNX_ATTENTION_OPSET = 23;

function inferOnnxAttention(ctx: InferContext): (TensorType | undefined)[] {
  const elem = ctx.input(0)?.elemType;
  const q = shapeOf(ctx, 0), k = shapeOf(ctx, 1), v = shapeOf(ctx, 2);
  const n = ctx.node.outputs.length;
  if (ctx.opset < ONNX_ATTENTION_OPSET) return Array.from({ length: n }, () => undefined);
  const sz = onnxAttentionSizes(ctx, q, k);
  if (elem === undefined) return Array.from({ length: n }, () => undefined);
  if (!q || !sz) return Array.from({ length: n }, (_, i) => (ctx.node.outputs[i] ? tt(elem) : undefined));
  const { h, g } = sz;
  if (isNum(h) && isNum(g) && h % g !== 0) opError(ctx, `${h} query heads are not a multiple of ${g} key/value heads`);
  let d: Dim, dv: Dim = null, y: Dim[];
  if (sz.rank === 3) {
    d = perHead(ctx, q[2], h as number, 'Q hidden size');
    if (k) checkDim(ctx, k[2], isNum(d) ? (g as number) * d : null, `K ${fmtShape(k)}: hidden size differs from kv_num_heads x head_size`);
    if (v) dv = perHead(ctx, v[2], g as number, 'V hidden size');
    y = [q[0]!, q[1]!, isNum(dv) ? (h as number) * dv : null];
  } else {
    d = q[3]!;
    if (k) checkDim(ctx, k[3], d, `K ${fmtShape(k)} differs from Q ${fmtShape(q)} in head size`);
    if (v) dv = v[3]!;
    y = [q[0]!, h, q[2]!, dv];
  }
  const t = onnxTotal(ctx, k, sz.rank);
  const s = sz.rank === 3 ? q[1]! : q[2]!;
  const vt = ctx.input(2)?.elemType ?? elem;
  const outs: (TensorType | undefined)[] = [tt(elem, y)];
  if (n > 1) outs.push(ctx.node.outputs[1] ? tt(elem, [q[0]!, g, t, d]) : undefined);
  if (n > 2) outs.push(ctx.node.outputs[2] ? tt(vt, [q[0]!, g, t, dv]) : undefined);
  if (n > 3) outs.push(ctx.node.outputs[3] ? tt(elem, [q[0]!, h, s, t]) : undefined);
  return outs;
}

function onnxAttentionCost(ctx: CostContext): Cost {
  if (ctx.opset < ONNX_ATTENTION_OPSET) return ZERO_COST;
  const q = shapeOf(ctx, 0), k = shapeOf(ctx, 1), y = ctx.output(0)?.shape;
  if (!q || !y || q.length !== y.length || (q.length !== 3 && q.length !== 4)) return ZERO_COST;
  const rank = q.length;
  const bs = rank === 3 ? [q[0]!, q[1]!] : [q[0]!, q[2]!];
  const qHidden = rank === 3 ? q[2]! : dimMul(q[1]!, q[3]!);
  const yHidden = rank === 3 ? y[2]! : dimMul(y[1]!, y[3]!);
  const t = onnxTotal(ctx, k, rank);
  const macs = scoreMacs(bs, t, qHidden, yHidden);
  const h = rank === 3 ? attrInt(ctx.node, 'q_num_heads', 1) : isNum(q[1]) ? q[1] : 1;
  return macs === undefined ? ZERO_COST : { macs, flops: scoreFlops(bs, t, h) };
}

/**
 * 3-D: anchor Q's hidden axis (as GroupQueryAttention, with value head size Dv). 4-D: anchor Q's head axis,
 * query head h tied to query head floor(h/r)*r of its group.
 */
const onnxAttentionChannels = (ctx: ChannelContext): ChannelInfo | string => {
  if (ctx.opset < ONNX_ATTENTION_OPSET) return `an Attention node at opset ${ctx.opset} (ONNX Attention needs opset ${ONNX_ATTENTION_OPSET})`;
  const q = ctx.inShape(0), k = ctx.inShape(1), v = ctx.inShape(2), y = ctx.outShape(0);
  if (!q || !k || !v || !y) return 'Q, K, V or Y shape unknown';
  const sz = onnxAttentionSizes(ctx, q, k)!;
  const h = sz.h as number, g = sz.g as number;
  if (!known(h) || !known(g)) return 'head counts unknown';
  if (h % g !== 0) return `${h} query heads are not a multiple of ${g} key/value heads`;
  const r = h / g;
  const links: ChannelLink[] = [];
  let anchor: AxisRef, rep: (qHead: number) => number;
  if (sz.rank === 3) {
    if (![q[2], k[2], v[2], y[2]].every(known)) return 'hidden sizes unknown';
    const d = q[2]! / h, dv = v[2]! / g;
    if (!Number.isInteger(d) || !Number.isInteger(dv) || k[2] !== g * d || y[2] !== h * dv) return 'hidden sizes do not match the head counts';
    anchor = IN(0, 2);
    rep = (i) => Math.floor(i / r) * r * d;
    links.push(
      tie(anchor, anchor, q[2]!, (j) => rep(Math.floor(j / d))),
      tie(anchor, IN(1, 2), k[2]!, (j) => Math.floor(j / d) * r * d),
      tie(anchor, IN(2, 2), v[2]!, (j) => Math.floor(j / dv) * r * d),
      tie(anchor, OUT(0, 2), y[2]!, (j) => rep(Math.floor(j / dv))),
    );
  } else {
    anchor = IN(0, 1);
    rep = (i) => Math.floor(i / r) * r;
    if (r > 1) links.push(tie(anchor, anchor, h, rep));
    const ok = [k, v].map((s) => (s[1] === g ? 1 : 0)).every(Boolean) && y[1] === h;
    if (!ok) return 'head axes of K, V or Y differ from Q\'s';
    links.push(tie(anchor, IN(1, 1), g, (i) => i * r), tie(anchor, IN(2, 1), g, (i) => i * r), tie(anchor, OUT(0, 1), h, (i) => i));
  }
  const kvRep = (i: number) => rep(i * r);
  const m = present(ctx, 3) ? ctx.inShape(3) : undefined;
  const opt = [
    headAxisLink(anchor, IN(4, 1), ctx.inShape(4), g, kvRep),
    headAxisLink(anchor, IN(5, 1), ctx.inShape(5), g, kvRep),
    m && m.length >= 3 ? headAxisLink(anchor, IN(3, m.length - 3), m, h, rep) : undefined,
    ...[1, 2].map((o) => (ctx.node.outputs[o] ? headAxisLink(anchor, OUT(o, 1), ctx.outShape(o), g, kvRep) : undefined)),
    ctx.node.outputs[3] ? headAxisLink(anchor, OUT(3, 1), ctx.outShape(3), h, rep) : undefined,
  ];
  for (const l of opt) if (l) links.push(l);
  return { links };
};

const onnxAttentionPrune: PruneRule = (ctx) => {
  const q = ctx.inShape(0)!;
  if (q.length === 3) {
    const kept = ctx.kept('in', 0, 2);
    if (!kept) return;
    const h = heads(ctx, 'q_num_heads'), g = heads(ctx, 'kv_num_heads');
    const nh = kept.length / (q[2]! / h);
    ctx.node.attrs.set('q_num_heads', { kind: 'int', value: nh });
    ctx.node.attrs.set('kv_num_heads', { kind: 'int', value: nh / (h / g) });
    return;
  }
  const kq = ctx.kept('in', 0, 1), kk = ctx.kept('in', 1, 1);
  if (kq && ctx.node.attrs.has('q_num_heads')) ctx.node.attrs.set('q_num_heads', { kind: 'int', value: kq.length });
  if (kk && ctx.node.attrs.has('kv_num_heads')) ctx.node.attrs.set('kv_num_heads', { kind: 'int', value: kk.length });
};

const onnxAttention: OpDef = {
  noGrad: NO_GRAD,
  infer: inferOnnxAttention,
  cost: onnxAttentionCost,
  channels: onnxAttentionChannels,
  prune: onnxAttentionPrune,
};

/** ONNX Attention (default domain, opset 23). */
export const ATTENTION_OPS = {
  Attention: onnxAttention,
} satisfies Record<string, OpDef>;

/** onnxruntime's fused attention ops (domain com.microsoft). */
export const CONTRIB_ATTENTION_OPS = {
  Attention: msAttention,
  MultiHeadAttention: mha,
  GroupQueryAttention: gqa,
} satisfies Record<string, OpDef>;
