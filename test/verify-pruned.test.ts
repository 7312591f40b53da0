/** The onnxruntime gate before a structured result is written (prune/structured/verify.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor, int64Tensor } from '../src/ir/tensor.js';
import type { Model } from '../src/ir/graph.js';
import { verifyPruned } from '../src/prune/structured/verify.js';
import { ShearsError } from '../src/errors.js';

function model(variant: 'ok' | 'narrow' | 'badReshape' | 'nan'): Model {
  const b = new GraphBuilder();
  const x = b.input('x', [2, 4]);
  const cols = variant === 'narrow' ? 2 : 3;
  let y = b.node('MatMul', [x, b.init('w', floatTensor([4, cols], Array.from({ length: 4 * cols }, (_, i) => (i % 5) - 2)))]);
  if (variant === 'badReshape') y = b.node('Reshape', [y, b.init('shape', int64Tensor([2], [5, -1]))], {}, { name: 'broken_reshape' });
  if (variant === 'nan') y = b.node('Sqrt', [b.node('Sub', [y, b.init('big', floatTensor([], [100]))])]);
  b.node('Identity', [y], {}, { output: 'y' });
  b.output('y', [2, cols]);
  return b.model();
}

const shapes = { inputShapes: { x: [2, 4] } };

test('verifyPruned: a pruned model that loads, runs and keeps the interface passes, with its output shapes', async () => {
  const r = await verifyPruned(model('ok'), model('ok'), shapes);
  assert.deepEqual(r.outputs, { y: [2, 3] });
});

test('verifyPruned: a model onnxruntime cannot run is a ShearsError naming the node', async () => {
  await assert.rejects(verifyPruned(model('ok'), model('badReshape'), shapes), (e: Error) => e instanceof ShearsError && /does not run in onnxruntime/.test(e.message) && /broken_reshape/.test(e.message));
});

test('verifyPruned: a changed output shape or NaN outputs are refused', async () => {
  await assert.rejects(verifyPruned(model('ok'), model('narrow'), shapes), (e: Error) => e instanceof ShearsError && /output 'y' is 2x2, the original's 2x3/.test(e.message));
  await assert.rejects(verifyPruned(model('ok'), model('nan'), shapes), (e: Error) => e instanceof ShearsError && /NaN or infinite/.test(e.message));
});
