import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeModel, encodeModel } from '../src/onnx/codec.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor, floatToHalf, halfToFloat, numel } from '../src/ir/tensor.js';
import { DataType } from '../src/ir/dtype.js';
import { createSession } from '../src/runtime/session.js';
import { MASKS_KEY, getMasks, removeMasks } from '../src/sparsity/masks.js';
import { nmViolations } from '../src/sparsity/nm.js';
import { pruneUnstructured } from '../src/sparsity/unstructured.js';
import { customMask, structuredMask } from '../src/sparsity/structured.js';
import { rng } from '../src/random.js';
import { LAYERS, fixtureModel, gauss } from './sparsity-fixture.js';

const W = (m: Model, name: string) => m.graph.initializers.get(name)!.data as Float32Array;
const zeros = (a: Float32Array) => a.reduce((c, v) => c + (v === 0 ? 1 : 0), 0);
const clone = (m: Model) => decodeModel(encodeModel(m));

/** Indices of the k smallest |w| (ties by index), by full sort. */
function smallest(w: Float32Array, k: number, keep?: Uint8Array): Set<number> {
  const idx = [...w.keys()].filter((i) => !keep || keep[i]);
  idx.sort((a, b) => Math.abs(w[a]!) - Math.abs(w[b]!) || a - b);
  return new Set(idx.slice(0, k));
}

test('per-layer L1: exact counts per layer, the smallest magnitudes, biases and other tensors untouched', () => {
  const m = fixtureModel();
  const orig = clone(m);
  const r = pruneUnstructured(m, { sparsity: 0.3, scope: 'layer' });
  assert.deepEqual(r.layers.map((l) => l.name), LAYERS);
  for (const name of LAYERS) {
    const w0 = W(orig, name);
    const k = Math.round(0.3 * w0.length);
    const drop = smallest(w0, k);
    const w = W(m, name);
    for (let i = 0; i < w.length; i++) assert.equal(w[i], drop.has(i) ? 0 : w0[i], `${name}[${i}]`);
    assert.equal(r.layers.find((l) => l.name === name)!.prunedNow, k);
    assert.deepEqual([...getMasks(m).get(name)!], [...w0.keys()].map((i) => (drop.has(i) ? 0 : 1)));
  }
  for (const name of ['b0', 's', 'b3']) assert.deepEqual(W(m, name), W(orig, name));
});

test('global L1: one threshold across layers, exact total count', () => {
  const m = fixtureModel();
  const r = pruneUnstructured(m, { sparsity: 0.6 });
  const total = LAYERS.reduce((c, n) => c + W(m, n).length, 0);
  assert.equal(r.total.prunedNow, Math.round(0.6 * total));
  assert.equal(LAYERS.reduce((c, n) => c + zeros(W(m, n)), 0), Math.round(0.6 * total));
  assert.ok(Math.abs(r.total.sparsity - 0.6) < 0.005);
  const orig = fixtureModel();
  let maxPruned = 0;
  let minKept = Infinity;
  for (const n of LAYERS) {
    const w = W(m, n);
    const o = W(orig, n);
    for (let i = 0; i < w.length; i++) {
      if (w[i] === 0) maxPruned = Math.max(maxPruned, Math.abs(o[i]!));
      else minKept = Math.min(minKept, Math.abs(o[i]!));
    }
  }
  assert.ok(maxPruned <= minKept, `${maxPruned} > ${minKept}`);
  // global allocation differs across layers (layers have different weight scales)
  const sp = r.layers.map((l) => l.sparsity);
  assert.ok(Math.max(...sp) - Math.min(...sp) > 0.1);
});

test('LAMP allocation matches a reference computation of the scores', () => {
  const m = fixtureModel();
  const orig = clone(m);
  const s = 0.7;
  const r = pruneUnstructured(m, { sparsity: s, scope: 'lamp' });
  // reference: score of each weight = w^2 / sum of squares of weights with larger-or-equal rank in its layer
  const all: { layer: string; score: number }[] = [];
  for (const n of LAYERS) {
    const sq = Array.from(W(orig, n), (v) => v * v).sort((a, b) => a - b);
    let suffix = sq.reduce((a, b) => a + b, 0);
    for (const a of sq) {
      all.push({ layer: n, score: a / suffix });
      suffix -= a;
    }
  }
  all.sort((a, b) => a.score - b.score);
  const k = Math.round(s * all.length);
  for (const n of LAYERS) {
    const want = all.slice(0, k).filter((x) => x.layer === n).length;
    const got = r.layers.find((l) => l.name === n)!.prunedNow;
    assert.ok(Math.abs(got - want) <= 1, `${n}: ${got} vs ${want}`); // float32 vs float64 score ties at the cut
    const drop = smallest(W(orig, n), got);
    const w = W(m, n);
    for (let i = 0; i < w.length; i++) assert.equal(w[i] === 0, drop.has(i));
  }
  assert.equal(r.total.prunedNow, k);
  // LAMP keeps every layer alive: the largest weight of each layer scores 1
  for (const l of r.layers) assert.ok(l.nonzero > 0);
});

