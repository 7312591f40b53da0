/** Training graphs end to end: losses (CE, KD, MSE) and BatchNorm in training mode, checked by finite differences. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildTrainingGraph, type TrainingGraph } from '../src/autodiff/training.js';
import { TARGET, TEACHER, type LossSpec } from '../src/autodiff/losses.js';
import { probeTypes } from '../src/autodiff/shapes.js';
import { F, GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { numel, type Tensor } from '../src/ir/tensor.js';
import { createSession } from '../src/runtime/session.js';
import { decomposeBatchNormForTraining, foldBatchNorm, insertBatchNorm } from '../src/train/bn.js';
import { rng } from './gradcheck.js';

const D = DataType.DOUBLE;
function t64(dims: number[], r: () => number, scale = 1): Tensor {
  return { dtype: D, dims, data: Float64Array.from({ length: numel(dims) }, () => (r() * 2 - 1) * scale) };
}

/** x[4,5] -> Gemm(5->6) -> [BN] -> Tanh -> Gemm(6->3) */
function mlp(bn: boolean): Model {
  const r = rng(7);
  const b = new GraphBuilder('mlp');
  b.input('x', [4, 5], D);
  let h = b.node('Gemm', ['x', b.init('w1', t64([6, 5], r)), b.init('b1', t64([6], r))], { transB: 1 });
  if (bn) {
    h = b.node('BatchNormalization', [h, b.init('s', t64([6], r)), b.init('bb', t64([6], r)), b.init('rm', t64([6], r, 0.1)),
      b.init('rv', { dtype: D, dims: [6], data: Float64Array.from([1, 2, 0.5, 1, 1.5, 0.7]) })], { epsilon: F(1e-5) });
  }
  h = b.node('Tanh', [h]);
  const y = b.node('Gemm', [h, b.init('w2', t64([3, 6], r)), b.init('b2', t64([3], r))], { transB: 1 }, { output: 'y' });
  b.output(y, undefined, D);
  return b.model(17);
}

async function fdCheck(model: Model, loss: LossSpec, bn = false): Promise<{ worst: number; tg: TrainingGraph }> {
  const r = rng(3);
  let state: { input: string; output: string }[] = [];
  if (bn) {
    const pre = await probeTypes(model, { x: [4, 5] });
    state = decomposeBatchNormForTraining(model, pre.shapes);
  }
  const tg = await buildTrainingGraph(model, { batch: 4, loss, state });
  const run = await createSession(tg.model);
  const feeds: Record<string, Tensor> = { x: t64([4, 5], r) };
  const probs = (rows: number) => {
    const d = new Float64Array(rows * 3);
    for (let i = 0; i < rows; i++) {
      const a = [r(), r(), r()];
      const s = a[0]! + a[1]! + a[2]!;
      a.forEach((v, j) => (d[i * 3 + j] = v / s));
    }
    return { dtype: D, dims: [rows, 3], data: d };
  };
  if (loss.ce) feeds[TARGET] = probs(4);
  if (loss.mse) feeds[TARGET] = t64([4, 3], r);
  if (loss.kd) feeds[TEACHER] = probs(4);
  for (const p of tg.params) feeds[p.name] = p.init;
  for (const s of tg.state) feeds[s.input] = s.init;
  const res = await run.run(feeds);
  const lossAt = async (f: Record<string, Tensor>) => Number((await run.run(f, [tg.loss]))[tg.loss]!.data[0]);
  let worst = 0;
  const eps = 1e-6;
  for (const p of tg.params) {
    const g = res[tg.gradOutputs.get(p.name)!]!.data as Float64Array;
    const base = p.init.data as Float64Array;
    for (let i = 0; i < base.length; i++) {
      const plus = base.slice();
      plus[i]! += eps;
      const minus = base.slice();
      minus[i]! -= eps;
      const num = ((await lossAt({ ...feeds, [p.name]: { ...p.init, data: plus } })) - (await lossAt({ ...feeds, [p.name]: { ...p.init, data: minus } }))) / (2 * eps);
      worst = Math.max(worst, Math.abs(num - g[i]!) / (1e-7 + 1e-5 * Math.abs(num)));
    }
  }
  await run.release();
  return { worst, tg };
}

test('cross-entropy training graph: every weight gradient matches finite differences', async () => {
  const { worst, tg } = await fdCheck(mlp(false), { ce: {} });
  assert.deepEqual(tg.params.map((p) => p.name).sort(), ['b1', 'b2', 'w1', 'w2']);
  assert.ok(worst < 1, `worst ${worst}`);
});

