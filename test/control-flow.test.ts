/**
 * Control flow (If subgraphs), one parameter definition, and constant folding through onnxruntime (issue 14
 * items 1, 8 and 11). Fixtures are built here with GraphBuilder: a Silero-like model whose whole network sits
 * in the branches of an If on the sample rate, and a Swin-like window padding computed with
 * Shape/Gather/Mod/Range/Equal/Where/ScatterND arithmetic and a shape-conditional If.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Graph, Model } from '../src/ir/graph.js';
import { cloneModel } from '../src/ir/clone.js';
import { floatTensor, int64Tensor, numel, toNumbers, type Tensor } from '../src/ir/tensor.js';
import { decodeModel, encodeModel } from '../src/onnx/codec.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { inferShapes } from '../src/analysis/shapes.js';
import { analyzeCost } from '../src/analysis/cost.js';
import { foldModel } from '../src/analysis/fold.js';
import { simplify } from '../src/analysis/simplify.js';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { CostModel } from '../src/plan/cost.js';
import { modelSparsity } from '../src/sparsity/stats.js';
import { pruneUnstructured } from '../src/sparsity/unstructured.js';
import { runOnce } from '../src/runtime/session.js';
import { isUserError, shears } from './cli-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'shears-control-'));

function randn(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return (s / 2 ** 31) * 2 - 1;
  });
}

/** One branch: Conv(h) -> Relu -> mean over time -> MatMul -> Add (a [1] bias). Reads h from the outer scope. */
function branch(p: string, channels: number, k: number, seed: number): Graph {
  const b = new GraphBuilder(`${p}_branch`);
  const w = b.init(`${p}_conv_w`, floatTensor([channels, 3, k], randn(channels * 3 * k, seed)));
  const bias = b.init(`${p}_conv_b`, floatTensor([channels], randn(channels, seed + 1)));
  const c = b.node('Conv', ['h', w, bias], { pads: [(k - 1) / 2, (k - 1) / 2] }, { name: `${p}_conv` });
  const r = b.node('Relu', [c], {}, { name: `${p}_relu` });
  const m = b.node('ReduceMean', [r], { axes: [2], keepdims: 0 }, { name: `${p}_mean` });
  const w2 = b.init(`${p}_fc_w`, floatTensor([channels, 1], randn(channels, seed + 2)));
  const mm = b.node('MatMul', [m, w2], {}, { name: `${p}_fc` });
  const b2 = b.init(`${p}_fc_b`, floatTensor([1], [0.25]));
  const y = b.node('Add', [mm, b2], {}, { name: `${p}_fc_add` });
  b.output(y, undefined);
  return b.graph;
}

/**
 * Silero-like: x [1, N] and sr (int64 scalar); a Conv in the main graph, then If(Equal(sr, 16000)) whose
 * branches (Conv 4x3x3 / Conv 2x3x5, MatMul, [1] bias) read its output from the outer scope.
 */
function sileroLike(): Model {
  const b = new GraphBuilder('silero_like');
  b.input('x', [1, 'N']);
  b.input('sr', [], DataType.INT64);
  const axes = b.init('axes1', int64Tensor([1], [1]));
  const x3 = b.node('Unsqueeze', ['x', axes], {}, { name: 'unsq' });
  const w0 = b.init('conv0_w', floatTensor([3, 1, 3], randn(9, 1)));
  const b0 = b.init('conv0_b', floatTensor([3], randn(3, 2)));
  const c0 = b.node('Conv', [x3, w0, b0], { pads: [1, 1] }, { name: 'conv0' });
  b.node('Relu', [c0], {}, { name: 'relu0', output: 'h' });
  const k16 = b.init('k16000', int64Tensor([], [16000]));
  const cond = b.node('Equal', ['sr', k16], {}, { name: 'is16k' });
  b.nodeN('If', [cond], { then_branch: branch('t', 4, 3, 10), else_branch: branch('e', 2, 5, 20) }, ['y'], { name: 'sr_if' });
  b.output('y', [1, 1]);
  return b.model(17);
}

const feeds = (n: number, sr: number) => ({ x: floatTensor([1, n], randn(n, 99)), sr: int64Tensor([], [sr]) });

// Expected counts at N = 16: main conv0 9 + 3 params, 3*16*3 MACs; then: 36 + 4 + 4 + 1 params, 4*16*3*3 + 4
// MACs; else: 30 + 2 + 2 + 1 params, 2*16*3*5 + 2 MACs.
const MAIN = { params: 12, macs: 144 };
const THEN = { params: 45, macs: 580 };
const ELSE = { params: 35, macs: 482 };

