/**
 * Zero-then-remove exactness fixtures for the op registry's channel rules, as data: test/structured-exact.test.ts
 * prunes every fixture (zero a third of each group's units, remove them, outputs unchanged), and
 * test/registry-coverage.test.ts analyses every fixture and checks that each op with OpDef.channels has a node
 * whose inputs or outputs lose removed units in at least one of them (`chosenUnits`, the selection the
 * exactness check removes). Each fixture feeds many ops from one or two convolutions and sums the branches, so
 * that a channel removed upstream runs through every op under test.
 */
import { F, GraphBuilder } from '../../src/ir/builder.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/graph.js';
import { floatTensor, int64Tensor, numel, type Tensor } from '../../src/ir/tensor.js';
import type { DepGraph } from '../../src/depgraph/depgraph.js';
import { rng } from '../../src/random.js';
import { gqaModel, mhaModel, msAttentionModel, onnxAttentionModel } from '../attention-fixtures.js';
import { fusedMatMulAttentionModel, mlpBlockModel, rotaryAttentionModel, rotaryProjectionModel, skipNormChannelsModel } from '../contrib-fixtures.js';

export interface ExactCase {
  name: string;
  model(): Model;
  inShape: number[];
  /** Prunable groups (more than one unit) the analysis must find. */
  minGroups: number;
}

/** The units the exactness check zeroes and removes: every third unit (from the second) of each group. */
export function chosenUnits(dg: DepGraph): Set<number> {
  const chosen = new Set<number>();
  for (const g of dg.groups) if (g.units.length > 1) g.units.forEach((u, i) => i % 3 === 1 && chosen.add(u.id));
  return chosen;
}

/** A GraphBuilder with seeded random parameters and the layers the fixtures share. */
class Net {
  readonly b = new GraphBuilder('exact');
  private readonly r: () => number;
  constructor(seed: number) {
    this.r = rng(seed);
  }
  w(dims: number[], scale = 0.5): string {
    return this.b.init(this.b.fresh('p'), floatTensor(dims, Array.from({ length: numel(dims) }, () => (this.r() * 2 - 1) * scale)));
  }
  pos(dims: number[]): string {
    return this.b.init(this.b.fresh('q'), floatTensor(dims, Array.from({ length: numel(dims) }, () => 0.5 + this.r())));
  }
  f(v: number): string {
    return this.b.init(this.b.fresh('c'), floatTensor([], [v]));
  }
  i64(values: number[]): string {
    return this.b.init(this.b.fresh('i'), int64Tensor([values.length], values));
  }
  t(t: Tensor): string {
    return this.b.init(this.b.fresh('t'), t);
  }
  conv(x: string, cin: number, cout: number, k = 3, attrs: Record<string, number | number[]> = {}): string {
    const g = (attrs['group'] as number | undefined) ?? 1;
    const p = Math.floor(k / 2);
    return this.b.node('Conv', [x, this.w([cout, cin / g, k, k]), this.w([cout], 0.2)], { pads: [p, p, p, p], ...attrs });
  }
  /** GlobalAveragePool -> Flatten -> Gemm (transB) to the graph output `y` [n, 5]. */
  head(x: string, c: number, n = 1): Model {
    const f = this.b.node('Flatten', [this.b.node('GlobalAveragePool', [x])], { axis: 1 });
    const y = this.b.node('Gemm', [f, this.w([5, c]), this.w([5], 0.2)], { transB: 1 }, { output: 'y' });
    this.b.output(y, [n, 5]);
    return this.b.model();
  }
}

/** x [1,3,6,6] -> Conv (8 channels) -> each of `branches` -> Sum -> Conv -> head. */
function branchesModel(seed: number, opset: number, branches: (n: Net, c: string) => string[], relu = false): Model {
  const n = new Net(seed);
  const x = n.b.input('x', [1, 3, 6, 6]);
  const c0 = n.conv(x, 3, 8);
  const c = relu ? n.b.node('Relu', [c0]) : c0;
  const s = n.b.node('Sum', branches(n, c));
  const m = n.head(n.conv(s, 8, 6), 6);
  m.opsetImports[0]!.version = opset;
  return m;
}

