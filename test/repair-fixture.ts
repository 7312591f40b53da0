/** A tiny residual CNN and in-memory data for the repair tests. */
import { Dataset } from '../src/data/dataset.js';
import { arraySource, inMemoryRows } from '../src/data/arrays.js';
import { GraphBuilder, F } from '../src/ir/builder.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor, type Tensor } from '../src/ir/tensor.js';
import { mixedSeedRng as rng } from '../src/random.js';

export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

function w(dims: number[], seed: number): Tensor {
  const fan = dims.slice(1).reduce((a, b) => a * b, 1);
  return floatTensor(dims, randn(dims.reduce((a, b) => a * b, 1), seed, Math.sqrt(2 / fan)));
}

/**
 * x [N,3,8,8] -> conv1 3x3 (3->8, bias) -> Relu -> conv2 3x3 (8->8, no bias) -> Add(relu1) -> Relu
 * -> conv3 1x1 stride 2 (8->16, bias) -> Relu -> GlobalAveragePool -> Flatten -> fc Gemm (16->5, transB, alpha 0.5).
 */
export function tinyCnn(): Model {
  const b = new GraphBuilder('tiny');
  const x = b.input('x', ['N', 3, 8, 8]);
  const c1 = b.node('Conv', [x, b.init('w1', w([8, 3, 3, 3], 1)), b.init('b1', floatTensor([8], randn(8, 2, 0.1)))], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const r1 = b.node('Relu', [c1], {}, { name: 'relu1' });
  const c2 = b.node('Conv', [r1, b.init('w2', w([8, 8, 3, 3], 3))], { pads: [1, 1, 1, 1] }, { name: 'conv2' });
  const a = b.node('Add', [c2, r1], {}, { name: 'add' });
  const r2 = b.node('Relu', [a], {}, { name: 'relu2' });
  const c3 = b.node('Conv', [r2, b.init('w3', w([16, 8, 1, 1], 4)), b.init('b3', floatTensor([16], randn(16, 5, 0.1)))], { strides: [2, 2] }, { name: 'conv3' });
  const r3 = b.node('Relu', [c3], {}, { name: 'relu3' });
  const gp = b.node('GlobalAveragePool', [r3], {}, { name: 'gap' });
  const fl = b.node('Flatten', [gp], {}, { name: 'flat' });
  const y = b.node('Gemm', [fl, b.init('wf', w([5, 16], 6)), b.init('bf', floatTensor([5], randn(5, 7, 0.1)))], { transB: 1, alpha: F(0.5) }, { name: 'fc', output: 'y' });
  b.output(y, ['N', 5]);
  return b.model(17);
}

/** n samples [n, 3, 8, 8] of smooth-ish random images (seeded). */
export function images(n: number, seed: number): Dataset {
  const data = randn(n * 3 * 64, seed);
  // a little spatial correlation, like real images
  for (let i = data.length - 1; i > 0; i--) data[i] = 0.6 * data[i]! + 0.4 * data[i - 1]!;
  return new Dataset(arraySource(inMemoryRows({ dims: [n, 3, 8, 8], data }), undefined, 'mem', 'random images'));
}
