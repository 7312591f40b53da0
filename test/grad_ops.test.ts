import assert from 'node:assert/strict';
import { test } from 'node:test';
import { F } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import { gradCheck, rng, type GradCase } from './gradcheck.js';

async function ok(c: GradCase, wantDouble = false): Promise<void> {
  const r = await gradCheck(c);
  assert.deepEqual(r.failures, [], `max rel err ${r.maxErr} (${r.dtype})`);
  assert.ok(r.checked > 0);
  if (wantDouble) assert.equal(r.dtype, 'float64');
}

const unary = (op: string, attrs: Record<string, unknown> = {}, gen?: (r: () => number) => number, dims = [3, 4, 5]): GradCase => ({
  inputs: [{ name: 'x', dims, ...(gen ? { gen } : {}) }],
  build: (b, n) => b.node(op, [n.x!], attrs as Record<string, number>),
});
/** Values away from the kinks at 0 (and +-3 for the hard activations). */
const awayFrom = (kinks: number[], span = 4) => (r: () => number) => {
  for (;;) {
    const v = (r() * 2 - 1) * span;
    if (kinks.every((k) => Math.abs(v - k) > 0.05)) return v;
  }
};

test('Gemm: plain, bias broadcast over rows', () =>
  ok({
    inputs: [{ name: 'a', dims: [3, 4] }, { name: 'b', dims: [4, 5] }, { name: 'c', dims: [5] }],
    build: (b, n) => b.node('Gemm', [n.a!, n.b!, n.c!], { alpha: F(0.7), beta: F(1.3) }),
  }, true));
test('Gemm: transA, transB, bias [M,1]', () =>
  ok({
    inputs: [{ name: 'a', dims: [4, 3] }, { name: 'b', dims: [5, 4] }, { name: 'c', dims: [3, 1] }],
    build: (b, n) => b.node('Gemm', [n.a!, n.b!, n.c!], { transA: 1, transB: 1, alpha: F(1.5) }),
  }, true));
test('Gemm: transB only (Linear), transA only', async () => {
  await ok({ inputs: [{ name: 'a', dims: [3, 4] }, { name: 'b', dims: [5, 4] }, { name: 'c', dims: [1, 5] }], build: (b, n) => b.node('Gemm', [n.a!, n.b!, n.c!], { transB: 1 }) });
  await ok({ inputs: [{ name: 'a', dims: [4, 3] }, { name: 'b', dims: [4, 5] }], build: (b, n) => b.node('Gemm', [n.a!, n.b!], { transA: 1 }) });
});
test('MatMul: batched with broadcasting', () =>
  ok({
    inputs: [{ name: 'a', dims: [2, 1, 3, 4] }, { name: 'b', dims: [3, 4, 2] }],
    build: (b, n) => b.node('MatMul', [n.a!, n.b!]),
  }, true));
test('MatMul: 1-D operands', async () => {
  await ok({ inputs: [{ name: 'a', dims: [4] }, { name: 'b', dims: [2, 4, 3] }], build: (b, n) => b.node('MatMul', [n.a!, n.b!]) });
  await ok({ inputs: [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [4] }], build: (b, n) => b.node('MatMul', [n.a!, n.b!]) });
});

for (const op of ['Add', 'Sub', 'Mul', 'Div']) {
  test(`${op} with broadcasting`, () =>
    ok({
      inputs: [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [3, 1], gen: (r) => 0.5 + r() }],
      build: (b, n) => b.node(op, [n.a!, n.b!]),
    }, true));
}
test('Pow with broadcasting (positive base)', () =>
  ok({
    inputs: [{ name: 'a', dims: [2, 3], gen: (r) => 0.5 + r() }, { name: 'b', dims: [3] }],
    build: (b, n) => b.node('Pow', [n.a!, n.b!]),
  }));
test('Sum of a value used twice (gradient accumulation)', () =>
  ok({
    inputs: [{ name: 'x', dims: [3, 4] }, { name: 'w', dims: [4] }],
    build: (b, n) => b.node('Add', [b.node('Mul', [n.x!, n.w!]), b.node('Mul', [b.node('Tanh', [n.x!]), n.x!])]),
  }, true));