const un = (op: string, attrs: Record<string, number | ReturnType<typeof F>> = {}) => (n: Net, c: string): string => n.b.node(op, [c], attrs);

const UNARY: ((n: Net, c: string) => string)[] = [
  ...['Relu', 'Sigmoid', 'HardSwish', 'Tanh', 'Elu', 'Selu', 'Celu', 'Softplus', 'Softsign', 'Mish', 'Gelu', 'Neg', 'Abs',
    'Sign', 'Floor', 'Ceil', 'Round', 'Erf', 'Sin', 'Cos', 'Atan', 'Sinh', 'Cosh', 'Asinh', 'Exp', 'Identity', 'Dropout'].map((op) => un(op)),
  un('LeakyRelu', { alpha: F(0.2) }),
  un('ThresholdedRelu', { alpha: F(0.1) }),
  un('HardSigmoid', { alpha: F(0.3), beta: F(0.4) }),
  un('Shrink', { lambd: F(0.1), bias: F(0.05) }),
  (n, c) => n.b.node('Clip', [c, n.f(-0.3), n.f(0.4)]),
  // Domain-restricted ops get an argument they accept on every channel, zeroed ones included.
  (n, c) => n.b.node('Sqrt', [n.b.node('Abs', [c])]),
  (n, c) => n.b.node('Log', [n.b.node('Exp', [c])]),
  (n, c) => n.b.node('Reciprocal', [n.b.node('Add', [n.b.node('Abs', [c]), n.f(1)])]),
  (n, c) => n.b.node('Tan', [n.b.node('Tanh', [c])]),
  (n, c) => n.b.node('Asin', [n.b.node('Mul', [n.b.node('Tanh', [c]), n.f(0.9)])]),
  (n, c) => n.b.node('Acos', [n.b.node('Mul', [n.b.node('Tanh', [c]), n.f(0.9)])]),
  (n, c) => n.b.node('Atanh', [n.b.node('Mul', [n.b.node('Tanh', [c]), n.f(0.5)])]),
  (n, c) => n.b.node('Acosh', [n.b.node('Add', [n.b.node('Cosh', [c]), n.f(0.5)])]),
  (n, c) => n.b.node('Cast', [n.b.node('Relu', [n.b.node('Cast', [c], { to: DataType.DOUBLE })])], { to: DataType.FLOAT }),
  (n, c) => n.b.node('CastLike', [n.b.node('Cast', [c], { to: DataType.DOUBLE }), n.f(0)]),
];

/** A second convolution of the same input, for the binary ops. */
function binaries(n: Net, c: string): string[] {
  const d = n.conv(n.b.graph.inputs[0]!.name, 3, 8);
  const b = n.b;
  const flt = (v: string) => b.node('Cast', [v], { to: DataType.FLOAT });
  const gt = b.node('Greater', [c, d]);
  return [
    b.node('Add', [c, d]), b.node('Sub', [c, d]), b.node('Mul', [c, d]), b.node('Max', [c, d]), b.node('Min', [c, d]), b.node('Mean', [c, d]),
    b.node('Div', [c, b.node('Add', [b.node('Abs', [d]), n.f(1)])]),
    b.node('Pow', [c, n.f(2)]),
    b.node('Mod', [c, n.f(0.7)], { fmod: 1 }),
    b.node('PRelu', [c, n.w([8, 1, 1])]),
    b.node('Where', [gt, c, d]),
    flt(b.node('Equal', [b.node('Sign', [c]), b.node('Sign', [d])])),
    flt(b.node('Less', [c, d])), flt(b.node('LessOrEqual', [c, d])), flt(b.node('GreaterOrEqual', [c, d])),
    flt(b.node('And', [gt, b.node('Less', [c, n.f(0)])])),
    flt(b.node('Or', [gt, b.node('Less', [d, n.f(0)])])),
    flt(b.node('Xor', [gt, b.node('Greater', [c, n.f(0)])])),
    flt(b.node('Not', [gt])),
    flt(b.node('IsNaN', [c])),
    flt(b.node('IsInf', [c])),
  ];
}

