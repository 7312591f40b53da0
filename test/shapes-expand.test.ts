/**
 * Expand to a shape computed from other shapes, as torch.onnx exports transformers: a ViT's cls token expanded to
 * the batch, and a Llama's repeat_kv (Unsqueeze/Expand/Reshape) beside rotary caches and a causal mask sliced to
 * the sequence. Inferred shapes vs onnxruntime (symbolic batch and sequence flow through), and simplify.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor, int64Tensor, toNumbers, type Tensor } from '../src/ir/tensor.js';
import { decodeModel, encodeModel } from '../src/onnx/codec.js';
import { inferShapes } from '../src/analysis/shapes.js';
import { simplify } from '../src/analysis/simplify.js';
import type { InferContext } from '../src/ops/types.js';
import { broadcastShapes } from '../src/ops/broadcast.js';
import { dimEqual, dimMin } from '../src/ops/dims.js';
import { createSession } from '../src/runtime/session.js';
import { assertTensorEqual, crossCheck, feedsFor, randomTensor } from './shapes-helpers.js';

const i64 = (values: number[], dims = [values.length]): Tensor => int64Tensor(dims, values);

/** Unsqueeze(Gather(Shape(x), i), 0): one dim of x as a 1-element shape value. */
function dimOf(b: GraphBuilder, x: string, i: number): string {
  const g = b.node('Gather', [b.node('Shape', [x]), b.init(b.fresh('idx'), i64([i], []))], { axis: 0 });
  return b.node('Unsqueeze', [g, b.init(b.fresh('ax'), i64([0]))]);
}

/** x.expand(*parts) with -1 entries as torch.onnx writes it: Expand(x, Where(Equal(s, -1), 1, s)). */
function torchExpand(b: GraphBuilder, x: string, parts: string[], name: string): string {
  const s = b.node('Reshape', [b.node('Concat', parts, { axis: 0 }), b.init(b.fresh('flat'), i64([-1]))]);
  const ones = b.node('ConstantOfShape', [b.node('Shape', [s])], { value: i64([1]) });
  const minus = b.node('Mul', [ones, b.init(b.fresh('m1'), i64([-1], []))]);
  return b.node('Expand', [x, b.node('Where', [b.node('Equal', [s, minus]), ones, s])], {}, { name, output: name });
}

/** x[:T] along `axis` with T = Shape(ref)[refAxis] (Slice with a computed end). */
function sliceTo(b: GraphBuilder, x: string, ref: string, refAxis: number, axis: number): string {
  return b.node('Slice', [x, b.init(b.fresh('st'), i64([0])), dimOf(b, ref, refAxis), b.init(b.fresh('axes'), i64([axis]))]);
}

function clone(m: Model): Model {
  return decodeModel(encodeModel(m));
}

async function assertSameOutputs(a: Model, b: Model, feeds: Record<string, Tensor>): Promise<void> {
  const run = async (m: Model) => {
    const r = await createSession(m);
    const out = await r.run(feeds);
    await r.release();
    return out;
  };
  const [x, y] = await Promise.all([run(a), run(b)]);
  assert.deepEqual(Object.keys(y).sort(), Object.keys(x).sort());
  for (const k of Object.keys(x)) assertTensorEqual(y[k]!, x[k]!, `output '${k}'`, 1e-6);
}

/** ViT embedding: cls token [1,1,D] expanded to [N,1,D] (expand(N, -1, -1)) and concatenated before the patches. */
function clsModel(): Model {
  const b = new GraphBuilder('cls');
  const x = b.input('x', ['N', 4, 6]);
  const patches = b.node('Relu', [x]);
  const m1 = b.init('minus1', i64([-1]));
  const cls = torchExpand(b, b.init('cls_token', randomTensor(DataType.FLOAT, [1, 1, 6])), [dimOf(b, patches, 0), m1, m1], 'cls_expand');
  b.output(b.node('Concat', [cls, patches], { axis: 1 }, { output: 'tokens' }));
  // -N == -1 holds for N = 1 only: it must not fold (shape values with a minus may be negative).
  b.output(b.node('Equal', [b.node('Neg', [dimOf(b, x, 0)]), m1], {}, { output: 'batch_is_one' }), undefined, DataType.BOOL);
  return b.model(17);
}

/**
 * Llama attention core with 2 KV heads repeated 3 times (repeat_kv), head dim 4: k = (x * cos[:T]) reshaped to
 * [N,T,2,4] and transposed, k[:, :, None] expanded to [N,2,3,T,4] and reshaped to [N,6,T,4]; scores q @ k^T
 * masked by a causal mask sliced to [:T, :T] from a [16,16] buffer.
 */
function repeatKvModel(): Model {
  const b = new GraphBuilder('repeat_kv');
  const x = b.input('x', ['N', 'T', 8]);
  const q = b.input('q', ['N', 6, 'T', 4]);
  const cos = sliceTo(b, b.init('cos_cached', randomTensor(DataType.FLOAT, [16, 8])), x, 1, 0);
  const xr = b.node('Mul', [x, cos]);
  const kv = b.node('Reshape', [xr, b.node('Concat', [dimOf(b, xr, 0), dimOf(b, xr, 1), b.init('hd', i64([2, 4]))], { axis: 0 })]);
  const k = b.node('Transpose', [kv], { perm: [0, 2, 1, 3] });
  const k5 = b.node('Unsqueeze', [k, b.init('ax2', i64([2]))]);
  const [n, h, t, d] = [0, 1, 2, 3].map((i) => dimOf(b, k, i)) as [string, string, string, string];
  const rep = b.init('n_rep', i64([3]));
  const e = torchExpand(b, k5, [n, h, rep, t, d], 'repeat_kv_expand');
  const kk = b.node('Reshape', [e, b.node('Concat', [n, b.node('Mul', [h, rep]), t, d], { axis: 0 })], {}, { name: 'repeat_kv_reshape', output: 'k_rep' });
  const scores = b.node('MatMul', [q, b.node('Transpose', [kk], { perm: [0, 1, 3, 2] })]);
  const tril = Array.from({ length: 256 }, (_, i) => (i % 16 <= Math.floor(i / 16) ? 1 : 0));
  const mask = sliceTo(b, sliceTo(b, b.init('causal', floatTensor([16, 16], tril)), x, 1, 0), x, 1, 1);
  const masked = b.node('Where', [b.node('Cast', [mask], { to: DataType.BOOL }), scores, b.init('neg_inf', floatTensor([], [-1e9]))]);
  b.output(b.node('Softmax', [masked], { axis: -1 }, { output: 'attn' }));
  return b.model(17);
}

