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
