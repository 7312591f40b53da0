/**
 * Small models around fused attention ops (com.microsoft Attention, MultiHeadAttention, GroupQueryAttention and
 * ONNX Attention): x -> projections -> attention -> output projection -> y, with the per-head extras
 * (attention biases, past caches, present outputs summed into y, head sinks, rotary caches) as options. The
 * caches are constants here (initializers) so that their head axis can be sliced; as model inputs they would
 * freeze the heads (the model's interface would change).
 */
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor, numel, type Tensor } from '../src/ir/tensor.js';
import { rng } from '../src/random.js';

export interface AttentionFixture {
  model: Model;
  feeds: Record<string, Tensor>;
  /** Name of the attention node. */
  node: string;
}

const MS = { domain: 'com.microsoft' };
const MS_OPSET = [{ domain: 'com.microsoft', version: 1 }];

class Net {
  readonly b = new GraphBuilder('attention');
  private readonly r: () => number;
  constructor(seed: number) {
    this.r = rng(seed);
  }
  w(dims: number[], scale = 0.5): string {
    return this.b.init(this.b.fresh('p'), this.t(dims, scale));
  }
  t(dims: number[], scale = 1): Tensor {
    return floatTensor(dims, Array.from({ length: numel(dims) }, () => (this.r() * 2 - 1) * scale));
  }
  i32(dims: number[], values: number[]): string {
    return this.b.init(this.b.fresh('i'), { dtype: DataType.INT32, dims, data: Int32Array.from(values) });
  }
  /** y = out @ Wo + bo, plus the sum of every present output (so that the caches reach the model output). */
  head(out: string, hidden: number, presents: string[], dims: number[]): void {
    let y = this.b.node('Add', [this.b.node('MatMul', [out, this.w([hidden, 6])]), this.w([6], 0.2)]);
    for (const p of presents) y = this.b.node('Add', [y, this.b.node('ReduceSum', [p], { keepdims: 0 })]);
    this.b.node('Identity', [y], {}, { output: 'y' });
    this.b.output('y', dims);
  }
}

const B = 2, S = 4, DIN = 12, P = 3;

export interface MsAttentionOptions {
  /** qkv_hidden_sizes (default: 16 each). */
  qkv?: [number, number, number];
  past?: boolean;
  attentionBias?: boolean;
  unidirectional?: boolean;
}

/** com.microsoft.Attention with 4 heads of size 4 (value heads of qkv[2]/4). */
export function msAttentionModel(o: MsAttentionOptions = {}): AttentionFixture {
  const n = new Net(11);
  const b = n.b;
  const [q, k, v] = o.qkv ?? [16, 16, 16];
  const h = 4, d = q / h;
  const x = b.input('x', [B, S, DIN]);
  const t = o.past ? P + S : S;
  const inputs = [x, n.w([DIN, q + k + v]), n.w([q + k + v], 0.2), '', o.past ? n.w([2, B, h, P, d]) : '', o.attentionBias ? n.w([1, h, S, t]) : ''];
  while (inputs[inputs.length - 1] === '') inputs.pop();
  const attrs: Record<string, number | number[]> = { num_heads: h };
  if (o.qkv) attrs['qkv_hidden_sizes'] = o.qkv;
  if (o.unidirectional) attrs['unidirectional'] = 1;
  const outs = b.nodeN('Attention', inputs, attrs, o.past ? 2 : 1, { ...MS, name: 'attn' });
  n.head(outs[0]!, v, outs.slice(1), [B, S, 6]);
  return { model: b.model(17, MS_OPSET), feeds: { x: n.t([B, S, DIN]) }, node: 'attn' };
}

export interface MhaOptions {
  /** Value head size (default 4, the query head size). */
  dv?: number;
  bias?: boolean;
  past?: boolean;
  attentionBias?: boolean;
  /** Key and value as [B, H, L, D] (cross attention with projected keys), from a Reshape and Transpose. */
  bnshKv?: boolean;
  /** Key and value as [B, H, L, D] from per-head projection weights [H, Din, D]. */
  perHeadKv?: boolean;
}

