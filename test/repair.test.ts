/** Repair: statistics in onnxruntime match a direct computation; repair never worsens fidelity; OBS/N:M exactness. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Model } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';
import { GraphBuilder, F } from '../src/ir/builder.js';
import { floatTensor } from '../src/ir/tensor.js';
import { evaluate } from '../src/metrics/evaluate.js';
import { opDef } from '../src/ops/registry.js';
import { linearContext, type LayerPair } from '../src/repair/calib.js';
import { cholesky, choleskyInverse, reversedFactor, solveReversed, upperInverse } from '../src/repair/linalg.js';
import { matchOutputChannels, repair } from '../src/repair/repair.js';
import { cloneModel as editableCopy } from '../src/ir/clone.js';
import { obsPrune, wandaPrune, type GroupProblem } from '../src/repair/solve.js';
import { Stepper } from '../src/repair/stepper.js';
import { getMasks } from '../src/sparsity/masks.js';
import { pruneUnstructured } from '../src/sparsity/unstructured.js';
import type { Dataset } from '../src/data/dataset.js';
import { images, randn, tinyCnn } from './repair-fixture.js';

async function relMse(model: Model, dense: Model, data: Dataset): Promise<number> {
  const r = await evaluate(model, data, { reference: dense, batchSize: 64, threads: 1 });
  return r.fidelity!['y']!.relMse;
}

function pairOf(model: Model, name: string): LayerPair {
  const node = model.graph.nodes.find((n) => n.name === name)!;
  const rule = opDef(node)!.linear!;
  const ctx = linearContext(model, node);
  const form = rule.form(ctx);
  if (typeof form === 'string') throw new Error(form);
  return { node, dense: node, rule, form, denseForm: form, ctx, denseCtx: ctx };
}

test('linear algebra: reversed factor solves and gives the upper Cholesky factor of the inverse', () => {
  const n = 7;
  const x = randn(n * 20, 11);
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let k = 0; k < 20; k++) h[i * n + j]! += x[i * 20 + k]! * x[j * 20 + k]!;
  const f = reversedFactor(h, n, 0.01);
  const damped = Float64Array.from(h);
  for (let i = 0; i < n; i++) damped[i * n + i]! += f.lambda;
  const l = Float64Array.from(damped);
  assert.ok(cholesky(l, n));
  const inv = choleskyInverse(l, n);
  const u = upperInverse(f);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += u[k * n + i]! * u[k * n + j]!;
      assert.ok(Math.abs(s - inv[i * n + j]!) < 1e-9, `U^T U [${i},${j}]`);
      if (j < i) assert.equal(u[i * n + j], 0);
    }
  }
  const b = Float64Array.from({ length: n * 2 }, (_, i) => Math.sin(i));
  const sol = Float64Array.from(b);
  solveReversed(f, sol, 2);
  for (let i = 0; i < n; i++) for (let c = 0; c < 2; c++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += damped[i * n + k]! * sol[k * 2 + c]!;
    assert.ok(Math.abs(s - b[i * 2 + c]!) < 1e-9);
  }
});

/** Direct im2col Gram matrix of a conv input (the reference for the onnxruntime statistics). */
function im2colGram(x: Float32Array, dims: number[], cinG: number, g: number, k: number[], s: number[], p: number[], d: number[], oh: number, ow: number): Float64Array {
  const [n, , h, w] = dims as [number, number, number, number];
  const K = cinG * k[0]! * k[1]!;
  const out = new Float64Array(K * K);
  const col = new Float64Array(K);
  for (let b = 0; b < n; b++) for (let oy = 0; oy < oh; oy++) for (let ox = 0; ox < ow; ox++) {
    for (let c = 0; c < cinG; c++) for (let ky = 0; ky < k[0]!; ky++) for (let kx = 0; kx < k[1]!; kx++) {
      const iy = oy * s[0]! - p[0]! + ky * d[0]!;
      const ix = ox * s[1]! - p[1]! + kx * d[1]!;
      const ch = g * cinG + c;
      col[(c * k[0]! + ky) * k[1]! + kx] = iy >= 0 && iy < h && ix >= 0 && ix < w ? x[((b * dims[1]! + ch) * h + iy) * w + ix]! : 0;
    }
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) out[i * K + j]! += col[i]! * col[j]!;
  }
  return out;
}

