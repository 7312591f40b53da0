/** N:M-sparse MatMuls as Gemm for TensorRT (quant/nm-gemm.ts, `shears nm-gemm`): what is rewritten, parity. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import { checkGraph } from '../src/ir/edit.js';
import type { Model } from '../src/ir/graph.js';
import { numel, type Tensor } from '../src/ir/tensor.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { runOnce } from '../src/runtime/session.js';
import { gemmParity, matmulsToGemm } from '../src/quant/nm-gemm.js';
import { rng } from './gradcheck.js';
import { isUserError, shears } from './cli-helpers.js';

const r = rng(5);
const f = (dims: number[]): Tensor => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: numel(dims) }, () => r() - 0.5) });

/** [K, N] weight with 2 of every 4 consecutive K entries (per column) zeroed. */
function sparse24(k: number, n: number): Tensor {
  const t = f([k, n]);
  const d = t.data as Float32Array;
  for (let c = 0; c < n; c++) for (let g = 0; g < k; g += 4) {
    d[(g + ((c + g) % 4)) * n + c] = 0;
    d[(g + ((c + g + 1) % 4)) * n + c] = 0;
  }
  return t;
}

/**
 * x [B, T, 16] -> MatMul W1 (2:4) -> Add b1 -> Relu -> MatMul W2 (dense) -> y [B, T, 8];
 * z [B, 16] -> MatMul W3 (2:4) -> y2 [B, 12] (graph output, no bias); x -> MatMul W4 (2:4) -> Add(b4 [1, 12]) -> y3.
 */
function net(): Model {
  const b = new GraphBuilder('mlp');
  b.input('x', ['B', 'T', 16]);
  b.input('z', ['B', 16]);
  let h = b.node('MatMul', ['x', b.init('W1', sparse24(16, 24))], {}, { name: 'up' });
  h = b.node('Add', [b.init('b1', f([24])), h], {}, { name: 'up_bias' });
  h = b.node('Relu', [h]);
  b.node('MatMul', [h, b.init('W2', f([24, 8]))], {}, { name: 'down', output: 'y' });
  b.node('MatMul', ['z', b.init('W3', sparse24(16, 12))], {}, { name: 'proj', output: 'y2' });
  const g = b.node('MatMul', ['x', b.init('W4', sparse24(16, 12))], {}, { name: 'side' });
  b.node('Add', [g, b.init('b4', f([1, 12]))], {}, { name: 'side_bias', output: 'y3' });
  b.output('y', ['B', 'T', 8]);
  b.output('y2', ['B', 12]);
  b.output('y3', ['B', 'T', 12]);
  return b.model(17);
}

const feeds = () => ({ x: f([2, 5, 16]), z: f([2, 16]) });

