/**
 * Shape rules for NonMaxSuppression, RoiAlign, GridSample, OneHot, NegativeLogLikelihoodLoss,
 * SoftmaxCrossEntropyLoss, and output ranks that follow from a known axes/shape length (Unsqueeze-13, Squeeze,
 * ReduceSum with keepdims=0, Expand with a runtime shape), each against onnxruntime's output shapes; PRelu-6 with a
 * per-channel slope (onnxruntime has no PRelu-6 kernel: checked by value).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor, int64Tensor, type Tensor } from '../src/ir/tensor.js';
import { inferShapes } from '../src/analysis/shapes.js';
import { inspectModel } from '../src/analysis/inspect.js';
import { runOnce } from '../src/runtime/session.js';
import { ShearsError } from '../src/errors.js';
import { crossCheck } from './shapes-helpers.js';
import { analyzeModel } from '../src/depgraph/analyze.js';

const i64 = (dims: number[], v: number[]): Tensor => int64Tensor(dims, v);
const f32 = (dims: number[], v: number[]): Tensor => floatTensor(dims, v);

/**
 * Runs the model in onnxruntime and checks each graph output's inferred shape: known rank equal, every fixed dim
 * equal to the actual one (data-dependent dims may stay unknown). Returns the inferred shapes.
 */
async function checkOutputs(model: Model, feeds: Record<string, Tensor>, fixedDims = true): Promise<Map<string, (number | string | null)[]>> {
  const info = inferShapes(model);
  const out = await runOnce(model, feeds);
  const got = new Map<string, (number | string | null)[]>();
  for (const o of model.graph.outputs) {
    const s = info.types.get(o.name)?.shape;
    const a = out[o.name]!.dims;
    assert.ok(s, `no shape inferred for '${o.name}' (actual [${a}])`);
    assert.equal(s.length, a.length, `rank of '${o.name}': inferred [${s}] actual [${a}]`);
    s.forEach((d, i) => typeof d === 'number' && assert.equal(d, a[i], `dim ${i} of '${o.name}': inferred [${s}] actual [${a}]`));
    if (fixedDims) assert.ok(s.every((d) => typeof d === 'number'), `'${o.name}': every dim known, got [${s}]`);
    assert.equal(info.types.get(o.name)!.elemType, out[o.name]!.dtype, `dtype of '${o.name}'`);
    // Dims not fixed by the rule read as null here (the analysis names them with fresh symbols).
    got.set(o.name, s.map((d) => (typeof d === 'number' ? d : null)));
  }
  return got;
}

test('NonMaxSuppression: selected_indices is [num_selected, 3] int64', async () => {
  const b = new GraphBuilder();
  const boxes = b.input('boxes', [1, 6, 4]);
  const scores = b.input('scores', [1, 2, 6]);
  b.output(b.node('NonMaxSuppression', [boxes, scores, b.init('max', i64([1], [3])), b.init('iou', f32([1], [0.5])), b.init('thr', f32([1], [0]))], { center_point_box: 0 }, { output: 'sel' }), undefined, DataType.INT64);
  const boxesT = f32([1, 6, 4], [0, 0, 1, 1, 0, 0.1, 1, 1.1, 0, -0.1, 1, 0.9, 0, 10, 1, 11, 0, 10.1, 1, 11.1, 0, 100, 1, 101]);
  const scoresT = f32([1, 2, 6], [0.9, 0.75, 0.6, 0.95, 0.5, 0.3, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
  const s = await checkOutputs(b.model(13), { boxes: boxesT, scores: scoresT }, false);
  assert.deepEqual(s.get('sel'), [null, 3]);
});

test('RoiAlign: [num_rois, C, output_height, output_width]', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [2, 3, 8, 8]);
  const rois = b.input('rois', [5, 4]);
  const idx = b.input('idx', [5], DataType.INT64);
  b.output(b.node('RoiAlign', [x, rois, idx], { output_height: 3, output_width: 2, sampling_ratio: 2 }, { output: 'y' }));
  const m = b.model(16);
  await crossCheck(m, { feeds: { x: f32([2, 3, 8, 8], Array.from({ length: 384 }, (_, i) => i % 7)), rois: f32([5, 4], Array.from({ length: 20 }, (_, i) => i % 4 < 2 ? 1 : 5)), idx: i64([5], [0, 1, 0, 1, 1]) } });
  assert.deepEqual(inferShapes(m).types.get('y')!.shape, [5, 3, 3, 2]);
  assert.ok(inspectModel(m, {}).flops > 0, 'RoiAlign has a cost');
});

test('GridSample: [N, C, grid H, grid W]', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [2, 3, 5, 6]);
  const grid = b.input('grid', [2, 4, 7, 2]);
  b.output(b.node('GridSample', [x, grid], { align_corners: 1 }, { output: 'y' }));
  const m = b.model(16);
  await crossCheck(m);
  assert.deepEqual(inferShapes(m).types.get('y')!.shape, [2, 3, 4, 7]);
  const bad = new GraphBuilder();
  bad.node('GridSample', [bad.input('x', [2, 3, 5, 6]), bad.input('grid', [2, 4, 7, 3])]);
  assert.throws(() => inferShapes(bad.model(16)), (e: unknown) => e instanceof ShearsError && /GridSample: grid .* must end in 2 coordinates/.test(e.message));
});

