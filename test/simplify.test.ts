/** simplify: outputs equal the original's in onnxruntime, shape chains fold, pass-through nodes go. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { ShearsError } from '../src/errors.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { checkGraph } from '../src/ir/edit.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor, int64Tensor, toNumbers, type Tensor } from '../src/ir/tensor.js';
import { decodeModel, encodeModel } from '../src/onnx/codec.js';
import { loadModel } from '../src/onnx/io.js';
import { inferShapes } from '../src/analysis/shapes.js';
import { simplify } from '../src/analysis/simplify.js';
import { createSession } from '../src/runtime/session.js';
import { assertTensorEqual, feedsFor, randomTensor } from './shapes-helpers.js';

const RESNET20 = fileURLToPath(new URL('../../test/fixtures/models/fmnist_resnet20.onnx', import.meta.url));

function clone(m: Model): Model {
  return decodeModel(encodeModel(m));
}

async function run(m: Model, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const r = await createSession(m);
  const out = await r.run(feeds);
  await r.release();
  return out;
}

/** Runs original and simplified on the same feeds and compares every graph output. */
async function assertSameOutputs(a: Model, b: Model, feeds: Record<string, Tensor>, rtol = 1e-6): Promise<void> {
  const [x, y] = await Promise.all([run(a, feeds), run(b, feeds)]);
  assert.deepEqual(Object.keys(y).sort(), Object.keys(x).sort());
  for (const k of Object.keys(x)) assertTensorEqual(y[k]!, x[k]!, `output '${k}'`, rtol);
}

/** PyTorch's flatten: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])), then a Gemm. */
function flattenModel(): Model {
  const b = new GraphBuilder('flatten');
  const x = b.input('x', ['N', 8, 1, 1]);
  const r = b.node('Relu', [x]);
  const sh = b.node('Shape', [r]);
  const n = b.node('Gather', [sh, b.node('Constant', [], { value: int64Tensor([], [0]) })], { axis: 0 });
  const u = b.node('Unsqueeze', [n, b.init('ax', int64Tensor([1], [0]))]);
  const cat = b.node('Concat', [u, b.node('Constant', [], { value: int64Tensor([1], [-1]) })], { axis: 0 });
  const flat = b.node('Reshape', [r, cat], {}, { name: 'flatten_reshape' });
  const fc = b.node('Gemm', [flat, b.init('W', randomTensor(1, [3, 8])), b.init('B', floatTensor([3], [0.1, 0.2, 0.3]))], { transB: 1 });
  b.output(b.node('Identity', [fc], {}, { output: 'logits' }));
  return b.model(17);
}

function opTypes(m: Model): string[] {
  return m.graph.nodes.map((n) => n.opType);
}

test('flatten shape chain with a symbolic batch folds to Reshape(x, [0,-1]) and works for batch 1 and 5', async () => {
  const original = flattenModel();
  const m = clone(original);
  const r = simplify(m);
  assert.deepEqual(checkGraph(m.graph), []);
  assert.deepEqual(opTypes(m), ['Relu', 'Reshape', 'Gemm', 'Identity']);
  const reshape = m.graph.nodes.find((n) => n.name === 'flatten_reshape')!;
  assert.deepEqual(toNumbers(m.graph.initializers.get(reshape.inputs[1]!)!), [0, -1]);
  assert.ok(r.removed >= 5 && r.folded >= 1);
  assert.deepEqual(m.graph.inputs[0]!.type?.shape, ['N', 8, 1, 1]);
  assert.deepEqual(m.graph.outputs.map((o) => o.name), ['logits']);
  for (const N of [1, 5]) await assertSameOutputs(original, m, feedsFor(original, { N }));
  assert.deepEqual(inferShapes(m).types.get('logits')?.shape, ['N', 3]);
});

