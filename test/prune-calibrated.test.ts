/**
 * Calibrated one-shot pruning (--method wanda | sparsegpt, --owl): masks and weights against independent float64
 * computations (Wanda's per-output comparison, N:M along the reduction axis, the textbook SparseGPT loop, OWL's
 * allocation), each layer on the outputs of the pruned layers before it; the fallback for a singular Hessian;
 * bad input before any work (CLI exit 2); recipes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { openDataset } from '../src/data/spec.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor } from '../src/ir/tensor.js';
import { saveModel, loadModel } from '../src/onnx/io.js';
import { validateRecipe, runPipeline, parseRecipe, pruneUnstructured, repair, openDataset as openSpec } from '../src/index.js';
import { pruneCalibrated } from '../src/prune/calibrated.js';
import { getMasks } from '../src/sparsity/masks.js';
import { unmaskableWeights } from '../src/sparsity/layers.js';
import { embeddingRows } from '../src/repair/token-checks.js';
import { npyBytes, tempDir } from './data-helpers.js';
import { isUserError, shears } from './cli-helpers.js';
import { tinyLm, writeTokens } from './lm-fixture.js';

const K1 = 8;
const H = 12;
const O = 4;
const N = 64;

function rng(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  };
}

/** x [N, 8] -> (scale) -> MatMul W1 [8, 12] -> Relu -> MatMul W2 [12, 4] -> y. */
function mlp(opts: { seed?: number; scale?: number; outliers?: boolean } = {}): { model: Model; w1: Float32Array; w2: Float32Array } {
  const r = rng(opts.seed ?? 5);
  const w1 = Float32Array.from({ length: K1 * H }, () => r());
  const w2 = Float32Array.from({ length: H * O }, () => r());
  if (opts.outliers) for (const i of [3, 17, 29, 40, 51, 66, 77, 90]) w1[i] = 40 * Math.sign(w1[i]!);
  const b = new GraphBuilder('mlp');
  const x = b.input('x', ['N', K1]);
  b.init('W1', floatTensor([K1, H], w1));
  b.init('W2', floatTensor([H, O], w2));
  let v = x;
  if (opts.scale !== undefined) {
    b.init('s', floatTensor([1], [opts.scale]));
    v = b.node('Mul', [x, 's']);
  }
  const h = b.node('MatMul', [v, 'W1'], {}, { name: 'fc1' });
  const a = b.node('Relu', [h]);
  b.node('MatMul', [a, 'W2'], {}, { name: 'fc2', output: 'y' });
  b.output('y', ['N', O]);
  return { model: b.model(17), w1, w2 };
}

function calibData(dir: string, seed = 9): { spec: string; x: Float32Array } {
  const r = rng(seed);
  const x = Float32Array.from({ length: N * K1 }, () => 2 * r());
  const path = join(dir, 'x.npy');
  writeFileSync(path, npyBytes('<f4', [N, K1], x));
  return { spec: `npy:${path}`, x };
}

const weight = (m: Model, name: string) => m.graph.initializers.get(name)!.data as Float32Array;

/** relu(x @ w) in float64, x [n, k], w [k, h] (row-major). */
function forward(x: ArrayLike<number>, n: number, k: number, w: ArrayLike<number>, h: number, relu = true): Float64Array {
  const y = new Float64Array(n * h);
  for (let i = 0; i < n; i++) for (let o = 0; o < h; o++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += x[i * k + j]! * w[j * h + o]!;
    y[i * h + o] = relu ? Math.max(0, s) : s;
  }
  return y;
}

/** Wanda's keep-mask of w [k, h] for inputs x [n, k]: per output o, the `drop` lowest |w_jo| ||x_j||. */
function wandaMask(x: ArrayLike<number>, n: number, k: number, w: ArrayLike<number>, h: number, drop: number, nm?: [number, number]): Uint8Array {
  const norm = Array.from({ length: k }, (_, j) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i * k + j]! ** 2;
    return Math.sqrt(s);
  });
  const keep = new Uint8Array(k * h).fill(1);
  for (let o = 0; o < h; o++) {
    const groups = nm ? Array.from({ length: k / nm[1] }, (_, g) => Array.from({ length: nm[1] }, (_, t) => g * nm[1] + t)) : [Array.from({ length: k }, (_, j) => j)];
    for (const js of groups) {
      const sorted = [...js].sort((a, b) => Math.abs(w[a * h + o]!) * norm[a]! - Math.abs(w[b * h + o]!) * norm[b]!);
      for (const j of sorted.slice(0, nm ? nm[1] - nm[0] : drop)) keep[j * h + o] = 0;
    }
  }
  return keep;
}

