/** Small CNNs for the float16, already-quantized and old-opset tests, built with GraphBuilder (seeded weights). */
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';
import { toHalf } from '../src/quant/index.js';
import { randTensor } from './quant-fixture.js';

/**
 * x [N,1,28,28] -> Conv 3x3 (8) -> Relu -> MaxPool 3x3 stride 2 (overlapping) -> Conv 3x3 (8) -> Relu ->
 * MaxPool 2x2 -> GlobalAveragePool -> Flatten -> Gemm (10) -> logits; every float tensor float16 with `fp16`
 * (initializers, input and output: the convolutions compute in float16).
 */
export function smallNet(opts: { opset?: number; fp16?: boolean } = {}): Model {
  const dt = opts.fp16 ? DataType.FLOAT16 : DataType.FLOAT;
  const t = (x: Tensor): Tensor => (opts.fp16 ? toHalf(x) : x);
  const b = new GraphBuilder('small_net');
  b.input('x', ['N', 1, 28, 28], dt);
  b.init('W1', t(randTensor([8, 1, 3, 3], 21, 0.6)));
  b.init('B1', t(randTensor([8], 22, 0.1)));
  b.init('W2', t(randTensor([8, 8, 3, 3], 23, 0.25)));
  b.init('B2', t(randTensor([8], 24, 0.1)));
  b.init('Wfc', t(randTensor([10, 8], 25, 0.5)));
  b.init('Bfc', t(randTensor([10], 26, 0.1)));
  const c1 = b.node('Conv', ['x', 'W1', 'B1'], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'conv1' });
  const r1 = b.node('Relu', [c1], {}, { name: 'relu1' });
  const p1 = b.node('MaxPool', [r1], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }, { name: 'pool1' });
  const c2 = b.node('Conv', [p1, 'W2', 'B2'], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'conv2' });
  const r2 = b.node('Relu', [c2], {}, { name: 'relu2' });
  const p2 = b.node('MaxPool', [r2], { kernel_shape: [2, 2], strides: [2, 2] }, { name: 'pool2' });
  const g = b.node('GlobalAveragePool', [p2], {}, { name: 'gap' });
  const f = b.node('Flatten', [g], {}, { name: 'flatten' });
  b.node('Gemm', [f, 'Wfc', 'Bfc'], { transB: 1 }, { name: 'fc', output: 'logits' });
  b.output('logits', ['N', 10], dt);
  return b.model(opts.opset ?? 17);
}

/** A windowed Fourier basis as torch.stft-in-a-Conv exporters write it: [2F, 1, K] (cos rows, then -sin rows). */
export function fourierBasis(k: number): Tensor {
  const f = k / 2 + 1;
  const data = new Float32Array(2 * f * k);
  for (let r = 0; r < f; r++) {
    for (let i = 0; i < k; i++) {
      const w = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / k); // Hann window
      const a = (2 * Math.PI * r * i) / k;
      data[r * k + i] = w * Math.cos(a);
      data[(f + r) * k + i] = -w * Math.sin(a);
    }
  }
  return { dtype: DataType.FLOAT, dims: [2 * f, 1, k], data };
}

/**
 * An audio front-end: x [1,1,128] -> Conv1d with a fixed STFT basis (stride 8) -> Abs -> Conv1d 1x1 with an
 * all-equal averaging filter -> Conv1d (learned, 6 out, kernel 3) -> y. The learned layer is the only trained
 * weight; `computed` builds the basis in the graph (Mul of a constant basis by a constant window).
 */
export function stftNet(opts: { computed?: boolean } = {}): Model {
  const b = new GraphBuilder('stft_net');
  b.input('x', [1, 1, 128]);
  const basis = fourierBasis(16);
  let w = b.init('stft_basis', basis);
  if (opts.computed) {
    b.graph.initializers.delete('stft_basis');
    w = b.node('Mul', [b.init('basis_unwindowed', basis), b.init('one', { dtype: DataType.FLOAT, dims: [1], data: Float32Array.of(1) })], {}, { name: 'window' });
  }
  const s = b.node('Conv', ['x', w], { kernel_shape: [16], strides: [8] }, { name: 'stft' });
  const m = b.node('Abs', [s], {}, { name: 'mag' });
  b.init('avg', { dtype: DataType.FLOAT, dims: [18, 18, 1], data: new Float32Array(18 * 18).fill(1 / 18) });
  const a = b.node('Conv', [m, 'avg'], { kernel_shape: [1] }, { name: 'smooth' });
  b.init('W', randTensor([6, 18, 3], 31, 0.3));
  b.node('Conv', [a, 'W'], { kernel_shape: [3], pads: [1, 1] }, { name: 'learned', output: 'y' });
  b.output('y', [1, 6, 15]);
  return b.model(17);
}
