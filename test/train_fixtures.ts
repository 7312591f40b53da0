/** Shared fixtures of the training tests: a tiny synthetic image task and a small CNN. */
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { numel } from '../src/ir/tensor.js';
import type { ArrayData } from '../src/data/in-memory.js';
import { rng } from './gradcheck.js';

/** Class 0: bright left half, class 1: bright right half, class 2: bright top half; plus noise. */
export function synth(n: number, seed: number): ArrayData {
  const r = rng(seed);
  const x = new Float32Array(n * 64);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const y = i % 3;
    labels[i] = y;
    for (let h = 0; h < 8; h++) for (let w = 0; w < 8; w++) {
      const on = y === 0 ? w < 4 : y === 1 ? w >= 4 : h < 4;
      x[i * 64 + h * 8 + w] = (on ? 1 : 0) + (r() - 0.5) * 0.8;
    }
  }
  return { x, sampleDims: [1, 8, 8], labels, n };
}

export function cnn(): Model {
  const r = rng(1);
  const b = new GraphBuilder('cnn');
  b.input('input', ['N', 1, 8, 8]);
  const f = (dims: number[], s: number) => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: numel(dims) }, () => (r() - 0.5) * s) });
  let h = b.node('Relu', [b.node('Conv', ['input', b.init('w1', f([6, 1, 3, 3], 0.6)), b.init('b1', f([6], 0.1))], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] })]);
  h = b.node('Flatten', [b.node('AveragePool', [h], { kernel_shape: [2, 2], strides: [2, 2] })]);
  b.node('Gemm', [h, b.init('w2', f([3, 24], 0.4)), b.init('b2', f([3], 0.1))], { transB: 1 }, { output: 'logits' });
  b.output('logits');
  return b.model(17);
}

