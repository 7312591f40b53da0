/** inferShapes vs onnxruntime for every value of small fixtures covering each op family. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { F, GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import { floatTensor, int64Tensor, createTensor, type Tensor } from '../src/ir/tensor.js';
import { crossCheck, randomTensor } from './shapes-helpers.js';

const FLOAT = DataType.FLOAT;

interface Case {
  name: string;
  opset?: number;
  build(b: GraphBuilder): void;
}

function w(dims: number[], seed = 5): Tensor {
  return randomTensor(FLOAT, dims, ((s) => () => ((s = (s * 48271) % 2147483647) / 2147483647))(seed));
}

function i64(values: number[], dims = [values.length]): Tensor {
  return int64Tensor(dims, values);
}

/** Adds a typeless graph output (onnxruntime infers its type). */
function out(b: GraphBuilder, name: string): void {
  b.graph.outputs.push({ name });
}

const CASES: Case[] = [
  {
    name: 'conv: strides, dilations, asymmetric pads, groups, depthwise, bias',
    build(b) {
      const x = b.input('x', ['N', 6, 11, 13]);
      const c1 = b.node('Conv', [x, b.init('w1', w([4, 6, 3, 3])), b.init('b1', w([4]))], { strides: [2, 3], dilations: [2, 1], pads: [1, 0, 2, 1] });
      const c2 = b.node('Conv', [x, b.init('w2', w([6, 2, 3, 2]))], { group: 3, pads: [0, 1, 1, 0] });
      const c3 = b.node('Conv', [x, b.init('w3', w([12, 1, 5, 5]))], { group: 6, strides: [3, 2], pads: [2, 2, 2, 2] });
      const c4 = b.node('Conv', [x, b.init('w4', w([5, 6, 1, 1]))], { strides: [2, 2] });
      for (const c of [c1, c2, c3, c4]) out(b, c);
    },
  },
  {
    name: 'conv: auto_pad SAME_UPPER, SAME_LOWER, VALID, kernel_shape attribute',
    build(b) {
      const x = b.input('x', [1, 3, 10, 7]);
      out(b, b.node('Conv', [x, b.init('w1', w([2, 3, 4, 3]))], { auto_pad: 'SAME_UPPER', strides: [3, 2] }));
      out(b, b.node('Conv', [x, b.init('w2', w([2, 3, 4, 4]))], { auto_pad: 'SAME_LOWER', strides: [2, 3], kernel_shape: [4, 4] }));
      out(b, b.node('Conv', [x, b.init('w3', w([2, 3, 3, 2]))], { auto_pad: 'VALID', strides: [2, 2] }));
    },
  },
  {
    name: 'conv: 1-D and 3-D',
    build(b) {
      const x = b.input('x', [2, 3, 17]);
      out(b, b.node('Conv', [x, b.init('w1', w([4, 3, 5]))], { strides: [3], pads: [2, 1], dilations: [2] }));
      const y = b.input('y', [1, 2, 5, 6, 7]);
      out(b, b.node('Conv', [y, b.init('w2', w([3, 2, 2, 3, 3]))], { strides: [1, 2, 3], pads: [0, 1, 1, 1, 0, 2] }));
    },
  },
  {
    name: 'conv transpose: strides, output_padding, pads, group, output_shape, SAME_UPPER',
    build(b) {
      const x = b.input('x', ['N', 4, 5, 6]);
      out(b, b.node('ConvTranspose', [x, b.init('w1', w([4, 3, 3, 3])), b.init('b1', w([3]))], { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 0] }));
      out(b, b.node('ConvTranspose', [x, b.init('w2', w([4, 2, 2, 3]))], { group: 2, strides: [3, 1], dilations: [1, 2] }));
      out(b, b.node('ConvTranspose', [x, b.init('w3', w([4, 1, 3, 3]))], { strides: [2, 2], output_shape: [10, 12] }));
      out(b, b.node('ConvTranspose', [x, b.init('w4', w([4, 2, 3, 3]))], { strides: [2, 2], auto_pad: 'SAME_UPPER' }));
    },
  },
  {
    name: 'pools: ceil_mode, pads, dilations, auto_pad, indices, global',
    build(b) {
      const x = b.input('x', ['N', 3, 11, 13]);
      const [m1, idx] = b.nodeN('MaxPool', [x], { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 }, 2);
      out(b, m1!);
      out(b, idx!);
      out(b, b.node('MaxPool', [x], { kernel_shape: [3, 2], strides: [2, 3], pads: [1, 0, 1, 1], dilations: [2, 1] }));
      out(b, b.node('MaxPool', [x], { kernel_shape: [2, 2], strides: [2, 2], auto_pad: 'SAME_UPPER' }));
      out(b, b.node('AveragePool', [x], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], count_include_pad: 1, ceil_mode: 1 }));
      out(b, b.node('AveragePool', [x], { kernel_shape: [4, 4], strides: [3, 3], auto_pad: 'SAME_LOWER' }));
      out(b, b.node('MaxPool', [x], { kernel_shape: [4, 4], strides: [4, 4], ceil_mode: 1, pads: [1, 1, 1, 1] }));
      out(b, b.node('LpPool', [x], { kernel_shape: [2, 2], strides: [2, 2] }));
      out(b, b.node('GlobalAveragePool', [x]));
      out(b, b.node('GlobalMaxPool', [x]));
    },
  },
  {
    name: 'gemm and matmul: transA/transB, C broadcast, batched broadcast, 1-D operands',
    build(b) {
      b.input('a', [3, 'K']);
      const at = b.input('at', [5, 3]);
      out(b, b.node('Gemm', [at, b.init('B1', w([4, 5])), b.init('C1', w([4]))], { transA: 1, transB: 1, alpha: F(0.5) }));
      out(b, b.node('Gemm', [b.node('Transpose', [at]), b.init('B2', w([5, 6])), b.init('C2', w([3, 1]))]));
      const p = b.input('p', [2, 1, 3, 4]);
      const q = b.input('q', [5, 4, 6]);
      out(b, b.node('MatMul', [p, q]));
      out(b, b.node('MatMul', [p, b.init('v', w([4]))]));
      out(b, b.node('MatMul', [b.init('u', w([4])), q]));
      out(b, b.node('MatMul', [q, b.init('W', w([6, 7]))]));
    },
  },
  {
    name: 'elementwise: broadcasting, comparisons, where, variadic, unary math',
    build(b) {
      const x = b.input('x', ['N', 1, 4]);
      const y = b.input('y', [3, 1]);
      const s = b.node('Add', [x, y]);
      out(b, s);
      out(b, b.node('Sub', [s, b.init('c', floatTensor([], [1]))]));
      out(b, b.node('Mul', [x, y]));
      out(b, b.node('Div', [y, x]));
      out(b, b.node('Pow', [b.node('Abs', [x]), b.init('two', floatTensor([1], [2]))]));
      const e = b.node('Greater', [x, y]);
      out(b, e);
      out(b, b.node('Where', [e, x, y]));
      out(b, b.node('Not', [e]));
      out(b, b.node('And', [e, b.node('Less', [y, x])]));
      out(b, b.node('Equal', [x, x]));
      out(b, b.node('Max', [x, y, b.init('m', floatTensor([4], [0, 1, 2, 3]))]));
      out(b, b.node('Min', [x]));
      out(b, b.node('Sum', [x, y]));
      out(b, b.node('Mean', [x, y]));
      for (const op of ['Sqrt', 'Exp', 'Log', 'Neg', 'Reciprocal', 'Floor', 'Ceil', 'Erf', 'Tanh', 'Sign', 'Round', 'Sin']) out(b, b.node(op, [y]));
    },
  },
  {
    name: 'activations and softmax family',
    opset: 20,
    build(b) {
      const x = b.input('x', ['N', 3, 5]);
      for (const op of ['Relu', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Elu', 'Selu', 'Softplus', 'Softsign', 'Celu', 'Mish']) out(b, b.node(op, [x]));
      out(b, b.node('LeakyRelu', [x], { alpha: F(0.1) }));
      out(b, b.node('Gelu', [x]));
      out(b, b.node('Clip', [x, b.init('lo', floatTensor([], [-1])), b.init('hi', floatTensor([], [1]))]));
      out(b, b.node('PRelu', [x, b.init('slope', w([3, 1]))]));
      out(b, b.node('Softmax', [x], { axis: 1 }));
      out(b, b.node('Softmax', [x]));
      out(b, b.node('LogSoftmax', [x], { axis: -2 }));
      out(b, b.node('Hardmax', [x]));
    },
  },
  {
    name: 'normalisations',
    build(b) {
      const x = b.input('x', ['N', 4, 5, 6]);
      out(b, b.node('BatchNormalization', [x, b.init('s', w([4])), b.init('bb', w([4])), b.init('mu', w([4])), b.init('var', floatTensor([4], [1, 2, 3, 4]))]));
      out(b, b.node('InstanceNormalization', [x, b.init('is', w([4])), b.init('ib', w([4]))]));
      const [ln, mean, inv] = b.nodeN('LayerNormalization', [x, b.init('ls', w([5, 6])), b.init('lb', w([5, 6]))], { axis: -2 }, 3);
      out(b, ln!);
      out(b, mean!);
      out(b, inv!);
      out(b, b.node('LRN', [x], { size: 3 }));
      out(b, b.node('LpNormalization', [x], { axis: 1 }));
      out(b, b.node('MeanVarianceNormalization', [x]));
    },
  },
  {
    name: 'group normalization (opset 21)',
    opset: 21,
    build(b) {
      const x = b.input('x', ['N', 6, 5]);
      out(b, b.node('GroupNormalization', [x, b.init('s', w([6])), b.init('bb', w([6]))], { num_groups: 3 }));
    },
  },
  {
    name: 'shape ops: flatten, squeeze, unsqueeze, transpose, concat, reshape with 0/-1',
    build(b) {
      const x = b.input('x', ['N', 4, 1, 6]);
      out(b, b.node('Flatten', [x]));
      out(b, b.node('Flatten', [x], { axis: 0 }));
      out(b, b.node('Flatten', [x], { axis: -1 }));
      out(b, b.node('Flatten', [x], { axis: 4 }));
      out(b, b.node('Squeeze', [x, b.init('ax1', i64([-2]))]));
      out(b, b.node('Unsqueeze', [x, b.init('ax2', i64([0, -1]))]));
      out(b, b.node('Transpose', [x], { perm: [3, 0, 2, 1] }));
      out(b, b.node('Transpose', [x]));
      out(b, b.node('Concat', [x, x, b.node('Mul', [x, x])], { axis: -1 }));
      out(b, b.node('Concat', [x, x], { axis: 0 }));
      out(b, b.node('Reshape', [x, b.init('s1', i64([0, -1, 3]))]));
      out(b, b.node('Reshape', [x, b.init('s2', i64([-1, 2, 3]))]));
      out(b, b.node('Reshape', [x, b.init('s3', i64([0, 0, 0, 0]))]));
      const s = b.input('s', [3, 0, 2]);
      out(b, b.node('Reshape', [s, b.init('s4', i64([0, 4]))], { allowzero: 1 }));
    },
  },
  {
    name: 'shape subgraph: Shape, Gather, Unsqueeze, Concat, Reshape, Size, Slice on shapes',
    build(b) {
      const x = b.input('x', ['N', 64, 2, 2]);
      const sh = b.node('Shape', [x]);
      const n = b.node('Gather', [sh, b.init('zero', i64([0], []))], { axis: 0 });
      const u = b.node('Unsqueeze', [n, b.init('ax', i64([0]))]);
      const cat = b.node('Concat', [u, b.init('m1', i64([-1]))], { axis: 0 });
      out(b, b.node('Reshape', [x, cat]));
      const hw = b.node('Slice', [sh, b.init('st', i64([2])), b.init('en', i64([4]))]);
      const prod = b.node('Mul', [b.node('Gather', [hw, b.init('z2', i64([0], []))]), b.node('Gather', [hw, b.init('o2', i64([1], []))])]);
      const cat2 = b.node('Concat', [u, b.node('Gather', [sh, b.init('one', i64([1]))]), b.node('Unsqueeze', [prod, b.init('ax3', i64([0]))])], { axis: 0 });
      out(b, b.node('Reshape', [x, cat2]));
      out(b, b.node('Size', [x]));
      out(b, b.node('Shape', [x], { start: 1, end: -1 }));
      out(b, b.node('Cast', [sh], { to: DataType.FLOAT }));
      out(b, b.node('ConstantOfShape', [b.node('Slice', [sh, b.init('st2', i64([1])), b.init('en2', i64([3]))])], { value: int64Tensor([1], [3]) }));
    },
  },
  {
    name: 'split variants and slice with negative axes/steps',
    opset: 18,
    build(b) {
      const x = b.input('x', ['N', 10, 7]);
      for (const o of b.nodeN('Split', [x, b.init('sz', i64([3, 7]))], { axis: 1 }, 2)) out(b, o);
      for (const o of b.nodeN('Split', [x], { axis: -1, num_outputs: 3 }, 3)) out(b, o);
      for (const o of b.nodeN('Split', [x], { axis: 1, num_outputs: 2 }, 2)) out(b, o);
      out(b, b.node('Slice', [x, b.init('a', i64([-1, 1])), b.init('e', i64([-9, 100])), b.init('ax', i64([1, -1])), b.init('st', i64([-2, 3]))]));
      out(b, b.node('Slice', [x, b.init('a2', i64([0])), b.init('e2', i64([9223372036854775807n as unknown as number])), b.init('ax2', i64([0]))]));
      out(b, b.node('Slice', [x, b.init('a3', i64([2])), b.init('e3', i64([-3])), b.init('ax3', i64([1]))]));
    },
  },
  {
    name: 'gather, expand, tile, pad, depth/space',
    build(b) {
      const x = b.input('x', ['N', 4, 3, 6]);
      out(b, b.node('Gather', [x, b.init('i', i64([2, -1, 0, 1, 1, 3], [2, 3]))], { axis: 1 }));
      out(b, b.node('Gather', [x, b.init('j', i64([-1], []))], { axis: -1 }));
      out(b, b.node('GatherElements', [x, b.init('ge', createTensor(DataType.INT64, [1, 2, 3, 2]))], { axis: 1 }));
      out(b, b.node('Expand', [b.init('e0', w([3, 1])), b.init('es', i64([2, 1, 1, 5]))]));
      out(b, b.node('Expand', [x, b.node('Shape', [x])]));
      out(b, b.node('Tile', [x, b.init('r', i64([1, 2, 1, 3]))]));
      out(b, b.node('Pad', [x, b.init('p', i64([0, 1, 0, 2, 0, 0, 1, 3]))]));
      out(b, b.node('Pad', [x, b.init('p2', i64([0, 0, -1, 0, 0, 0, 0, -2]))], { mode: 'reflect' }));
      out(b, b.node('DepthToSpace', [x], { blocksize: 2 }));
      out(b, b.node('SpaceToDepth', [b.node('Transpose', [x], { perm: [0, 2, 1, 3] })], { blocksize: 1 }));
      out(b, b.node('SpaceToDepth', [b.input('y', [1, 2, 6, 4])], { blocksize: 2 }));
    },
  },
  {
    name: 'resize by scales and by sizes, upsample-like nearest',
    build(b) {
      const x = b.input('x', ['N', 3, 5, 7]);
      out(b, b.node('Resize', [x, '', b.init('sc', floatTensor([4], [1, 1, 2, 1.5]))], { mode: 'nearest' }));
      out(b, b.node('Resize', [x, '', '', b.init('sz', i64([2, 3, 4, 9]))], { mode: 'linear' }));
      out(b, b.node('Resize', [x, b.init('roi', floatTensor([0])), b.init('sc2', floatTensor([4], [1, 1, 0.5, 0.6]))]));
    },
  },
  {
    name: 'reductions: axes attribute (opset 13), keepdims, argmax, topk',
    opset: 13,
    build(b) {
      const x = b.input('x', ['N', 4, 5]);
      out(b, b.node('ReduceMean', [x], { axes: [-1], keepdims: 1 }));
      out(b, b.node('ReduceMax', [x], { axes: [0, 2], keepdims: 0 }));
      out(b, b.node('ReduceL2', [x]));
      out(b, b.node('ReduceSum', [x, b.init('ax', i64([1]))], { keepdims: 0 }));
      out(b, b.node('ReduceSum', [x, b.init('ax0', i64([]))], { noop_with_empty_axes: 1 }));
      out(b, b.node('ArgMax', [x], { axis: -1, keepdims: 0 }));
      out(b, b.node('ArgMin', [x], { axis: 1 }));
      for (const o of b.nodeN('TopK', [x, b.init('k', i64([2]))], { axis: 1 }, 2)) out(b, o);
    },
  },
  {
    name: 'reductions with axes as input (opset 18)',
    opset: 18,
    build(b) {
      const x = b.input('x', ['N', 4, 5]);
      out(b, b.node('ReduceMean', [x, b.init('ax', i64([-1, 1]))]));
      out(b, b.node('ReduceMax', [x, b.init('ax2', i64([0]))], { keepdims: 0 }));
      out(b, b.node('ReduceL2', [x]));
      out(b, b.node('ReduceSumSquare', [x, b.init('ax3', i64([2]))]));
    },
  },
  {
    name: 'constants and casts: Constant, Range, ConstantOfShape, Cast, CastLike, Identity, Dropout',
    build(b) {
      const x = b.input('x', ['N', 3]);
      const c = b.node('Constant', [], { value: floatTensor([2, 3], [1, 2, 3, 4, 5, 6]) });
      out(b, c);
      out(b, b.node('Constant', [], { value_ints: [1, 2, 3] }));
      out(b, b.node('Constant', [], { value_float: F(2) }));
      out(b, b.node('Add', [x, c]));
      out(b, b.node('Range', [b.init('r0', i64([1], [])), b.init('r1', i64([10], [])), b.init('r2', i64([3], []))]));
      out(b, b.node('Range', [b.init('f0', floatTensor([], [1])), b.init('f1', floatTensor([], [0])), b.init('f2', floatTensor([], [-0.25]))]));
      out(b, b.node('ConstantOfShape', [b.init('shp', i64([2, 3]))]));
      out(b, b.node('Cast', [x], { to: DataType.INT32 }));
      out(b, b.node('CastLike', [x, b.init('dl', createTensor(DataType.DOUBLE, [1]))]));
      out(b, b.node('Identity', [x]));
      const [d, mask] = b.nodeN('Dropout', [x], {}, 2);
      out(b, d!);
      out(b, mask!);
      out(b, b.node('Range', [b.init('z0', i64([0], [])), b.node('Squeeze', [b.node('Slice', [b.node('Shape', [x]), b.init('s0', i64([1])), b.init('s1', i64([2]))])]), b.init('z2', i64([1], []))]));
    },
  },
  {
    name: 'einsum, trilu, cumsum, nonzero, quantize/dequantize, quantized conv and matmul',
    build(b) {
      const x = b.input('x', ['N', 3, 4]);
      out(b, b.node('Einsum', [x, b.init('ew', w([4, 5]))], { equation: 'bij,jk->bik' }));
      out(b, b.node('Einsum', [x, x], { equation: 'bij,bkj->bik' }));
      out(b, b.node('Einsum', [b.init('m', w([3, 4]))], { equation: 'ij' }));
      out(b, b.node('Trilu', [x], { upper: 0 }));
      out(b, b.node('CumSum', [x, b.init('ax', i64([1], []))]));
      out(b, b.node('NonZero', [b.node('Greater', [x, b.init('z', floatTensor([], [0]))])]));
      const q = b.node('QuantizeLinear', [x, b.init('qs', floatTensor([], [0.05])), b.init('qz', createTensor(DataType.UINT8, []))]);
      out(b, q);
      out(b, b.node('DequantizeLinear', [q, b.init('qs2', floatTensor([], [0.05])), b.init('qz2', createTensor(DataType.UINT8, []))]));
      const qi = b.node('QuantizeLinear', [x, b.init('qs3', floatTensor([], [0.05]))]);
      out(b, qi);
      out(b, b.node('MatMulInteger', [q, b.init('mw', createTensor(DataType.UINT8, [4, 2]))]));
      const u8 = (name: string, dims: number[] = []) => b.init(name, createTensor(DataType.UINT8, dims));
      const f32 = (name: string, v: number) => b.init(name, floatTensor([], [v]));
      const xq = b.input('xq', [1, 2, 7, 6], DataType.UINT8);
      out(b, b.node('QLinearConv', [xq, f32('s1', 0.1), u8('z1'), u8('qw', [4, 2, 3, 3]), f32('s2', 0.1), u8('z2'), f32('s3', 0.2), u8('z3')], { strides: [2, 1], pads: [1, 1, 0, 0] }));
      out(b, b.node('ConvInteger', [xq, u8('cw', [3, 2, 2, 2])]));
      const mq = b.input('mq', [2, 3, 4], DataType.UINT8);
      out(b, b.node('QLinearMatMul', [mq, f32('s4', 0.1), u8('z4'), u8('mw2', [4, 5]), f32('s5', 0.1), u8('z5'), f32('s6', 0.2), u8('z6')]));
    },
  },
  {
    name: 'old opsets (9): attribute forms of Slice, Pad, Split, Squeeze, Unsqueeze, TopK, Clip, Upsample',
    opset: 9,
    build(b) {
      const x = b.input('x', ['N', 4, 6, 1]);
      out(b, b.node('Slice', [x], { starts: [1, -4], ends: [3, 1000], axes: [1, 2] }));
      out(b, b.node('Pad', [x], { pads: [0, 1, 2, 0, 0, 0, 1, 0] }));
      for (const o of b.nodeN('Split', [x], { axis: 2, split: [2, 4] }, 2)) out(b, o);
      for (const o of b.nodeN('Split', [x], { axis: 1 }, 2)) out(b, o);
      out(b, b.node('Squeeze', [x], { axes: [3] }));
      out(b, b.node('Unsqueeze', [x], { axes: [0, 5] }));
      for (const o of b.nodeN('TopK', [x], { k: 3, axis: 2 }, 2)) out(b, o);
      out(b, b.node('Clip', [x], { min: F(-0.5), max: F(0.5) }));
      out(b, b.node('Upsample', [x, b.init('sc', floatTensor([4], [1, 1, 2, 3]))]));
      out(b, b.node('ReduceSum', [x], { axes: [1], keepdims: 0 }));
    },
  },
];

for (const c of CASES) {
  test(`shapes match onnxruntime: ${c.name}`, async () => {
    const b = new GraphBuilder(c.name.split(':')[0]!);
    c.build(b);
    const model = b.model(c.opset ?? 17);
    const r = await crossCheck(model, { sizes: { N: 2, K: 5 } });
    assert.ok(r.checked >= model.graph.nodes.length, `checked ${r.checked} values`);
    assert.deepEqual(r.info.unknownOps, []);
  });
}