function close(a: Tensor, b: Tensor, tol = 1e-6): void {
  const x = toNumbers(a), y = toNumbers(b);
  assert.deepEqual(a.dims, b.dims);
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - y[i]!) <= tol * (1 + Math.abs(y[i]!)), `element ${i}: ${x[i]} vs ${y[i]}`);
}

test('item 1: shapes, parameters and MACs are counted inside If branches, per branch', () => {
  const m = sileroLike();
  const shapes = inferShapes(m, { inputShapes: { x: [1, 16], sr: [] } });
  // Outer-scope values are visible in the branches: the branch Conv gets a full shape.
  assert.deepEqual(shapes.types.get('t_conv_out0')?.shape, [1, 4, 16]);
  assert.deepEqual(shapes.types.get('y')?.shape, [1, 1]);
  const cost = analyzeCost(m, shapes);
  assert.equal(cost.params, MAIN.params + THEN.params + ELSE.params);
  // One branch runs: the costlier one counts.
  assert.equal(cost.macs, MAIN.macs + THEN.macs);
  const sub = Object.fromEntries(cost.subgraphs.map((s) => [s.scope, s]));
  assert.deepEqual({ p: sub['sr_if/then_branch']?.params, m: sub['sr_if/then_branch']?.macs }, { p: THEN.params, m: THEN.macs });
  assert.deepEqual({ p: sub['sr_if/else_branch']?.params, m: sub['sr_if/else_branch']?.macs }, { p: ELSE.params, m: ELSE.macs });
  assert.ok(cost.layers.some((l) => l.name === 'sr_if/else_branch/e_conv' && l.macs === 480));
});

test('item 1: an If on a pinned input folds into its branch (ORT parity for both sample rates)', async () => {
  for (const sr of [16000, 8000]) {
    const m = sileroLike();
    const ref = await runOnce(m, feeds(16, sr));
    const res = await foldModel(m, { inputShapes: { x: [1, 16], sr: [] }, inputValues: { sr: [sr] } });
    assert.equal(res.inlined, 1);
    assert.ok(!m.graph.nodes.some((n) => n.opType === 'If'));
    const cost = analyzeCost(m, inferShapes(m, { inputShapes: { x: [1, 16], sr: [] } }));
    const br = sr === 16000 ? THEN : ELSE;
    assert.equal(cost.params, MAIN.params + br.params);
    assert.equal(cost.macs, MAIN.macs + br.macs);
    // The folded model round-trips and runs; sr stays a declared input (its value no longer matters).
    const back = decodeModel(encodeModel(m));
    close((await runOnce(back, feeds(16, sr)))['y']!, ref['y']!);
    // Any value fed for sr now gives the pinned rate's result: the model is specialised.
    close((await runOnce(back, feeds(16, sr === 16000 ? 8000 : 16000)))['y']!, ref['y']!);
  }
});

test('item 1: simplify inlines an If whose condition is constant and keeps the results', async () => {
  const m = sileroLike();
  m.graph.initializers.set('sr', int64Tensor([], [8000]));
  const ref = await runOnce(sileroLike(), feeds(12, 8000));
  simplify(m);
  assert.ok(!m.graph.nodes.some((n) => n.opType === 'If'));
  close((await runOnce(m, { x: feeds(12, 8000).x }))['y']!, ref['y']!);
});

test('item 1: unstructured pruning prunes the weights of both branches; the model still runs', async () => {
  const m = sileroLike();
  const before = await runOnce(m, feeds(16, 16000));
  const r = pruneUnstructured(m, { sparsity: 0.5, scope: 'layer' });
  const names = r.layers.map((l) => l.name).sort();
  assert.deepEqual(names, ['conv0_w', 'e_conv_w', 'e_fc_w', 't_conv_w', 't_fc_w']);
  for (const l of r.layers) assert.ok(l.prunedNow > 0, l.name);
  const back = decodeModel(encodeModel(m));
  const zeros = toNumbers(back.graph.initializers.get('t_conv_w')!).filter((v) => v === 0).length;
  assert.equal(zeros, 18);
  for (const sr of [16000, 8000]) {
    const out = (await runOnce(back, feeds(16, sr)))['y']!;
    assert.equal(out.dims.join(','), '1,1');
    assert.ok(Number.isFinite(toNumbers(out)[0]!));
  }
  assert.notDeepEqual(toNumbers((await runOnce(back, feeds(16, 16000)))['y']!), toNumbers(before['y']!));
  // The stored model keeps the same totals: inspect on it sees the branch weights where they now live.
  const s = modelSparsity(back);
  assert.equal(s.params, MAIN.params + THEN.params + ELSE.params);
});