/** Pools and reductions over the spatial axes (the channel axis passes), and the free reductions over channels. */
function reductions(n: Net, c: string): string[] {
  const b = n.b;
  const win = { kernel_shape: [3, 3], pads: [1, 1, 1, 1] };
  const red = (op: string, x: string, axes: number[]) => b.node(op, [x], { axes });
  const hw = [2, 3];
  return [
    b.node('MaxPool', [c], win), b.node('AveragePool', [c], win), b.node('LpPool', [c], { ...win, p: 2 }),
    b.node('GlobalAveragePool', [c]), b.node('GlobalMaxPool', [c]), b.node('GlobalLpPool', [c]),
    red('ReduceMean', c, hw), red('ReduceMax', c, hw), red('ReduceMin', c, hw),
    red('ReduceProd', b.node('Sigmoid', [c]), [3]),
    red('ReduceLogSum', b.node('Exp', [c]), hw), red('ReduceLogSumExp', c, hw),
    red('ReduceL1', c, hw), red('ReduceL2', c, hw), red('ReduceSumSquare', c, hw),
    b.node('ReduceSum', [c, n.i64(hw)]),
    // Over the channel axis: removed (zero) channels add nothing.
    b.node('ReduceSum', [c, n.i64([1])]), red('ReduceL1', c, [1]), red('ReduceL2', c, [1]), red('ReduceSumSquare', c, [1]),
    b.node('Cast', [b.node('ArgMax', [c], { axis: 3 })], { to: DataType.FLOAT }),
    b.node('Cast', [b.node('ArgMin', [c], { axis: 2 })], { to: DataType.FLOAT }),
    b.node('Hardmax', [c], { axis: -1 }), b.node('Softmax', [c], { axis: -1 }), b.node('LogSoftmax', [c], { axis: 2 }),
  ];
}

/** Norms with per-channel parameters (BatchNormalization, InstanceNormalization) or normalising a spatial axis. */
function norms(n: Net, c: string): string[] {
  const b = n.b;
  const bn = b.node('BatchNormalization', [c, n.pos([8]), n.w([8]), n.w([8]), n.pos([8])], { epsilon: F(1e-5) });
  const inorm = b.node('InstanceNormalization', [c, n.pos([8]), n.w([8])], { epsilon: F(1e-5) });
  const ln = b.node('LayerNormalization', [c, n.pos([6]), n.w([6])], { axis: -1, epsilon: F(1e-5) });
  return [bn, inorm, ln];
}

/** RMS norms over W (opset 23 RMSNormalization, onnxruntime's SimplifiedLayerNormalization): channels pass through. */
function rmsNorms(n: Net, c: string): string[] {
  const b = n.b;
  return [
    b.node('RMSNormalization', [c, n.pos([6])], { axis: -1, epsilon: F(1e-5) }),
    b.node('SimplifiedLayerNormalization', [c, n.pos([6])], { axis: -1, epsilon: F(1e-5) }),
  ];
}

