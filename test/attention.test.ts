/**
 * Fused attention ops (com.microsoft Attention, MultiHeadAttention, GroupQueryAttention; ONNX Attention opset 23):
 * shape inference against onnxruntime, MACs, and head pruning: zero some heads, remove them, and onnxruntime's
 * outputs stay the same; head-count attributes follow; grouped-query attention loses whole KV groups; layouts
 * shears does not prune are reported frozen with their reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { keptIndices, type DepGraph } from '../src/depgraph/depgraph.js';
import { zeroUnits } from '../src/depgraph/zero.js';
import { removeUnits } from '../src/prune/structured/surgery.js';
import { inferShapes } from '../src/analysis/shapes.js';
import { analyzeCost } from '../src/analysis/cost.js';
import { CostModel } from '../src/plan/cost.js';
import { runOnce } from '../src/runtime/session.js';
import { attrInt, attrInts, type Model, type Node } from '../src/ir/graph.js';
import { cloneModel } from '../src/ir/clone.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import { floatTensor, numel, type Tensor } from '../src/ir/tensor.js';
import { buildBackward } from '../src/autodiff/backward.js';
import { ShearsError } from '../src/errors.js';
import { pruneUnstructured } from '../src/sparsity/unstructured.js';
import { gqaModel, maxDiff, mhaModel, msAttentionModel, onnxAttentionModel, type AttentionFixture } from './attention-fixtures.js';
import { staticValueTypes } from './gradcheck.js';

const attnNode = (m: Model): Node => m.graph.nodes.find((n) => n.name === 'attn')!;

/** Every output of the attention node as a model output: onnxruntime's shapes against shears' inference. */
async function checkShapes(f: AttentionFixture): Promise<void> {
  const m = cloneModel(f.model);
  const node = attnNode(m);
  for (const o of node.outputs) if (o) m.graph.outputs.push({ name: o, type: { elemType: DataType.FLOAT } });
  const inferred = inferShapes(m);
  const got = await runOnce(m, f.feeds);
  for (const o of node.outputs) {
    if (!o) continue;
    assert.deepEqual(inferred.types.get(o)?.shape, got[o]!.dims, `${node.opType} output ${o}`);
  }
}

interface Pruned {
  dg: DepGraph;
  /** The head group's unit count before removal. */
  units: number;
  removed: number;
  pruned: Model;
  before: Node;
  after: Node;
  maxErr: number;
}

/**
 * Zeroes the units `pick` chooses in the model's one prunable group (the heads), removes them, and checks that
 * onnxruntime's output is unchanged (1e-5 relative to the output's magnitude) and that the CostModel's MAC
 * prediction for the removal is the pruned model's MACs.
 */
async function zeroThenRemove(f: AttentionFixture, pick: (i: number) => boolean = (i) => i % 2 === 1): Promise<Pruned> {
  const an = analyzeModel(f.model);
  const groups = an.dg.groups.filter((g) => g.units.length > 1);
  assert.equal(groups.length, 1, `one prunable group (the heads); frozen: ${an.dg.frozen.map((x) => `${x.value}@${x.axis}: ${x.reason}`).join('; ')}`);
  const units = groups[0]!.units;
  const chosen = new Set(units.filter((_, i) => pick(i)).map((u) => u.id));
  const zeroed = zeroUnits(an.dg, an.model, chosen);
  const an2 = analyzeModel(zeroed);
  const { model: pruned } = removeUnits(an2.dg, chosen);
  const ref = (await runOnce(zeroed, f.feeds))['y']!;
  const got = (await runOnce(pruned, f.feeds))['y']!;
  assert.deepEqual(got.dims, ref.dims);
  const { err, abs } = maxDiff(ref.data as Float32Array, got.data as Float32Array);
  assert.ok(err <= 1e-5 * Math.max(1, abs), `max error ${err} (output magnitude ${abs})`);
  // The untouched model differs from the zeroed one: the removed heads mattered.
  const orig = (await runOnce(f.model, f.feeds))['y']!;
  assert.ok(maxDiff(orig.data as Float32Array, ref.data as Float32Array).err > 1e-3, 'zeroing the heads changes the output');
  // MACs: what the planner's cost model predicts for the removal is what the pruned model costs.
  const cm = new CostModel(an2.dg, an2.shapes);
  const sizes = cm.initialSizes();
  for (const [sid, k] of keptIndices(an2.dg, chosen)) sizes[sid] = k.length;
  const prunedMacs = analyzeCost(pruned, inferShapes(pruned)).macs;
  assert.equal(cm.macs(sizes), prunedMacs);
  assert.ok(prunedMacs < cm.baseMacs);
  return { dg: an.dg, units: units.length, removed: chosen.size, pruned, before: attnNode(f.model), after: attnNode(pruned), maxErr: err };
}