test('item 1: structured pruning freezes channels read inside an If branch, with the reason', () => {
  const an = analyzeModel(sileroLike(), { inputShapes: { x: [1, 16] } });
  const f = an.dg.frozen.find((x) => x.value === 'h' || x.value === 'conv0_w');
  assert.ok(f, JSON.stringify(an.dg.frozen));
  assert.match(f.reason, /inside an If subgraph/);
});

test('item 1: shears inspect / prune on the Silero-like model (CLI)', () => {
  const path = join(dir, 'silero_like.onnx');
  writeFileSync(path, encodeModel(sileroLike()));
  const plain = shears(['inspect', path, '--input-shape', 'x=1x16', '--json']);
  assert.equal(plain.code, 0, plain.stderr);
  const j = JSON.parse(plain.stdout);
  assert.equal(j.params, MAIN.params + THEN.params + ELSE.params);
  assert.equal(j.subgraphs.length, 2);
  const pinned = shears(['inspect', path, '--input-shape', 'x=1x16', '--input-value', 'sr=8000', '--json']);
  assert.equal(pinned.code, 0, pinned.stderr);
  const p = JSON.parse(pinned.stdout);
  assert.equal(p.params, MAIN.params + ELSE.params);
  assert.equal(p.macs, MAIN.macs + ELSE.macs);
  assert.equal(p.folding.inlined, 1);
  const bad = shears(['inspect', path, '--input-value', 'rate=8000']);
  assert.ok(isUserError(bad), bad.stderr);
  const out = join(dir, 'silero_pruned.onnx');
  const pr = shears(['prune', path, '-o', out, '--sparsity', '0.5', '--json']);
  assert.equal(pr.code, 0, pr.stderr);
  const pj = JSON.parse(pr.stdout);
  // The same parameter total as inspect, and the branch weights among the pruned layers.
  assert.equal(pj.before.params, j.params);
  assert.equal(pj.before.layerParams, 9 + 36 + 4 + 30 + 2);
  const sout = join(dir, 'silero_8k_structured.onnx');
  const st = shears(['prune', path, '-o', sout, '--structured', '--ratio', '0.5', '--round-to', '1', '--input-shape', 'x=1x16', '--input-value', 'sr=8000', '--json']);
  assert.equal(st.code, 0, st.stderr);
  const sj = JSON.parse(st.stdout);
  // Pinned to 8 kHz, the If is gone: the else branch's channels are prunable, counts are main + else.
  assert.deepEqual(sj.before, { macs: MAIN.macs + ELSE.macs, params: MAIN.params + ELSE.params });
  assert.ok(sj.removedChannels > 0);
});

// ------------------------------------------------------------------------------------------ item 8

/** MatMul [4,1] + a [1] bias, a rank-0 scale and epsilon, a LayerNorm: 1-element biases are parameters. */
function oneOutputHead(): Model {
  const b = new GraphBuilder('head');
  b.input('x', ['N', 8]);
  const w = b.init('fc1_w', floatTensor([8, 4], randn(32, 3)));
  const bb = b.init('fc1_b', floatTensor([4], randn(4, 4)));
  const h = b.node('Add', [b.node('MatMul', ['x', w]), bb]);
  const g = b.init('ln_g', floatTensor([4], [1, 1, 1, 1]));
  const be = b.init('ln_b', floatTensor([4], [0, 0, 0, 0]));
  const n = b.node('LayerNormalization', [h, g, be], { axis: -1 });
  const half = b.init('half', floatTensor([], [0.5]));
  const s = b.node('Mul', [n, half]);
  const w2 = b.init('fc2_w', floatTensor([4, 1], randn(4, 5)));
  const b2 = b.init('fc2_b', floatTensor([1], [0.1]));
  b.node('Add', [b.node('MatMul', [s, w2]), b2], {}, { output: 'y' });
  b.output('y', ['N', 1]);
  return b.model(17);
}

