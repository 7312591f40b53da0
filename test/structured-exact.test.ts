/**
 * Exactness of structured pruning: zero every parameter slice of some channels (units), remove exactly those
 * units, and the pruned model's outputs equal the zeroed model's outputs (onnxruntime), for fixtures with
 * residual adds, concat, split, depthwise conv, squeeze-excitation, flatten->Gemm, channel shuffle, slices,
 * MatMul/Gemm linears, ConvTranspose and a small detector-like head.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder, F } from '../src/ir/builder.js';
import { floatTensor, int64Tensor, numel, type Tensor } from '../src/ir/tensor.js';
import type { Model } from '../src/ir/graph.js';
import { analyzeModel, type AnalyzeOptions } from '../src/depgraph/analyze.js';
import { removeUnits } from '../src/prune/structured/surgery.js';
import type { DepGraph } from '../src/depgraph/depgraph.js';
import { runOnce } from '../src/runtime/session.js';
import { checkGraph } from '../src/ir/edit.js';
import { unitImportance } from '../src/importance/importance.js';
import { CostModel } from '../src/plan/cost.js';
import { planStructured } from '../src/plan/plan.js';
import { chosenUnits, EXACT_CASES } from './cases/exact-cases.js';
import { zeroUnits } from '../src/depgraph/zero.js';

let seed = 1;
function rnd(): number {
  seed = (seed * 16807) % 2147483647;
  return seed / 2147483647 - 0.5;
}
function w(dims: number[]): Tensor {
  return floatTensor(dims, Array.from({ length: numel(dims) }, rnd));
}
function pos(dims: number[]): Tensor {
  return floatTensor(dims, Array.from({ length: numel(dims) }, () => 0.5 + Math.abs(rnd())));
}

function conv(b: GraphBuilder, x: string, cin: number, cout: number, k = 3, attrs: Record<string, number | number[]> = {}): string {
  const g = (attrs['group'] as number | undefined) ?? 1;
  const p = Math.floor(k / 2);
  return b.node('Conv', [x, b.init(b.fresh('W'), w([cout, cin / g, k, k])), b.init(b.fresh('B'), w([cout]))], { pads: [p, p, p, p], ...attrs });
}
function bn(b: GraphBuilder, x: string, c: number): string {
  return b.node('BatchNormalization', [x, b.init(b.fresh('s'), pos([c])), b.init(b.fresh('b'), w([c])), b.init(b.fresh('m'), w([c])), b.init(b.fresh('v'), pos([c]))], { epsilon: F(1e-5) });
}
function head(b: GraphBuilder, x: string, c: number, classes = 5): void {
  const n = b.graph.inputs[0]!.type!.shape![0] as number;
  const p = b.node('GlobalAveragePool', [x]);
  const f = b.node('Flatten', [p], { axis: 1 });
  const y = b.node('Gemm', [f, b.init(b.fresh('fc'), w([classes, c])), b.init(b.fresh('fcb'), w([classes]))], { transB: 1 }, { output: 'y' });
  b.output(y, [n, classes]);
}


async function run(model: Model, x: Tensor): Promise<Record<string, Float32Array>> {
  const out = await runOnce(model, { [model.graph.inputs[0]!.name]: x });
  const r: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(out)) r[k] = v.data as Float32Array;
  return r;
}

interface ExactResult {
  dg: DepGraph;
  removed: number;
  pruned: Model;
}

/** Removes about a third of every group's channels (after zeroing them) and compares outputs. */
async function checkExact(model: Model, inShape: number[], minGroups = 1, opts: AnalyzeOptions = {}): Promise<ExactResult> {
  const an = analyzeModel(model, opts);
  const dg = an.dg;
  const groups = dg.groups.filter((g) => g.units.length > 1);
  assert.ok(groups.length >= minGroups, `expected at least ${minGroups} prunable groups, got ${groups.length}`);
  const chosen = new Set<number>();
  for (const g of groups) g.units.forEach((u, i) => i % 3 === 1 && chosen.add(u.id));
  const zeroed = zeroUnits(dg, an.model, chosen);
  const an2 = analyzeModel(zeroed, opts);
  const { model: pruned } = removeUnits(an2.dg, chosen);
  assert.deepEqual(checkGraph(pruned.graph), []);
  assert.deepEqual(pruned.graph.inputs.map((i) => i.name), model.graph.inputs.map((i) => i.name));
  assert.deepEqual(pruned.graph.outputs.map((i) => i.name), model.graph.outputs.map((i) => i.name));
  const x = floatTensor(inShape, Array.from({ length: numel(inShape) }, rnd));
  const ref = await run(zeroed, x);
  const got = await run(pruned, x);
  for (const k of Object.keys(ref)) {
    const a = ref[k]!, b = got[k]!;
    assert.equal(b.length, a.length, `output ${k} size`);
    let maxErr = 0, maxAbs = 0;
    for (let i = 0; i < a.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(a[i]! - b[i]!));
      maxAbs = Math.max(maxAbs, Math.abs(a[i]!));
    }
    assert.ok(maxErr <= 1e-4 * Math.max(1, maxAbs), `output ${k}: max error ${maxErr}`);
  }
  // The pruned model really is smaller.
  let before = 0, after = 0;
  for (const t of model.graph.initializers.values()) before += numel(t.dims);
  for (const t of pruned.graph.initializers.values()) after += numel(t.dims);
  assert.ok(after < before, `params ${after} should be below ${before}`);
  return { dg, removed: chosen.size, pruned };
}