test('cls token expanded to a symbolic batch: shapes match onnxruntime and keep N', async () => {
  const model = clsModel();
  const r = await crossCheck(model, { sizes: { N: 3 } });
  assert.ok(r.checked >= model.graph.nodes.length);
  assert.deepEqual(r.info.types.get('cls_expand')?.shape, ['N', 1, 6]);
  assert.deepEqual(r.info.types.get('tokens')?.shape, ['N', 5, 6]);
  assert.equal(r.info.constants.has('batch_is_one'), false);
  // N = 1 is where a wrong fold of -N == -1 would show (crossCheck compares folded constants).
  await crossCheck(model, { sizes: { N: 1 } });
});

test('cls token expand: simplify folds the Equal, keeps the outputs for batch 1 and 3', async () => {
  const original = clsModel();
  const m = clone(original);
  simplify(m);
  const ops = m.graph.nodes.map((k) => k.opType);
  // Only -N == -1 stays; the expand's Equal(s, -1) folds to a constant.
  assert.equal(ops.filter((o) => o === 'Equal').length, 1);
  assert.ok(ops.includes('Expand'));
  assert.deepEqual(inferShapes(m).types.get('tokens')?.shape, ['N', 5, 6]);
  for (const N of [1, 3]) await assertSameOutputs(original, m, feedsFor(original, { N }));
});

test('repeat_kv Unsqueeze/Expand/Reshape with symbolic batch and sequence: shapes match onnxruntime', async () => {
  const model = repeatKvModel();
  const r = await crossCheck(model, { sizes: { N: 2, T: 5 } });
  assert.ok(r.checked >= model.graph.nodes.length);
  assert.deepEqual(r.info.types.get('repeat_kv_expand')?.shape, ['N', 2, 3, 'T', 4]);
  assert.deepEqual(r.info.types.get('k_rep')?.shape, ['N', 6, 'T', 4]);
  // x * cos[:T] and the masked scores keep T (x[:T] of 16 rows is min(T,16), which must broadcast as T).
  assert.deepEqual(r.info.types.get('attn')?.shape, ['N', 6, 'T', 'T']);
  for (const [name, t] of r.info.types) assert.ok(!t.shape?.some((dim) => String(dim).startsWith('unk__')), `'${name}' has ${JSON.stringify(t.shape)}`);
  await crossCheck(model, { sizes: { N: 1, T: 16 } });
});

test('repeat_kv: simplify makes the Expand and Reshape targets constants and keeps outputs and symbolic shapes', async () => {
  const original = repeatKvModel();
  const m = clone(original);
  simplify(m);
  const target = (name: string) => toNumbers(m.graph.initializers.get(m.graph.nodes.find((k) => k.name === name)!.inputs[1]!)!);
  assert.deepEqual(target('repeat_kv_expand'), [1, 2, 3, 1, 4]);
  assert.deepEqual(target('repeat_kv_reshape'), [0, 6, -1, 4]);
  assert.ok(!m.graph.nodes.some((k) => k.opType === 'Equal' || k.opType === 'ConstantOfShape'));
  const info = inferShapes(m);
  assert.deepEqual(info.types.get('k_rep')?.shape, ['N', 6, 'T', 4]);
  assert.deepEqual(info.types.get('attn')?.shape, ['N', 6, 'T', 'T']);
  for (const [N, T] of [[1, 1], [2, 5], [1, 16]]) await assertSameOutputs(original, m, feedsFor(original, { N: N!, T: T! }));
});

test('shape-value rules: x[:T] of n rows broadcasts as T only when n >= 1 is fixed; -1 equals no size', () => {
  const ctx = { node: { name: 'b', opType: 'Add', domain: '', inputs: [], outputs: [], attrs: new Map() } } as unknown as InferContext;
  assert.equal(dimMin(3, 5), 3);
  assert.equal(dimMin('T', 'T'), 'T');
  assert.deepEqual(broadcastShapes(ctx, [['N', 'T', 8], [dimMin('T', 16), 8]]), ['N', 'T', 8]);
  assert.deepEqual(broadcastShapes(ctx, [[dimMin('T', 16)], ['T']]), ['T']);
  // Another symbol, or a min with a symbol that may be 0 (then T = 1 broadcasts to 0), stays unknown.
  assert.deepEqual(broadcastShapes(ctx, [['S'], [dimMin('T', 16)]]), [null]);
  assert.deepEqual(broadcastShapes(ctx, [['T'], [dimMin('T', 'S')]]), [null]);
  assert.equal(dimEqual('N', -1), 0);
  assert.equal(dimEqual('N', 'N'), 1);
  assert.equal(dimEqual('N', 3), null);
  assert.equal(dimEqual('0-N', -1), null);
});