function threeTotals(m: Model, inputShapes: Record<string, number[]> = {}): { inspect: number; unstructured: number; structured: number } {
  const inspect = analyzeCost(m, inferShapes(m, { inputShapes })).params;
  const unstructured = modelSparsity(m).params;
  const an = analyzeModel(m, { inputShapes });
  const structured = new CostModel(an.dg, an.shapes, an.parameters).baseParams;
  return { inspect, unstructured, structured };
}

test('item 8: inspect, unstructured and structured prune count the same parameters (1-element bias included)', () => {
  const t = threeTotals(oneOutputHead(), { x: [1, 8] });
  // 32 + 4 + 4 + 4 + 4 + 1: the rank-0 scale is a constant, the [1] bias a parameter.
  assert.deepEqual(t, { inspect: 49, unstructured: 49, structured: 49 });
  const s = threeTotals(sileroLike(), { x: [1, 16] });
  const all = MAIN.params + THEN.params + ELSE.params;
  assert.deepEqual(s, { inspect: all, unstructured: all, structured: all });
});

test('item 8: the three totals agree on the shared models (skipped when absent)', (t) => {
  const d = join(process.cwd(), '..', 'shared', 'models');
  if (!existsSync(d)) {
    t.skip('no ../shared/models');
    return;
  }
  // Before the one definition: fmnist_det 1,446,965 / 1,445,390 / 1,446,965; yolov8n_like 3,155,584 /
  // 3,147,184 / 3,177,104 (inspect / unstructured / structured).
  const files = ['fmnist_det.onnx', 'yolov8n_like.onnx', 'vit_fmnist.onnx'].filter((f) => existsSync(join(d, f)));
  if (!files.length) t.skip('none of the shared models used here is present');
  for (const f of files) {
    const m = loadModel(join(d, f));
    const shapes: Record<string, number[]> = {};
    for (const i of m.graph.inputs) if (!m.graph.initializers.has(i.name) && i.type?.shape) shapes[i.name] = i.type.shape.map((x) => (typeof x === 'number' ? x : 1));
    const tot = threeTotals(cloneModel(m), shapes);
    assert.equal(tot.unstructured, tot.inspect, f);
    assert.equal(tot.structured, tot.inspect, f);
  }
});

// ------------------------------------------------------------------------------------------ item 11

/**
 * Swin-like window padding on a static input: pad H and W up to a multiple of 7 with pads built by
 * Shape/Gather/Mod/Sub and ScatterND, a shape-conditional If (no padding needed -> x as is), a window mask from
 * Range/Mod/Equal/Where, then a Conv whose MACs depend on the padded size.
 */
function swinLike(input: (number | string)[] = ['N', 3, 'H', 'W'], second = false): Model {
  const b = new GraphBuilder('swin_like');
  b.input('x', input);
  const shape = b.node('Shape', ['x']);
  const two = b.init('i2', int64Tensor([], [2]));
  const seven = b.init('i7', int64Tensor([], [7]));
  const hdim = b.node('Gather', [shape, two], { axis: 0 });
  const rem = b.node('Mod', [hdim, seven]);
  const pad = b.node('Mod', [b.node('Sub', [seven, rem]), seven]);
  const padv = b.node('Unsqueeze', [pad, b.init('ax0', int64Tensor([1], [0]))]);
  const zeros = b.init('zeros8', int64Tensor([8], [0, 0, 0, 0, 0, 0, 0, 0]));
  const idx = b.init('idx', int64Tensor([2, 1], [6, 7]));
  const both = b.node('Concat', [padv, padv], { axis: 0 });
  const pads = b.node('ScatterND', [zeros, idx, both]);
  const zero = b.init('i0', int64Tensor([], [0]));
  const needs = b.node('Equal', [rem, zero]);
  const tb = new GraphBuilder('no_pad');
  tb.node('Identity', ['x'], {}, { output: 'x_same' });
  tb.output('x_same');
  const eb = new GraphBuilder('pad');
  eb.node('Pad', ['x', pads], {}, { output: 'x_padded', name: 'pad_x' });
  eb.output('x_padded');
  const xp = b.nodeN('If', [needs], { then_branch: tb.graph, else_branch: eb.graph }, ['xp'], { name: 'pad_if' })[0]!;
  // Window mask along H: 1 at window starts, from Range/Mod/Equal/Where on the padded size.
  const hp = b.node('Add', [hdim, pad]);
  const r = b.node('Range', [zero, hp, b.init('i1', int64Tensor([], [1]))]);
  const start = b.node('Equal', [b.node('Mod', [r, seven]), zero]);
  const mask = b.node('Where', [start, b.init('f1', floatTensor([], [1])), b.init('f05', floatTensor([], [0.5]))]);
  const m4 = b.node('Reshape', [mask, b.node('Concat', [b.init('one3', int64Tensor([3], [1, 1, -1])), b.init('one1', int64Tensor([1], [1]))], { axis: 0 })]);
  const w = b.init('conv_w', floatTensor([8, 3, 3, 3], randn(216, 7)));
  const c = b.node('Conv', [b.node('Mul', [xp, m4]), w], { pads: [1, 1, 1, 1] }, { name: 'conv' });
  if (second) {
    const r1 = b.node('Relu', [c]);
    b.node('Conv', [r1, b.init('conv2_w', floatTensor([4, 8, 1, 1], randn(32, 8)))], {}, { name: 'conv2', output: 'y' });
  } else b.node('Relu', [c], {}, { output: 'y' });
  b.output('y');
  return b.model(17);
}