/** com.microsoft.MultiHeadAttention with 4 heads of size 4 fed by MatMul projections. */
export function mhaModel(o: MhaOptions = {}): AttentionFixture {
  const n = new Net(12);
  const b = n.b;
  const h = 4, d = 4, dv = o.dv ?? 4;
  const x = b.input('x', [B, S, DIN]);
  const q = b.node('MatMul', [x, n.w([DIN, h * d])]);
  let k = b.node('MatMul', [x, n.w([DIN, h * d])]);
  let v = b.node('MatMul', [x, n.w([DIN, h * dv])]);
  if (o.perHeadKv) {
    const x4 = b.node('Unsqueeze', [x, b.init('ax1', { dtype: DataType.INT64, dims: [1], data: BigInt64Array.from([1n]) })]);
    k = b.node('MatMul', [x4, n.w([h, DIN, d])]);
    v = b.node('MatMul', [x4, n.w([h, DIN, dv])]);
  }
  if (o.bnshKv) {
    const shape = b.init('bnsh', { dtype: DataType.INT64, dims: [4], data: BigInt64Array.from([B, S, h, d].map(BigInt)) });
    k = b.node('Transpose', [b.node('Reshape', [k, shape])], { perm: [0, 2, 1, 3] });
    v = b.node('Transpose', [b.node('Reshape', [v, shape])], { perm: [0, 2, 1, 3] });
  }
  const t = o.past ? P + S : S;
  const inputs = [q, k, v, o.bias ? n.w([2 * h * d + h * dv], 0.2) : '', '', o.attentionBias ? n.w([1, h, S, t]) : '',
    o.past ? n.w([B, h, P, d]) : '', o.past ? n.w([B, h, P, dv]) : ''];
  while (inputs[inputs.length - 1] === '') inputs.pop();
  const outs = b.nodeN('MultiHeadAttention', inputs, { num_heads: h }, o.past ? 3 : 1, { ...MS, name: 'attn' });
  n.head(outs[0]!, h * dv, outs.slice(1), [B, S, 6]);
  return { model: b.model(17, MS_OPSET), feeds: { x: n.t([B, S, DIN]) }, node: 'attn' };
}

export interface GqaOptions {
  /** One packed Q|K|V projection instead of three. */
  packed?: boolean;
  /** do_rotary with cos/sin caches (head size 16, as onnxruntime's CPU kernel requires). */
  rotary?: boolean;
  past?: boolean;
  /** attention_bias [1,H,S,T] and head_sink [H] (smooth_softmax). */
  extras?: boolean;
  /** total_sequence_length as a model input (`total`, fed) instead of a constant. */
  dynamicTotal?: boolean;
}

/** com.microsoft.GroupQueryAttention with 4 query heads sharing 2 key/value heads (head size 8, or 16 with rotary). */
export function gqaModel(o: GqaOptions = {}): AttentionFixture {
  const n = new Net(13);
  const b = n.b;
  const h = 4, g = 2, d = o.rotary ? 16 : 8;
  const bs = 1; // with a past, onnxruntime takes several query positions only for batch 1
  const x = b.input('x', [bs, S, DIN]);
  const t = o.past ? P + S : S;
  const qkv = o.packed
    ? [b.node('MatMul', [x, n.w([DIN, (h + 2 * g) * d])]), '', '']
    : [b.node('MatMul', [x, n.w([DIN, h * d])]), b.node('MatMul', [x, n.w([DIN, g * d])]), b.node('MatMul', [x, n.w([DIN, g * d])])];
  const inputs = [...qkv, o.past ? n.w([bs, g, P, d]) : '', o.past ? n.w([bs, g, P, d]) : '', n.i32([bs], [t - 1]), o.dynamicTotal ? b.input('total', [], DataType.INT32) : n.i32([], [t]),
    o.rotary ? n.w([16, d / 2], 1) : '', o.rotary ? n.w([16, d / 2], 1) : '', '',
    o.extras ? n.w([1, h, S, t]) : '', o.extras ? n.w([h]) : ''];
  while (inputs[inputs.length - 1] === '') inputs.pop();
  const attrs: Record<string, number> = { num_heads: h, kv_num_heads: g };
  if (o.rotary) attrs['do_rotary'] = 1;
  if (o.extras) attrs['smooth_softmax'] = 1;
  const outs = b.nodeN('GroupQueryAttention', inputs, attrs, 3, { ...MS, name: 'attn' });
  n.head(outs[0]!, h * d, outs.slice(1), [bs, S, 6]);
  const feeds: Record<string, Tensor> = { x: n.t([bs, S, DIN]) };
  if (o.dynamicTotal) feeds['total'] = { dtype: DataType.INT32, dims: [], data: Int32Array.from([t]) };
  return { model: b.model(17, MS_OPSET), feeds, node: 'attn' };
}

