/**
 * Small models around onnxruntime's fused transformer ops (com.microsoft SkipLayerNormalization,
 * SkipSimplifiedLayerNormalization, FastGelu, BiasGelu, Gelu, QuickGelu, RotaryEmbedding), for
 * test/contrib-transformer.test.ts and the registry's exactness table (test/cases/exact-cases.ts).
 */
import { F, GraphBuilder } from '../src/ir/builder.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor, int64Tensor, numel, type Tensor } from '../src/ir/tensor.js';
import { rng } from '../src/random.js';

const MS = { domain: 'com.microsoft' };
const MS_OPSET = [{ domain: 'com.microsoft', version: 1 }];

export interface ContribFixture {
  model: Model;
  feeds: Record<string, Tensor>;
}

class Net {
  readonly b = new GraphBuilder('contrib');
  private readonly r: () => number;
  constructor(seed: number) {
    this.r = rng(seed);
  }
  t(dims: number[], scale = 1, offset = 0): Tensor {
    return floatTensor(dims, Array.from({ length: numel(dims) }, () => offset + (this.r() * 2 - 1) * scale));
  }
  w(dims: number[], scale = 0.5): string {
    return this.b.init(this.b.fresh('p'), this.t(dims, scale));
  }
  /** Positive values around 1 (norm scales). */
  pos(dims: number[]): string {
    return this.b.init(this.b.fresh('g'), this.t(dims, 0.4, 1));
  }
  i64(dims: number[], values: number[]): string {
    return this.b.init(this.b.fresh('i'), int64Tensor(dims, values));
  }
  ms(op: string, inputs: string[], attrs: Record<string, number | ReturnType<typeof F>> = {}, outputs = 1): string[] {
    return this.b.nodeN(op, inputs, attrs, outputs, MS);
  }
  matmul(x: string, k: number, n: number): string {
    return this.b.node('MatMul', [x, this.w([k, n])]);
  }
}

const B = 2, S = 4, DIN = 6, HID = 12, FF = 16;

/**
 * A transformer block as onnxruntime's optimizer writes it: x [2,4,6] -> embedding projection (the residual
 * stream, hidden 12) -> five MLPs with the fused activations (BiasGelu, FastGelu with and without its bias, Gelu,
 * QuickGelu), summed -> SkipLayerNormalization with the stream (gamma, beta, bias; all four outputs) -> an MLP ->
 * SkipSimplifiedLayerNormalization with input_skip_bias_sum -> y [2,4,5]. Each MLP's neurons are a group; the
 * hidden size is frozen by the norms unless `normalized`.
 */
export function mlpBlockModel(): ContribFixture {
  const n = new Net(21);
  const b = n.b;
  const x = b.input('x', [B, S, DIN]);
  const h = n.matmul(x, DIN, HID);
  const up = () => n.matmul(h, HID, FF);
  const mlps = [
    n.ms('BiasGelu', [up(), n.w([FF], 0.2)])[0]!,
    n.ms('FastGelu', [up(), n.w([FF], 0.2)])[0]!,
    n.ms('FastGelu', [b.node('Add', [up(), n.w([FF], 0.2)])])[0]!,
    n.ms('Gelu', [up()])[0]!,
    n.ms('QuickGelu', [up()], { alpha: F(1.702) })[0]!,
  ].map((a) => n.matmul(a, FF, HID));
  const [ln, mean, invStd, sum] = n.ms('SkipLayerNormalization', [b.node('Sum', mlps), h, n.pos([HID]), n.w([HID], 0.2), n.w([HID], 0.2)], { epsilon: F(1e-5) }, 4);
  const f = n.matmul(n.ms('FastGelu', [n.matmul(ln!, HID, FF), n.w([FF], 0.2)])[0]!, FF, HID);
  const [rms] = n.ms('SkipSimplifiedLayerNormalization', [f, sum!, n.pos([HID]), n.w([HID], 0.2)], { epsilon: F(1e-5) }, 1);
  // The statistics reach the output too (broadcast over the hidden axis).
  const stats = b.node('Mul', [mean!, invStd!]);
  const y = b.node('MatMul', [b.node('Add', [b.node('Add', [ln!, rms!]), stats]), n.w([HID, 5])], {}, { output: 'y' });
  b.output(y, [B, S, 5]);
  return { model: b.model(17, MS_OPSET), feeds: { x: n.t([B, S, DIN]) } };
}