test('Relu', () => ok(unary('Relu', {}, awayFrom([0]))));
test('LeakyRelu', () => ok(unary('LeakyRelu', { alpha: F(0.1) }, awayFrom([0]))));
test('Clip (min/max inputs)', () =>
  ok({
    inputs: [{ name: 'x', dims: [4, 5], gen: awayFrom([-0.5, 0.7], 2) }, { name: 'lo', dims: [], values: [-0.5], grad: false }, { name: 'hi', dims: [], values: [0.7], grad: false }],
    build: (b, n) => b.node('Clip', [n.x!, n.lo!, n.hi!]),
  }));
test('Sigmoid', () => ok(unary('Sigmoid'), true));
test('Tanh', () => ok(unary('Tanh'), true));
test('HardSigmoid', () => ok(unary('HardSigmoid', { alpha: F(0.25), beta: F(0.4) }, awayFrom([-1.6, 2.4]))));
test('HardSwish', () => ok(unary('HardSwish', {}, awayFrom([-3, 3], 5))));
test('Erf', () => ok(unary('Erf')));
test('Gelu (opset 20)', () => ok({ ...unary('Gelu'), opset: 20 }));
test('Exp, Log, Sqrt, Reciprocal, Neg, Abs', async () => {
  await ok(unary('Exp'), true);
  const pos = (r: () => number) => 0.3 + r();
  await ok(unary('Log', {}, pos), true);
  await ok(unary('Sqrt', {}, pos), true);
  await ok(unary('Reciprocal', {}, pos), true);
  await ok(unary('Neg'), true);
  await ok(unary('Abs', {}, awayFrom([0])), true);
});
test('Cast (to the same float type)', () => ok({ inputs: [{ name: 'x', dims: [3, 4] }], build: (b, n) => b.node('Tanh', [b.node('Cast', [n.x!], { to: DataType.DOUBLE })]) }, true));
test('Softmax and LogSoftmax (axis 1 and -1)', async () => {
  await ok(unary('Softmax', { axis: 1 }), true);
  await ok(unary('LogSoftmax', { axis: -1 }), true);
  await ok(unary('LogSoftmax', { axis: 1 }), true);
});

test('Concat and Split', async () => {
  await ok({
    inputs: [{ name: 'a', dims: [2, 3, 2] }, { name: 'b', dims: [2, 1, 2] }],
    build: (b, n) => b.node('Concat', [n.a!, n.b!], { axis: 1 }),
  }, true);
  await ok({
    inputs: [{ name: 'x', dims: [2, 7] }, { name: 's', dims: [3], values: [2, 4, 1], grad: false, elemType: DataType.INT64 }],
    build: (b, n) => {
      const [p, , r] = b.nodeN('Split', [n.x!, n.s!], { axis: 1 }, 3);
      // The middle output is unused: its gradient is zeros.
      return b.node('Concat', [b.node('Mul', [p!, p!]), r!], { axis: 1 });
    },
  }, true);
});
test('Slice (steps 1, negative and 2)', async () => {
  const i64 = (name: string, values: number[]) => ({ name, dims: [values.length], values, grad: false, elemType: DataType.INT64 });
  await ok({
    inputs: [{ name: 'x', dims: [4, 6, 5] }, i64('st', [1, -4]), i64('en', [3, 100]), i64('ax', [0, 2])],
    build: (b, n) => b.node('Slice', [n.x!, n.st!, n.en!, n.ax!]),
  }, true);
  await ok({
    inputs: [{ name: 'x', dims: [4, 7] }, i64('st', [-1, 0]), i64('en', [-100, 7]), i64('ax', [0, 1]), i64('sp', [-2, 3])],
    build: (b, n) => b.node('Slice', [n.x!, n.st!, n.en!, n.ax!, n.sp!]),
  }, true);
});
test('Reshape, Flatten, Transpose, Squeeze, Unsqueeze', async () => {
  const i64 = (name: string, values: number[]) => ({ name, dims: [values.length], values, grad: false, elemType: DataType.INT64 });
  await ok({ inputs: [{ name: 'x', dims: [2, 3, 4] }, i64('s', [4, -1])], build: (b, n) => b.node('Tanh', [b.node('Reshape', [n.x!, n.s!])]) }, true);
  await ok({ inputs: [{ name: 'x', dims: [2, 3, 4] }], build: (b, n) => b.node('Tanh', [b.node('Flatten', [n.x!], { axis: 2 })]) }, true);
  await ok({ inputs: [{ name: 'x', dims: [2, 3, 4] }], build: (b, n) => b.node('Transpose', [n.x!], { perm: [1, 2, 0] }) }, true);
  await ok({ inputs: [{ name: 'x', dims: [2, 1, 4] }, i64('a', [1])], build: (b, n) => b.node('Squeeze', [n.x!, n.a!]) }, true);
  await ok({ inputs: [{ name: 'x', dims: [2, 4] }, i64('a', [0, 2])], build: (b, n) => b.node('Unsqueeze', [n.x!, n.a!]) }, true);
});
test('Pad (constant, asymmetric, with a negative pad)', () =>
  ok({
    inputs: [{ name: 'x', dims: [2, 3, 4] }, { name: 'p', dims: [6], values: [0, 1, -1, 1, 2, 1], grad: false, elemType: DataType.INT64 }],
    build: (b, n) => b.node('Pad', [n.x!, n.p!], { mode: 'constant' }),
  }, true));