test('distillation + cross-entropy (T=3) and MSE losses: gradients match finite differences', async () => {
  assert.ok((await fdCheck(mlp(false), { ce: { weight: 0.3 }, kd: { weight: 0.7, temperature: 3 } })).worst < 1);
  assert.ok((await fdCheck(mlp(false), { mse: {} })).worst < 1);
});

test('BatchNorm in training mode (batch statistics): gradients match finite differences, stats are state', async () => {
  const { worst, tg } = await fdCheck(mlp(true), { ce: {} }, true);
  assert.ok(worst < 1, `worst ${worst}`);
  assert.ok(tg.params.some((p) => p.name === 's') && tg.params.some((p) => p.name === 'bb'));
  assert.ok(!tg.params.some((p) => p.name === 'rm' || p.name === 'rv'));
  assert.deepEqual(tg.state.map((s) => s.input), ['rm', 'rv']);
});

test('a float32 network whose head decodes in float64 (as YOLO exports do) trains its float32 weights', async () => {
  const r = rng(17);
  const b = new GraphBuilder('mixed');
  b.input('x', [2, 3, 5, 5]);
  const f32 = (dims: number[]) => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: numel(dims) }, () => r() - 0.5) });
  const h = b.node('Sigmoid', [b.node('Conv', ['x', b.init('w', f32([4, 3, 3, 3])), b.init('bias', f32([4]))], { pads: [1, 1, 1, 1] })]);
  const d = b.node('Cast', [h], { to: DataType.DOUBLE });
  const scaled = b.node('Mul', [d, b.init('anchor', t64([1, 4, 5, 5], r))]);
  b.node('Concat', [scaled, b.node('Cast', [b.node('Relu', [h])], { to: DataType.DOUBLE })], { axis: 1 }, { output: 'y' });
  b.output('y', undefined, D);
  const model = b.model(17);
  const tg = await buildTrainingGraph(model, { batch: 2, loss: { mse: {} } });
  assert.deepEqual(tg.params.map((p) => p.name).sort(), ['bias', 'w'], 'the float32 weights, not the float64 decode constants');
  const run = await createSession(tg.model, { threads: 1 });
  const feeds: Record<string, Tensor> = { x: f32([2, 3, 5, 5]), [TARGET]: f32([2, 8, 5, 5]) };
  for (const p of tg.params) feeds[p.name] = p.init;
  const res = await run.run(feeds);
  assert.equal(res[tg.output]!.dtype, D, 'the model output stays float64');
  const lossAt = async (w: Float32Array) => Number((await run.run({ ...feeds, w: { ...tg.params.find((p) => p.name === 'w')!.init, data: w } }, [tg.loss]))[tg.loss]!.data[0]);
  const g = res[tg.gradOutputs.get('w')!]!.data as Float32Array;
  const w0 = tg.params.find((p) => p.name === 'w')!.init.data as Float32Array;
  let checked = 0;
  for (let i = 0; i < w0.length; i += 7) {
    const plus = w0.slice();
    plus[i]! += 1e-2;
    const minus = w0.slice();
    minus[i]! -= 1e-2;
    const num = ((await lossAt(plus)) - (await lossAt(minus))) / 2e-2;
    assert.ok(Math.abs(num - g[i]!) <= 2e-3 + 2e-2 * Math.abs(num), `w[${i}]: analytic ${g[i]} vs numeric ${num}`);
    checked++;
  }
  assert.ok(checked >= 10 && g.some((v) => Math.abs(v) > 1e-3));
  await run.release();
});