test('with a fixed input shape the chain folds completely and the input shape is written', async () => {
  const original = flattenModel();
  const m = clone(original);
  simplify(m, { inputShapes: { x: [5, 8, 1, 1] } });
  assert.deepEqual(m.graph.inputs[0]!.type?.shape, [5, 8, 1, 1]);
  const reshape = m.graph.nodes.find((n) => n.name === 'flatten_reshape')!;
  assert.deepEqual(toNumbers(m.graph.initializers.get(reshape.inputs[1]!)!), [5, -1]);
  assert.ok(!opTypes(m).includes('Shape'));
  await assertSameOutputs(original, m, feedsFor(original, { N: 5 }));
  assert.throws(() => simplify(clone(original), { inputShapes: { x: [5, 9, 1, 1] } }), ShearsError);
});

test('a chain that copies a dim to another position keeps it correct (-1 only once, else left alone)', async () => {
  const b = new GraphBuilder('swap');
  const x = b.input('x', ['N', 'T', 6]);
  const sh = b.node('Shape', [x]);
  const n = b.node('Gather', [sh, b.init('i0', int64Tensor([1], [0]))]);
  const t = b.node('Gather', [sh, b.init('i1', int64Tensor([1], [1]))]);
  // [T, N, 6]: T and N move, so neither is a copy (0); two unknowns cannot both be -1: must stay symbolic.
  const y = b.node('Reshape', [x, b.node('Concat', [t, n, b.init('six', int64Tensor([1], [6]))], { axis: 0 })], {}, { name: 'r1' });
  // [N*T, 6] via Mul: one unknown -> -1.
  const nt = b.node('Mul', [n, t]);
  const z = b.node('Reshape', [x, b.node('Concat', [nt, b.init('six2', int64Tensor([1], [6]))], { axis: 0 })], {}, { name: 'r2' });
  b.output(y);
  b.output(z);
  const original = b.model(17);
  const m = clone(original);
  simplify(m);
  const r1 = m.graph.nodes.find((k) => k.name === 'r1')!;
  const r2 = m.graph.nodes.find((k) => k.name === 'r2')!;
  assert.equal(m.graph.initializers.has(r1.inputs[1]!), false, 'r1 keeps its shape subgraph');
  assert.deepEqual(toNumbers(m.graph.initializers.get(r2.inputs[1]!)!), [-1, 6]);
  for (const [N, T] of [[1, 4], [3, 2]]) await assertSameOutputs(original, m, feedsFor(original, { N: N!, T: T! }));
});

test('attention head split/merge with symbolic batch and sequence folds to [0,0,H,D] and [0,0,C]', async () => {
  const b = new GraphBuilder('heads');
  const x = b.input('x', ['B', 'T', 12]);
  const sh = b.node('Shape', [x]);
  const dim = (i: number) => b.node('Unsqueeze', [b.node('Gather', [sh, b.init(`g${i}`, int64Tensor([], [i]))]), b.init(`u${i}`, int64Tensor([1], [0]))]);
  const heads = b.node('Reshape', [x, b.node('Concat', [dim(0), dim(1), b.init('hd', int64Tensor([2], [3, 4]))], { axis: 0 })], {}, { name: 'split_heads' });
  const t = b.node('Transpose', [heads], { perm: [0, 2, 1, 3] });
  const back = b.node('Transpose', [b.node('Softmax', [t])], { perm: [0, 2, 1, 3] });
  const sh2 = b.node('Shape', [back]);
  const d2 = (i: number) => b.node('Slice', [sh2, b.init(`s${i}`, int64Tensor([1], [i])), b.init(`e${i}`, int64Tensor([1], [i + 1]))]);
  const merged = b.node('Reshape', [back, b.node('Concat', [d2(0), d2(1), b.init('c', int64Tensor([1], [12]))], { axis: 0 })], {}, { name: 'merge_heads' });
  b.output(b.node('Add', [merged, x], {}, { output: 'y' }));
  const original = b.model(17);
  const m = clone(original);
  simplify(m);
  const shapeOf = (name: string) => toNumbers(m.graph.initializers.get(m.graph.nodes.find((k) => k.name === name)!.inputs[1]!)!);
  assert.deepEqual(shapeOf('split_heads'), [0, 0, 3, 4]);
  assert.deepEqual(shapeOf('merge_heads'), [0, 0, 12]);
  assert.ok(!opTypes(m).includes('Shape'));
  for (const [B, T] of [[1, 1], [2, 5]]) await assertSameOutputs(original, m, feedsFor(original, { B: B!, T: T! }));
});