test('layer statistics from onnxruntime equal a direct im2col computation (strides, pads, dilations, groups; Gemm, MatMul)', async () => {
  const b = new GraphBuilder('g');
  const x = b.input('x', ['N', 4, 9, 7]);
  const c = b.node('Conv', [x, b.init('w', floatTensor([6, 2, 3, 2], randn(72, 3)))], { group: 2, strides: [2, 1], pads: [1, 0, 2, 1], dilations: [2, 1] }, { name: 'conv' });
  const fl = b.node('Flatten', [c], {}, { name: 'flat' });
  const gm = b.node('Gemm', [fl, b.init('wg', floatTensor([5, 6 * 4 * 7], randn(5 * 168, 4, 0.1)))], { transB: 1 }, { name: 'gemm' });
  const y = b.node('MatMul', [gm, b.init('wm', floatTensor([5, 3], randn(15, 5)))], {}, { name: 'mm', output: 'y' });
  b.output(y);
  const model = b.model(17);
  const xs = [floatTensor([3, 4, 9, 7], randn(3 * 4 * 63, 6)), floatTensor([2, 4, 9, 7], randn(2 * 4 * 63, 7))];
  const st = new Stepper(model, model, ['x'], xs.map((x) => ({ x })));
  const conv = pairOf(model, 'conv');
  assert.equal(conv.form.groups, 2);
  const s1 = await st.step(conv, { hessian: true, cross: true }, [pairOf(model, 'gemm'), pairOf(model, 'mm')]);
  // output rows: floor((9 + 1 + 2 - 5) / 2) + 1 = 4 (dilated kernel 5), cols: 7 + 1 - 2 + 1 = 7
  assert.equal(s1.count, 5 * 4 * 7);
  const K = 2 * 3 * 2;
  for (let g = 0; g < 2; g++) {
    const want = new Float64Array(K * K);
    for (const t of xs) {
      const part = im2colGram(t.data as Float32Array, t.dims, 2, g, [3, 2], [2, 1], [1, 0], [2, 1], 4, 7);
      for (let i = 0; i < want.length; i++) want[i]! += part[i]!;
    }
    for (let i = 0; i < K * K; i++) assert.ok(Math.abs(s1.h![g * K * K + i]! - want[i]!) < 1e-3 * (1 + Math.abs(want[i]!)), `group ${g} H[${i}]`);
  }
  // Gemm: H = X^T X of the flattened conv outputs, computed here from a plain run
  const s2 = await st.step(pairOf(model, 'gemm'), { hessian: true, cross: true }, [pairOf(model, 'mm')]);
  assert.equal(s2.count, 5);
  const { createSession } = await import('../src/runtime/session.js');
  const probe = editableCopy(model);
  probe.graph.outputs = [{ name: fl }, { name: gm }];
  const run = await createSession(probe);
  const acts: Tensor[] = [];
  const outs: Tensor[] = [];
  for (const t of xs) {
    const r = await run.run({ x: t });
    acts.push(r[fl]!);
    outs.push(r[gm]!);
  }
  await run.release();
  const kk = 168;
  for (const [i, j] of [[0, 0], [3, 160], [167, 17], [100, 101]] as const) {
    let want = 0;
    for (const a of acts) for (let r = 0; r < a.dims[0]!; r++) want += (a.data as Float32Array)[r * kk + i]! * (a.data as Float32Array)[r * kk + j]!;
    assert.ok(Math.abs(s2.h![i * kk + j]! - want) < 1e-3 * (1 + Math.abs(want)));
  }
  // MatMul: C = X^T Y with X the gemm output and Y the dense (= same) output
  const s3 = await st.step(pairOf(model, 'mm'), { hessian: true, cross: true }, []);
  const wm = model.graph.initializers.get('wm')!.data as Float32Array;
  for (const [i, o] of [[0, 0], [4, 2], [2, 1]] as const) {
    let want = 0;
    for (const a of outs) for (let r = 0; r < a.dims[0]!; r++) {
      let yv = 0;
      for (let q = 0; q < 5; q++) yv += (a.data as Float32Array)[r * 5 + q]! * wm[q * 3 + o]!;
      want += (a.data as Float32Array)[r * 5 + i]! * yv;
    }
    assert.ok(Math.abs(s3.c![i * 3 + o]! - want) < 1e-3 * (1 + Math.abs(want)), `C[${i},${o}] ${s3.c![i * 3 + o]} vs ${want}`);
  }
});