test('residual adds with BatchNorm, then GAP -> Flatten -> Gemm', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [2, 3, 8, 8]);
  const a = b.node('Relu', [bn(b, conv(b, x, 3, 8), 8)]);
  const c = bn(b, conv(b, b.node('Relu', [conv(b, a, 8, 6)]), 6, 8), 8);
  const s = b.node('Relu', [b.node('Add', [a, c])]);
  const c2 = conv(b, b.node('Relu', [conv(b, s, 8, 8)]), 8, 8);
  const s2 = b.node('Add', [c2, s]);
  head(b, s2, 8);
  const r = await checkExact(b.model(), [2, 3, 8, 8], 3);
  // Residual coupling: the stem, both block outputs and the head input form one group.
  const stem = r.dg.spaces.find((sp) => sp.value === r.dg.model.graph.nodes[0]!.inputs[1] && sp.axis === 0)!;
  const fc = r.dg.spaces.find((sp) => sp.value.startsWith('fc_') && sp.axis === 1)!;
  assert.equal(stem.group, fc.group);
});

test('concat and split on the channel axis (index offsets)', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 3, 6, 6]);
  const p = conv(b, x, 3, 8), q = conv(b, x, 3, 6);
  const cat = b.node('Relu', [b.node('Concat', [p, q], { axis: 1 })]);
  const [s1, s2] = b.nodeN('Split', [cat, b.init('split', int64Tensor([2], [5, 9]))], { axis: 1 }, 2);
  const y = b.node('Add', [conv(b, s1!, 5, 4), conv(b, s2!, 9, 4)]);
  head(b, conv(b, b.node('Relu', [y]), 4, 6), 6);
  await checkExact(b.model(), [1, 3, 6, 6], 2);
});

test('Slice on the channel axis, then Concat with the rest', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 3, 6, 6]);
  const p = b.node('Relu', [conv(b, x, 3, 12)]);
  const sl = b.node('Slice', [p, b.init('st', int64Tensor([1], [3])), b.init('en', int64Tensor([1], [9])), b.init('ax', int64Tensor([1], [1]))]);
  const y = b.node('Concat', [conv(b, sl, 6, 4), conv(b, p, 12, 4)], { axis: 1 });
  head(b, y, 8);
  await checkExact(b.model(), [1, 3, 6, 6], 2);
});

