/**
 * Activation-aware importance (Wanda-style scores per unit from calibration data) on token-stream MLPs ([N, T, C]
 * activations through MatMul), least-squares repair of the MLP's down projection after structured pruning, and
 * the refusal of a data-needing importance without data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor } from '../src/ir/tensor.js';
import type { Model } from '../src/ir/graph.js';
import { Dataset } from '../src/data/dataset.js';
import { arraySource, inMemoryRows } from '../src/data/arrays.js';
import { activationStats } from '../src/importance/activation.js';
import { unitImportance } from '../src/importance/importance.js';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { activationStatistics, pruneStructured } from '../src/prune/structured/index.js';
import { repair } from '../src/repair/repair.js';
import { createSession } from '../src/runtime/session.js';
import { saveModel } from '../src/onnx/io.js';
import { checkSteps } from '../src/pipeline/recipe.js';
import { npyBytes } from './data-helpers.js';
import { isUserError, shears } from './cli-helpers.js';
import { randn } from './repair-fixture.js';

const rows = (dims: number[], data: ArrayLike<number>) => new Dataset(arraySource(inMemoryRows({ dims, data: Float32Array.from(data) }), undefined, 'mem', 'mem'));

/** x [N, T, 2] -> MatMul w1 [2, 3] -> Relu -> MatMul w2 [3, 2] -> y: three hidden units. */
function mlp(w1: number[], w2: number[]): Model {
  const b = new GraphBuilder('mlp');
  const x = b.input('x', ['N', 2, 2]);
  const h = b.node('Relu', [b.node('MatMul', [x, b.init('w1', floatTensor([2, 3], w1))], {}, { name: 'fc1' })], {}, { name: 'act' });
  b.output(b.node('MatMul', [h, b.init('w2', floatTensor([3, 2], w2))], {}, { name: 'fc2', output: 'y' }), ['N', 2, 2]);
  return b.model(17);
}

// hidden h = [x0, x1, 0.1 (x0 + x1)]; the four tokens (1,2) (3,0) (0,1) (2,2) give
// h0 = 1,3,0,2 (mean square 14/4 = 3.5), h1 = 2,0,1,2 (9/4 = 2.25), h2 = .3,.3,.1,.4 (0.35/4 = 0.0875)
const W1 = [1, 0, 0.1, 0, 1, 0.1];
// rows of w2 (the slices reading h0, h1, h2): |row| sums 1, 4, 4
const W2 = [0.5, 0.5, 3, -1, 2, 2];
const TOKENS = [1, 2, 3, 0, 0, 1, 2, 2];