/**
 * Channels of 1-D convolutions [1, 8, 6] through the skip norms, which normalise over the last axis (6): the
 * channel axis is their "sequence" axis and passes element by element (input, skip, outputs, statistics; a 2-D
 * skip [8, 6] broadcast over the batch), then a 1x1 convolution to 5 channels and a mean over the length.
 */
export function skipNormChannelsModel(): ContribFixture {
  const n = new Net(22);
  const b = n.b;
  const x = b.input('x', [1, 3, 6]);
  const conv = (v: string, cin: number, cout: number, k = 3) => b.node('Conv', [v, n.w([cout, cin, k]), n.w([cout], 0.2)], { pads: k === 3 ? [1, 1] : [0, 0] });
  const c = conv(x, 3, 8), d = conv(x, 3, 8);
  const [ln, mean, invStd, sum] = n.ms('SkipLayerNormalization', [c, d, n.pos([6]), n.w([6], 0.2), n.w([6], 0.2)], { epsilon: F(1e-5) }, 4);
  const [ln2] = n.ms('SkipLayerNormalization', [c, b.init(b.fresh('skip'), n.t([8, 6])), n.pos([6])], { epsilon: F(1e-5) }, 1);
  const [rms, , rmsInv, rmsSum] = n.ms('SkipSimplifiedLayerNormalization', [d, c, n.pos([6]), n.w([6], 0.2)], { epsilon: F(1e-5) }, 4);
  const stats = b.node('Add', [b.node('Mul', [mean!, invStd!]), rmsInv!]);
  const s = b.node('Sum', [ln!, sum!, ln2!, rms!, rmsSum!, stats]);
  const y = b.node('ReduceMean', [conv(s, 8, 5, 1)], { axes: [2], keepdims: 0 }, { output: 'y' });
  b.output(y, [1, 5]);
  return { model: b.model(17, MS_OPSET), feeds: { x: n.t([1, 3, 6]) } };
}

/**
 * x [2,4,12] -> projection to 4 heads of size 4 -> RotaryEmbedding (num_heads 4, positions from offset 2) ->
 * projection to 6: nothing but the rotary rule ties a head's elements together.
 */
export function rotaryProjectionModel(): ContribFixture {
  const n = new Net(24);
  const b = n.b;
  const x = b.input('x', [B, S, HID]);
  const r = n.ms('RotaryEmbedding', [n.matmul(x, HID, 16), n.i64([1], [2]), n.w([8, 2], 1), n.w([8, 2], 1)], { num_heads: 4 })[0]!;
  b.output(b.node('MatMul', [r, n.w([16, 6])], {}, { output: 'y' }), [B, S, 6]);
  return { model: b.model(17, MS_OPSET), feeds: { x: n.t([B, S, HID]) } };
}

export interface RotaryOptions {
  /** RotaryEmbedding on [B,H,S,D] (reshaped and transposed projections) instead of [B,S,H*D]. */
  rank?: 3 | 4;
  interleaved?: boolean;
}

/**
 * Self-attention with rotary position embeddings, 4 heads of size 4: x [2,4,12] -> Q, K, V projections; Q
 * rotated with num_heads 0 (the head size from the cos cache), K with num_heads 4 and a partial rotation
 * (rotary_embedding_dim 2) -> MultiHeadAttention -> output projection. With rank 4: Q and K reshaped to
 * [B,S,H,D], transposed to [B,H,S,D], rotated at positions given per token ([B,S]), transposed back.
 */