const zerosOf = (a: ArrayLike<number>) => Array.from(a).filter((v) => v === 0).length;
const maskOf = (a: ArrayLike<number>) => Uint8Array.from(a, (v) => (v === 0 ? 0 : 1));

test('wanda 50%: per output the lowest |w| x ||x|| dropped, layer 2 scored on the pruned layer 1 outputs', async () => {
  const dir = tempDir();
  const { spec, x } = calibData(dir);
  const { model, w1, w2 } = mlp();
  const r = await pruneCalibrated(model, openDataset(spec), { method: 'wanda', sparsity: 0.5, weights: new Set(['W1', 'W2']) });
  assert.deepEqual(r.layers.map((l) => [l.node, l.zeros]), [['fc1', 48], ['fc2', 24]]);
  assert.equal(r.steps, 2);
  const m1 = wandaMask(x, N, K1, w1, H, 4);
  assert.deepEqual(maskOf(weight(model, 'W1')), m1);
  const p1 = Float32Array.from(w1, (v, i) => (m1[i] ? v : 0));
  const a1 = forward(x, N, K1, p1, H);
  const m2 = wandaMask(a1, N, H, w2, O, 6);
  assert.deepEqual(maskOf(weight(model, 'W2')), m2, 'layer 2 by the activations of the pruned layer 1');
  const dense2 = wandaMask(forward(x, N, K1, w1, H), N, H, w2, O, 6);
  assert.notDeepEqual(dense2, m2, 'the fixture tells the pruned from the dense activations apart');
  // the kept weights are the dense ones (no update), and the masks are stored
  for (let i = 0; i < w1.length; i++) if (m1[i]) assert.equal(weight(model, 'W1')[i], w1[i]);
  assert.deepEqual(getMasks(model).get('W2'), m2);
});

test('wanda 2:4: groups of 4 consecutive inputs of each output (the reduction axis), 2 kept by |w| x ||x||', async () => {
  const dir = tempDir();
  const { spec, x } = calibData(dir);
  const { model, w1 } = mlp();
  await pruneCalibrated(model, openDataset(spec), { method: 'wanda', pattern: { n: 2, m: 4 }, weights: new Set(['W1']) });
  const got = weight(model, 'W1');
  assert.deepEqual(maskOf(got), wandaMask(x, N, K1, w1, H, 0, [2, 4]));
  for (let o = 0; o < H; o++) for (let g = 0; g < K1; g += 4) assert.equal([0, 1, 2, 3].filter((t) => got[(g + t) * H + o] !== 0).length, 2);
});