test('Pad edge, reflect (with a crop) and wrap: the gradient gathers every copy of an element', async () => {
  const pads = (values: number[]) => ({ name: 'p', dims: [6], values, grad: false, elemType: DataType.INT64 });
  await ok({ inputs: [{ name: 'x', dims: [2, 3, 4] }, pads([0, 2, 3, 1, 1, 2])], build: (b, n) => b.node('Pad', [n.x!, n.p!], { mode: 'edge' }) }, true);
  await ok({ inputs: [{ name: 'x', dims: [2, 3, 4] }, pads([0, 1, 3, -1, 2, 2])], build: (b, n) => b.node('Pad', [n.x!, n.p!], { mode: 'reflect' }) }, true);
  await ok({ inputs: [{ name: 'x', dims: [2, 3, 4] }, pads([1, 3, 4, 0, 3, 4])], build: (b, n) => b.node('Pad', [n.x!, n.p!], { mode: 'wrap' }), opset: 19 });
});
test('Gather (embedding axis 0, repeated and negative indices; axis 1)', async () => {
  await ok({
    inputs: [{ name: 'e', dims: [5, 3] }, { name: 'i', dims: [2, 3], values: [0, 4, 0, -1, 2, 2], grad: false, elemType: DataType.INT64 }],
    build: (b, n) => b.node('Gather', [n.e!, n.i!], { axis: 0 }),
  });
  await ok({
    inputs: [{ name: 'x', dims: [2, 5, 3] }, { name: 'i', dims: [4], values: [1, 1, 4, 0], grad: false, elemType: DataType.INT64 }],
    build: (b, n) => b.node('Gather', [n.x!, n.i!], { axis: 1 }),
  });
});
test('ReduceSum and ReduceMean (keepdims 0/1)', async () => {
  await ok({
    inputs: [{ name: 'x', dims: [2, 3, 4] }, { name: 'a', dims: [2], values: [0, 2], grad: false, elemType: DataType.INT64 }],
    build: (b, n) => b.node('ReduceSum', [n.x!, n.a!], { keepdims: 0 }),
  }, true);
  await ok({ inputs: [{ name: 'x', dims: [2, 3, 4] }], build: (b, n) => b.node('ReduceMean', [n.x!], { axes: [1], keepdims: 1 }) }, true);
  await ok({ inputs: [{ name: 'x', dims: [2, 3, 4] }], build: (b, n) => b.node('ReduceMean', [n.x!], { keepdims: 0 }) }, true);
});
test('MaxPool (stride 2, asymmetric pads, ceil mode, storage_order 1)', async () => {
  await ok({ inputs: [{ name: 'x', dims: [2, 3, 7, 6] }], build: (b, n) => b.node('MaxPool', [n.x!], { kernel_shape: [3, 2], strides: [2, 2], pads: [1, 0, 0, 1] }) });
  await ok({ inputs: [{ name: 'x', dims: [1, 2, 6, 5] }], build: (b, n) => b.node('MaxPool', [n.x!], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }) });
  // Column-major Indices (storage_order 1), on a non-square plane so that a row/column mix-up shows.
  await ok({ inputs: [{ name: 'x', dims: [2, 3, 7, 5] }], build: (b, n) => b.node('MaxPool', [n.x!], { kernel_shape: [3, 2], strides: [2, 1], pads: [1, 0, 0, 1], storage_order: 1 }) });
});
test('MaxPool below opset 16 (no ScatterElements reduction): overlapping windows, pads, ceil mode, dilation, storage_order 1, 1-D', async () => {
  const cases: GradCase[] = [
    // Overlapping 3x3 stride 2 windows (ResNet stem): an input element can be the argmax of several outputs.
    { inputs: [{ name: 'x', dims: [2, 3, 7, 6] }], build: (b, n) => b.node('MaxPool', [n.x!], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }) },
    { inputs: [{ name: 'x', dims: [2, 3, 7, 6] }], build: (b, n) => b.node('MaxPool', [n.x!], { kernel_shape: [3, 2], strides: [2, 2], pads: [1, 0, 0, 1] }) },
    // Trailing rows/columns no window reads (output_padding), and ceil mode's overhang (cut).
    { inputs: [{ name: 'x', dims: [1, 2, 7, 5] }], build: (b, n) => b.node('MaxPool', [n.x!], { kernel_shape: [2, 2], strides: [2, 2] }) },
    { inputs: [{ name: 'x', dims: [1, 2, 6, 5] }], build: (b, n) => b.node('MaxPool', [n.x!], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }) },
    { inputs: [{ name: 'x', dims: [1, 2, 8, 7] }], build: (b, n) => b.node('MaxPool', [n.x!], { kernel_shape: [2, 3], strides: [1, 2], dilations: [2, 1] }) },
    { inputs: [{ name: 'x', dims: [2, 3, 7, 5] }], build: (b, n) => b.node('MaxPool', [n.x!], { kernel_shape: [3, 2], strides: [2, 1], pads: [1, 0, 0, 1], storage_order: 1 }) },
    { inputs: [{ name: 'x', dims: [2, 3, 9] }], build: (b, n) => b.node('MaxPool', [n.x!], { kernel_shape: [3], strides: [2], pads: [1, 1] }) },
    { inputs: [{ name: 'x', dims: [1, 2, 8, 7] }], build: (b, n) => b.node('MaxPool', [n.x!], { kernel_shape: [3, 3], strides: [2, 2], auto_pad: 'SAME_UPPER' }) },
  ];
  // Distinct values at least 0.05 apart, so that the finite differences (float32: ConvTranspose has no double
  // kernel) never move an argmax.
  const distinct = (c: GradCase): GradCase => {
    const n = c.inputs[0]!.dims.reduce((a, b) => a * b, 1);
    const r = rng(7);
    const v = Array.from({ length: n }, (_, i) => (i - n / 2) * 0.05);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [v[i], v[j]] = [v[j]!, v[i]!];
    }
    return { ...c, inputs: [{ ...c.inputs[0]!, values: v }] };
  };
  for (const opset of [11, 13, 17]) {
    for (const [i, c] of cases.entries()) {
      await ok({ ...distinct(c), opset }).catch((err: Error) => assert.fail(`case ${i} at opset ${opset}: ${err.message}`));
    }
  }
});
test('Gradients that scatter with addition, below opset 16 (rounds of plain ScatterElements): nearest Resize, strided Slice, edge/reflect Pad', async () => {
  const i64 = (name: string, values: number[]) => ({ name, dims: [values.length], values, grad: false, elemType: DataType.INT64 });
  const f = (name: string, values: number[]) => ({ name, dims: [values.length], values, grad: false, elemType: DataType.FLOAT });
  for (const opset of [11, 13]) {
    // Every input element copied 4 or more times (repeated indices: several rounds).
    if (opset >= 13) {
      await ok({
        opset, inputs: [{ name: 'x', dims: [1, 2, 3, 4] }, f('s', [1, 1, 2, 2])],
        build: (b, n) => b.node('Resize', [n.x!, '', n.s!], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' }),
      });
      await ok({ opset, inputs: [{ name: 'x', dims: [1, 2, 3, 4] }, f('s', [1, 1, 1.5, 2.5])], build: (b, n) => b.node('Resize', [n.x!, '', n.s!], { mode: 'nearest' }) });
    }
    await ok({
      opset, inputs: [{ name: 'x', dims: [4, 7] }, i64('st', [-1, 0]), i64('en', [-100, 7]), i64('ax', [0, 1]), i64('sp', [-2, 3])],
      build: (b, n) => b.node('Slice', [n.x!, n.st!, n.en!, n.ax!, n.sp!]),
    }, true);
    await ok({ opset, inputs: [{ name: 'x', dims: [2, 3, 4] }, i64('p', [0, 2, 3, 1, 1, 2])], build: (b, n) => b.node('Pad', [n.x!, n.p!], { mode: 'edge' }) }, true);
    await ok({ opset, inputs: [{ name: 'x', dims: [2, 3, 4] }, i64('p', [0, 1, 3, -1, 2, 2])], build: (b, n) => b.node('Pad', [n.x!, n.p!], { mode: 'reflect' }) }, true);
  }
});
test('AveragePool (count_include_pad 0/1, ceil mode, asymmetric pads)', async () => {
  await ok({ inputs: [{ name: 'x', dims: [2, 3, 7, 6] }], build: (b, n) => b.node('AveragePool', [n.x!], { kernel_shape: [3, 2], strides: [2, 2], pads: [1, 0, 0, 1] }) });
  await ok({ inputs: [{ name: 'x', dims: [2, 3, 7, 6] }], build: (b, n) => b.node('AveragePool', [n.x!], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], count_include_pad: 1 }) });
  await ok({ inputs: [{ name: 'x', dims: [1, 2, 6, 5] }], build: (b, n) => b.node('AveragePool', [n.x!], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }) });
});
test('GlobalAveragePool', () => ok({ inputs: [{ name: 'x', dims: [2, 3, 4, 5] }], build: (b, n) => b.node('GlobalAveragePool', [n.x!]) }));
test('Resize nearest (integer upsampling, asymmetric and half_pixel)', async () => {
  const f = (name: string, values: number[]) => ({ name, dims: [values.length], values, grad: false, elemType: DataType.FLOAT });
  await ok({
    inputs: [{ name: 'x', dims: [1, 2, 3, 4] }, f('s', [1, 1, 2, 2])],
    build: (b, n) => b.node('Resize', [n.x!, '', n.s!], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' }),
  });
  await ok({
    inputs: [{ name: 'x', dims: [1, 2, 3, 4] }, f('s', [1, 1, 1.5, 2.5])],
    build: (b, n) => b.node('Resize', [n.x!, '', n.s!], { mode: 'nearest' }),
  });
});
test('Resize linear (float32: no float64 kernel; up and down, fractional scales, by sizes; half_pixel, align_corners, asymmetric, pytorch_half_pixel)', async () => {
  const f = (name: string, values: number[]) => ({ name, dims: [values.length], values, grad: false, elemType: DataType.FLOAT });
  const i64 = (name: string, values: number[]) => ({ name, dims: [values.length], values, grad: false, elemType: DataType.INT64 });
  for (const mode of ['half_pixel', 'align_corners', 'asymmetric', 'pytorch_half_pixel']) {
    await ok({
      inputs: [{ name: 'x', dims: [1, 2, 3, 4] }, f('s', [1, 1, 2, 1.5])],
      build: (b, n) => b.node('Resize', [n.x!, '', n.s!], { mode: 'linear', coordinate_transformation_mode: mode }),
    });
  }
  await ok({
    inputs: [{ name: 'x', dims: [2, 1, 5, 6] }, i64('z', [2, 1, 3, 11])],
    build: (b, n) => b.node('Resize', [n.x!, '', '', n.z!], { mode: 'linear' }),
  });
  await ok({
    inputs: [{ name: 'x', dims: [1, 3, 4, 4] }, f('s', [1, 1, 1, 2])],
    build: (b, n) => b.node('Resize', [n.x!, '', n.s!], { mode: 'linear', coordinate_transformation_mode: 'align_corners' }),
  });
});
test('LayerNormalization (axis -1 and 1)', async () => {
  await ok({
    inputs: [{ name: 'x', dims: [2, 3, 4] }, { name: 'g', dims: [4] }, { name: 'b', dims: [4] }],
    build: (b, n) => b.node('LayerNormalization', [n.x!, n.g!, n.b!], { axis: -1, epsilon: F(1e-5) }),
  });
  await ok({
    inputs: [{ name: 'x', dims: [2, 3, 4] }, { name: 'g', dims: [3, 4] }, { name: 'b', dims: [3, 4] }],
    build: (b, n) => b.node('LayerNormalization', [n.x!, n.g!, n.b!], { axis: 1 }),
  });
});
test('BatchNormalization (inference mode, trainable scale and bias)', () =>
  ok({
    inputs: [
      { name: 'x', dims: [2, 3, 4, 2] }, { name: 's', dims: [3] }, { name: 'b', dims: [3] },
      { name: 'm', dims: [3], grad: false }, { name: 'v', dims: [3], values: [0.5, 1.2, 2], grad: false },
    ],
    build: (b, n) => b.node('BatchNormalization', [n.x!, n.s!, n.b!, n.m!, n.v!], { epsilon: F(1e-5) }),
  }));
test('BatchNormalization training_mode=1 (batch statistics; momentum 0 and 0.8, 4-D and 2-D input)', async () => {
  for (const [dims, momentum] of [[[3, 2, 4, 3], 0.8], [[5, 3], 0], [[2, 3, 3, 2], 0]] as const) {
    const c = dims[1];
    await ok({
      inputs: [
        { name: 'x', dims: [...dims] }, { name: 's', dims: [c] }, { name: 'b', dims: [c] },
        { name: 'm', dims: [c], grad: false }, { name: 'v', dims: [c], gen: (r) => 0.5 + r(), grad: false },
      ],
      build: (b, n) => b.nodeN('BatchNormalization', [n.x!, n.s!, n.b!, n.m!, n.v!], { epsilon: F(1e-5), momentum: F(momentum), training_mode: 1 }, 3)[0]!,
      opset: 15,
    }, true);
  }
});
test('Expand and Tile', async () => {
  const i64 = (name: string, values: number[]) => ({ name, dims: [values.length], values, grad: false, elemType: DataType.INT64 });
  await ok({ inputs: [{ name: 'x', dims: [3, 1] }, i64('s', [2, 3, 4])], build: (b, n) => b.node('Expand', [n.x!, n.s!]) }, true);
  await ok({ inputs: [{ name: 'x', dims: [2, 3] }, i64('r', [2, 3])], build: (b, n) => b.node('Tile', [n.x!, n.r!]) }, true);
});
test('Trilu: lower and upper triangles, with and without k, batched (a causal mask)', async () => {
  const k = (v: number) => ({ name: 'k', dims: [], values: [v], grad: false, elemType: DataType.INT64 });
  // Tanh after the mask: a gradient that differs per element, so a wrong triangle would show.
  await ok({ inputs: [{ name: 'x', dims: [2, 4, 5] }], build: (b, n) => b.node('Tanh', [b.node('Trilu', [n.x!], { upper: 0 })]) }, true);
  await ok({ inputs: [{ name: 'x', dims: [4, 5] }], build: (b, n) => b.node('Tanh', [b.node('Trilu', [n.x!])]) }, true);
  await ok({ inputs: [{ name: 'x', dims: [3, 4, 4] }, k(1)], build: (b, n) => b.node('Tanh', [b.node('Trilu', [n.x!, n.k!], { upper: 1 })]) }, true);
  await ok({ inputs: [{ name: 'x', dims: [3, 4, 4] }, k(-1)], build: (b, n) => b.node('Tanh', [b.node('Trilu', [n.x!, n.k!], { upper: 0 })]) }, true);
});
test('CumSum: forward and reverse, exclusive or not, on a middle and a negative axis', async () => {
  const axis = (v: number) => ({ name: 'ax', dims: [], values: [v], grad: false, elemType: DataType.INT64 });
  for (const exclusive of [0, 1]) {
    for (const reverse of [0, 1]) {
      await ok({ inputs: [{ name: 'x', dims: [2, 5, 3] }, axis(1)], build: (b, n) => b.node('Tanh', [b.node('CumSum', [n.x!, n.ax!], { exclusive, reverse })]) }, true);
    }
  }
  await ok({ inputs: [{ name: 'x', dims: [3, 6] }, axis(-1)], build: (b, n) => b.node('Tanh', [b.node('CumSum', [n.x!, n.ax!], { reverse: 1 })]) }, true);
});

test('Atan', () => ok(unary('Atan', {}, (r) => (r() * 2 - 1) * 3)));
for (const op of ['Min', 'Max']) {
  test(`${op} with broadcasting (two inputs)`, () =>
    ok({
      inputs: [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [3, 1] }],
      build: (b, n) => b.node(op, [n.a!, n.b!]),
    }));
  test(`${op} of three inputs`, () =>
    ok({
      inputs: [{ name: 'a', dims: [3, 4] }, { name: 'b', dims: [3, 4] }, { name: 'c', dims: [4] }],
      build: (b, n) => b.node(op, [n.a!, n.b!, n.c!]),
    }));
}
test('Min / Max at ties split the gradient evenly (torch.minimum / maximum)', async () => {
  const { GraphBuilder } = await import('../src/ir/builder.js');
  const { buildBackward, appendEmitted } = await import('../src/autodiff/backward.js');
  const { probeTypes } = await import('../src/autodiff/shapes.js');
  const { createSession } = await import('../src/runtime/session.js');
  for (const op of ['Min', 'Max']) {
    const b = new GraphBuilder('tie');
    b.input('a', [3], DataType.FLOAT);
    b.input('c', [3], DataType.FLOAT);
    const y = b.node('ReduceSum', [b.node(op, ['a', 'c'])], { keepdims: 0 }, { output: 'y' });
    b.output(y);
    const m = b.model(17);
    const feeds = { a: { dtype: DataType.FLOAT, dims: [3], data: Float32Array.from([1, 2, 3]) }, c: { dtype: DataType.FLOAT, dims: [3], data: Float32Array.from([1, 5, 0]) } };
    const back = buildBackward(m, { loss: 'y', wrt: ['a', 'c'], types: await probeTypes(m, {}, feeds), elemType: DataType.FLOAT });
    appendEmitted(m.graph, back.emitter);
    m.graph.outputs.push({ name: back.grads.get('a')! }, { name: back.grads.get('c')! });
    const s = await createSession(m);
    const r = await s.run(feeds);
    await s.release();
    const ga = Array.from(r[back.grads.get('a')!]!.data as Float32Array);
    const gc = Array.from(r[back.grads.get('c')!]!.data as Float32Array);
    assert.deepEqual(ga, op === 'Min' ? [0.5, 1, 0] : [0.5, 0, 1]);
    assert.deepEqual(gc, op === 'Min' ? [0.5, 0, 1] : [0.5, 1, 0]);
  }
});