test('N:M 2:4: every group of 4 along the reduction axis has at most 2 nonzeros; misfit layers left dense', () => {
  const m = fixtureModel();
  const orig = clone(m);
  const r = pruneUnstructured(m, { pattern: { n: 2, m: 4 } });
  assert.deepEqual(r.skipped.map((s) => s.name), ['w0']);
  assert.match(r.skipped[0]!.reason, /not a multiple of M=4/);
  assert.deepEqual(W(m, 'w0'), W(orig, 'w0'));
  const axes: Record<string, number> = { w1: 1, w2: 1, w3: 1, w4: 0 }; // Conv Cin, Conv Cin, Gemm transB K, MatMul K
  for (const [n, axis] of Object.entries(axes)) {
    const t = m.graph.initializers.get(n)!;
    const w = t.data as Float32Array;
    assert.equal(nmViolations(w, t.dims, axis, { n: 2, m: 4 }), 0, n);
    assert.equal(w.length - zeros(w), w.length / 2, n);
    // the original weights are not 2:4 along that axis, so the check has teeth
    assert.ok(nmViolations(W(orig, n), t.dims, axis, { n: 2, m: 4 }) > 0);
  }
  // a pattern no selected layer fits is an error
  assert.throws(() => pruneUnstructured(fixtureModel(), { pattern: { n: 1, m: 5 } }), { name: 'ShearsError' });
});

test('repeated pruning accumulates over survivors (50% then 50% = 75%), across a save/load', () => {
  for (const scope of ['global', 'layer', 'lamp'] as const) {
    const m = fixtureModel();
    pruneUnstructured(m, { sparsity: 0.5, scope });
    const first = getMasks(m);
    const m2 = clone(m); // masks travel in the file
    assert.deepEqual(getMasks(m2), first);
    const r2 = pruneUnstructured(m2, { sparsity: 0.5, scope });
    const total = LAYERS.reduce((c, n) => c + W(m2, n).length, 0);
    const pruned = LAYERS.reduce((c, n) => c + zeros(W(m2, n)), 0);
    assert.ok(Math.abs(pruned / total - 0.75) < 0.005, `${scope}: ${pruned / total}`);
    assert.equal(r2.total.prunedBefore, LAYERS.reduce((c, n) => c + first.get(n)!.reduce((a, b) => a + 1 - b, 0), 0));
    // every weight pruned in round 1 stays pruned
    for (const [n, mask] of first) {
      const second = getMasks(m2).get(n)!;
      for (let i = 0; i < mask.length; i++) if (!mask[i]) assert.equal(second[i], 0);
    }
    // the same with the masks baked in between rounds: exact zeros count as pruned
    const b = fixtureModel();
    pruneUnstructured(b, { sparsity: 0.5, scope });
    removeMasks(b);
    pruneUnstructured(b, { sparsity: 0.5, scope });
    const zb = LAYERS.reduce((c, n) => c + zeros(W(b, n)), 0);
    assert.ok(Math.abs(zb / total - 0.75) < 0.005, `${scope} baked: ${zb / total}`);
    if (scope === 'layer') {
      for (const n of LAYERS) {
        const len = W(m2, n).length;
        const k1 = Math.round(0.5 * len);
        assert.equal(zeros(W(m2, n)), k1 + Math.round(0.5 * (len - k1)), n);
      }
    }
  }
});