/** The textbook SparseGPT loop (Frantar & Alistarh 2023) in float64 on one layer: rows = outputs. */
function sparsegptRef(x: ArrayLike<number>, n: number, k: number, w: ArrayLike<number>, h: number, sparsity: number): Float64Array {
  const hs = new Float64Array(k * k);
  for (let i = 0; i < n; i++) for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) hs[a * k + b]! += x[i * k + a]! * x[i * k + b]!;
  let mean = 0;
  for (let a = 0; a < k; a++) mean += hs[a * k + a]! / k;
  for (let a = 0; a < k; a++) hs[a * k + a]! += 0.01 * mean;
  // Hinv = inverse(H) by Gauss-Jordan, then its upper Cholesky factor
  const inv = new Float64Array(k * k);
  const aug = Float64Array.from(hs);
  for (let a = 0; a < k; a++) inv[a * k + a] = 1;
  for (let c = 0; c < k; c++) {
    const p = aug[c * k + c]!;
    for (let j = 0; j < k; j++) {
      aug[c * k + j]! /= p;
      inv[c * k + j]! /= p;
    }
    for (let r = 0; r < k; r++) {
      if (r === c) continue;
      const f = aug[r * k + c]!;
      for (let j = 0; j < k; j++) {
        aug[r * k + j]! -= f * aug[c * k + j]!;
        inv[r * k + j]! -= f * inv[c * k + j]!;
      }
    }
  }
  const u = new Float64Array(k * k); // upper: inv = U^T U
  for (let i = 0; i < k; i++) {
    let s = inv[i * k + i]!;
    for (let t = 0; t < i; t++) s -= u[t * k + i]! ** 2;
    u[i * k + i] = Math.sqrt(s);
    for (let j = i + 1; j < k; j++) {
      let v = inv[i * k + j]!;
      for (let t = 0; t < i; t++) v -= u[t * k + i]! * u[t * k + j]!;
      u[i * k + j] = v / u[i * k + i]!;
    }
  }
  const W = Array.from({ length: h }, (_, o) => Float64Array.from({ length: k }, (_, j) => w[j * h + o]!));
  // one block (k < 128): the mask over all rows and columns at the start
  const cand: [number, number, number][] = [];
  for (let o = 0; o < h; o++) for (let j = 0; j < k; j++) cand.push([W[o]![j]! ** 2 / u[j * k + j]! ** 2, o, j]);
  cand.sort((a, b) => a[0] - b[0]);
  const pruned = new Set(cand.slice(0, Math.round(sparsity * h * k)).map(([, o, j]) => o * k + j));
  for (let j = 0; j < k; j++) {
    for (let o = 0; o < h; o++) {
      if (!pruned.has(o * k + j)) continue;
      const err = W[o]![j]! / u[j * k + j]!;
      for (let t = j; t < k; t++) W[o]![t]! -= err * u[j * k + t]!;
      W[o]![j] = 0;
    }
  }
  const out = new Float64Array(k * h);
  for (let o = 0; o < h; o++) for (let j = 0; j < k; j++) out[j * h + o] = W[o]![j]!;
  return out;
}

test('sparsegpt 50%: the textbook OBS loop (damping 1%, mask per block), layer 2 on the pruned layer 1; lower output error than wanda', async () => {
  const dir = tempDir();
  const { spec, x } = calibData(dir);
  const { model, w1, w2 } = mlp();
  const r = await pruneCalibrated(model, openDataset(spec), { method: 'sparsegpt', sparsity: 0.5, weights: new Set(['W1', 'W2']) });
  assert.deepEqual(r.layers.map((l) => l.zeros), [48, 24]);
  assert.ok(r.layers.every((l) => l.note === undefined));
  const ref1 = sparsegptRef(x, N, K1, w1, H, 0.5);
  const got1 = weight(model, 'W1');
  assert.deepEqual(maskOf(got1), maskOf(ref1));
  for (let i = 0; i < ref1.length; i++) assert.ok(Math.abs(got1[i]! - ref1[i]!) < 1e-4, `W1[${i}] ${got1[i]} vs ${ref1[i]}`);
  const a1 = forward(x, N, K1, got1, H);
  const ref2 = sparsegptRef(a1, N, H, w2, O, 0.5);
  const got2 = weight(model, 'W2');
  for (let i = 0; i < ref2.length; i++) assert.ok(Math.abs(got2[i]! - ref2[i]!) < 1e-3, `W2[${i}] ${got2[i]} vs ${ref2[i]}`);
  // the updates pay: layer 1's output error below wanda's (same sparsity, no update)
  const dense = forward(x, N, K1, w1, H, false);
  const errOf = (w: ArrayLike<number>) => forward(x, N, K1, w, H, false).reduce((s, v, i) => s + (v - dense[i]!) ** 2, 0);
  const wm = wandaMask(x, N, K1, w1, H, 4);
  assert.ok(errOf(got1) < 0.8 * errOf(Float32Array.from(w1, (v, i) => (wm[i] ? v : 0))));
});