/** Data movement on (and around) the channel axis; every branch ends in its own 1x1 Conv to 6 channels. */
function movementModel(): Model {
  const n = new Net(5);
  const b = n.b;
  const x = b.input('x', [1, 3, 6, 6]);
  const c = n.conv(x, 3, 8);
  const cat = b.node('Concat', [c, n.conv(x, 3, 4)], { axis: 1 });
  const [s1, s2] = b.nodeN('Split', [cat, n.i64([5, 7])], { axis: 1 }, 2);
  const sl = b.node('Slice', [s2!, n.i64([1]), n.i64([6]), n.i64([1])]);
  const ga = b.node('Gather', [c, n.i64([0, 2, 3, 5, 7])], { axis: 1 });
  const tr = b.node('Transpose', [b.node('Relu', [b.node('Transpose', [c], { perm: [0, 2, 3, 1] })])], { perm: [0, 3, 1, 2] });
  const sq = b.node('Squeeze', [b.node('Unsqueeze', [b.node('Reshape', [c, n.i64([1, 8, 36])]), n.i64([3])]), n.i64([3])]);
  const rs = b.node('Reshape', [sq, n.i64([1, 8, 6, 6])]);
  const pd = b.node('Slice', [b.node('Pad', [c, n.i64([0, 0, 1, 1, 0, 0, 1, 1])]), n.i64([1, 1]), n.i64([7, 7]), n.i64([2, 3])]);
  const byScales = b.node('Resize', [c, '', n.t(floatTensor([4], [1, 1, 2, 2]))], { mode: 'nearest' });
  const bySizes = b.node('Resize', [c, '', '', n.i64([1, 8, 12, 12])], { mode: 'linear' });
  const gap = b.node('GlobalAveragePool', [c]);
  const ex = b.node('Expand', [gap, n.i64([1, 8, 6, 6])]);
  const ti = b.node('Tile', [gap, n.i64([1, 1, 6, 6])]);
  const fl = b.node('Reshape', [b.node('Flatten', [c], { axis: 2 }), n.i64([1, 8, 6, 6])]);
  const to6 = (v: string, cin: number, k = 1, s = 1) => b.node('Conv', [v, n.w([6, cin, k, k]), n.w([6], 0.2)], { strides: [s, s] });
  const sum = b.node('Sum', [
    to6(s1!, 5), to6(sl, 5), to6(ga, 5), to6(tr, 8), to6(rs, 8), to6(pd, 8), to6(ex, 8), to6(ti, 8), to6(fl, 8),
    to6(byScales, 8, 2, 2), to6(bySizes, 8, 2, 2),
  ]);
  return n.head(b.node('Relu', [sum]), 6);
}

/** Conv (dense, depthwise), ConvTranspose, Gemm and MatMul layers in a chain. */
function layersModel(): Model {
  const n = new Net(6);
  const b = n.b;
  const x = b.input('x', [2, 3, 6, 6]);
  const c = b.node('Relu', [n.conv(x, 3, 8)]);
  const dw = b.node('Relu', [n.conv(c, 8, 8, 3, { group: 8 })]);
  const up = b.node('ConvTranspose', [dw, n.w([8, 6, 2, 2]), n.w([6], 0.2)], { strides: [2, 2] });
  const f = b.node('Flatten', [b.node('GlobalAveragePool', [b.node('Relu', [up])])], { axis: 1 });
  const g = b.node('Relu', [b.node('Gemm', [f, n.w([6, 10]), n.w([10], 0.2)])]);
  const y = b.node('MatMul', [g, n.w([10, 5])], {}, { output: 'y' });
  b.output(y, [2, 5]);
  return b.model();
}

/**
 * Shape survives simplification only on a symbolic dimension: Shape(c)[0:1] = [N] sizes a broadcast of ones
 * (the channel axes of Shape's input are free).
 */
function shapeModel(): Model {
  const n = new Net(8);
  const b = n.b;
  const x = b.input('x', ['N', 3, 6, 6]);
  const c = n.conv(x, 3, 8);
  const dims = b.node('Concat', [b.node('Shape', [c], { end: 1 }), n.i64([1, 1, 1])], { axis: 0 });
  const ones = b.node('Expand', [n.t(floatTensor([1, 1, 1, 1], [1])), dims]);
  const f = b.node('Flatten', [b.node('GlobalAveragePool', [n.conv(b.node('Mul', [c, ones]), 8, 6)])], { axis: 1 });
  const y = b.node('Gemm', [f, n.w([5, 6]), n.w([5], 0.2)], { transB: 1 }, { output: 'y' });
  b.output(y, ['N', 5]);
  return b.model();
}