const layerMacs = (m: Model): number => analyzeCost(m, inferShapes(m)).layers.find((l) => l.name === 'attn')!.macs;

// ------------------------------------------------------------------------------------------ shapes, MACs

test('shape inference matches onnxruntime for every output of the fused attention ops', async () => {
  const fixtures = [
    msAttentionModel(), msAttentionModel({ qkv: [16, 16, 24] }), msAttentionModel({ past: true, unidirectional: true }), msAttentionModel({ attentionBias: true }),
    mhaModel(), mhaModel({ dv: 6, bias: true }), mhaModel({ past: true, attentionBias: true, bias: true }), mhaModel({ bnshKv: true }), mhaModel({ perHeadKv: true }),
    gqaModel(), gqaModel({ packed: true }), gqaModel({ past: true }), gqaModel({ rotary: true, past: true, extras: true }),
    onnxAttentionModel({ rank: 3 }), onnxAttentionModel({ rank: 3, past: true, mask: true }), onnxAttentionModel({ rank: 4, past: true, mask: true }),
  ];
  for (const f of fixtures) await checkShapes(f);
});

test('GroupQueryAttention with a total_sequence_length computed at run time: present length unknown, heads still prune', async () => {
  const f = gqaModel({ past: true, dynamicTotal: true });
  const node = attnNode(f.model);
  const shapes = inferShapes(f.model);
  assert.deepEqual(shapes.types.get(node.outputs[0]!)?.shape, [1, 4, 32]);
  const present = shapes.types.get(node.outputs[1]!)?.shape;
  assert.deepEqual([present?.[0], present?.[1], present?.[3]], [1, 2, 8]);
  assert.equal(typeof present?.[2], 'string', `present length ${String(present?.[2])} is a symbol (unknown)`);
  assert.deepEqual((await runOnce(f.model, f.feeds))['y']!.dims, [1, 4, 6]);
  // MACs take past + new positions (3 + 4) when the total is unknown.
  assert.equal(layerMacs(f.model), 1 * 4 * 7 * (32 + 32));
  const r = await zeroThenRemove(f);
  assert.equal(attrInt(r.after, 'kv_num_heads'), 1);
});

test('MACs: projections, Q K^T and the weighted sum of V', () => {
  // B=2, S=4, Din=12: projection 2*4*12*48, scores B*S*T*(Hq+Hv) with T = S (no past) or P+S.
  assert.equal(layerMacs(msAttentionModel().model), 2 * 4 * 12 * 48 + 2 * 4 * 4 * (16 + 16));
  assert.equal(layerMacs(msAttentionModel({ qkv: [16, 16, 24] }).model), 2 * 4 * 12 * 56 + 2 * 4 * 4 * (16 + 24));
  assert.equal(layerMacs(msAttentionModel({ past: true }).model), 2 * 4 * 12 * 48 + 2 * 4 * 7 * (16 + 16));
  assert.equal(layerMacs(mhaModel({ dv: 6 }).model), 2 * 4 * 4 * (16 + 24));
  assert.equal(layerMacs(mhaModel({ past: true }).model), 2 * 4 * 7 * (16 + 16));
  // GroupQueryAttention: every query head scores against its group's keys: B*S*T*H*D twice.
  assert.equal(layerMacs(gqaModel({ past: true }).model), 1 * 4 * 7 * (32 + 32));
  assert.equal(layerMacs(onnxAttentionModel({ rank: 3, past: true }).model), 2 * 4 * 7 * (16 + 24));
  assert.equal(layerMacs(onnxAttentionModel({ rank: 4 }).model), 2 * 4 * 4 * (16 + 24));
});