test('depthwise and grouped convolution', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 3, 8, 8]);
  const a = b.node('Relu', [conv(b, x, 3, 8)]);
  const d = b.node('Relu', [bn(b, conv(b, a, 8, 8, 3, { group: 8 }), 8)]);
  const m = b.node('Relu', [conv(b, d, 8, 16, 3, { group: 8 })]); // depthwise with multiplier 2
  const gconv = conv(b, m, 16, 8, 1, { group: 2 });
  head(b, b.node('Relu', [gconv]), 8);
  const r = await checkExact(b.model(), [1, 3, 8, 8], 2);
  const dw = r.pruned.graph.nodes.filter((n) => n.opType === 'Conv' && (n.attrs.get('group')?.value ?? 1) !== 1);
  assert.ok(dw.some((n) => n.attrs.get('group')!.value !== 8), 'the depthwise group count follows the channels');
});

test('squeeze-excitation channel scaling (Mul with a [N,C,1,1] gate)', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 3, 8, 8]);
  const y = b.node('Relu', [conv(b, x, 3, 8)]);
  const p = b.node('GlobalAveragePool', [y]);
  const s = b.node('HardSigmoid', [conv(b, b.node('Relu', [conv(b, p, 8, 4, 1)]), 4, 8, 1)]);
  const z = b.node('Mul', [y, s]);
  head(b, conv(b, z, 8, 6), 6);
  await checkExact(b.model(), [1, 3, 8, 8], 2);
});

test('Flatten of conv features into a Gemm (a channel is a block of features)', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [2, 3, 4, 4]);
  const c = b.node('Relu', [conv(b, x, 3, 6)]);
  const f = b.node('Flatten', [c], { axis: 1 });
  const h = b.node('Relu', [b.node('Gemm', [f, b.init('w1', w([96, 10])), b.init('b1', w([10]))])]);
  const r = b.node('Reshape', [c, b.init('shp', int64Tensor([2], [2, 96]))]);
  const h2 = b.node('MatMul', [r, b.init('w2', w([96, 10]))]);
  const y = b.node('Gemm', [b.node('Add', [h, h2]), b.init('w3', w([5, 10])), b.init('b3', w([5]))], { transB: 1 }, { output: 'y' });
  b.output(y, [2, 5]);
  const res = await checkExact(b.model(), [2, 3, 4, 4], 2);
  assert.ok(res.pruned.graph.initializers.get('w1')!.dims[0]! < 96);
});

test('channel shuffle (Reshape -> Transpose -> Reshape) between grouped convs', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 4, 6, 6]);
  const a = b.node('Relu', [conv(b, x, 4, 12, 1, { group: 2 })]);
  const r1 = b.node('Reshape', [a, b.init('s1', int64Tensor([5], [1, 2, 6, 6, 6]))]);
  const t = b.node('Transpose', [r1], { perm: [0, 2, 1, 3, 4] });
  const r2 = b.node('Reshape', [t, b.init('s2', int64Tensor([4], [1, 12, 6, 6]))]);
  const c = conv(b, r2, 12, 8, 1, { group: 2 });
  head(b, b.node('Relu', [c]), 8);
  await checkExact(b.model(), [1, 4, 6, 6], 1);
});

test('linear layers: MatMul with either weight orientation, LayerNorm-free MLP on [N, L, D]', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [2, 5, 8]);
  const h = b.node('Relu', [b.node('Add', [b.node('MatMul', [x, b.init('m1', w([8, 16]))]), b.init('mb1', w([16]))])]);
  const h2 = b.node('Relu', [b.node('MatMul', [h, b.init('m2', w([16, 12]))])]);
  const t = b.node('Transpose', [h2], { perm: [0, 2, 1] });
  const y = b.node('MatMul', [b.init('m3', w([4, 12])), t], {}, { output: 'y' });
  b.output(y, [2, 4, 5]);
  await checkExact(b.model(), [2, 5, 8], 2);
});