/** Upsample exists up to opset 9. */
/**
 * Selection along a spatial axis (a detector's end-to-end head selects anchors so): TopK over the positions of
 * each channel, GatherElements of the same positions; the channels pass through both.
 */
function selectionModel(): Model {
  const n = new Net(12);
  const b = n.b;
  const x = b.input('x', [1, 3, 6, 6]);
  const r = b.node('Reshape', [n.conv(x, 3, 8), n.i64([1, 8, 36])]);
  const [vals, idx] = b.nodeN('TopK', [r, n.i64([4])], { axis: 2 }, 2);
  const picked = b.node('GatherElements', [r, idx!], { axis: 2 });
  const y = b.node('Reshape', [b.node('Add', [vals!, picked]), n.i64([1, 8, 2, 2])]);
  return n.head(n.conv(y, 8, 6, 1), 6);
}

function upsampleModel(): Model {
  const n = new Net(7);
  const x = n.b.input('x', [1, 3, 4, 4]);
  const u = n.b.node('Upsample', [n.conv(x, 3, 8), n.t(floatTensor([4], [1, 1, 2, 2]))], { mode: 'nearest' });
  const m = n.head(n.conv(u, 8, 6, 3, { strides: [2, 2] }), 6);
  m.opsetImports[0]!.version = 9;
  return m;
}

/**
 * x [T=4, B=2, 3] -> LSTM (bidirectional, 6 units, peepholes, initial states) -> directions summed -> GRU
 * (linear_before_reset, 5 units) -> RNN (reverse, 5 units) -> Y_h @ head: each layer's hidden units are a group.
 */
function recurrentModel(): Model {
  const n = new Net(8);
  const b = n.b;
  const x = b.input('x', [4, 2, 3]);
  const lstm = b.nodeN('LSTM', [x, n.w([2, 24, 3]), n.w([2, 24, 6]), n.w([2, 48], 0.2), '', n.w([2, 2, 6]), n.w([2, 2, 6]), n.w([2, 18])], { hidden_size: 6, direction: 'bidirectional' }, 3);
  const seq = b.node('ReduceSum', [lstm[0]!, n.i64([1])], { keepdims: 0 });
  const gru = b.nodeN('GRU', [seq, n.w([1, 15, 6]), n.w([1, 15, 5]), n.w([1, 30], 0.2)], { hidden_size: 5, linear_before_reset: 1 }, 2);
  const rnn = b.nodeN('RNN', [b.node('Squeeze', [gru[0]!, n.i64([1])]), n.w([1, 5, 5]), n.w([1, 5, 5]), n.w([1, 10], 0.2)], { hidden_size: 5, direction: 'reverse' }, 2);
  b.output(b.node('MatMul', [rnn[1]!, n.w([5, 3])], {}, { output: 'y' }), [1, 2, 3]);
  return b.model();
}