test('OBS removing one weight per row equals the exact constrained least squares; N:M masks hold the pattern', () => {
  const k = 6;
  const rows = 3;
  const m = 40;
  const x = randn(k * m, 21);
  const h = new Float64Array(k * k);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) for (let t = 0; t < m; t++) h[i * k + j]! += x[i * m + t]! * x[j * m + t]!;
  const w0 = Float64Array.from(randn(rows * k, 22));
  const keep = new Uint8Array(rows * k).fill(1);
  keep[0 * k + 2] = 0;
  keep[1 * k + 5] = 0;
  keep[2 * k + 0] = 0;
  const prob: GroupProblem = { k, bias: false, rows, h };
  const damp = 1e-10;
  const { w } = obsPrune(prob, w0, { kind: 'fixed', keep }, damp);
  // exact: SparseGPT visits columns in order and freezes those before q, so the optimum moves only columns
  // j >= q: minimise (w - w0) H (w - w0)^T over them with w_q = 0, i.e. the OBS formula on the block H[q:, q:]
  for (let r = 0; r < rows; r++) {
    const q = [2, 5, 0][r]!;
    const nb = k - q;
    const l = new Float64Array(nb * nb);
    for (let i = 0; i < nb; i++) for (let j = 0; j < nb; j++) l[i * nb + j] = h[(q + i) * k + q + j]!;
    assert.ok(cholesky(l, nb));
    const hinv = choleskyInverse(l, nb);
    for (let j = 0; j < k; j++) {
      const want = j < q ? w0[r * k + j]! : j === q ? 0 : w0[r * k + j]! - (w0[r * k + q]! / hinv[0]!) * hinv[j - q]!;
      assert.ok(Math.abs(w[r * k + j]! - want) < 1e-6, `row ${r} col ${j}: ${w[r * k + j]} vs ${want}`);
    }
  }
  // N:M 2:4 over 8 channels x kernel 2 (k = 16): each group of 4 channels at one kernel position keeps 2
  const k2 = 16;
  const x2 = randn(k2 * 100, 23);
  const h2 = new Float64Array(k2 * k2);
  for (let i = 0; i < k2; i++) for (let j = 0; j < k2; j++) for (let t = 0; t < 100; t++) h2[i * k2 + j]! += x2[i * 100 + t]! * x2[j * 100 + t]!;
  const r2 = obsPrune({ k: k2, bias: false, rows: 4, h: h2 }, Float64Array.from(randn(4 * k2, 24)), { kind: 'nm', n: 2, m: 4, channels: 8, kernel: 2 }, 0.01);
  for (let r = 0; r < 4; r++) for (let s = 0; s < 2; s++) for (let c0 = 0; c0 < 8; c0 += 4) {
    let kept = 0;
    for (let c = c0; c < c0 + 4; c++) {
      kept += r2.keep[r * k2 + c * 2 + s]!;
      if (!r2.keep[r * k2 + c * 2 + s]) assert.equal(r2.w[r * k2 + c * 2 + s], 0);
    }
    assert.equal(kept, 2);
  }
});

test('Wanda scores |w| x ||x_j|| within each output row; no update of the kept weights', () => {
  // diag(H) = squared input norms 1, 100, 4, 9 -> norms 1, 10, 2, 3
  const h = new Float64Array(16);
  [1, 100, 4, 9].forEach((v, i) => (h[i * 4 + i] = v));
  const w0 = Float64Array.from([3, 1, 2, 1.5, /**/ -1, 0.05, 5, 1]);
  const { w, keep } = wandaPrune({ k: 4, bias: false, rows: 2, h }, w0, { kind: 'count', prune: 4 });
  // row 0 scores 3, 10, 4, 4.5 -> drop columns 0 and 2; row 1 scores 1, 0.5, 10, 3 -> drop 1 and 0
  assert.deepEqual([...keep], [0, 1, 0, 1, 0, 0, 1, 1]);
  assert.deepEqual([...w], [0, 1, 0, 1.5, 0, 0, 5, 1]);
});

test('least squares recovers a perturbed linear layer exactly (Gemm with alpha, bias added where there was none)', async () => {
  const mk = (wv: Float32Array, bias: boolean) => {
    const b = new GraphBuilder('lin');
    const x = b.input('x', ['N', 6]);
    const ins = [x, b.init('w', floatTensor([4, 6], wv))];
    if (bias) ins.push(b.init('c', floatTensor([4], [0.5, -1, 2, 0])));
    b.output(b.node('Gemm', ins, { transB: 1, alpha: F(0.5) }, { name: 'fc', output: 'y' }));
    return b.model(17);
  };
  const wd = randn(24, 31);
  const dense = mk(wd, true);
  const pruned = mk(Float32Array.from(wd, (v, i) => v + 0.3 * Math.cos(i)), false);
  const { Dataset } = await import('../src/data/dataset.js');
  const { arraySource, inMemoryRows } = await import('../src/data/arrays.js');
  const data = (n: number, seed: number) => new Dataset(arraySource(inMemoryRows({ dims: [n, 6], data: randn(n * 6, seed) }), undefined, 'mem', 'mem'));
  const before = await relMse(pruned, dense, data(50, 33));
  const { model, report } = await repair(dense, pruned, data(40, 32), { method: 'lsq', damp: 1e-9 });
  assert.equal(report.layers.length, 1);
  assert.equal(model.graph.nodes[0]!.inputs.length, 3, 'a bias input was added');
  const after = await relMse(model, dense, data(50, 33));
  assert.ok(before > 0.01, String(before));
  assert.ok(after < 1e-8, String(after));
  assert.equal(pruned.graph.nodes[0]!.inputs.length, 2, 'the input model is not modified');
});