test('shape inference rejects inputs that do not fit the heads', () => {
  const f = msAttentionModel();
  attnNode(f.model).attrs.set('num_heads', { kind: 'int', value: 5 });
  assert.throws(() => inferShapes(f.model), /not multiples of num_heads 5/);
  const g = gqaModel();
  attnNode(g.model).attrs.set('kv_num_heads', { kind: 'int', value: 3 });
  assert.throws(() => inferShapes(g.model), /num_heads 4 is not a multiple of kv_num_heads 3/);
});

// ------------------------------------------------------------------------------------------ head pruning

test('com.microsoft.Attention: zeroed heads removed exactly; num_heads and qkv_hidden_sizes follow', async () => {
  // onnxruntime takes either a past cache or an attention_bias.
  const r = await zeroThenRemove(msAttentionModel({ past: true, unidirectional: true }));
  assert.equal(r.units, 4);
  assert.equal(attrInt(r.after, 'num_heads'), 2);
  // Weights lose 2 heads in each of Q, K, V; the past cache loses them on its head axis.
  const init = (n: Node, i: number) => r.pruned.graph.initializers.get(n.inputs[i]!)!.dims;
  assert.deepEqual(init(r.after, 1), [12, 24]);
  assert.deepEqual(init(r.after, 2), [24]);
  assert.deepEqual(init(r.after, 4), [2, 2, 2, 3, 4]);
  const ab = await zeroThenRemove(msAttentionModel({ attentionBias: true }), (i) => i !== 1);
  assert.equal(attrInt(ab.after, 'num_heads'), 1);
  assert.deepEqual(ab.pruned.graph.initializers.get(ab.after.inputs[5]!)!.dims, [1, 1, 4, 4]);

  const v = await zeroThenRemove(msAttentionModel({ qkv: [16, 16, 24] }), (i) => i === 0);
  assert.equal(attrInt(v.after, 'num_heads'), 3);
  assert.deepEqual(attrInts(v.after, 'qkv_hidden_sizes'), [12, 12, 18]);
});

test('MultiHeadAttention: heads of Q/K/V projections, bias, attention_bias, past and present go together', async () => {
  const r = await zeroThenRemove(mhaModel({ bias: true, past: true, attentionBias: true }), (i) => i === 2);
  assert.equal(r.units, 4);
  assert.equal(attrInt(r.after, 'num_heads'), 3);
  const init = (i: number) => r.pruned.graph.initializers.get(r.after.inputs[i]!)!.dims;
  assert.deepEqual(init(3), [3 * 12]);
  assert.deepEqual(init(5), [1, 3, 4, 7]);
  assert.deepEqual(init(6), [2, 3, 3, 4]);
  assert.deepEqual(init(7), [2, 3, 3, 4]);
  const shapes = inferShapes(r.pruned);
  assert.deepEqual(shapes.types.get(r.after.outputs[1]!)?.shape, [2, 3, 7, 4]);
  // Value heads of another size than the query heads (no past: onnxruntime wants equal sizes with a cache).
  // Key and value as [B,H,L,D] (per-head projection weights [H,Din,D] lose their head rows).
  const kv4 = await zeroThenRemove(mhaModel({ perHeadKv: true, bias: true }), (i) => i === 1);
  assert.equal(attrInt(kv4.after, 'num_heads'), 3);
  assert.deepEqual(kv4.pruned.graph.initializers.get(kv4.pruned.graph.nodes.find((n) => n.outputs[0] === kv4.after.inputs[1])!.inputs[1]!)!.dims, [3, 12, 4]);
  const v = await zeroThenRemove(mhaModel({ dv: 6, bias: true }), (i) => i === 0);
  assert.equal(attrInt(v.after, 'num_heads'), 3);
  assert.deepEqual(v.pruned.graph.initializers.get(v.after.inputs[3]!)!.dims, [2 * 12 + 18]);
});

test('GroupQueryAttention: a unit is a KV head with its query heads; kv_num_heads and num_heads follow', async () => {
  for (const o of [{}, { past: true, extras: true }, { rotary: true, past: true }, { packed: true }]) {
    const r = await zeroThenRemove(gqaModel(o));
    assert.equal(r.units, 2, `2 KV groups (${JSON.stringify(o)})`);
    assert.equal(attrInt(r.after, 'kv_num_heads'), 1);
    assert.equal(attrInt(r.after, 'num_heads'), 2, 'both query heads of the removed group go: 4/2 heads per group stays 2/1');
    // The removed group is KV head 1 with query heads 2 and 3: the pruned model runs the remaining heads.
    const d = o.rotary ? 16 : 8;
    const proj = r.pruned.graph.nodes.filter((n) => n.opType === 'MatMul').map((n) => r.pruned.graph.initializers.get(n.inputs[1]!)!.dims[1]);
    if (o.packed) assert.deepEqual(proj, [(2 + 2) * d, 6]);
    else assert.deepEqual(proj, [2 * d, d, d, 6]);
    if ('extras' in o) assert.deepEqual(r.pruned.graph.initializers.get(r.after.inputs[11]!)!.dims, [2]);
  }
});