test('activation importance equals |w| x input RMS by hand, and prunes another unit than magnitude', async () => {
  const model = mlp(W1, W2);
  const data = rows([2, 2, 2], TOKENS);
  const stats = await activationStats(model, data, { batchSize: 1 });
  assert.equal(stats.samples, 2);
  const l2 = stats.layers.get('w2')!;
  assert.equal(l2.length, 1);
  assert.equal(l2[0]!.inAxis, 0);
  [3.5, 2.25, 0.0875].forEach((v, i) => assert.ok(Math.abs(l2[0]!.meanSquare[i]! - v) < 1e-6, `mean square of h${i}: ${l2[0]!.meanSquare[i]}`));
  const x1 = stats.layers.get('w1')![0]!; // the input tokens: x0 = 1,3,0,2 (3.5), x1 = 2,0,1,2 (2.25)
  assert.ok(Math.abs(x1.meanSquare[0]! - 3.5) < 1e-6 && Math.abs(x1.meanSquare[1]! - 2.25) < 1e-6);

  const an = analyzeModel(model, { inputShapes: { x: [1, 2, 2] } });
  const unitOf = (j: number) => an.dg.elementUnit[an.dg.spaceOf.get('w1@1')!.offset + j]!;
  const s = unitImportance(an.dg, { kind: 'activation', activations: stats, normalize: false });
  // 1 x sqrt(3.5), 4 x sqrt(2.25), 4 x sqrt(0.0875)
  const want = [1.8708287, 6, 1.1832160];
  want.forEach((v, j) => assert.ok(Math.abs(s[unitOf(j)]! - v) < 1e-5, `unit ${j}: ${s[unitOf(j)]} vs ${v}`));
  // normalised by the group mean (the default)
  const sn = unitImportance(an.dg, { kind: 'activation', activations: stats });
  const mean = want.reduce((a, b) => a + b) / 3;
  want.forEach((v, j) => assert.ok(Math.abs(sn[unitOf(j)]! - v / mean) < 1e-5));

  // pruning one of three: magnitude (l2) drops h0 (smallest weights), activation drops h2 (smallest input)
  const keptRows = (m: Model) => Array.from(m.graph.initializers.get('w2')!.data as Float32Array);
  const byL2 = pruneStructured(model, { ratio: 1 / 3, roundTo: 1, importance: 'l2', inputShapes: { x: [1, 2, 2] } });
  assert.deepEqual(keptRows(byL2.model), [3, -1, 2, 2]);
  const acts = await activationStatistics(model, data, { inputShapes: { x: [1, 2, 2] } });
  assert.deepEqual([...acts.layers.keys()], ['w2'], 'only layers that read a prunable channel are measured');
  const byAct = pruneStructured(model, { ratio: 1 / 3, roundTo: 1, importance: 'activation', activations: acts, inputShapes: { x: [1, 2, 2] } });
  assert.deepEqual(keptRows(byAct.model), [0.5, 0.5, 3, -1]);
  assert.equal(byAct.plan.options['importance'], 'activation');
});

test('a group no layer with statistics reads falls back to magnitude; max/sum aggregation', async () => {
  const model = mlp(W1, W2);
  const an = analyzeModel(model, { inputShapes: { x: [1, 2, 2] } });
  const l2 = unitImportance(an.dg, { kind: 'l2' });
  const none = unitImportance(an.dg, { kind: 'activation', activations: { layers: new Map(), samples: 1 } });
  assert.deepEqual([...none], [...l2]);
  const stats = await activationStats(model, rows([2, 2, 2], TOKENS));
  const sum = unitImportance(an.dg, { kind: 'activation', activations: stats, aggregate: 'sum', normalize: false });
  const max = unitImportance(an.dg, { kind: 'activation', activations: stats, aggregate: 'max', normalize: false });
  assert.deepEqual([...sum].map((v) => v.toFixed(5)), [...max].map((v) => v.toFixed(5)), 'one reading slice per unit');
});