export function rotaryAttentionModel(o: RotaryOptions = {}): ContribFixture {
  const n = new Net(23);
  const b = n.b;
  const h = 4, d = 4, hid = h * d, maxSeq = 8;
  const x = b.input('x', [B, S, HID]);
  const cache = (w: number) => [n.w([maxSeq, w], 1), n.w([maxSeq, w], 1)];
  const inter: Record<string, number> = o.interleaved ? { interleaved: 1 } : {};
  let q = n.matmul(x, HID, hid), k = n.matmul(x, HID, hid);
  const v = n.matmul(x, HID, hid);
  if (o.rank === 4) {
    const split = n.i64([4], [B, S, h, d]), merge = n.i64([3], [B, S, hid]);
    const pos = n.i64([B, S], [0, 1, 2, 3, 3, 4, 5, 6]);
    const rot = (t: string, attrs: Record<string, number>, w: number) => {
      const t4 = b.node('Transpose', [b.node('Reshape', [t, split])], { perm: [0, 2, 1, 3] });
      const r = n.ms('RotaryEmbedding', [t4, pos, ...cache(w)], { ...inter, ...attrs })[0]!;
      return b.node('Reshape', [b.node('Transpose', [r], { perm: [0, 2, 1, 3] }), merge]);
    };
    q = rot(q, {}, d / 2);
    k = rot(k, {}, d / 2);
  } else {
    const start = n.i64([1], [1]);
    q = n.ms('RotaryEmbedding', [q, start, ...cache(d / 2)], inter)[0]!;
    k = n.ms('RotaryEmbedding', [k, start, ...cache(1)], { ...inter, num_heads: h, rotary_embedding_dim: 2 })[0]!;
  }
  const attn = b.nodeN('MultiHeadAttention', [q, k, v], { num_heads: h }, 1, { ...MS, name: 'attn' })[0]!;
  const y = b.node('MatMul', [attn, n.w([hid, 6])], {}, { output: 'y' });
  b.output(y, [B, S, 6]);
  return { model: b.model(17, MS_OPSET), feeds: { x: n.t([B, S, HID]) } };
}

/**
 * Self-attention as onnxruntime's optimizer leaves it, 4 heads of size 4: x [2,4,12] -> Q and K projections as
 * FusedMatMul with transposed weights [16, 12] (transB), V as MatMul -> heads [B,H,S,D] -> scores
 * FusedMatMul(Q, K, transB, alpha 1/sqrt(D)) -> Softmax -> weighted V -> merged heads -> two output projections,
 * one a FusedMatMul of the transposed merge (transA) -> y [2,4,6].
 */
export function fusedMatMulAttentionModel(): ContribFixture {
  const n = new Net(25);
  const b = n.b;
  const h = 4, d = 4, hid = h * d;
  const x = b.input('x', [B, S, HID]);
  const q = n.ms('FusedMatMul', [x, n.w([hid, HID])], { transB: 1 })[0]!;
  const k = n.ms('FusedMatMul', [x, n.w([hid, HID])], { transB: 1 })[0]!;
  const v = n.matmul(x, HID, hid);
  const split = n.i64([4], [B, S, h, d]);
  const heads = (t: string) => b.node('Transpose', [b.node('Reshape', [t, split])], { perm: [0, 2, 1, 3] });
  const scores = n.ms('FusedMatMul', [heads(q), heads(k)], { transB: 1, alpha: F(0.5) })[0]!;
  const o = b.node('Transpose', [b.node('MatMul', [b.node('Softmax', [scores], { axis: -1 }), heads(v)])], { perm: [0, 2, 1, 3] });
  const merged = b.node('Reshape', [o, n.i64([3], [B, S, hid])]);
  const y1 = n.matmul(merged, hid, 6);
  const y2 = n.ms('FusedMatMul', [b.node('Transpose', [merged], { perm: [0, 2, 1] }), n.w([hid, 6])], { transA: 1 })[0]!;
  b.output(b.node('Add', [y1, y2], {}, { output: 'y' }), [B, S, 6]);
  return { model: b.model(17, MS_OPSET), feeds: { x: n.t([B, S, HID]) } };
}