test('ConvTranspose, Resize and Pad keep channel couplings', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 3, 4, 4]);
  const a = b.node('Relu', [conv(b, x, 3, 8)]);
  const up = b.node('ConvTranspose', [a, b.init('ct', w([8, 6, 2, 2])), b.init('ctb', w([6]))], { strides: [2, 2] });
  const rs = b.node('Resize', [b.node('Relu', [up]), '', b.init('scales', floatTensor([4], [1, 1, 2, 2]))], { mode: 'nearest' });
  const pd = b.node('Pad', [rs, b.init('pads', int64Tensor([8], [0, 0, 1, 1, 0, 0, 1, 1]))]);
  head(b, conv(b, pd, 6, 4), 4);
  await checkExact(b.model(), [1, 3, 4, 4], 2);
});

test('detector-like head: box (DFL softmax) and class branches concatenated into the output', async () => {
  const b = new GraphBuilder();
  const x = b.input('images', [1, 3, 8, 8]);
  const f = b.node('Relu', [conv(b, x, 3, 16)]);
  const f2 = b.node('Relu', [conv(b, f, 16, 16, 3, { strides: [2, 2] })]);
  const box = conv(b, b.node('Relu', [conv(b, f2, 16, 8)]), 8, 16, 1); // 4 coords x 4 bins
  const cls = conv(b, b.node('Relu', [conv(b, f2, 16, 8)]), 8, 3, 1);
  const cat = b.node('Concat', [box, cls], { axis: 1 });
  const flat = b.node('Reshape', [cat, b.init('s', int64Tensor([3], [1, 19, 16]))]);
  const [bx, cl] = b.nodeN('Split', [flat, b.init('sp', int64Tensor([2], [16, 3]))], { axis: 1 }, 2);
  const d = b.node('Reshape', [bx!, b.init('s2', int64Tensor([4], [1, 4, 4, 16]))]);
  const sm = b.node('Softmax', [b.node('Transpose', [d], { perm: [0, 2, 1, 3] })], { axis: 1 });
  const dfl = b.node('Conv', [sm, b.init('proj', floatTensor([1, 4, 1, 1], [0, 1, 2, 3]))]);
  const dbox = b.node('Reshape', [dfl, b.init('s3', int64Tensor([3], [1, 4, 16]))]);
  const out = b.node('Concat', [dbox, b.node('Sigmoid', [cl!])], { axis: 1 }, { output: 'output0' });
  b.output(out, [1, 7, 16]);
  const r = await checkExact(b.model(), [1, 3, 8, 8], 3);
  // The box (16) and class (3) channels feed the output: never pruned.
  const boxW = r.dg.model.graph.nodes.find((n) => n.outputs[0] === box)!.inputs[1]!;
  assert.equal(r.pruned.graph.initializers.get(boxW)!.dims[0], 16);
});

test('an op without a channel rule freezes the channels it touches, and the model stays valid', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 3, 6, 6]);
  const a = b.node('Relu', [conv(b, x, 3, 8)]);
  const l = b.node('LRN', [a], { size: 3 });
  const c = b.node('Relu', [conv(b, l, 8, 8)]);
  head(b, conv(b, c, 8, 6), 6);
  const model = b.model();
  const an = analyzeModel(model);
  const frozen = an.dg.frozen.find((f) => f.reason.includes('LRN'));
  assert.ok(frozen, 'the LRN input is reported frozen');
  const firstW = model.graph.nodes[0]!.inputs[1]!;
  const sp = an.dg.spaces.find((s) => s.value === firstW && s.axis === 0)!;
  for (let j = 0; j < sp.size; j++) assert.equal(an.dg.elementUnit[sp.offset + j], -1);
  await checkExact(model, [1, 3, 6, 6], 1);
});

