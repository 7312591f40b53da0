/** int4 MatMulNBits after pruning: the pruned zeros stay exactly zero (stored, and as onnxruntime computes them). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { cloneModel } from '../src/ir/clone.js';
import { runOnce } from '../src/runtime/session.js';
import { quantizeInt4, unpackInt4 } from '../src/quant/index.js';
import { pruneUnstructured } from '../src/sparsity/unstructured.js';
import { randTensor } from './quant-fixture.js';

const K = 96;
const N = 20;

/** x [1, T, K] -> MatMul W1 [K, N] -> y1; x -> Gemm-free second layer: MatMul W2 [K, N] with weights shifted positive. */
function model(): Model {
  const b = new GraphBuilder('lin');
  b.input('x', [1, 'T', K]);
  b.init('W1', randTensor([K, N], 61, 0.4));
  // all-positive weights: each block's range starts at its smallest survivor, so 0 must still be on the grid
  b.init('W2', randTensor([K, N], 62, 0.2, 1));
  b.node('MatMul', ['x', 'W1'], {}, { name: 'mm1', output: 'y1' });
  b.node('MatMul', ['x', 'W2'], {}, { name: 'mm2', output: 'y2' });
  b.output('y1', [1, 'T', N]);
  b.output('y2', [1, 'T', N]);
  return b.model(17);
}

/** The dequantized weight [K, N] stored in the MatMulNBits node that replaced `layer`. */
function dequantized(q: Model, layer: string, bs: number): Float32Array {
  const node = q.graph.nodes.find((n) => n.opType === 'MatMulNBits' && n.inputs[1]!.startsWith(`${layer}_W_int4`))!;
  const [, b, s, z] = node.inputs;
  const t = (name: string) => q.graph.initializers.get(name!)!.data;
  const blocks = Math.ceil(K / bs);
  return unpackInt4({ b: t(b!) as Uint8Array, scales: t(s!) as Float32Array, zeroPoints: t(z!) as Uint8Array, blocks }, K, N, bs);
}

for (const [what, opts] of [
  ['unstructured 60%', { sparsity: 0.6, scope: 'layer' as const }],
  ['2:4', { pattern: { n: 2, m: 4 } }],
] as const) {
  test(`int4 after ${what} pruning: dequantized weights are exactly 0 where the mask is, in the file and in onnxruntime`, async () => {
    const m = cloneModel(model());
    pruneUnstructured(m, opts);
    for (const bs of [16, 32]) {
      const { model: q } = quantizeInt4(m, { blockSize: bs });
      // identity rows as input: onnxruntime's MatMulNBits output is its dequantized weight
      const eye = new Float32Array(K * K);
      for (let i = 0; i < K; i++) eye[i * K + i] = 1;
      const out = await runOnce(q, { x: { dtype: DataType.FLOAT, dims: [1, K, K], data: eye } });
      for (const [layer, y] of [['mm1', 'y1'], ['mm2', 'y2']] as const) {
        const w = m.graph.initializers.get(layer === 'mm1' ? 'W1' : 'W2')!.data as Float32Array;
        const zeros = w.reduce((a, v) => a + (v === 0 ? 1 : 0), 0);
        assert.ok(zeros >= 0.5 * K * N, `${layer}: ${zeros} zeros after pruning`);
        const dq = dequantized(q, layer, bs);
        const run = out[y]!.data as Float32Array;
        let nonzeroKept = 0;
        for (let i = 0; i < K * N; i++) {
          if (w[i] === 0) {
            assert.equal(dq[i], 0, `${layer} bs ${bs}: stored weight ${i} dequantizes to ${dq[i]}`);
            assert.equal(run[i], 0, `${layer} bs ${bs}: onnxruntime weight ${i} is ${run[i]}`);
          } else {
            if (dq[i] !== 0) nonzeroKept++;
            // survivors: within half a quantization step of the block (and onnxruntime computes the same value)
            assert.ok(Math.abs(run[i]! - dq[i]!) <= 1e-6 * Math.abs(dq[i]!) + 1e-7, `${layer}: ${run[i]} vs ${dq[i]}`);
          }
        }
        // the survivors are not flushed to zero wholesale (the all-positive layer keeps them all nonzero)
        if (layer === 'mm2') assert.equal(nonzeroKept, K * N - zeros);
      }
    }
  });
}