test('sparsegpt 2:4 and fit-first: valid N:M, finite; the least-squares start needs the dense outputs (one step per layer)', async () => {
  const dir = tempDir();
  const { spec } = calibData(dir);
  for (const fitFirst of [false, true]) {
    const { model } = mlp();
    const r = await pruneCalibrated(model, openDataset(spec), { method: 'sparsegpt', pattern: { n: 2, m: 4 }, weights: new Set(['W1', 'W2']), fitFirst });
    assert.equal(r.steps, 2);
    for (const [name, rows, k] of [['W1', H, K1], ['W2', O, H]] as const) {
      const w = weight(model, name);
      assert.ok(w.every(Number.isFinite));
      for (let o = 0; o < rows; o++) for (let g = 0; g < k; g += 4) assert.equal([0, 1, 2, 3].filter((t) => w[(g + t) * rows + o] !== 0).length, 2, `${name} output ${o} group ${g}`);
    }
  }
});

test('OWL: the layer with more outlier scores is pruned less, the sparsities average the target (S +- lambda)', async () => {
  const dir = tempDir();
  const { spec } = calibData(dir);
  const { model } = mlp({ outliers: true });
  const r = await pruneCalibrated(model, openDataset(spec), { method: 'wanda', sparsity: 0.5, weights: new Set(['W1', 'W2']), owl: { m: 5, lambda: 0.08 } });
  const blocks = r.owl!.blocks;
  assert.equal(blocks.length, 2, 'no transformer blocks: each layer is its own');
  assert.ok(blocks[0]!.outlierRatio > blocks[1]!.outlierRatio, JSON.stringify(blocks));
  assert.ok(Math.abs(blocks[0]!.sparsity - 0.42) < 1e-12 && Math.abs(blocks[1]!.sparsity - 0.58) < 1e-12, JSON.stringify(blocks));
  assert.deepEqual(r.layers.map((l) => l.zeros), [Math.round(0.42 * 96), Math.round(0.58 * 48)]);
  await assert.rejects(pruneCalibrated(mlp().model, openDataset(spec), { method: 'wanda', pattern: { n: 2, m: 4 }, weights: new Set(['W1']), owl: {} }), /OWL .* does not apply to N:M/);
});

test('a Hessian that is not finite (activations overflow float32): magnitude for that layer, reported; no NaN written', async () => {
  const dir = tempDir();
  const { spec } = calibData(dir);
  const { model, w1 } = mlp({ scale: 1e22 });
  const r = await pruneCalibrated(model, openDataset(spec), { method: 'sparsegpt', sparsity: 0.5, weights: new Set(['W1']) });
  assert.match(r.layers[0]!.note ?? '', /magnitude instead: the calibration statistics are not finite/);
  const got = weight(model, 'W1');
  assert.ok(got.every(Number.isFinite));
  // per output, the 4 smallest |w| of 8
  const keep = new Uint8Array(K1 * H).fill(1);
  for (let o = 0; o < H; o++) for (const j of Array.from({ length: K1 }, (_, j) => j).sort((a, b) => Math.abs(w1[a * H + o]!) - Math.abs(w1[b * H + o]!)).slice(0, 4)) keep[j * H + o] = 0;
  assert.deepEqual(maskOf(got), keep);
});

test('activation x activation MatMuls (attention scores) are not reported as unprunable weights; a weight computed from constants is', () => {
  const b = new GraphBuilder('attn');
  const q = b.input('q', ['N', 4, 4]);
  const k = b.input('k', ['N', 4, 4]);
  b.init('W', floatTensor([4, 4], Array.from({ length: 16 }, (_, i) => i + 1)));
  const wt = b.node('Transpose', ['W'], { perm: [1, 0] });
  const s = b.node('MatMul', [q, b.node('Transpose', [k], { perm: [0, 2, 1] })], {}, { name: 'scores' });
  b.node('MatMul', [s, wt], {}, { name: 'proj', output: 'y' });
  b.output('y', ['N', 4, 4]);
  const left = unmaskableWeights(b.model(17));
  assert.equal(left.length, 1, JSON.stringify(left));
  assert.match(left[0]!.reason, /weight of MatMul proj is computed in the graph/);
});