test('L1 planning removes exactly the zeroed channels', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 3, 6, 6]);
  const a = b.node('Relu', [conv(b, x, 3, 8)]);
  const c = b.node('Relu', [conv(b, a, 8, 8)]);
  head(b, c, 8);
  const an = analyzeModel(b.model());
  const chosen = new Set<number>();
  for (const g of an.dg.groups) g.units.slice(0, 4).forEach((u, i) => i % 2 === 0 && chosen.add(u.id));
  const zeroed = zeroUnits(an.dg, an.model, chosen);
  const an2 = analyzeModel(zeroed);
  const score = unitImportance(an2.dg, { kind: 'l1' });
  const { removed } = planStructured(an2.dg, new CostModel(an2.dg, an2.shapes), score, { ratio: 0.25, roundTo: 1 });
  assert.deepEqual([...removed].sort(), [...chosen].sort());
});

test('InstanceNormalization and PRelu are exact; LayerNormalization and GroupNormalization prune to valid models', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 3, 6, 6]);
  const a = conv(b, x, 3, 8);
  const inorm = b.node('InstanceNormalization', [a, b.init('is', pos([8])), b.init('ib', w([8]))], { epsilon: F(1e-5) });
  const pr = b.node('PRelu', [inorm, b.init('slope', floatTensor([8, 1, 1], Array.from({ length: 8 }, (_, i) => 0.1 * i)))]);
  head(b, conv(b, pr, 8, 6), 6);
  await checkExact(b.model(), [1, 3, 6, 6], 2);

  const b2 = new GraphBuilder();
  const t = b2.input('t', [2, 5, 8]);
  const h = b2.node('MatMul', [t, b2.init('m1', w([8, 16]))]);
  const ln = b2.node('LayerNormalization', [h, b2.init('g', pos([16])), b2.init('be', w([16]))], { axis: -1, epsilon: F(1e-5) });
  const y = b2.node('MatMul', [b2.node('Relu', [ln]), b2.init('m2', w([16, 4]))], {}, { output: 'y' });
  b2.output(y, [2, 5, 4]);
  const b3 = new GraphBuilder();
  const x3 = b3.input('x', [1, 3, 6, 6]);
  const c3 = conv(b3, x3, 3, 12);
  const gn = b3.node('GroupNormalization', [c3, b3.init('gs', pos([12])), b3.init('gb', w([12]))], { num_groups: 3, epsilon: F(1e-5) });
  head(b3, conv(b3, b3.node('Relu', [gn]), 12, 6), 6);
  // Opset 18 GroupNormalization: scale/bias per group ([G]), not per channel.
  const b4 = new GraphBuilder();
  const x4 = b4.input('x', [1, 3, 6, 6]);
  const gn4 = b4.node('GroupNormalization', [conv(b4, x4, 3, 12), b4.init('gs', pos([3])), b4.init('gb', w([3]))], { num_groups: 3, epsilon: F(1e-5) });
  head(b4, conv(b4, b4.node('Relu', [gn4]), 12, 6), 6);
  // LayerNormalization's normalised axis is the hidden size: frozen by default (the statistics change), pruned
  // with `normalized` (--hidden-size).
  const byDefault = analyzeModel(b2.model());
  assert.equal(byDefault.dg.units.length, 0);
  assert.ok(byDefault.dg.frozen.some((f) => /normalised axis: removing features changes the normalisation statistics/.test(f.reason)));
  for (const [m, shape] of [[b2.model(), [2, 5, 8]], [b3.model(21), [1, 3, 6, 6]], [b4.model(18), [1, 3, 6, 6]]] as const) {
    const an = analyzeModel(m, { normalized: true });
    const units = new Set<number>();
    for (const g of an.dg.groups) g.units.forEach((u, i) => i % 4 === 1 && units.add(u.id));
    assert.ok(units.size > 0);
    const { model: pruned } = removeUnits(an.dg, units);
    const out = await run(pruned, floatTensor([...shape], Array.from({ length: numel([...shape]) }, rnd)));
    for (const v of Object.values(out)) assert.ok(v.every(Number.isFinite));
  }
});