/** Structured pruning by hand: conv1 keeps output channels `keep` (conv2/add couple them: the residual add needs
 *  the same channels on both sides, so conv2's outputs and conv3's inputs lose them too). */
function structuredCut(model: Model, keep: number[]): Model {
  const out = editableCopy(model);
  const g = out.graph;
  const slice = (name: string, axis: number) => {
    const t = g.initializers.get(name)!;
    const d = t.dims;
    const inner = d.slice(axis + 1).reduce((a, b) => a * b, 1);
    const outer = d.slice(0, axis).reduce((a, b) => a * b, 1);
    const src = t.data as Float32Array;
    const data = new Float32Array(outer * keep.length * inner);
    for (let o = 0; o < outer; o++) keep.forEach((c, k) => data.set(src.subarray((o * d[axis]! + c) * inner, (o * d[axis]! + c + 1) * inner), (o * keep.length + k) * inner));
    const nd = [...d];
    nd[axis] = keep.length;
    g.initializers.set(name, { dtype: t.dtype, dims: nd, data });
  };
  slice('w1', 0);
  slice('b1', 0);
  slice('w2', 0);
  slice('w2', 1);
  slice('w3', 1);
  return out;
}

test('repair never worsens fidelity against the dense model: stats, lsq (structured), obs (unstructured and 2:4)', async () => {
  const dense = tinyCnn();
  const calib = images(96, 41);
  const held = images(64, 42);
  // structured: 8 -> 5 channels
  const cut = structuredCut(dense, [0, 2, 3, 5, 6]);
  // the kept channels are found from the weights
  const p1 = pairOf(cut, 'conv1');
  const d1 = pairOf(dense, 'conv1');
  const map = matchOutputChannels(cut.graph.initializers.get('w1')!.data as Float32Array, p1.form, cut.graph.initializers.get('b1')!.data as Float32Array, dense.graph.initializers.get('w1')!.data as Float32Array, d1.form, dense.graph.initializers.get('b1')!.data as Float32Array);
  assert.deepEqual([...map!], [0, 2, 3, 5, 6]);
  const base = await relMse(cut, dense, held);
  for (const method of ['stats', 'lsq'] as const) {
    const { model, report } = await repair(dense, cut, calib, { method, batchSize: 32, threads: 1 });
    assert.deepEqual(report.skipped, []);
    assert.equal(report.layers.length, 4);
    const after = await relMse(model, dense, held);
    assert.ok(after < base, `${method}: ${after} vs ${base}`);
  }
  // unstructured 60% magnitude, then OBS (new masks at the same per-layer counts) and OBS keeping the masks
  const sparse = editableCopy(dense);
  pruneUnstructured(sparse, { sparsity: 0.6, scope: 'layer' });
  const baseU = await relMse(sparse, dense, held);
  for (const keepMask of [false, true]) {
    const { model, report } = await repair(dense, sparse, calib, { method: 'obs', keepMask, batchSize: 32, threads: 1 });
    const after = await relMse(model, dense, held);
    assert.ok(after < baseU, `obs keepMask=${keepMask}: ${after} vs ${baseU}`);
    for (const l of report.layers) assert.equal(l.zerosAfter, l.zerosBefore, l.node);
    const masks = getMasks(model);
    const w2 = model.graph.initializers.get('w2')!.data as Float32Array;
    const m2 = masks.get('w2')!;
    let zeros = 0;
    for (let i = 0; i < m2.length; i++) if (!m2[i]) {
      assert.equal(w2[i], 0);
      zeros++;
    }
    assert.equal(zeros, Math.round(0.6 * 576));
    if (keepMask) assert.deepEqual([...m2], [...getMasks(sparse).get('w2')!]);
  }
  // 2:4 along input channels (conv1 has 3 input channels: skipped with a reason)
  const nm = editableCopy(dense);
  pruneUnstructured(nm, { pattern: { n: 2, m: 4 } });
  const baseNM = await relMse(nm, dense, held);
  const { model, report } = await repair(dense, nm, calib, { method: 'obs', pattern: { n: 2, m: 4 }, batchSize: 32, threads: 1 });
  assert.deepEqual(report.skipped.map((s) => s.node), ['conv1']);
  const after = await relMse(model, dense, held);
  assert.ok(after < baseNM, `2:4: ${after} vs ${baseNM}`);
  const w2 = model.graph.initializers.get('w2')!.data as Float32Array; // [8, 8, 3, 3]
  for (let o = 0; o < 8; o++) for (let s = 0; s < 9; s++) for (let c0 = 0; c0 < 8; c0 += 4) {
    let nz = 0;
    for (let c = c0; c < c0 + 4; c++) if (w2[(o * 8 + c) * 9 + s] !== 0) nz++;
    assert.ok(nz <= 2);
  }
});

