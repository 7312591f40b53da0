/**
 * One finite-difference case (or a few) per gradient rule of the op registry, as data: test/grad_ops.test.ts runs
 * every case through test/gradcheck.ts, and test/registry-coverage.test.ts builds every case's graph and checks
 * that each op with OpDef.grad lies on the differentiated path of at least one case. A rule added to the
 * registry without a case here fails the coverage test. (grad_ops.test.ts and grad_conv.test.ts hold further,
 * more detailed cases per op.)
 */
import { F } from '../../src/ir/builder.js';
import { DataType } from '../../src/ir/dtype.js';
import type { GradCase, GradInput } from '../gradcheck.js';

export interface GradTableEntry {
  name: string;
  case: GradCase;
  /** The check must run in float64 (onnxruntime has double kernels for every op of the case). */
  double?: boolean;
}

/** Values away from the kinks of piecewise ops. */
const awayFrom = (kinks: number[], span = 4) => (r: () => number): number => {
  for (;;) {
    const v = (r() * 2 - 1) * span;
    if (kinks.every((k) => Math.abs(v - k) > 0.05)) return v;
  }
};
const positive = (r: () => number): number => 0.3 + r();
/**
 * n distinct values 0.1 apart, shuffled: a max moves to another element only for perturbations above 0.05, so
 * float32 central differences (eps 1e-2) do not cross a tie.
 */
function spaced(n: number): number[] {
  const v = Array.from({ length: n }, (_, i) => (i - n / 2) * 0.1);
  for (let i = n - 1, s = 7; i > 0; i--) {
    s = (s * 16807) % 2147483647;
    const j = s % (i + 1);
    [v[i], v[j]] = [v[j]!, v[i]!];
  }
  return v;
}
const i64 = (name: string, values: number[]): GradInput => ({ name, dims: [values.length], values, grad: false, elemType: DataType.INT64 });
const f32 = (name: string, values: number[]): GradInput => ({ name, dims: [values.length], values, grad: false, elemType: DataType.FLOAT });

function unary(op: string, attrs: Record<string, ReturnType<typeof F> | number> = {}, gen?: (r: () => number) => number, opset?: number): GradCase {
  return {
    inputs: [{ name: 'x', dims: [2, 3, 4], ...(gen ? { gen } : {}) }],
    build: (b, n) => b.node(op, [n.x!], attrs),
    ...(opset ? { opset } : {}),
  };
}

/** Three inputs of different ranks broadcast together (variadic Sum/Mean). */
function variadic(op: string): GradCase {
  return {
    inputs: [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [3, 1] }, { name: 'c', dims: [4] }],
    build: (b, n) => b.node(op, [n.a!, n.b!, n.c!]),
  };
}