export const EXACT_CASES: ExactCase[] = [
  { name: 'elementwise unary ops on the channels of a Conv', model: () => branchesModel(1, 20, (n, c) => UNARY.map((f) => f(n, c))), inShape: [1, 3, 6, 6], minGroups: 1 },
  { name: 'binary, comparison and logical ops tie two Convs', model: () => branchesModel(2, 17, binaries), inShape: [1, 3, 6, 6], minGroups: 1 },
  { name: 'pools, reductions, arg-reductions and softmaxes', model: () => branchesModel(3, 17, reductions, true), inShape: [1, 3, 6, 6], minGroups: 1 },
  { name: 'BatchNormalization, InstanceNormalization, LayerNormalization over W', model: () => branchesModel(4, 17, norms), inShape: [1, 3, 6, 6], minGroups: 1 },
  { name: 'RMSNormalization, SimplifiedLayerNormalization over W', model: () => branchesModel(4, 23, rmsNorms), inShape: [1, 3, 6, 6], minGroups: 1 },
  { name: 'Concat, Split, Slice, Gather, Transpose, Reshape, (Un)Squeeze, Flatten, Pad, Resize, Expand, Tile', model: movementModel, inShape: [1, 3, 6, 6], minGroups: 2 },
  { name: 'Conv, depthwise Conv, ConvTranspose, Gemm, MatMul', model: layersModel, inShape: [2, 3, 6, 6], minGroups: 3 },
  { name: 'Shape of a value with a symbolic batch', model: shapeModel, inShape: [2, 3, 6, 6], minGroups: 2 },
  { name: 'TopK and GatherElements along the positions (the channels pass through)', model: selectionModel, inShape: [1, 3, 6, 6], minGroups: 1 },
  { name: 'Upsample (opset 9)', model: upsampleModel, inShape: [1, 3, 4, 4], minGroups: 1 },
  { name: 'LSTM, GRU, RNN hidden units (gate blocks, initial states, peepholes)', model: recurrentModel, inShape: [4, 2, 3], minGroups: 3 },
  // Fused attention heads (more layouts and checks in test/attention.test.ts).
  { name: 'com.microsoft.Attention heads (merged Q/K/V weights, past cache, unidirectional)', model: () => msAttentionModel({ past: true, unidirectional: true }).model, inShape: [2, 4, 12], minGroups: 1 },
  { name: 'com.microsoft.MultiHeadAttention heads (bias, attention_bias, past caches)', model: () => mhaModel({ bias: true, attentionBias: true, past: true }).model, inShape: [2, 4, 12], minGroups: 1 },
  { name: 'com.microsoft.GroupQueryAttention KV groups (past caches, attention_bias, head_sink)', model: () => gqaModel({ past: true, extras: true }).model, inShape: [1, 4, 12], minGroups: 1 },
  { name: 'ONNX Attention heads, 3-D (KV groups, past caches, a mask with a head axis)', model: () => onnxAttentionModel({ rank: 3, past: true, mask: true }).model, inShape: [2, 4, 12], minGroups: 1 },
  { name: 'ONNX Attention heads, 4-D (per-head projection weights)', model: () => onnxAttentionModel({ rank: 4, past: true }).model, inShape: [2, 1, 4, 12], minGroups: 1 },
  // onnxruntime's fused transformer ops (more checks in test/contrib-transformer.test.ts).
  { name: 'com.microsoft BiasGelu, FastGelu, Gelu, QuickGelu MLP neurons (SkipLayerNormalization, SkipSimplifiedLayerNormalization freeze the hidden size)', model: () => mlpBlockModel().model, inShape: [2, 4, 6], minGroups: 6 },
  { name: 'com.microsoft SkipLayerNormalization, SkipSimplifiedLayerNormalization: channels along the normalised rows (all outputs, a 2-D skip)', model: () => skipNormChannelsModel().model, inShape: [1, 3, 6], minGroups: 1 },
  { name: 'com.microsoft RotaryEmbedding whole heads (3-D, num_heads follows)', model: () => rotaryProjectionModel().model, inShape: [2, 4, 12], minGroups: 1 },
  { name: 'com.microsoft RotaryEmbedding heads, 4-D [B,H,S,D] with positions per token, into MultiHeadAttention', model: () => rotaryAttentionModel({ rank: 4 }).model, inShape: [2, 4, 12], minGroups: 1 },
  { name: 'com.microsoft FusedMatMul heads (transB projections, Q K^T scores, a transA projection)', model: () => fusedMatMulAttentionModel().model, inShape: [2, 4, 12], minGroups: 1 },
];