test('decomposed BN matches onnxruntime BatchNormalization(training_mode=1) output and running mean', async () => {
  const r = rng(11);
  const mk = (train: boolean) => {
    const b = new GraphBuilder('bn');
    b.input('x', [3, 4, 5, 2]);
    const rr = rng(5);
    const fixed = (dims: number[], off = 0) => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: numel(dims) }, () => off + rr()) });
    const outs = train ? ['y', 'rm_out', 'rv_out'] : ['y'];
    b.nodeN('BatchNormalization', ['x', b.init('s', fixed([4])), b.init('bb', fixed([4])), b.init('rm', fixed([4])), b.init('rv', fixed([4], 0.5))],
      train ? { epsilon: F(1e-5), momentum: F(0.8), training_mode: 1 } : { epsilon: F(1e-5), momentum: F(0.8) }, outs);
    for (const o of outs) b.output(o);
    return b.model(15);
  };
  const x: Tensor = { dtype: DataType.FLOAT, dims: [3, 4, 5, 2], data: Float32Array.from({ length: 120 }, () => r() * 4 - 1) };
  const ref = await (await createSession(mk(true))).run({ x });
  const dec = mk(false);
  const pre = await probeTypes(dec, { x: [3, 4, 5, 2] });
  const state = decomposeBatchNormForTraining(dec, pre.shapes);
  dec.graph.outputs = [{ name: 'y' }, ...state.map((s) => ({ name: s.output }))];
  const got = await (await createSession(dec)).run({ x });
  const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
    assert.equal(a.length, b.length);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < tol, `${i}: ${a[i]} vs ${b[i]}`);
  };
  close(got['y']!.data as Float32Array, ref['y']!.data as Float32Array, 1e-4);
  close(got[state[0]!.output]!.data as Float32Array, ref['rm_out']!.data as Float32Array, 1e-5);
  // Running variance: PyTorch's unbiased estimate (onnxruntime keeps the biased one): n/(n-1) apart.
  const n = 30;
  const rvRef = ref['rv_out']!.data as Float32Array;
  const rv0 = dec.graph.initializers.get('rv')!.data as Float32Array;
  const expect = Array.from(rvRef, (v, i) => rv0[i]! * 0.8 + ((v - rv0[i]! * 0.8) / 0.2) * (n / (n - 1)) * 0.2);
  close(got[state[1]!.output]!.data as Float32Array, expect, 1e-4);
});

test('insertBatchNorm from data statistics keeps the function; foldBatchNorm folds it back exactly', async () => {
  const r = rng(21);
  const b = new GraphBuilder('cnn');
  b.input('x', ['N', 2, 6, 6]);
  const f = (dims: number[]) => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: numel(dims) }, () => r() - 0.5) });
  const h = b.node('Relu', [b.node('Conv', ['x', b.init('w1', f([3, 2, 3, 3])), b.init('c1', f([3]))], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] })]);
  b.node('Conv', [h, b.init('w2', f([4, 3, 1, 1]))], { kernel_shape: [1, 1] }, { output: 'y' });
  b.output('y');
  const model = b.model(17);
  const x: Tensor = { dtype: DataType.FLOAT, dims: [8, 2, 6, 6], data: Float32Array.from({ length: 8 * 72 }, () => r() * 2 - 1) };
  const ref = (await (await createSession(model)).run({ x }))['y']!.data as Float32Array;
  const { cloneModel } = await import('../src/ir/clone.js');
  const withBn = await insertBatchNorm(cloneModel(model), { x });
  assert.equal(withBn.graph.nodes.filter((n) => n.opType === 'BatchNormalization').length, 2);
  assert.ok(!withBn.graph.initializers.has('c1'), 'the conv bias moved into the BN running mean');
  const y1 = (await (await createSession(withBn)).run({ x }))['y']!.data as Float32Array;
  const folded = cloneModel(withBn);
  assert.equal(foldBatchNorm(folded), 2);
  assert.equal(folded.graph.nodes.filter((n) => n.opType === 'BatchNormalization').length, 0);
  const y2 = (await (await createSession(folded)).run({ x }))['y']!.data as Float32Array;
  for (let i = 0; i < ref.length; i++) {
    assert.ok(Math.abs(y1[i]! - ref[i]!) < 1e-4, `inserted ${i}`);
    assert.ok(Math.abs(y2[i]! - ref[i]!) < 1e-4, `folded ${i}`);
  }
});