test('Expand by Shape(y) of a symbolic tensor becomes a constant with ones where x has the same dim', async () => {
  const b = new GraphBuilder('expand');
  const x = b.input('x', ['N', 1, 4]);
  const y = b.input('y', ['N', 3, 4]);
  const e = b.node('Expand', [b.node('Relu', [x]), b.node('Shape', [y])], {}, { name: 'e' });
  b.output(b.node('Add', [y, e], {}, { output: 'out' }));
  b.output(b.node('Expand', [b.init('c', floatTensor([3, 1], [1, 2, 3])), b.node('Shape', [y])], {}, { output: 'kept' }));
  const original = b.model(17);
  const m = clone(original);
  simplify(m);
  const en = m.graph.nodes.find((k) => k.name === 'e')!;
  assert.deepEqual(toNumbers(m.graph.initializers.get(en.inputs[1]!)!), [1, 3, 4]);
  // Expanding [3,1] to [N,3,4] needs N: that Shape stays.
  assert.equal(opTypes(m).filter((t) => t === 'Shape').length, 1);
  for (const N of [1, 3]) await assertSameOutputs(original, m, feedsFor(original, { N }));
});

test('Identity and Dropout are removed; graph outputs keep their names; Constant nodes become initializers', async () => {
  const b = new GraphBuilder('pass');
  const x = b.input('x', ['N', 4]);
  const i1 = b.node('Identity', [x]);
  const [d] = b.nodeN('Dropout', [i1], {}, 2);
  const c = b.node('Constant', [], { value: floatTensor([4], [1, 2, 3, 4]) });
  const s = b.node('Mul', [d!, b.node('Identity', [c])]);
  const [d2] = b.nodeN('Dropout', [s], { seed: 1 }, ['out_drop']);
  b.output(d2!);
  b.output(b.node('Identity', [s], {}, { output: 'out_id' }));
  b.node('Relu', [x]); // dead
  b.init('unused', floatTensor([2]));
  const original = b.model(17);
  const m = clone(original);
  const r = simplify(m);
  assert.deepEqual(checkGraph(m.graph), []);
  assert.deepEqual(opTypes(m).sort(), ['Identity', 'Identity', 'Mul']);
  assert.deepEqual(m.graph.outputs.map((o) => o.name), ['out_drop', 'out_id']);
  assert.equal(m.graph.initializers.has('unused'), false);
  assert.equal(m.graph.nodes.find((n) => n.opType === 'Mul')!.inputs[0], 'x');
  assert.equal(r.removed, original.graph.nodes.length - 3);
  await assertSameOutputs(original, m, feedsFor(original, { N: 3 }), 0);
});

test('a Dropout whose mask is used stays; training_mode Dropout stays', () => {
  const b = new GraphBuilder('mask');
  const x = b.input('x', [2, 4]);
  const [y, mask] = b.nodeN('Dropout', [x], {}, 2);
  b.output(b.node('Where', [mask!, y!, x]));
  const [z] = b.nodeN('Dropout', [x, b.init('ratio', floatTensor([], [0.5])), b.init('train', { dtype: 9, dims: [], data: new Uint8Array([1]) })], {}, 1);
  b.output(b.node('Relu', [z!]));
  const m = b.model(17);
  simplify(m);
  assert.equal(opTypes(m).filter((t) => t === 'Dropout').length, 2);
});

test('fmnist_resnet20 fixture: simplified outputs equal the original (batch 2 symbolic, batch 1 fixed)', async () => {
  const original = loadModel(RESNET20);
  const input = original.graph.inputs[0]!.name;
  const m = clone(original);
  simplify(m);
  assert.deepEqual(checkGraph(m.graph), []);
  await assertSameOutputs(original, m, feedsFor(original, { N: 2 }), 1e-5);
  const s = clone(original);
  simplify(s, { inputShapes: { [input]: [1, 1, 28, 28] } });
  await assertSameOutputs(original, s, feedsFor(original, { N: 1 }), 1e-5);
  assert.deepEqual(s.graph.outputs.map((o) => o.name), original.graph.outputs.map((o) => o.name));
});