test('item 11: structured prune folds constant subgraphs through onnxruntime: its MAC target counts what the model computes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-fold-prune-'));
  const src = join(dir, 'swin_like.onnx');
  saveModel(swinLike([1, 3, 10, 12], true), src);
  const out = join(dir, 'p.onnx');
  const r = shears(['prune', src, '-o', out, '--structured', '--target-macs', '0.5', '--round-to', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /folded \d+ constant value\(s\) computed once in onnxruntime/);
  const rep = JSON.parse(r.stdout) as { before: { macs: number; params: number }; after: { macs: number } };
  // padded to 14 x 16 by the folded If/ScatterND arithmetic: conv 8 x 27 and conv2 4 x 8 MACs per position
  assert.equal(rep.before.macs, (8 * 27 + 4 * 8) * 14 * 16);
  assert.equal(rep.before.params, 8 * 27 + 4 * 8, 'the computed mask and pads are not parameters');
  assert.ok(rep.after.macs < rep.before.macs * 0.6, JSON.stringify(rep));
});

test('item 11: constant subgraphs without TS rules fold through onnxruntime; MACs equal ORT-derived truth', async () => {
  const shapes = { x: [1, 3, 10, 12] };
  const x = floatTensor([1, 3, 10, 12], randn(360, 11));
  const ref = (await runOnce(swinLike(), { x }))['y']!;
  // Truth from onnxruntime's output shape: 8 x (3*3*3) MACs per output position (H and W padded by 4).
  const truth = 8 * 27 * ref.dims[2]! * ref.dims[3]!;
  assert.deepEqual(ref.dims, [1, 8, 14, 16]);
  const plain = swinLike();
  const before = analyzeCost(plain, inferShapes(plain, { inputShapes: shapes })).macs;
  assert.notEqual(before, truth, 'without runtime folding the padded size is unknown');
  const m = swinLike();
  const res = await foldModel(m, { inputShapes: shapes });
  assert.ok(res.runtimeFolded > 0 && res.inlined === 1, JSON.stringify(res));
  assert.ok(!m.graph.nodes.some((n) => ['If', 'ScatterND', 'Mod', 'Range', 'Where'].includes(n.opType)), m.graph.nodes.map((n) => n.opType).join(','));
  assert.equal(analyzeCost(m, inferShapes(m, { inputShapes: shapes })).macs, truth);
  close((await runOnce(decodeModel(encodeModel(m)), { x }))['y']!, ref);
});

test('item 11: the size cap keeps big constant tensors out of folding; random ops never fold', async () => {
  const b = new GraphBuilder('big');
  b.input('x', [1, 4]);
  const big = b.node('ConstantOfShape', [b.init('s', int64Tensor([1], [2_000_000]))], { value: floatTensor([1], [1]) });
  const rnd = b.node('RandomUniformLike', [b.init('z', floatTensor([1, 4], [0, 0, 0, 0]))]);
  const sq = b.node('ReduceSum', [big], { keepdims: 0 });
  b.node('Add', [b.node('Add', ['x', rnd]), sq], {}, { output: 'y' });
  b.output('y');
  const m = b.model(17);
  await foldModel(m, {});
  for (const t of m.graph.initializers.values()) assert.ok(numel(t.dims) <= 1_000_000);
  assert.ok(m.graph.nodes.some((n) => n.opType === 'RandomUniformLike'));
});
