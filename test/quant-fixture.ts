/** Small float models for the quantization tests, built with GraphBuilder (seeded random weights). */
import { rng } from '../src/data/random.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';
import type { CalibrationData } from '../src/quant/index.js';

export function randTensor(dims: number[], seed: number, scale = 1, offset = 0): Tensor {
  const r = rng(seed);
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = offset + scale * (2 * r() - 1);
  return { dtype: DataType.FLOAT, dims, data };
}

/** x [2,4,6,6] -> Conv 3x3 (6 out, bias) -> Relu -> y (a graph output). */
export function convReluModel(): Model {
  const b = new GraphBuilder('conv_relu');
  b.input('x', [2, 4, 6, 6]);
  b.init('W', randTensor([6, 4, 3, 3], 1, 0.4));
  b.init('B', randTensor([6], 2, 0.2));
  const c = b.node('Conv', ['x', 'W', 'B'], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'conv' });
  b.node('Relu', [c], {}, { name: 'relu', output: 'y' });
  b.output('y', [2, 6, 6, 6]);
  return b.model(17);
}

/**
 * A small residual CNN: Conv -> Relu -> MaxPool -> Conv -> Add(skip) -> Relu -> GlobalAveragePool -> Flatten ->
 * Gemm (transB, bias) -> logits.
 */
export function smallCnn(batch = 4): Model {
  const b = new GraphBuilder('small_cnn');
  b.input('x', [batch, 3, 12, 12]);
  b.init('W1', randTensor([16, 3, 3, 3], 11, 0.5));
  b.init('B1', randTensor([16], 12, 0.1));
  b.init('W2', randTensor([16, 16, 3, 3], 13, 0.15));
  b.init('B2', randTensor([16], 14, 0.1));
  b.init('Wfc', randTensor([5, 16], 15, 0.5));
  b.init('Bfc', randTensor([5], 16, 0.1));
  const c1 = b.node('Conv', ['x', 'W1', 'B1'], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const r1 = b.node('Relu', [c1], {}, { name: 'relu1' });
  const p = b.node('MaxPool', [r1], { kernel_shape: [2, 2], strides: [2, 2] }, { name: 'pool' });
  const c2 = b.node('Conv', [p, 'W2', 'B2'], { pads: [1, 1, 1, 1] }, { name: 'conv2' });
  const s = b.node('Add', [c2, p], {}, { name: 'add' });
  const r2 = b.node('Relu', [s], {}, { name: 'relu2' });
  const g = b.node('GlobalAveragePool', [r2], {}, { name: 'gap' });
  const f = b.node('Flatten', [g], {}, { name: 'flatten' });
  b.node('Gemm', [f, 'Wfc', 'Bfc'], { transB: 1 }, { name: 'fc', output: 'logits' });
  b.output('logits', [batch, 5]);
  return b.model(17);
}

/** `batches` seeded batches of uniform inputs in [-1, 1] for the model's input `x`. */
export function calibFeeds(dims: number[], batches = 3, seed = 100): CalibrationData {
  return () => Array.from({ length: batches }, (_, i) => ({ x: randTensor(dims, seed + i) }));
}