test('GroupQueryAttention: the group structure is in the dependency graph (query heads 2g, 2g+1 with KV head g)', () => {
  const an = analyzeModel(gqaModel().model);
  const attn = attnNode(an.model);
  const q = an.dg.spaceOf.get(`${attn.inputs[0]}@2`)!, k = an.dg.spaceOf.get(`${attn.inputs[1]}@2`)!;
  const unitOf = (s: typeof q, j: number) => an.dg.elementUnit[s.offset + j]!;
  for (let j = 0; j < 32; j++) assert.equal(unitOf(q, j), unitOf(q, Math.floor(j / 16) * 16), `query element ${j} is in its group`);
  assert.notEqual(unitOf(q, 0), unitOf(q, 16));
  for (let j = 0; j < 16; j++) assert.equal(unitOf(k, j), unitOf(q, Math.floor(j / 8) * 16), `key element ${j} is in the group of query heads ${2 * Math.floor(j / 8)}, ${2 * Math.floor(j / 8) + 1}`);
});

test('ONNX Attention (opset 23): 3-D and 4-D inputs, grouped KV heads, masks and caches with a head axis', async () => {
  const r3 = await zeroThenRemove(onnxAttentionModel({ rank: 3, past: true, mask: true }));
  assert.equal(r3.units, 2);
  assert.equal(attrInt(r3.after, 'q_num_heads'), 2);
  assert.equal(attrInt(r3.after, 'kv_num_heads'), 1);
  assert.deepEqual(r3.pruned.graph.initializers.get(r3.after.inputs[3]!)!.dims, [2, 4, 7]);
  const r4 = await zeroThenRemove(onnxAttentionModel({ rank: 4, past: true, mask: true }), (i) => i === 0);
  assert.equal(r4.units, 2);
  assert.deepEqual(r4.pruned.graph.initializers.get(r4.after.inputs[3]!)!.dims, [1, 2, 4, 7]);
  assert.deepEqual(r4.pruned.graph.initializers.get(r4.after.inputs[4]!)!.dims, [2, 1, 3, 4]);
});

// ------------------------------------------------------------------------------------------------ frozen

test('layouts shears does not prune freeze the heads, with the reason', () => {
  // MultiHeadAttention with packed KV [B,L,H,2,D]: onnxruntime has no CPU kernel, shears does not prune it.
  const b = new GraphBuilder();
  const x = b.input('x', [1, 4, 12]);
  const q = b.node('MatMul', [x, b.init('wq', floatTensor([12, 16], Array.from({ length: 192 }, (_, i) => Math.sin(i))))]);
  const kv = b.init('kv', floatTensor([1, 4, 4, 2, 4], Array.from({ length: 128 }, (_, i) => Math.cos(i))));
  const y = b.nodeN('MultiHeadAttention', [q, kv], { num_heads: 4 }, 1, { domain: 'com.microsoft', name: 'attn' })[0]!;
  b.output(b.node('MatMul', [y, b.init('wo', floatTensor([16, 3], Array.from({ length: 48 }, (_, i) => Math.sin(i * 3))))], {}, { output: 'y' }), [1, 4, 3]);
  const an = analyzeModel(b.model(17, [{ domain: 'com.microsoft', version: 1 }]));
  assert.deepEqual(an.shapes.types.get(y)?.shape, [1, 4, 16]);
  const frozen = an.dg.frozen.find((f) => f.value === q && f.axis === 2);
  assert.match(frozen?.reason ?? '', /MultiHeadAttention: packed KV key \[B,L,H,2,D\]/);
  assert.equal(an.dg.units.filter((u) => u.key.startsWith('wq@1')).length, 0, 'no query projection column is prunable');

  // GroupQueryAttention with a quantized KV cache (k_scale/v_scale).
  const g = gqaModel({ past: true });
  const node = attnNode(g.model);
  while (node.inputs.length < 14) node.inputs.push('');
  g.model.graph.initializers.set('ks', floatTensor([1], [0.1]));
  node.inputs[12] = node.inputs[13] = 'ks';
  const an2 = analyzeModel(g.model);
  assert.ok(an2.dg.frozen.some((f) => /GroupQueryAttention: quantized KV cache/.test(f.reason)), an2.dg.frozen.map((f) => f.reason).join('; '));
  assert.equal(an2.dg.groups.filter((gr) => gr.units.length > 1).length, 0);
});