export interface OnnxAttentionOptions {
  /** 3: Q/K/V [B,S,hidden] from MatMuls; 4: [B,H,S,D] from per-head weights [H,Din,D]. */
  rank: 3 | 4;
  past?: boolean;
  /** A float attn_mask with a head axis ([H,S,T] for rank 3, [1,H,S,T] for rank 4). */
  mask?: boolean;
}

/** ONNX Attention (opset 23) with 4 query heads (size 4) over 2 key/value heads (value size 6). */
export function onnxAttentionModel(o: OnnxAttentionOptions): AttentionFixture {
  const n = new Net(14);
  const b = n.b;
  const h = 4, g = 2, d = 4, dv = 6;
  const t = o.past ? P + S : S;
  let q: string, k: string, v: string, x: string, xShape: number[];
  if (o.rank === 3) {
    xShape = [B, S, DIN];
    x = b.input('x', xShape);
    q = b.node('MatMul', [x, n.w([DIN, h * d])]);
    k = b.node('MatMul', [x, n.w([DIN, g * d])]);
    v = b.node('MatMul', [x, n.w([DIN, g * dv])]);
  } else {
    xShape = [B, 1, S, DIN];
    x = b.input('x', xShape);
    q = b.node('MatMul', [x, n.w([h, DIN, d])]);
    k = b.node('MatMul', [x, n.w([g, DIN, d])]);
    v = b.node('MatMul', [x, n.w([g, DIN, dv])]);
  }
  const inputs = [q, k, v, o.mask ? n.w(o.rank === 3 ? [h, S, t] : [1, h, S, t]) : '', o.past ? n.w([B, g, P, d]) : '', o.past ? n.w([B, g, P, dv]) : ''];
  while (inputs[inputs.length - 1] === '') inputs.pop();
  const attrs: Record<string, number> = o.rank === 3 ? { q_num_heads: h, kv_num_heads: g } : {};
  const outs = b.nodeN('Attention', inputs, attrs, o.past ? 3 : 1, { name: 'attn' });
  if (o.rank === 3) n.head(outs[0]!, h * dv, outs.slice(1), [B, S, 6]);
  else {
    // Per-head output projection [H, Dv, 6], then the heads summed.
    const perHead = b.node('MatMul', [outs[0]!, n.w([h, dv, 6])]);
    const summed = b.node('ReduceSum', [perHead, b.init('ax1', { dtype: DataType.INT64, dims: [1], data: BigInt64Array.from([1n]) })], { keepdims: 0 });
    let y = summed;
    for (const p of outs.slice(1)) y = b.node('Add', [y, b.node('ReduceSum', [p], { keepdims: 0 })]);
    b.node('Identity', [y], {}, { output: 'y' });
    b.output('y', [B, S, 6]);
  }
  return { model: b.model(23), feeds: { x: n.t(xShape) }, node: 'attn' };
}

/** Largest absolute difference of two outputs, and the largest magnitude of the first (for relative checks). */
export function maxDiff(a: Float32Array, b: Float32Array): { err: number; abs: number } {
  let err = 0, abs = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    abs = Math.max(abs, Math.abs(a[i]!));
  }
  return { err, abs };
}