export const GRAD_CASES: GradTableEntry[] = [
  // activations
  { name: 'Relu', case: unary('Relu', {}, awayFrom([0])) },
  { name: 'LeakyRelu', case: unary('LeakyRelu', { alpha: F(0.2) }, awayFrom([0])) },
  { name: 'Elu (alpha 0.7, both branches)', case: unary('Elu', { alpha: F(0.7) }, awayFrom([0], 3)) },
  { name: 'Elu (default alpha)', case: unary('Elu', {}, awayFrom([0], 3)) },
  { name: 'Softplus', case: unary('Softplus', {}, (r) => (r() * 2 - 1) * 5) },
  { name: 'Sigmoid', case: unary('Sigmoid'), double: true },
  { name: 'Tanh', case: unary('Tanh'), double: true },
  { name: 'HardSigmoid', case: unary('HardSigmoid', { alpha: F(0.3), beta: F(0.5) }, awayFrom([-5 / 3, 5 / 3])) },
  { name: 'HardSwish', case: unary('HardSwish', {}, awayFrom([-3, 3], 5)) },
  { name: 'Gelu (opset 20)', case: unary('Gelu', {}, undefined, 20) },
  { name: 'Erf', case: unary('Erf') },
  { name: 'Exp', case: unary('Exp'), double: true },
  { name: 'Log', case: unary('Log', {}, positive), double: true },
  { name: 'Sqrt', case: unary('Sqrt', {}, positive), double: true },
  { name: 'Reciprocal', case: unary('Reciprocal', {}, positive), double: true },
  { name: 'Neg', case: unary('Neg'), double: true },
  { name: 'Abs', case: unary('Abs', {}, awayFrom([0])), double: true },
  { name: 'Atan', case: unary('Atan', {}, (r) => (r() * 2 - 1) * 3) },
  ...(['Min', 'Max'] as const).map((op) => ({
    // three broadcast inputs on grids offset by 0.05 and 0.025: no two values within a difference step
    name: `${op} (three inputs, broadcast)`,
    case: {
      inputs: [
        { name: 'a', dims: [2, 3, 4], values: spaced(24) },
        { name: 'b', dims: [3, 1], values: spaced(3).map((v) => v + 0.05) },
        { name: 'c', dims: [4], values: spaced(4).map((v) => v + 0.025) },
      ],
      build: (b, n) => b.node(op, [n.a!, n.b!, n.c!]),
    } as GradCase,
  })),
  { name: 'Identity', case: unary('Identity'), double: true },
  { name: 'Dropout (inference)', case: unary('Dropout'), double: true },
  {
    name: 'Clip (min and max inputs)',
    case: {
      inputs: [{ name: 'x', dims: [3, 4], gen: awayFrom([-0.4, 0.6], 2) }, { name: 'lo', dims: [], values: [-0.4], grad: false }, { name: 'hi', dims: [], values: [0.6], grad: false }],
      build: (b, n) => b.node('Clip', [n.x!, n.lo!, n.hi!]),
    },
  },
  {
    name: 'Where (both branches broadcast, condition from a constant)',
    case: {
      inputs: [{ name: 'c', dims: [2, 1, 4], grad: false }, { name: 'x', dims: [2, 3, 4] }, { name: 'y', dims: [3, 1] }],
      build: (b, n) => b.node('Where', [b.node('Greater', [n.c!, b.node('Constant', [], { value_float: F(0) })]), n.x!, n.y!]),
    },
  },
  {
    name: 'Where (a causal mask: a constant fill where masked, scores elsewhere)',
    case: {
      inputs: [{ name: 'm', dims: [3, 3], values: [0, 1, 1, 0, 0, 1, 0, 0, 0], grad: false }, { name: 'fill', dims: [], values: [-30], grad: false }, { name: 's', dims: [2, 3, 3] }],
      build: (b, n) => b.node('Softmax', [b.node('Where', [b.node('Cast', [n.m!], { to: DataType.BOOL }), n.fill!, n.s!])], { axis: -1 }),
    },
  },
  { name: 'Softmax (axis 1)', case: unary('Softmax', { axis: 1 }), double: true },
  { name: 'LogSoftmax (axis -1)', case: unary('LogSoftmax', { axis: -1 }), double: true },
  {
    name: 'Cast (to the float type under test)',
    case: { inputs: [{ name: 'x', dims: [3, 4] }], build: (b, n) => b.node('Tanh', [b.node('Cast', [n.x!], { to: DataType.DOUBLE })]) },
    double: true,
  },
  // arithmetic
  ...['Add', 'Sub', 'Mul', 'Div'].map((op): GradTableEntry => ({
    name: `${op} (broadcast [2,3,4] with [3,1])`,
    case: { inputs: [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [3, 1], gen: positive }], build: (b, n) => b.node(op, [n.a!, n.b!]) },
    double: true,
  })),
  {
    name: 'Pow (positive base, broadcast exponent)',
    case: { inputs: [{ name: 'a', dims: [2, 3], gen: positive }, { name: 'b', dims: [3] }], build: (b, n) => b.node('Pow', [n.a!, n.b!]) },
  },
  { name: 'Sum (three inputs, broadcasting)', case: variadic('Sum'), double: true },
  { name: 'Mean (three inputs, broadcasting)', case: variadic('Mean') },
  {
    name: 'Sum and Mean (one input, and one value passed twice)',
    case: {
      inputs: [{ name: 'x', dims: [2, 3] }, { name: 'y', dims: [2, 3] }],
      build: (b, n) => b.node('Mul', [b.node('Sum', [n.x!]), b.node('Mean', [n.x!, n.y!, n.x!])]),
    },
  },
  // layers
  {
    name: 'Conv (stride 2, pads, bias)',
    case: {
      inputs: [{ name: 'x', dims: [1, 2, 5, 5] }, { name: 'w', dims: [3, 2, 3, 3] }, { name: 'b', dims: [3] }],
      build: (b, n) => b.node('Conv', [n.x!, n.w!, n.b!], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }),
    },
  },
  {
    name: 'ConvTranspose (stride 2, bias)',
    case: {
      inputs: [{ name: 'x', dims: [1, 2, 3, 3] }, { name: 'w', dims: [2, 3, 2, 2] }, { name: 'b', dims: [3] }],
      build: (b, n) => b.node('ConvTranspose', [n.x!, n.w!, n.b!], { kernel_shape: [2, 2], strides: [2, 2] }),
    },
  },
  {
    name: 'Gemm (transB, bias)',
    case: {
      inputs: [{ name: 'a', dims: [3, 4] }, { name: 'b', dims: [5, 4] }, { name: 'c', dims: [5] }],
      build: (b, n) => b.node('Gemm', [n.a!, n.b!, n.c!], { transB: 1, alpha: F(0.5) }),
    },
    double: true,
  },
  {
    name: 'MatMul (batched)',
    case: { inputs: [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [4, 2] }], build: (b, n) => b.node('MatMul', [n.a!, n.b!]) },
    double: true,
  },
  {
    name: 'BatchNormalization (inference)',
    case: {
      inputs: [
        { name: 'x', dims: [2, 3, 2, 2] }, { name: 's', dims: [3] }, { name: 'b', dims: [3] },
        { name: 'm', dims: [3], grad: false }, { name: 'v', dims: [3], gen: positive, grad: false },
      ],
      build: (b, n) => b.node('BatchNormalization', [n.x!, n.s!, n.b!, n.m!, n.v!], { epsilon: F(1e-5) }),
    },
  },
  {
    name: 'LayerNormalization (axis -1)',
    case: {
      inputs: [{ name: 'x', dims: [2, 3, 4] }, { name: 'g', dims: [4] }, { name: 'b', dims: [4] }],
      build: (b, n) => b.node('LayerNormalization', [n.x!, n.g!, n.b!], { axis: -1, epsilon: F(1e-5) }),
    },
  },
  {
    name: 'RMSNormalization (opset 23, axis -1)',
    case: {
      inputs: [{ name: 'x', dims: [2, 3, 4] }, { name: 'g', dims: [4] }],
      build: (b, n) => b.node('RMSNormalization', [n.x!, n.g!], { axis: -1, epsilon: F(1e-5) }),
      opset: 23,
    },
  },
  {
    name: 'RMSNormalization (opset 23, axis 1: normalised over [3, 4], scale [3, 1] broadcast)',
    case: {
      inputs: [{ name: 'x', dims: [2, 3, 4] }, { name: 'g', dims: [3, 1] }],
      build: (b, n) => b.node('RMSNormalization', [n.x!, n.g!], { axis: 1, epsilon: F(1e-3) }),
      opset: 23,
    },
  },
  {
    name: 'SimplifiedLayerNormalization (axis -1, inv_std_var output requested)',
    case: {
      inputs: [{ name: 'x', dims: [2, 3, 4] }, { name: 'g', dims: [4] }],
      build: (b, n) => b.nodeN('SimplifiedLayerNormalization', [n.x!, n.g!], { axis: -1, epsilon: F(1e-5) }, 2)[0]!,
    },
  },
  // onnxruntime's GELU family (com.microsoft)
  ...([
    ['Gelu', false, {}],
    ['BiasGelu', true, {}],
    ['FastGelu', false, {}],
    ['FastGelu', true, {}],
    ['QuickGelu', false, { alpha: F(1.3) }],
  ] as const).map(([op, bias, attrs]): GradTableEntry => ({
    name: `com.microsoft ${op}${bias ? ' with its bias' : ''}`,
    case: {
      inputs: [{ name: 'x', dims: [2, 3, 4], gen: (r) => (r() * 2 - 1) * 3 }, ...(bias ? [{ name: 'b', dims: [4] }] : [])],
      build: (b, n) => b.nodeN(op, bias ? [n.x!, n.b!] : [n.x!], attrs, 1, { domain: 'com.microsoft' })[0]!,
      opsets: [{ domain: 'com.microsoft', version: 1 }],
    },
  })),
  // pooling and reductions
  { name: 'MaxPool (2x2 stride 2)', case: { inputs: [{ name: 'x', dims: [1, 2, 4, 6] }], build: (b, n) => b.node('MaxPool', [n.x!], { kernel_shape: [2, 2], strides: [2, 2] }) } },
  { name: 'AveragePool (3x3 stride 1, pads)', case: { inputs: [{ name: 'x', dims: [1, 2, 4, 5] }], build: (b, n) => b.node('AveragePool', [n.x!], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }) } },
  { name: 'GlobalAveragePool', case: { inputs: [{ name: 'x', dims: [2, 3, 3, 4] }], build: (b, n) => b.node('GlobalAveragePool', [n.x!]) } },
  { name: 'GlobalMaxPool (4-D)', case: { inputs: [{ name: 'x', dims: [2, 3, 3, 4], values: spaced(72) }], build: (b, n) => b.node('GlobalMaxPool', [n.x!]) } },
  { name: 'GlobalMaxPool (3-D)', case: { inputs: [{ name: 'x', dims: [2, 3, 5], values: spaced(30) }], build: (b, n) => b.node('GlobalMaxPool', [n.x!]) } },
  {
    name: 'ReduceSum (axes input, keepdims 0)',
    case: { inputs: [{ name: 'x', dims: [2, 3, 4] }, i64('a', [1])], build: (b, n) => b.node('ReduceSum', [n.x!, n.a!], { keepdims: 0 }) },
    double: true,
  },
  { name: 'ReduceMean (axes attribute)', case: { inputs: [{ name: 'x', dims: [2, 3, 4] }], build: (b, n) => b.node('ReduceMean', [n.x!], { axes: [0, 2] }) }, double: true },
  // data movement
  { name: 'Reshape', case: { inputs: [{ name: 'x', dims: [2, 3, 4] }, i64('s', [3, -1])], build: (b, n) => b.node('Tanh', [b.node('Reshape', [n.x!, n.s!])]) }, double: true },
  { name: 'Flatten', case: { inputs: [{ name: 'x', dims: [2, 3, 4] }], build: (b, n) => b.node('Tanh', [b.node('Flatten', [n.x!], { axis: 1 })]) }, double: true },
  { name: 'Squeeze', case: { inputs: [{ name: 'x', dims: [3, 1, 4] }, i64('a', [1])], build: (b, n) => b.node('Squeeze', [n.x!, n.a!]) }, double: true },
  { name: 'Unsqueeze', case: { inputs: [{ name: 'x', dims: [3, 4] }, i64('a', [1])], build: (b, n) => b.node('Unsqueeze', [n.x!, n.a!]) }, double: true },
  { name: 'Transpose', case: { inputs: [{ name: 'x', dims: [2, 3, 4] }], build: (b, n) => b.node('Transpose', [n.x!], { perm: [2, 0, 1] }) }, double: true },
  {
    name: 'Concat (axis 0)',
    case: { inputs: [{ name: 'a', dims: [2, 3] }, { name: 'b', dims: [1, 3] }], build: (b, n) => b.node('Concat', [n.a!, n.b!], { axis: 0 }) },
    double: true,
  },
  {
    name: 'Split (equal parts, both used)',
    case: {
      inputs: [{ name: 'x', dims: [4, 3] }],
      build: (b, n) => {
        const [p, q] = b.nodeN('Split', [n.x!], { axis: 0, num_outputs: 2 }, 2);
        return b.node('Mul', [p!, q!]);
      },
      opset: 18,
    },
    double: true,
  },
  { name: 'Slice', case: { inputs: [{ name: 'x', dims: [4, 5] }, i64('s', [1]), i64('e', [4]), i64('a', [1])], build: (b, n) => b.node('Slice', [n.x!, n.s!, n.e!, n.a!]) }, double: true },
  {
    name: 'Gather (repeated indices, axis 1)',
    case: { inputs: [{ name: 'x', dims: [2, 4] }, { name: 'i', dims: [3], values: [3, 0, 3], grad: false, elemType: DataType.INT64 }], build: (b, n) => b.node('Gather', [n.x!, n.i!], { axis: 1 }) },
  },
  { name: 'Expand', case: { inputs: [{ name: 'x', dims: [1, 3] }, i64('s', [2, 2, 3])], build: (b, n) => b.node('Expand', [n.x!, n.s!]) }, double: true },
  { name: 'Tile', case: { inputs: [{ name: 'x', dims: [2, 2] }, i64('r', [3, 1])], build: (b, n) => b.node('Tile', [n.x!, n.r!]) }, double: true },
  {
    name: 'Pad (reflect)',
    case: { inputs: [{ name: 'x', dims: [2, 4] }, i64('p', [0, 2, 1, 1])], build: (b, n) => b.node('Pad', [n.x!, n.p!], { mode: 'reflect' }) },
    double: true,
  },
  {
    name: 'Resize (nearest x2)',
    case: {
      inputs: [{ name: 'x', dims: [1, 1, 2, 3] }, f32('s', [1, 1, 2, 2])],
      build: (b, n) => b.node('Resize', [n.x!, '', n.s!], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' }),
    },
  },
  {
    name: 'Trilu (lower, k = -1: a causal mask below the diagonal)',
    case: { inputs: [{ name: 'x', dims: [2, 4, 4] }, { name: 'k', dims: [], values: [-1], grad: false, elemType: DataType.INT64 }], build: (b, n) => b.node('Tanh', [b.node('Trilu', [n.x!, n.k!], { upper: 0 })]) },
    double: true,
  },
  {
    name: 'CumSum (exclusive, reverse, axis 1)',
    case: { inputs: [{ name: 'x', dims: [2, 5, 3] }, { name: 'a', dims: [], values: [1], grad: false, elemType: DataType.INT64 }], build: (b, n) => b.node('Tanh', [b.node('CumSum', [n.x!, n.a!], { exclusive: 1, reverse: 1 })]) },
    double: true,
  },
];
