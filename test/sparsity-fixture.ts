/** A small conv + gemm + matmul model for the sparsity tests (built with GraphBuilder, seeded weights). */
import { GraphBuilder } from '../src/ir/builder.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor } from '../src/ir/tensor.js';
import { rng } from '../src/random.js';

export function gauss(next: () => number, n: number, scale = 1): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const u = next() + 1e-12;
    const v = next();
    out.push(scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
  }
  return out;
}

/**
 * x[2,3,6,6] -> Conv w0[8,3,3,3] -> Relu -> Conv w1[16,8,3,3] -> Mul s[16,1,1] -> Relu -> Conv w2[16,16,1,1]
 * -> GlobalAveragePool -> Flatten -> Gemm w3[12,16] (transB) -> MatMul w4[12,10] -> y[2,10].
 * Layer weights in order: w0, w1, w2, w3, w4 (w0's 3 input channels do not fit M=4).
 */
export function fixtureModel(seed = 1): Model {
  const next = rng(seed);
  const b = new GraphBuilder('sparsity_fixture');
  const x = b.input('x', [2, 3, 6, 6]);
  const w0 = b.init('w0', floatTensor([8, 3, 3, 3], gauss(next, 216, 0.5)));
  const b0 = b.init('b0', floatTensor([8], gauss(next, 8, 0.1)));
  let h = b.node('Conv', [x, w0, b0], { pads: [1, 1, 1, 1] }, { name: 'conv0' });
  h = b.node('Relu', [h]);
  const w1 = b.init('w1', floatTensor([16, 8, 3, 3], gauss(next, 1152, 0.2)));
  h = b.node('Conv', [h, w1], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const s = b.init('s', floatTensor([16, 1, 1], gauss(next, 16, 1)));
  h = b.node('Mul', [h, s]);
  h = b.node('Relu', [h]);
  const w2 = b.init('w2', floatTensor([16, 16, 1, 1], gauss(next, 256, 0.3)));
  h = b.node('Conv', [h, w2], {}, { name: 'conv2' });
  h = b.node('GlobalAveragePool', [h]);
  h = b.node('Flatten', [h]);
  const w3 = b.init('w3', floatTensor([12, 16], gauss(next, 192, 0.3)));
  const b3 = b.init('b3', floatTensor([12], gauss(next, 12, 0.1)));
  h = b.node('Gemm', [h, w3, b3], { transB: 1 }, { name: 'fc1' });
  const w4 = b.init('w4', floatTensor([12, 10], gauss(next, 120, 0.3)));
  const y = b.node('MatMul', [h, w4], {}, { name: 'fc2', output: 'y' });
  b.output(y, [2, 10]);
  return b.model(17);
}

export const LAYERS = ['w0', 'w1', 'w2', 'w3', 'w4'];