test('include, exclude, keep-first-last and per-layer amounts choose the weights', () => {
  const ex = fixtureModel();
  const r = pruneUnstructured(ex, { sparsity: 0.5, exclude: /^w[12]$/ });
  assert.deepEqual(r.layers.map((l) => l.name), ['w0', 'w3', 'w4']);
  assert.equal(zeros(W(ex, 'w1')) + zeros(W(ex, 'w2')), 0);
  const inc = fixtureModel();
  const r2 = pruneUnstructured(inc, { sparsity: 0.5, include: 'conv', scope: 'layer' }); // node names conv0..2
  assert.deepEqual(r2.layers.map((l) => l.name), ['w0', 'w1', 'w2']);
  assert.equal(zeros(W(inc, 'w3')) + zeros(W(inc, 'w4')), 0);
  const fl = fixtureModel();
  const r3 = pruneUnstructured(fl, { sparsity: 0.5, keepFirstLast: true });
  assert.deepEqual(r3.layers.map((l) => l.name), ['w1', 'w2', 'w3']);
  assert.deepEqual(r3.skipped.map((s) => s.name), ['w0', 'w4']);
  assert.equal(zeros(W(fl, 'w0')) + zeros(W(fl, 'w4')), 0);
  const pl = fixtureModel();
  const r4 = pruneUnstructured(pl, { sparsity: 0.5, scope: 'layer', perLayer: { w1: 0.9, fc2: 0.1 } });
  assert.equal(r4.layers.find((l) => l.name === 'w1')!.prunedNow, Math.round(0.9 * 1152));
  assert.equal(r4.layers.find((l) => l.name === 'w4')!.prunedNow, Math.round(0.1 * 120));
  assert.equal(r4.layers.find((l) => l.name === 'w2')!.prunedNow, Math.round(0.5 * 256));
  assert.throws(() => pruneUnstructured(fixtureModel(), { sparsity: 0.5, perLayer: { nope: 0.5 } }), { name: 'ShearsError' });
});

test('random pruning: exact counts, reproducible by seed', () => {
  const a = fixtureModel();
  const b = fixtureModel();
  const c = fixtureModel();
  pruneUnstructured(a, { sparsity: 0.4, method: 'random', scope: 'layer', seed: 7 });
  pruneUnstructured(b, { sparsity: 0.4, method: 'random', scope: 'layer', seed: 7 });
  pruneUnstructured(c, { sparsity: 0.4, method: 'random', scope: 'layer', seed: 8 });
  for (const n of LAYERS) {
    assert.equal(zeros(W(a, n)), Math.round(0.4 * W(a, n).length));
    assert.deepEqual(W(a, n), W(b, n));
  }
  assert.notDeepEqual(W(a, 'w1'), W(c, 'w1'));
  // random pruning is not magnitude pruning
  const l1 = fixtureModel();
  pruneUnstructured(l1, { sparsity: 0.4, scope: 'layer' });
  assert.notDeepEqual(W(a, 'w1'), W(l1, 'w1'));
});

test('bad options are user errors', () => {
  for (const o of [{ sparsity: 1 }, { sparsity: -0.1 }, { sparsity: NaN }, {}, { pattern: { n: 4, m: 2 } }, { sparsity: 0.5, pattern: { n: 2, m: 4 } },
    { sparsity: 0.5, scope: 'lamp' as const, method: 'random' as const }, { sparsity: 0.5, include: '(' }]) {
    assert.throws(() => pruneUnstructured(fixtureModel(), o), { name: 'ShearsError' }, JSON.stringify(o));
  }
});

test('the pruned model computes what the dense model computes with the same weights zeroed (onnxruntime)', async () => {
  const dense = fixtureModel();
  const pruned = clone(dense);
  pruneUnstructured(pruned, { sparsity: 0.6, scope: 'lamp' });
  const masks = getMasks(pruned);
  assert.equal(masks.size, 5);
  // reference: zero the weights of the dense model by hand
  const ref = clone(dense);
  for (const [n, mask] of masks) {
    const w = Float32Array.from(W(ref, n));
    for (let i = 0; i < w.length; i++) if (!mask[i]) w[i] = 0;
    ref.graph.initializers.set(n, floatTensor([...ref.graph.initializers.get(n)!.dims], w));
  }
  ref.metadata.clear();
  const x = floatTensor([2, 3, 6, 6], gauss(rng(11), 216));
  const run = async (m: Model) => {
    const s = await createSession(m, { threads: 1 });
    const y = (await s.run({ x })).y!.data as Float32Array;
    await s.release();
    return y;
  };
  const [yp, yr, yd] = [await run(pruned), await run(ref), await run(dense)];
  assert.deepEqual(yp, yr);
  assert.ok(yd.some((v, i) => Math.abs(v - yr[i]!) > 1e-3), 'pruning changed the outputs');
  // removeMasks bakes in: same outputs, no metadata
  removeMasks(pruned);
  assert.equal(pruned.metadata.has(MASKS_KEY), false);
  assert.deepEqual(await run(pruned), yr);
});