function attentionBlock(): Model {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 6, 16]);
  const q = b.node('MatMul', [x, b.init('wq', w([16, 16]))]);
  const k = b.node('MatMul', [x, b.init('wk', w([16, 16]))]);
  const v = b.node('MatMul', [x, b.init('wv', w([16, 16]))]);
  const heads = (t: string, perm: number[]) => b.node('Transpose', [b.node('Reshape', [t, b.init(b.fresh('hs'), int64Tensor([4], [1, 6, 2, 8]))])], { perm });
  const s = b.node('Softmax', [b.node('MatMul', [heads(q, [0, 2, 1, 3]), heads(k, [0, 2, 3, 1])])], { axis: -1 });
  const o = b.node('Transpose', [b.node('MatMul', [s, heads(v, [0, 2, 1, 3])])], { perm: [0, 2, 1, 3] });
  const merged = b.node('Reshape', [o, b.init('ms', int64Tensor([3], [1, 6, 16]))]);
  const h = b.node('Add', [b.node('MatMul', [merged, b.init('wo', w([16, 16]))]), x]);
  const f = b.node('MatMul', [b.node('Relu', [b.node('MatMul', [h, b.init('w1', w([16, 32]))])]), b.init('w2', w([32, 16]))]);
  const y = b.node('MatMul', [b.node('Add', [f, h]), b.init('wh', w([16, 3]))], {}, { output: 'y' });
  b.output(y, [1, 6, 3]);
  return b.model();
}

test('self-attention block: whole heads prune (q, k, v columns and the output projection rows), exactly; the residual stream stays', async () => {
  const r = await checkExact(attentionBlock(), [1, 6, 16], 2);
  const unit = (v: string, j: number) => r.dg.elementUnit[r.dg.spaceOf.get(v)!.offset + j]!;
  assert.ok(unit('wq@1', 0) >= 0);
  for (const j of [1, 7]) assert.equal(unit('wq@1', j), unit('wq@1', 0), `dim ${j} of head 0 is in head 0's unit`);
  assert.notEqual(unit('wq@1', 8), unit('wq@1', 0), 'head 1 is another unit');
  for (const v of ['wk@1', 'wv@1', 'wo@0']) assert.equal(unit(v, 3), unit('wq@1', 0), `${v} column 3 goes with head 0`);
  assert.equal(unit('wo@1', 0), -1, 'the residual stream (from the model input) is frozen');
  // Head 1 removed: 8 columns of each projection.
  assert.deepEqual(r.pruned.graph.initializers.get('wq')!.dims, [16, 8]);
  assert.deepEqual(r.pruned.graph.initializers.get('wo')!.dims, [8, 16]);
});

test('self-attention block with splitUnits positions: the same head_dim entries of every head prune together, exactly', async () => {
  const r = await checkExact(attentionBlock(), [1, 6, 16], 2, { splitUnits: 'positions' });
  const unit = (v: string, j: number) => r.dg.elementUnit[r.dg.spaceOf.get(v)!.offset + j]!;
  assert.ok(unit('wq@1', 0) >= 0);
  assert.equal(unit('wq@1', 0), unit('wk@1', 0), 'query and key dims are coupled');
  assert.equal(unit('wq@1', 0), unit('wq@1', 8), 'dim 0 of both heads is one unit');
  assert.notEqual(unit('wq@1', 0), unit('wq@1', 1));
  assert.equal(unit('wv@1', 8), unit('wo@0', 0), 'value dim 0 of head 1 goes with output-projection row 0 (both heads)');
  assert.equal(unit('wo@1', 0), -1, 'the residual stream (from the model input) is frozen');
});

/**
 * A Llama-style block as torch.onnx.export writes it: RMSNorm decomposed, q/k/v projections, heads split by
 * Reshape, rotary embedding (rotate-half Slice/Neg/Concat on head_dim, cos/sin tables), grouped-query attention
 * (2 KV heads for 4 query heads, repeat_kv as Unsqueeze/Expand/Reshape), causal mask, SwiGLU MLP.
 */