test('insertBatchNorm with a reference restores the reference conv-output statistics (per-channel rescaling undone)', async () => {
  const r = rng(31);
  const build = (scale: number) => {
    const rr = rng(41);
    const b = new GraphBuilder('cnn');
    b.input('x', ['N', 2, 6, 6]);
    const f = (dims: number[], s = 1) => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: numel(dims) }, () => (rr() - 0.5) * s) });
    const h = b.node('Relu', [b.node('Conv', ['x', b.init('w1', f([3, 2, 3, 3], scale)), b.init('c1', f([3], scale))], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name: 'conv1' })]);
    b.node('Conv', [h, b.init('w2', f([4, 3, 1, 1])), b.init('c2', f([4]))], { kernel_shape: [1, 1] }, { name: 'conv2', output: 'y' });
    b.output('y');
    return b.model(17);
  };
  const ref = build(1);
  const damaged = build(0.3); // conv1 outputs shrunk per channel (as pruning shrinks them)
  const x: Tensor = { dtype: DataType.FLOAT, dims: [16, 2, 6, 6], data: Float32Array.from({ length: 16 * 72 }, () => r() * 2 - 1) };
  const yRef = (await (await createSession(ref)).run({ x }))['y']!.data as Float32Array;
  const yBad = (await (await createSession(damaged)).run({ x }))['y']!.data as Float32Array;
  const fixed = await insertBatchNorm(damaged, { x }, { reference: ref });
  const yFix = (await (await createSession(fixed)).run({ x }))['y']!.data as Float32Array;
  let errBad = 0;
  let errFix = 0;
  for (let i = 0; i < yRef.length; i++) {
    errBad = Math.max(errBad, Math.abs(yBad[i]! - yRef[i]!));
    errFix = Math.max(errFix, Math.abs(yFix[i]! - yRef[i]!));
  }
  assert.ok(errBad > 0.05, `damage ${errBad}`);
  assert.ok(errFix < 5e-3, `restored within ${errFix}`);
});

test('insertBatchNorm with a reference on a structurally pruned conv: channels matched by their copied biases', async () => {
  const r = rng(33);
  const rr = rng(43);
  const f = (dims: number[]) => Float32Array.from({ length: numel(dims) }, () => rr() - 0.5);
  const w1 = f([4, 2, 3, 3]);
  const c1 = f([4]);
  const w2 = f([3, 4, 1, 1]);
  const build = (keep: number[], wScale: number) => {
    const b = new GraphBuilder('cnn');
    b.input('x', ['N', 2, 6, 6]);
    const kw = Float32Array.from(keep.flatMap((k) => Array.from(w1.subarray(k * 18, (k + 1) * 18), (v) => v * wScale)));
    const kc = Float32Array.from(keep, (k) => c1[k]!);
    const k2 = Float32Array.from([0, 1, 2].flatMap((o) => keep.map((k) => w2[o * 4 + k]!)));
    const h = b.node('Relu', [b.node('Conv', ['x', b.init('w1', { dtype: DataType.FLOAT, dims: [keep.length, 2, 3, 3], data: kw }), b.init('c1', { dtype: DataType.FLOAT, dims: [keep.length], data: kc })], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name: 'conv1', output: 'h1' })]);
    b.node('Conv', [h, b.init('w2', { dtype: DataType.FLOAT, dims: [3, keep.length, 1, 1], data: k2 })], { kernel_shape: [1, 1] }, { name: 'conv2', output: 'y' });
    b.output('y');
    return b.model(17);
  };
  const ref = build([0, 1, 2, 3], 1);
  // Channel 1 removed, and the kept weights shrunk (the biases, copied by surgery, identify the channels).
  const pruned = build([0, 2, 3], 0.4);
  const x: Tensor = { dtype: DataType.FLOAT, dims: [16, 2, 6, 6], data: Float32Array.from({ length: 16 * 72 }, () => r() * 2 - 1) };
  const stats = async (m: Model, name: string) => {
    const probe = { ...m, graph: { ...m.graph, outputs: [{ name }] } };
    const t = (await (await createSession(probe)).run({ x }))[name]!;
    const [n, ch] = t.dims as [number, number];
    const sp = numel(t.dims.slice(2));
    return Array.from({ length: ch }, (_, c) => {
      let s = 0;
      for (let b = 0; b < n; b++) for (let i = 0; i < sp; i++) s += (t.data as Float32Array)[(b * ch + c) * sp + i]!;
      return s / (n * sp);
    });
  };
  const want = await stats(ref, 'h1');
  const fixed = await insertBatchNorm(pruned, { x }, { reference: ref });
  assert.ok(!fixed.graph.initializers.has('c1'), 'the conv bias moved into the BN');
  const got = await stats(fixed, fixed.graph.nodes.find((n) => n.opType === 'BatchNormalization')!.outputs[0]!);
  [0, 2, 3].forEach((k, i) => assert.ok(Math.abs(got[i]! - want[k]!) < 1e-3, `channel ${k}: mean ${got[i]} vs reference ${want[k]}`));
});
