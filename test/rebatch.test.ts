/** Rebatching static-batch exports (analysis/rebatch.ts, `shears rebatch`). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rebatch } from '../src/analysis/rebatch.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { numel, type Tensor } from '../src/ir/tensor.js';
import { saveModel } from '../src/onnx/io.js';
import { createSession } from '../src/runtime/session.js';
import { rng } from './gradcheck.js';
import { isUserError, shears } from './cli-helpers.js';

const r = rng(9);
const f = (dims: number[]): Tensor => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: numel(dims) }, () => r() - 0.5) });
const i64 = (v: number[]): Tensor => ({ dtype: DataType.INT64, dims: [v.length], data: BigInt64Array.from(v.map(BigInt)) });

/** input [1,2,6,6] -> Conv -> Reshape [1,4,36] -> Transpose -> Reshape [1,-1] -> Gemm, the batch fixed at 1 everywhere. */
function staticNet(extra?: (b: GraphBuilder, h: string) => string): Model {
  const b = new GraphBuilder('static');
  b.input('input', [1, 2, 6, 6]);
  let h = b.node('Conv', ['input', b.init('w', f([4, 2, 3, 3]))], { pads: [1, 1, 1, 1] });
  h = b.node('Reshape', [h, b.init('s1', i64([1, 4, 36]))]);
  h = b.node('Transpose', [h], { perm: [0, 2, 1] });
  h = b.node('Reshape', [h, b.init('s2', i64([1, -1]))]);
  if (extra) h = extra(b, h);
  b.node('Gemm', [h, b.init('fc', f([3, 144])), b.init('fb', f([3]))], { transB: 1 }, { output: 'y' });
  b.output('y');
  return b.model(17);
}

test('rebatch: Reshape targets copy the batch; a batch of samples gives each sample\'s outputs', async () => {
  const m = staticNet();
  const res = await rebatch(m);
  assert.equal(res.from, 1);
  assert.equal(res.reshapes.length, 2);
  assert.deepEqual(res.model.graph.inputs[0]!.type!.shape, ['N', 2, 6, 6]);
  assert.deepEqual(m.graph.inputs[0]!.type!.shape, [1, 2, 6, 6], 'the input model is not modified');
  // Independent check at batch 5.
  const xs = Array.from({ length: 5 }, () => f([1, 2, 6, 6]));
  const one = await createSession(m, { threads: 1 });
  const many = await createSession(res.model, { threads: 1 });
  const batch = new Float32Array(5 * 72);
  xs.forEach((x, i) => batch.set(x.data as Float32Array, i * 72));
  const y = (await many.run({ input: { dtype: DataType.FLOAT, dims: [5, 2, 6, 6], data: batch } }))['y']!;
  assert.deepEqual(y.dims, [5, 3]);
  for (const [i, x] of xs.entries()) {
    const want = (await one.run({ input: x }))['y']!.data as Float32Array;
    for (let k = 0; k < 3; k++) assert.ok(Math.abs((y.data as Float32Array)[i * 3 + k]! - want[k]!) < 1e-5);
  }
  await one.release();
  await many.release();
});

test('rebatch refuses what it cannot prove: a batch baked into another constant, a dynamic batch already', async () => {
  // Concat with a [1, 8] constant: a batch of 3 cannot run.
  const baked = staticNet((b, h) => b.node('Slice', [b.node('Concat', [h, b.init('pad', f([1, 8]))], { axis: 1 }), b.init('st', i64([0])), b.init('en', i64([144])), b.init('ax', i64([1]))]));
  await assert.rejects(rebatch(baked), /rebatch check failed/);
  const dyn = staticNet();
  dyn.graph.inputs[0]!.type!.shape = ['N', 2, 6, 6];
  await assert.rejects(rebatch(dyn), /static first dimension/);
});

test('shears rebatch: writes the model and reports; a dynamic model is a user error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-rebatch-'));
  const path = join(dir, 'static.onnx');
  saveModel(staticNet(), path);
  const out = join(dir, 'dyn.onnx');
  const res = shears(['rebatch', path, '-o', out, '--json']);
  assert.equal(res.code, 0, res.stderr);
  const rep = JSON.parse(res.stdout);
  assert.equal(rep.from, 1);
  assert.deepEqual(rep.inputs[0].shape, ['N', 2, 6, 6]);
  assert.ok(isUserError(shears(['rebatch', out, '-o', join(dir, 'again.onnx')])));
});