test('importance needing data is refused without it, before any work', async () => {
  const model = mlp(W1, W2);
  assert.throws(() => pruneStructured(model, { ratio: 0.5, importance: 'activation', inputShapes: { x: [1, 2, 2] } }), /activation importance needs calibration/);
  assert.throws(() => pruneStructured(model, { ratio: 0.5, importance: 'taylor', inputShapes: { x: [1, 2, 2] } }), /Taylor importance needs gradients/);
  assert.throws(() => unitImportance(analyzeModel(model).dg, { kind: 'activation' }), /needs calibration data/);
  assert.throws(() => checkSteps([{ kind: 'prune', mode: 'structured', target: { kind: 'ratio', value: 0.5 }, importance: 'activation' } as never]), /activation needs calibration data/);
  // the CLI: exit 2, one line, no file written
  const dir = mkdtempSync(join(tmpdir(), 'shears-act-'));
  const path = join(dir, 'mlp.onnx');
  saveModel(model, path);
  const out = join(dir, 'o.onnx');
  const bad = shears(['prune', path, '-o', out, '--structured', '--ratio', '0.34', '--round-to', '1', '--importance', 'activation', '--input-shape', 'x=1x2x2']);
  assert.ok(isUserError(bad), bad.stderr);
  assert.match(bad.stderr, /activation needs calibration data: --calib/);
  assert.ok(!existsSync(out));
  // with --calib (an npy of [N, T, C] token rows) it prunes h2, as the library does: activation is the default
  // importance when calibration data is given
  writeFileSync(join(dir, 'x.npy'), npyBytes('<f4', [2, 2, 2], TOKENS));
  const ok = shears(['prune', path, '-o', out, '--structured', '--ratio', '0.34', '--round-to', '1', '--calib', `npy:${join(dir, 'x.npy')}`, '--input-shape', 'x=1x2x2', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /activation importance: input statistics of 1 layers over 2 calibration samples/);
  const { loadModel } = await import('../src/onnx/io.js');
  assert.deepEqual(Array.from(loadModel(out).graph.initializers.get('w2')!.data as Float32Array), [0.5, 0.5, 3, -1]);
  // without data the default is l2 (h0 goes)
  const l2 = shears(['prune', path, '-o', out, '--structured', '--ratio', '0.34', '--round-to', '1', '--input-shape', 'x=1x2x2']);
  assert.equal(l2.code, 0, l2.stderr);
  assert.deepEqual(Array.from(loadModel(out).graph.initializers.get('w2')!.data as Float32Array), [3, -1, 2, 2]);
});

/** x [N, T, 4] -> fc1 MatMul [4, 6] -> Add b1 -> Relu -> fc2 MatMul [6, 4] -> Add b2 -> y (a transformer MLP). */
function transformerMlp(): Model {
  const b = new GraphBuilder('tmlp');
  const x = b.input('x', ['N', 5, 4]);
  const h = b.node('Add', [b.node('MatMul', [x, b.init('w1', floatTensor([4, 6], randn(24, 71, 0.7)))], {}, { name: 'fc1' }), b.init('b1', floatTensor([6], randn(6, 72, 0.3)))], {}, { name: 'fc1_add' });
  const r = b.node('Relu', [h], {}, { name: 'act' });
  const y = b.node('Add', [b.node('MatMul', [r, b.init('w2', floatTensor([6, 4], randn(24, 73, 0.5)))], {}, { name: 'fc2' }), b.init('b2', floatTensor([4], randn(4, 74, 0.1)))], {}, { name: 'fc2_add', output: 'y' });
  b.output(y, ['N', 5, 4]);
  return b.model(17);
}

/** Solves the normal equations (X^T X) W = X^T Y in float64 (Gauss-Jordan), X [M, k], Y [M, n]. */
function lstsq(x: Float64Array, y: Float64Array, m: number, k: number, n: number): Float64Array {
  const a = new Float64Array(k * (k + n));
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) for (let r = 0; r < m; r++) a[i * (k + n) + j]! += x[r * k + i]! * x[r * k + j]!;
    for (let j = 0; j < n; j++) for (let r = 0; r < m; r++) a[i * (k + n) + k + j]! += x[r * k + i]! * y[r * n + j]!;
  }
  const w = k + n;
  for (let c = 0; c < k; c++) {
    let p = c;
    for (let r = c + 1; r < k; r++) if (Math.abs(a[r * w + c]!) > Math.abs(a[p * w + c]!)) p = r;
    for (let j = 0; j < w; j++) [a[c * w + j], a[p * w + j]] = [a[p * w + j]!, a[c * w + j]!];
    const d = a[c * w + c]!;
    for (let j = 0; j < w; j++) a[c * w + j]! /= d;
    for (let r = 0; r < k; r++) {
      if (r === c) continue;
      const f = a[r * w + c]!;
      for (let j = 0; j < w; j++) a[r * w + j]! -= f * a[c * w + j]!;
    }
  }
  const out = new Float64Array(k * n);
  for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) out[i * n + j] = a[i * w + k + j]!;
  return out;
}