function llamaBlock(): Model {
  const T = 5, Dm = 16, H = 4, KV = 2, D = 4, F = 12;
  const b = new GraphBuilder();
  const x = b.input('x', [1, T, Dm]);
  const c = (v: number) => b.init(b.fresh('c'), floatTensor([], [v]));
  const i64 = (v: number[]) => b.init(b.fresh('i'), int64Tensor([v.length], v));
  const rms = (t: string) => {
    const ms = b.node('ReduceMean', [b.node('Pow', [t, c(2)])], { axes: [-1], keepdims: 1 });
    return b.node('Mul', [b.node('Div', [t, b.node('Sqrt', [b.node('Add', [ms, c(1e-6)])])]), b.init(b.fresh('g'), pos([Dm]))]);
  };
  const h = rms(x);
  const proj = (name: string, n: number) => b.node('MatMul', [h, b.init(name, w([Dm, n]))]);
  const split = (t: string, heads: number) => b.node('Transpose', [b.node('Reshape', [t, i64([1, T, heads, D])])], { perm: [0, 2, 1, 3] });
  const cos = b.init('cos', floatTensor([T, D], Array.from({ length: T * D }, (_, k) => Math.cos(k * 0.3))));
  const sin = b.init('sin', floatTensor([T, D], Array.from({ length: T * D }, (_, k) => Math.sin(k * 0.3))));
  const rope = (t: string) => {
    const x1 = b.node('Slice', [t, i64([0]), i64([D / 2]), i64([3])]);
    const x2 = b.node('Slice', [t, i64([D / 2]), i64([D]), i64([3])]);
    const rot = b.node('Concat', [b.node('Neg', [x2]), x1], { axis: 3 });
    return b.node('Add', [b.node('Mul', [t, cos]), b.node('Mul', [rot, sin])]);
  };
  const repeat = (t: string) => b.node('Reshape', [b.node('Expand', [b.node('Unsqueeze', [t, i64([2])]), i64([1, KV, H / KV, T, D])]), i64([1, H, T, D])]);
  const q = rope(split(proj('wq', H * D), H));
  const k = repeat(rope(split(proj('wk', KV * D), KV)));
  const v = repeat(split(proj('wv', KV * D), KV));
  const mask = b.init('mask', floatTensor([T, T], Array.from({ length: T * T }, (_, e) => (e % T > Math.floor(e / T) ? -1e9 : 0))));
  const scores = b.node('Add', [b.node('Div', [b.node('MatMul', [q, b.node('Transpose', [k], { perm: [0, 1, 3, 2] })]), c(2)]), mask]);
  const att = b.node('MatMul', [b.node('Softmax', [scores], { axis: -1 }), v]);
  const merged = b.node('Reshape', [b.node('Transpose', [att], { perm: [0, 2, 1, 3] }), i64([1, T, H * D])]);
  const r1 = b.node('Add', [x, b.node('MatMul', [merged, b.init('wo', w([H * D, Dm]))])]);
  const h2 = rms(r1);
  const gate = b.node('MatMul', [h2, b.init('wg', w([Dm, F]))]);
  const up = b.node('MatMul', [h2, b.init('wu', w([Dm, F]))]);
  const act = b.node('Mul', [b.node('Mul', [gate, b.node('Sigmoid', [gate])]), up]);
  const r2 = b.node('Add', [r1, b.node('MatMul', [act, b.init('wd', w([F, Dm]))])]);
  const y = b.node('MatMul', [rms(r2), b.init('lm', w([Dm, 7]))], {}, { output: 'y' });
  b.output(y, [1, T, 7]);
  return b.model();
}