test('2:4 MatMuls become Gemm (Reshape around 3-D inputs, a constant [N] bias folded into C); outputs unchanged in onnxruntime', async () => {
  const m = net();
  const { model: q, report } = matmulsToGemm(m);
  assert.deepEqual(checkGraph(q.graph), []);
  assert.deepEqual(report.rewritten.map((x) => [x.node, x.inputRank, x.bias ?? null]), [['up', 3, 'b1'], ['proj', 2, null], ['side', 3, null]]);
  assert.deepEqual(report.skipped.map((s) => s.node), ['down']);
  assert.match(report.skipped[0]!.reason, /not 2:4 sparse along K/);
  const ops = (o: string) => q.graph.nodes.filter((n) => n.opType === o);
  assert.equal(ops('MatMul').length, 1);
  assert.equal(ops('Gemm').length, 3);
  assert.equal(ops('Reshape').length, 4);
  // 'up_bias' is gone (its Add became C), the [1, 12] bias is not a FullyConnected bias: its Add stays
  assert.deepEqual(ops('Add').map((n) => n.name), ['side_bias']);
  // TensorRT 8.0-8.2's FullyConnected criteria: A 2-D, B a 2-D constant, alpha = beta = 1, C absent or 1-D constant
  for (const gm of ops('Gemm')) {
    assert.equal(gm.attrs.size, 0, 'default alpha, beta, transA, transB');
    assert.equal(q.graph.initializers.get(gm.inputs[1]!)!.dims.length, 2);
    if (gm.inputs[2]) assert.equal(q.graph.initializers.get(gm.inputs[2])!.dims.length, 1);
    const prod = q.graph.nodes.find((n) => n.outputs.includes(gm.inputs[0]!));
    if (prod) {
      assert.equal(prod.opType, 'Reshape');
      assert.deepEqual(Array.from(q.graph.initializers.get(prod.inputs[1]!)!.data as BigInt64Array, Number), [-1, 16]);
    } else assert.equal(gm.inputs[0], 'z');
  }
  // the weights are the same tensors (masks keyed by their names hold)
  for (const w of ['W1', 'W3', 'W4']) assert.equal(q.graph.initializers.get(w), m.graph.initializers.get(w));
  const x = feeds();
  const a = await runOnce(m, x);
  const b = await runOnce(q, x);
  for (const o of ['y', 'y2', 'y3']) {
    assert.deepEqual(b[o]!.dims, a[o]!.dims);
    const p = a[o]!.data as Float32Array;
    const s = b[o]!.data as Float32Array;
    for (let i = 0; i < p.length; i++) assert.ok(Math.abs(p[i]! - s[i]!) <= 1e-5 * (1 + Math.abs(p[i]!)), `${o}[${i}] ${p[i]} vs ${s[i]}`);
  }
  const par = await gemmParity(m, q);
  assert.equal(par.outputs, 3);
  assert.ok(par.maxRelDiff < 1e-5, `${par.maxRelDiff}`);
  // --all: the dense one too; a different pattern: none is 1:4
  assert.equal(matmulsToGemm(m, { all: true }).report.rewritten.length, 4);
  assert.equal(matmulsToGemm(m, { pattern: { n: 1, m: 4 } }).report.rewritten.length, 0);
});

test('a rewrite that changed outputs would be caught: gemmParity sees a wrong weight', async () => {
  const m = net();
  const { model: q } = matmulsToGemm(m);
  const w = q.graph.initializers.get('W3')!;
  q.graph.initializers.set('W3', { ...w, data: (w.data as Float32Array).map((v) => v * 1.01) });
  assert.ok((await gemmParity(m, q)).maxRelDiff > 1e-4);
  const b = new GraphBuilder('conv');
  b.input('x', [1, 2, 4, 4]);
  b.node('Relu', ['x'], {}, { output: 'y' });
  b.output('y', [1, 2, 4, 4]);
  assert.throws(() => matmulsToGemm(b.model(17)), /no MatMul in the model/);
});

test('shears nm-gemm: writes the rewritten model and reports; exit 2 when nothing is N:M sparse', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-nmgemm-'));
  saveModel(net(), join(dir, 'm.onnx'));
  const ok = shears(['nm-gemm', join(dir, 'm.onnx'), '-o', join(dir, 'g.onnx')]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /3 MatMul\(s\) now Gemm \(2 with Reshape to 2-D and back, 1 with the bias Add folded into C\); 1 left as MatMul/);
  assert.match(ok.stdout, /kept MatMul: down \(not 2:4 sparse along K/);
  assert.match(ok.stdout, /outputs equal the original's/);
  assert.equal(loadModel(join(dir, 'g.onnx')).graph.nodes.filter((n) => n.opType === 'Gemm').length, 3);
  const js = shears(['nm-gemm', join(dir, 'm.onnx'), '-o', join(dir, 'h.onnx'), '--all', '--json']);
  assert.equal(js.code, 0, js.stderr);
  assert.equal(JSON.parse(js.stdout).rewritten.length, 4);
  const none = shears(['nm-gemm', join(dir, 'm.onnx'), '-o', join(dir, 'n.onnx'), '--pattern', '1:4']);
  assert.ok(isUserError(none), none.stderr);
  assert.match(none.stderr, /no MatMul rewritten: none of the 4 has a constant 1:4-sparse weight/);
  // the output is checked before any work: never over the input, .onnx only
  const over = shears(['nm-gemm', join(dir, 'm.onnx'), '-o', join(dir, 'm.onnx')]);
  assert.ok(isUserError(over), over.stderr);
  assert.match(over.stderr, /never writes over its input/);
  const ext = shears(['nm-gemm', join(dir, 'm.onnx'), '-o', join(dir, 'm.json')]);
  assert.ok(isUserError(ext), ext.stderr);
});