test('CLI: --method wanda needs --calib; OWL not with N:M; bad token data refused with exit 2 before any work', () => {
  const dir = tempDir();
  const lmPath = join(dir, 'lm.onnx');
  saveModel(tinyLm(), lmPath);
  const { path: tokens } = writeTokens(dir, 64);
  const out = join(dir, 'o.onnx');
  let r = shears(['prune', lmPath, '-o', out, '--sparsity', '0.5', '--method', 'wanda']);
  assert.ok(isUserError(r), r.stderr);
  assert.match(r.stderr, /--method wanda needs calibration data: --calib/);
  r = shears(['prune', lmPath, '-o', out, '--pattern', '2:4', '--method', 'sparsegpt', '--owl', '--calib', `tokens:${tokens},context=4`]);
  assert.ok(isUserError(r), r.stderr);
  assert.match(r.stderr, /--owl needs --sparsity with --method wanda\|sparsegpt/);
  // a file shorter than one window
  r = shears(['prune', lmPath, '-o', out, '--sparsity', '0.5', '--method', 'wanda', '--calib', `tokens:${tokens},context=100`]);
  assert.ok(isUserError(r), r.stderr);
  assert.match(r.stderr, /too short for windows of 100 tokens/);
  // ids outside the vocabulary: the embedding table has 7 rows
  assert.equal(embeddingRows(tinyLm()), 7);
  const big = join(dir, 'big.bin');
  writeFileSync(big, Uint8Array.from({ length: 64 }, (_, i) => (i === 20 ? 9 : i % 7)));
  r = shears(['prune', lmPath, '-o', out, '--sparsity', '0.5', '--method', 'sparsegpt', '--calib', `tokens:${big},context=4`]);
  assert.ok(isUserError(r), r.stderr);
  assert.match(r.stderr, /token 20 is id 9, outside the model's vocabulary of 7/);
  // a context longer than the positional table: known from shape inference
  const b = new GraphBuilder('pos_lm');
  const ids = b.input('input_ids', ['N', 'T'], DataType.INT64);
  b.init('embed', floatTensor([7, 3], Array.from({ length: 21 }, (_, i) => Math.sin(i))));
  b.init('pos', floatTensor([5, 3], Array.from({ length: 15 }, (_, i) => Math.cos(i))));
  b.init('head', floatTensor([3, 7], Array.from({ length: 21 }, (_, i) => Math.cos(2 * i))));
  const e = b.node('Add', [b.node('Gather', ['embed', ids], { axis: 0 }), 'pos']);
  b.node('MatMul', [e, 'head'], {}, { output: 'logits' });
  b.output('logits', ['N', 'T', 7]);
  const posPath = join(dir, 'pos.onnx');
  saveModel(b.model(17), posPath);
  r = shears(['prune', posPath, '-o', out, '--sparsity', '0.5', '--method', 'wanda', '--calib', `tokens:${tokens},context=8`]);
  assert.ok(isUserError(r), r.stderr);
  assert.match(r.stderr, /the model does not accept windows of 8 tokens .*do not broadcast/);
  // the right context works, prints what ran, and writes 50% zeros
  // the only layer is the output layer (an LM head): left dense by default, so nothing to prune is an error
  r = shears(['prune', posPath, '-o', out, '--sparsity', '0.5', '--method', 'wanda', '--calib', `tokens:${tokens},context=5`, '--calib-size', '8']);
  assert.ok(isUserError(r), r.stderr);
  assert.match(r.stderr, /no layer to prune with wanda \(MatMul.*an output layer \(LM head\): left as it is\)/);
  r = shears(['prune', posPath, '-o', out, '--sparsity', '0.5', '--method', 'wanda', '--include', 'head', '--calib', `tokens:${tokens},context=5`, '--calib-size', '8']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr + r.stdout, /wanda: 1 layers in .* on 8 calibration samples, each layer on the outputs of the pruned layers before it/);
  assert.equal(zerosOf(weight(loadModel(out), 'head')), 11);
});

test('recipes: wanda/sparsegpt need calib; OWL options only with them; a plain-JSON recipe runs through the library', async () => {
  const step = (o: Record<string, unknown>) => ({ format: 'shears.recipe', version: 1, steps: [{ kind: 'prune', mode: 'unstructured', sparsity: 0.5, ...o }] });
  assert.throws(() => validateRecipe(step({ method: 'sparsegpt' })), /method sparsegpt needs calibration data: calib/);
  assert.throws(() => validateRecipe(step({ method: 'l1', owl: true })), /owl applies to method wanda or sparsegpt only/);
  assert.throws(() => validateRecipe(step({ method: 'wanda', calib: 'x', scope: 'global' })), /scope global does not apply to wanda/);
  const dir = tempDir();
  const { spec } = calibData(dir);
  // include: the output layer W2 is pruned too (by default wanda/sparsegpt leave an output layer dense)
  const recipe = validateRecipe(step({ method: 'sparsegpt', calib: spec, calibSize: 32, owl: true, owlLambda: 0.05, include: 'W' }));
  const { model, report } = await runPipeline(mlp({ outliers: true }).model, recipe, { openData: async (s, pp) => openSpec(s, pp) });
  const cal = (report as { calibrated?: { method: string; calibSamples: number; owl?: { blocks: { sparsity: number }[] } } }).calibrated!;
  assert.equal(cal.method, 'sparsegpt');
  assert.equal(cal.calibSamples, 32);
  assert.deepEqual(cal.owl!.blocks.map((b) => Number(b.sparsity.toFixed(6))), [0.45, 0.55]);
  assert.equal(zerosOf(weight(model, 'W1')), Math.round(0.45 * 96));
});

test('repair obs/wanda after N:M pruning re-chooses masks only where the prune step pruned (an excluded layer stays dense)', async () => {
  const dir = tempDir();
  const { spec } = calibData(dir);
  for (const method of ['wanda', 'obs']) {
    const { model: dense, w2 } = mlp();
    const recipe = validateRecipe({
      format: 'shears.recipe', version: 1,
      steps: [{ kind: 'prune', mode: 'nm', pattern: '2:4', exclude: 'W2' }, { kind: 'repair', methods: [method], calib: spec, calibSize: 32 }],
    });
    const { model } = await runPipeline(dense, recipe, { openData: async (s, pp) => openSpec(s, pp) });
    assert.deepEqual(Array.from(weight(model, 'W2')), Array.from(w2), `${method}: W2 untouched`);
    const w = weight(model, 'W1');
    for (let o = 0; o < H; o++) for (let g = 0; g < K1; g += 4) assert.ok([0, 1, 2, 3].filter((t) => w[(g + t) * H + o] !== 0).length <= 2);
    assert.equal(zerosOf(w), 48);
  }
});

test('the example recipe examples/llm-sparsegpt-2of4.yaml parses to a one-pass SparseGPT 2:4 step', () => {
  const path = fileURLToPath(new URL('../../examples/llm-sparsegpt-2of4.yaml', import.meta.url));
  const recipe = parseRecipe(readFileSync(path, 'utf8'), 'llm-sparsegpt-2of4.yaml');
  assert.deepEqual(recipe.steps[0], { kind: 'prune', mode: 'nm', pattern: '2:4', method: 'sparsegpt', calib: '$calib', calibSize: 32 });
  assert.equal(recipe.steps[1]!.kind, 'score');
});

test('repair obs with statistics that are not finite leaves the layer as it was, says so, writes no NaN', async () => {
  const dir = tempDir();
  const { spec } = calibData(dir);
  const { model: dense } = mlp({ scale: 1e22 });
  const pruned = mlp({ scale: 1e22 }).model;
  pruneUnstructured(pruned, { sparsity: 0.5, scope: 'layer' });
  const before = Array.from(weight(pruned, 'W1'));
  const { model, report } = await repair(dense, pruned, openDataset(spec), { method: 'obs' });
  assert.ok(report.skipped.some((s) => s.node === 'fc1' && /not finite/.test(s.reason)), JSON.stringify(report.skipped));
  assert.deepEqual(Array.from(weight(model, 'W1')), before);
  for (const name of ['W1', 'W2']) assert.ok(weight(model, name).every(Number.isFinite), name);
});