test('Llama-style block (RMSNorm, RoPE, GQA repeat_kv, causal mask, SwiGLU): a KV head goes with its query heads, exactly', async () => {
  const r = await checkExact(llamaBlock(), [1, 5, 16], 2);
  const unit = (v: string, j: number) => r.dg.elementUnit[r.dg.spaceOf.get(v)!.offset + j]!;
  // KV head 0 = k/v columns 0..3 and query heads 0 and 1 (q columns 0..7), output-projection rows 0..7.
  const kv0 = unit('wk@1', 0);
  assert.ok(kv0 >= 0);
  for (const [v, j] of [['wk@1', 3], ['wv@1', 2], ['wq@1', 0], ['wq@1', 7], ['wo@0', 5]] as const) assert.equal(unit(v, j), kv0, `${v}[${j}] is in KV group 0`);
  assert.notEqual(unit('wq@1', 8), kv0, 'query head 2 belongs to KV head 1');
  assert.equal(unit('wk@1', 4), unit('wq@1', 8));
  // SwiGLU: gate and up columns prune together with the down projection's rows.
  assert.equal(unit('wg@1', 3), unit('wu@1', 3));
  assert.equal(unit('wg@1', 3), unit('wd@0', 3));
  assert.equal(unit('wo@1', 0), -1, 'the residual stream stays (RMSNorm statistics)');
  const kept = (n: string) => r.pruned.graph.initializers.get(n)!.dims;
  assert.deepEqual(kept('wk'), [16, 4], 'one of the two KV heads removed');
  assert.deepEqual(kept('wq'), [16, 8], 'with its two query heads');
});

test('Llama-style block with splitUnits positions: rotary pairs (d, d + head_dim/2) prune together, exactly', async () => {
  const r = await checkExact(llamaBlock(), [1, 5, 16], 2, { splitUnits: 'positions' });
  const unit = (v: string, j: number) => r.dg.elementUnit[r.dg.spaceOf.get(v)!.offset + j]!;
  assert.ok(unit('wq@1', 0) >= 0);
  assert.equal(unit('wq@1', 0), unit('wq@1', 2), 'q dim 0 and its rotary partner 2');
  assert.equal(unit('wq@1', 0), unit('wk@1', 0), 'query and key dims are coupled');
  assert.equal(unit('wq@1', 0), unit('wq@1', 4), 'dim 0 of every head');
  assert.notEqual(unit('wq@1', 0), unit('wq@1', 1));
});

test('ShuffleNetV2-style unit: Split halves, depthwise branch, Concat, channel shuffle, twice', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 3, 8, 8]);
  let y = b.node('Relu', [conv(b, x, 3, 16)]);
  for (let i = 0; i < 2; i++) {
    const [p, q] = b.nodeN('Split', [y, b.init(b.fresh('sp'), int64Tensor([2], [8, 8]))], { axis: 1 }, 2);
    const br = b.node('Relu', [conv(b, conv(b, b.node('Relu', [conv(b, q!, 8, 8, 1)]), 8, 8, 3, { group: 8 }), 8, 8, 1)]);
    const cat = b.node('Concat', [p!, br], { axis: 1 });
    const r1 = b.node('Reshape', [cat, b.init(b.fresh('s1'), int64Tensor([5], [1, 2, 8, 8, 8]))]);
    const t = b.node('Transpose', [r1], { perm: [0, 2, 1, 3, 4] });
    y = b.node('Reshape', [t, b.init(b.fresh('s2'), int64Tensor([4], [1, 16, 8, 8]))]);
  }
  head(b, conv(b, y, 16, 8, 1), 8);
  await checkExact(b.model(), [1, 3, 8, 8], 1);
});

// The registry's exactness table (test/cases/exact-cases.ts): fixtures that run removed channels through every
// channel rule; test/registry-coverage.test.ts checks that together they reach every OpDef.channels rule.
for (const c of EXACT_CASES) {
  test(`registry table: ${c.name}`, async () => {
    const r = await checkExact(c.model(), c.inShape, c.minGroups);
    // The coverage test counts the ops reached by chosenUnits: it must be the selection checkExact removed.
    assert.equal(r.removed, chosenUnits(r.dg).size);
  });
}