test('a default-domain Attention below opset 23 is not ONNX Attention: no shapes, its channels frozen', () => {
  const f = onnxAttentionModel({ rank: 3 });
  f.model.opsetImports[0]!.version = 21;
  const an = analyzeModel(f.model);
  assert.equal(an.shapes.types.get(attnNode(an.model).outputs[0]!)?.shape, undefined);
  assert.ok(an.dg.frozen.some((x) => /Attention node at opset 21 \(ONNX Attention needs opset 23\)/.test(x.reason)), an.dg.frozen.map((x) => x.reason).join('; '));
});

test('a KV cache that is a model input freezes the heads (the model interface would change)', () => {
  const f = gqaModel({ past: true });
  const node = attnNode(f.model);
  const past = node.inputs[3]!;
  const t: Tensor = f.model.graph.initializers.get(past)!;
  f.model.graph.initializers.delete(past);
  f.model.graph.inputs.push({ name: past, type: { elemType: DataType.FLOAT, shape: [...t.dims] } });
  const an = analyzeModel(f.model);
  assert.ok(an.dg.frozen.some((x) => x.value === past && x.reason === 'model input'));
  assert.equal(an.dg.groups.filter((g) => g.units.length > 1).length, 0);
  assert.equal(numel(t.dims), 1 * 2 * 3 * 8);
});

test('training through a fused attention op is refused with a message naming the op', () => {
  for (const f of [msAttentionModel(), gqaModel(), onnxAttentionModel({ rank: 3 })]) {
    const an = analyzeModel(f.model);
    const types = staticValueTypes(an.shapes.types);
    an.model.graph.nodes.push({ name: 'loss', opType: 'ReduceSum', domain: '', inputs: ['y'], outputs: ['loss'], attrs: new Map([['keepdims', { kind: 'int', value: 0 }]]) });
    const wrt = [...an.model.graph.initializers.keys()].filter((k) => an.model.graph.initializers.get(k)!.dims.length === 2);
    const op = attnNode(an.model).opType;
    assert.throws(
      () => buildBackward(an.model, { loss: 'loss', wrt, types, elemType: DataType.FLOAT }),
      (e: unknown) => e instanceof ShearsError && new RegExp(`${op}: shears has no gradient rule for this op; fine-tuning and training through fused attention ops are not supported`).test(e.message),
    );
  }
});

test('unstructured and N:M pruning take com.microsoft.Attention\'s merged Q/K/V weights as a layer weight', async () => {
  const f = msAttentionModel();
  const w = attnNode(f.model).inputs[1]!;
  const m = cloneModel(f.model);
  const r = pruneUnstructured(m, { sparsity: 0.5, scope: 'layer' });
  const layer = r.layers.find((l) => l.name === w);
  assert.equal(layer?.op, 'Attention');
  assert.deepEqual(layer?.shape, [12, 48]);
  assert.equal(layer?.nonzero, 12 * 48 / 2);
  assert.deepEqual((await runOnce(m, f.feeds))['y']!.dims, [2, 4, 6]);
  // 2:4 runs along the reduction axis (Din, the weights' rows).
  const nm = cloneModel(f.model);
  pruneUnstructured(nm, { pattern: { n: 2, m: 4 } });
  const t = nm.graph.initializers.get(w)!.data as Float32Array;
  for (let c = 0; c < 48; c++) for (let r0 = 0; r0 < 12; r0 += 4) {
    let nz = 0;
    for (let k = 0; k < 4; k++) if (t[(r0 + k) * 48 + c] !== 0) nz++;
    assert.ok(nz <= 2, `column ${c}, rows ${r0}..${r0 + 3}: ${nz} nonzeros`);
  }
});