async function outputOf(model: Model, x: Float32Array, n: number, name = 'y'): Promise<Float32Array> {
  const m = { ...model, graph: { ...model.graph, outputs: [...model.graph.outputs, ...(name === 'y' ? [] : [{ name }])] } };
  const s = await createSession(m, { threads: 1 });
  try {
    return (await s.run({ x: floatTensor([n, 5, 4], x) }, [name]))[name]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

test('least-squares repair of the down projection of a [N, T, C] MLP (its bias: the Add after it): the closed-form solution, less output error', async () => {
  const dense = transformerMlp();
  const n = 24;
  const xs = randn(n * 5 * 4, 75);
  const calib = rows([n, 5, 4], xs);
  const acts = await activationStatistics(dense, calib, { inputShapes: { x: [1, 5, 4] } });
  const pruned = pruneStructured(dense, { ratio: 0.5, roundTo: 1, importance: 'activation', activations: acts, inputShapes: { x: [1, 5, 4] } }).model;
  assert.deepEqual(pruned.graph.initializers.get('w2')!.dims, [3, 4]);
  const { model: fixed, report } = await repair(dense, pruned, calib, { method: 'lsq', damp: 1e-10, batchSize: 7, threads: 1 });
  assert.deepEqual(report.layers.map((l) => l.node), ['fc1', 'fc2']);
  assert.deepEqual(report.skipped, []);
  const fc2 = report.layers[1]!;
  assert.ok(fc2.errAfter! < fc2.errBefore!, `${fc2.errAfter} vs ${fc2.errBefore}`);
  // closed form: X = the pruned hidden activations ([N*T, 3]), Y = the dense fc2 MatMul output ([N*T, 4])
  const m = n * 5;
  const hp = Float64Array.from(await outputOf(pruned, xs, n, pruned.graph.nodes.find((q) => q.name === 'act')!.outputs[0]!));
  const yd = Float64Array.from(await outputOf(dense, xs, n, dense.graph.nodes.find((q) => q.name === 'fc2')!.outputs[0]!));
  // with a column of ones: the Add after fc2 holds the bias, and the fit changes it too
  const x1 = new Float64Array(m * 4);
  for (let r = 0; r < m; r++) {
    x1.set(hp.subarray(r * 3, r * 3 + 3), r * 4);
    x1[r * 4 + 3] = 1;
  }
  const want = lstsq(x1, yd, m, 4, 4);
  const got = fixed.graph.initializers.get('w2')!.data as Float32Array;
  for (let i = 0; i < 12; i++) assert.ok(Math.abs(got[i]! - want[i]!) < 1e-3 * (1 + Math.abs(want[i]!)), `w2[${i}]: ${got[i]} vs closed form ${want[i]}`);
  const b2 = dense.graph.initializers.get('b2')!.data as Float32Array;
  const addB = fixed.graph.nodes.find((q) => q.name === 'fc2_add')!.inputs[1]!;
  const nb2 = fixed.graph.initializers.get(addB)!.data as Float32Array;
  for (let o = 0; o < 4; o++) assert.ok(Math.abs(nb2[o]! - (b2[o]! + want[12 + o]!)) < 1e-3, `b2[${o}]: ${nb2[o]} vs ${b2[o]! + want[12 + o]!}`);
  assert.ok(want.subarray(12).some((v) => Math.abs(v) > 1e-2), 'the bias moves');
  // fc1 keeps its inputs: its refit is its own weights and bias (up to the damping)
  const b1 = fixed.graph.initializers.get(fixed.graph.nodes.find((q) => q.name === 'fc1_add')!.inputs[1]!)!.data as Float32Array;
  const b1p = pruned.graph.initializers.get('b1')!.data as Float32Array;
  b1p.forEach((v, i) => assert.ok(Math.abs(b1[i]! - v) < 1e-4));
  // and the model's output error against the dense model drops (on held-out tokens too)
  const held = randn(16 * 5 * 4, 76);
  const err = async (model: Model, x: Float32Array, k: number) => {
    const a = await outputOf(model, x, k);
    const b = await outputOf(dense, x, k);
    let e = 0, s = 0;
    for (let i = 0; i < a.length; i++) {
      e += (a[i]! - b[i]!) ** 2;
      s += b[i]! ** 2;
    }
    return e / s;
  };
  for (const [x, k] of [[xs, n], [held, 16]] as const) {
    const before = await err(pruned, x, k);
    const after = await err(fixed, x, k);
    assert.ok(after < 0.8 * before, `relative error ${after} after repair vs ${before} without`);
  }
});

test('Conv and Gemm consumers: per kernel position |w| x patch RMS, equal to a direct computation', async () => {
  // x [N, 2, 3, 3] -> conv1 1x1 (2 -> 3) -> Relu -> conv2 2x2 (3 -> 2) -> GlobalAveragePool -> Flatten -> Gemm (transB, 2 -> 4)
  const w1 = Array.from(randn(6, 81));
  const w2 = Array.from(randn(24, 82));
  const wg = Array.from(randn(8, 83));
  const b = new GraphBuilder('convs');
  const x = b.input('x', ['N', 2, 3, 3]);
  const h = b.node('Relu', [b.node('Conv', [x, b.init('w1', floatTensor([3, 2, 1, 1], w1))], {}, { name: 'conv1' })], {}, { name: 'relu' });
  const c2 = b.node('Conv', [h, b.init('w2', floatTensor([2, 3, 2, 2], w2))], {}, { name: 'conv2' });
  const f = b.node('Flatten', [b.node('GlobalAveragePool', [c2], {}, { name: 'gap' })], { axis: 1 }, { name: 'flat' });
  b.output(b.node('Gemm', [f, b.init('wg', floatTensor([4, 2], wg))], { transB: 1 }, { name: 'fc', output: 'y' }), ['N', 4]);
  const model = b.model(17);
  const n = 5;
  const xs = Array.from(randn(n * 18, 84));
  const stats = await activationStatistics(model, rows([n, 2, 3, 3], xs), { inputShapes: { x: [1, 2, 3, 3] } });
  assert.deepEqual([...stats.layers.keys()].sort(), ['w2', 'wg']);
  // direct: hidden h[s][c][y][x], conv2 output, its spatial mean
  const hid = (s: number, c: number, p: number) => Math.max(0, w1[c * 2]! * xs[s * 18 + p]! + w1[c * 2 + 1]! * xs[s * 18 + 9 + p]!);
  const conv2 = (s: number, o: number, y: number, xx: number) => {
    let v = 0;
    for (let c = 0; c < 3; c++) for (let dy = 0; dy < 2; dy++) for (let dx = 0; dx < 2; dx++) v += w2[((o * 3 + c) * 2 + dy) * 2 + dx]! * hid(s, c, (y + dy) * 3 + xx + dx);
    return v;
  };
  const want2 = [0, 1, 2].map((c) => {
    let score = 0;
    for (let dy = 0; dy < 2; dy++) for (let dx = 0; dx < 2; dx++) {
      let sq = 0; // patches: every sample and output position (2 x 2)
      for (let s = 0; s < n; s++) for (let y = 0; y < 2; y++) for (let xx = 0; xx < 2; xx++) sq += hid(s, c, (y + dy) * 3 + xx + dx) ** 2;
      const rms = Math.sqrt(sq / (n * 4));
      for (let o = 0; o < 2; o++) score += Math.abs(w2[((o * 3 + c) * 2 + dy) * 2 + dx]!) * rms;
    }
    return score;
  });
  const wantG = [0, 1].map((c) => {
    let sq = 0;
    for (let s = 0; s < n; s++) {
      let m = 0;
      for (let y = 0; y < 2; y++) for (let xx = 0; xx < 2; xx++) m += conv2(s, c, y, xx) / 4;
      sq += m * m;
    }
    let a = 0;
    for (let o = 0; o < 4; o++) a += Math.abs(wg[o * 2 + c]!);
    return a * Math.sqrt(sq / n);
  });
  const an = analyzeModel(model, { inputShapes: { x: [1, 2, 3, 3] } });
  const s = unitImportance(an.dg, { kind: 'activation', activations: stats, normalize: false });
  const unit = (w: string, j: number) => an.dg.elementUnit[an.dg.spaceOf.get(`${w}@0`)!.offset + j]!;
  want2.forEach((v, c) => assert.ok(Math.abs(s[unit('w1', c)]! - v) < 1e-4 * (1 + v), `conv1 channel ${c}: ${s[unit('w1', c)]} vs ${v}`));
  wantG.forEach((v, c) => assert.ok(Math.abs(s[unit('w2', c)]! - v) < 1e-4 * (1 + v), `conv2 channel ${c}: ${s[unit('w2', c)]} vs ${v}`));
});