test('a bias shared through Identity (as exporters emit) gets a private copy; the other user keeps the original', async () => {
  const b = new GraphBuilder('shared');
  const x = b.input('x', ['N', 3, 8, 8]);
  const shared = b.init('bshared', floatTensor([4], [0.1, -0.2, 0.3, 0.05]));
  const bias = b.node('Identity', [shared], {}, { name: 'id', output: 'bias_id' });
  const c1 = b.node('Conv', [x, b.init('w1', floatTensor([4, 3, 3, 3], randn(108, 51, 0.3))), bias], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const r1 = b.node('Relu', [c1], {}, { name: 'relu1' });
  const c2 = b.node('Conv', [r1, b.init('w2', floatTensor([4, 4, 3, 3], randn(144, 52, 0.3))), shared], { pads: [1, 1, 1, 1] }, { name: 'conv2' });
  b.output(b.node('ReduceMean', [c2], { axes: [2, 3], keepdims: 0 }, { name: 'mean', output: 'y' }));
  const dense = b.model(17);
  const sparse = editableCopy(dense);
  pruneUnstructured(sparse, { sparsity: 0.5, scope: 'layer' });
  const held = images(32, 54);
  const before = await relMse(sparse, dense, held);
  const { model } = await repair(dense, sparse, images(64, 53), { method: 'obs', keepMask: true, batchSize: 32, threads: 1 });
  const { checkGraph } = await import('../src/ir/edit.js');
  assert.deepEqual(checkGraph(model.graph), []);
  const n1 = model.graph.nodes.find((n) => n.name === 'conv1')!;
  const n2 = model.graph.nodes.find((n) => n.name === 'conv2')!;
  assert.notEqual(n1.inputs[2], 'bias_id');
  assert.notEqual(n2.inputs[2], 'bshared');
  assert.deepEqual([...(model.graph.initializers.get('bshared')?.data ?? dense.graph.initializers.get('bshared')!.data)], [...(dense.graph.initializers.get('bshared')!.data as Float32Array)]);
  assert.ok(!model.graph.nodes.some((n) => n.name === 'id'), 'the dead Identity is gone');
  const after = await relMse(model, dense, held);
  assert.ok(after < before, `${after} vs ${before}`);
});

test('a model with a fixed batch dimension is calibrated in batches of that size', async () => {
  const mk = (wv: Float32Array) => {
    const b = new GraphBuilder('fixed');
    const x = b.input('x', [2, 3]);
    b.output(b.node('MatMul', [x, b.init('w', floatTensor([3, 2], wv))], {}, { name: 'mm', output: 'y' }));
    return b.model(17);
  };
  const dense = mk(Float32Array.from([1, 2, 3, 4, 5, 6]));
  const pruned = mk(Float32Array.from([1.5, 2, 2, 4, 5.5, 6])); // perturbed, no zeros (zeros would be kept as pruned)
  const { Dataset } = await import('../src/data/dataset.js');
  const { arraySource, inMemoryRows } = await import('../src/data/arrays.js');
  const calib = new Dataset(arraySource(inMemoryRows({ dims: [7, 3], data: randn(21, 61) }), undefined, 'mem', 'mem'));
  const { model, report } = await repair(dense, pruned, calib, { method: 'lsq', damp: 1e-9 });
  assert.equal(report.calibSamples, 6); // 3 batches of 2; the 7th sample is left out
  // MatMul has no bias: least squares with 6 samples of 3 features recovers the dense weights exactly
  const w = model.graph.initializers.get('w')!.data as Float32Array;
  [1, 2, 3, 4, 5, 6].forEach((v, i) => assert.ok(Math.abs(w[i]! - v) < 1e-3, `${w[i]} vs ${v}`));
});