test('OneHot: depth inserted at axis, values dtype', async () => {
  for (const axis of [-1, 0, 1]) {
    const b = new GraphBuilder();
    const ind = b.input('ind', [2, 3], DataType.INT64);
    b.output(b.node('OneHot', [ind, b.init('depth', i64([], [5])), b.init('vals', f32([2], [0, 1]))], { axis }, { output: 'y' }));
    const m = b.model(11);
    await crossCheck(m);
    const want = axis === -1 ? [2, 3, 5] : axis === 0 ? [5, 2, 3] : [2, 5, 3];
    assert.deepEqual(inferShapes(m).types.get('y')!.shape, want);
  }
});

test('NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss: scalar for mean/sum, target shape for none, log_prob like the scores', async () => {
  for (const reduction of ['mean', 'sum', 'none']) {
    const b = new GraphBuilder();
    const x = b.input('x', [2, 5, 3]);
    const t = b.input('t', [2, 3], DataType.INT64);
    const w = b.init('w', f32([5], [1, 2, 0.5, 1, 1]));
    b.output(b.node('NegativeLogLikelihoodLoss', [x, t, w], { reduction }, { output: 'nll' }));
    const [loss, logp] = b.nodeN('SoftmaxCrossEntropyLoss', [x, t], { reduction }, ['sce', 'logp']);
    b.output(loss!);
    b.output(logp!);
    const m = b.model(13);
    await crossCheck(m);
    const s = inferShapes(m).types;
    assert.deepEqual(s.get('nll')!.shape, reduction === 'none' ? [2, 3] : []);
    assert.deepEqual(s.get('sce')!.shape, reduction === 'none' ? [2, 3] : []);
    assert.deepEqual(s.get('logp')!.shape, [2, 5, 3]);
  }
});

test('Unsqueeze, Squeeze and ReduceSum with non-constant axes of known length, Expand with a runtime shape: known ranks', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [3, 1, 4]);
  const ax2 = b.input('ax2', [2], DataType.INT64);
  const ax1 = b.input('ax1', [1], DataType.INT64);
  const shp = b.input('shp', [4], DataType.INT64);
  b.output(b.node('Unsqueeze', [x, ax2], {}, { output: 'u' }));
  b.output(b.node('Squeeze', [x, ax1], {}, { output: 'sq' }));
  b.output(b.node('ReduceSum', [x, ax1], { keepdims: 0 }, { output: 'r' }));
  b.output(b.node('Expand', [x, shp], {}, { output: 'e' }));
  const m = b.model(13);
  const s = await checkOutputs(m, { x: f32([3, 1, 4], Array.from({ length: 12 }, (_, i) => i)), ax2: i64([2], [0, 4]), ax1: i64([1], [1]), shp: i64([4], [2, 1, 5, 1]) }, false);
  assert.deepEqual(s.get('u'), [null, null, null, null, null]);
  assert.deepEqual(s.get('sq'), [null, null]);
  assert.deepEqual(s.get('r'), [null, null]);
  // Expand keeps X's sizes where they are not 1 (3 and 4), the broadcast axes stay unknown.
  assert.deepEqual(s.get('e'), [null, 3, null, 4]);
});

test('PRelu at opset 6: a per-channel slope [C] applies along axis 1 (onnxruntime has no PRelu-6 kernel)', () => {
  const mk = (slope: number) => {
    const b = new GraphBuilder();
    b.output(b.node('PRelu', [b.input('x', [2, 3, 4, 5]), b.init('slope', f32([slope], Array.from({ length: slope }, () => 0.25)))], {}, { output: 'y' }));
    return b.model(6);
  };
  assert.deepEqual(inferShapes(mk(3)).types.get('y')!.shape, [2, 3, 4, 5]);
  assert.equal(inspectModel(mk(3), {}).params, 3);
  assert.deepEqual(inferShapes(mk(1)).types.get('y')!.shape, [2, 3, 4, 5]);
  assert.throws(() => inferShapes(mk(4)), (e: unknown) => e instanceof ShearsError && /PRelu: slope \[4\] is neither shared/.test(e.message));
});

test('PRelu at opset 6: structured pruning couples the per-channel slope to axis 1 (not to the last axis)', () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 3, 5, 5]);
  const conv = (inp: string, cin: number, cout: number, name: string) =>
    b.node('Conv', [inp, b.init(`${name}_w`, f32([cout, cin, 1, 1], Array.from({ length: cout * cin }, (_, i) => (i % 7) - 3))), b.init(`${name}_b`, f32([cout], Array.from({ length: cout }, () => 0.1)))]);
  // 5 channels on a 5x5 map: with numpy broadcasting the slope would tie to the last axis (W), also of size 5.
  const p = b.node('PRelu', [conv(x, 3, 5, 'c1'), b.init('slope', f32([5], [0.1, 0.2, 0.3, 0.4, 0.5]))]);
  b.output(conv(p, 5, 2, 'c2'), [1, 2, 5, 5]);
  const an = analyzeModel(b.model(6));
  const slope = an.dg.spaceOf.get('slope@0')!;
  const c1 = an.dg.spaceOf.get('c1_w@0')!;
  assert.equal(slope.group, c1.group, 'the slope follows the channels of the Conv before it');
  assert.equal(an.dg.groups[c1.group]!.units.length, 5);
  assert.equal(an.dg.frozen.filter((f) => f.value === 'slope').length, 0);
});