test('Ln-structured masks zero whole filters with the smallest norms; random structured; custom masks accumulate', () => {
  const m = fixtureModel();
  const orig = clone(m);
  const r = structuredMask(m, { amount: 0.25, norm: 1, include: '^w1$' });
  assert.deepEqual(r.layers.map((l) => l.name), ['w1']);
  const w = W(m, 'w1');
  const o = W(orig, 'w1');
  const per = 8 * 9;
  const norms = Array.from({ length: 16 }, (_, f) => o.slice(f * per, (f + 1) * per).reduce((a, v) => a + Math.abs(v), 0));
  const lowest = [...norms.keys()].sort((a, b) => norms[a]! - norms[b]!).slice(0, 4);
  for (let f = 0; f < 16; f++) {
    const slice = w.slice(f * per, (f + 1) * per);
    if (lowest.includes(f)) assert.ok(slice.every((v) => v === 0), `filter ${f} zeroed`);
    else assert.deepEqual(slice, o.slice(f * per, (f + 1) * per));
  }
  assert.deepEqual(m.graph.initializers.get('w1')!.dims, [16, 8, 3, 3]);
  // again: 25% of the 12 surviving filters = 3 more
  structuredMask(m, { amount: 0.25, norm: 2, include: '^w1$' });
  let dead = 0;
  for (let f = 0; f < 16; f++) if (w.length && W(m, 'w1').slice(f * per, (f + 1) * per).every((v) => v === 0)) dead++;
  assert.equal(dead, 7);
  // input-channel slices of the Gemm weight [12, 16] (transB): columns
  const g = fixtureModel();
  structuredMask(g, { amount: 0.5, method: 'random', axis: 'in', include: '^w3$', seed: 3 });
  const w3 = W(g, 'w3');
  let deadCols = 0;
  for (let c = 0; c < 16; c++) {
    const col = Array.from({ length: 12 }, (_, r) => w3[r * 16 + c]!);
    if (col.every((v) => v === 0)) deadCols++;
    else assert.ok(col.every((v) => v !== 0));
  }
  assert.equal(deadCols, 8);
  // custom mask combines with the stored one
  const n = numel([12, 10]);
  const c = fixtureModel();
  customMask(c, 'w4', Array.from({ length: n }, (_, i) => (i % 2 ? 1 : 0)));
  customMask(c, 'w4', Array.from({ length: n }, (_, i) => (i % 3 ? 1 : 0)));
  const w4 = W(c, 'w4');
  for (let i = 0; i < n; i++) assert.equal(w4[i] === 0, i % 2 === 0 || i % 3 === 0);
  assert.throws(() => customMask(c, 'w4', [1, 0]), { name: 'ShearsError' });
  assert.throws(() => customMask(c, 'nope', [1]), { name: 'ShearsError' });
});

test('float16 weights are ranked by value and zeroed in place of their bits', () => {
  const m = fixtureModel();
  const w = W(m, 'w1');
  const half = Uint16Array.from(w, (v) => floatToHalf(v));
  m.graph.initializers.set('w1', { dtype: DataType.FLOAT16, dims: [16, 8, 3, 3], data: half });
  pruneUnstructured(m, { sparsity: 0.5, scope: 'layer', include: '^w1$' });
  const out = m.graph.initializers.get('w1')!;
  assert.equal(out.dtype, DataType.FLOAT16);
  const vals = Array.from(out.data as Uint16Array, halfToFloat);
  const orig = Array.from(half, halfToFloat);
  assert.equal(vals.filter((v) => v === 0).length, 576);
  const kept = orig.filter((_, i) => vals[i] !== 0).map(Math.abs);
  const dropped = orig.filter((_, i) => vals[i] === 0).map(Math.abs);
  assert.ok(Math.max(...dropped) <= Math.min(...kept));
  const back = decodeModel(encodeModel(m));
  assert.equal(getMasks(back).get('w1')!.reduce((a, b) => a + b, 0), 576);
});
