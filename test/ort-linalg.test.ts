/** OBS / SparseGPT linear algebra in onnxruntime (float64) against the JavaScript reference obsPrune. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reversedFactor, upperInverse } from '../src/repair/linalg.js';
import { obsPruneOrt, OrtLinalg } from '../src/repair/ort-linalg.js';
import { obsPrune, type GroupProblem, type MaskRule } from '../src/repair/solve.js';
import { randn } from './repair-fixture.js';

/** H (and C) of `samples` random patches of k columns (+ a ones column when bias), rows outputs. */
function problem(k: number, rows: number, samples: number, seed: number, bias: boolean): { p: GroupProblem; w0: Float64Array } {
  const n = k + (bias ? 1 : 0);
  const x = randn(k * samples, seed);
  const pk = (i: number, t: number) => (i < k ? x[i * samples + t]! * (1 + (i % 7) * 0.3) : 1);
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) {
    let s = 0;
    for (let t = 0; t < samples; t++) s += pk(i, t) * pk(j, t);
    h[i * n + j] = s;
    h[j * n + i] = s;
  }
  const wd = Float64Array.from(randn(rows * n, seed + 1));
  // C = P Yd^T with Yd = Wd P (the dense layer's outputs)
  const c = new Float64Array(n * rows);
  for (let i = 0; i < n; i++) for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += h[i * n + j]! * wd[r * n + j]!;
    c[i * rows + r] = s;
  }
  const w0 = Float64Array.from(randn(rows * n, seed + 2), (v, i) => wd[i]! + 0.1 * v);
  return { p: { k, bias, rows, h, c }, w0 };
}

function relDiff(a: Float64Array, b: Float64Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(a[i]!));
  }
  return d / m;
}

function sameMasks(a: Uint8Array, b: Uint8Array): number {
  let diff = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) diff++;
  return diff;
}

test('onnxruntime Cholesky: the inverse factor U (U^T U = (H + lambda I)^-1) equals the JavaScript one, through several recursion levels', async () => {
  const la = new OrtLinalg({ leaf: 16 });
  try {
    for (const n of [5, 16, 17, 70, 131]) {
      const { p } = problem(n, 1, 2 * n + 3, 100 + n, false);
      const f = reversedFactor(p.h, n, 0.01);
      const want = upperInverse(f);
      const got = await la.dampedUpperInverse(p.h, n, 0.01);
      assert.equal(got.lambda, f.lambda);
      const d = relDiff(want, got.u);
      assert.ok(d < 1e-10, `n=${n}: relative difference ${d}`);
      // upper triangular, and U^T U (H + lambda I) = I
      let lowerMax = 0;
      for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) lowerMax = Math.max(lowerMax, Math.abs(got.u[i * n + j]!));
      assert.equal(lowerMax, 0);
      const hl = Float64Array.from(p.h);
      for (let i = 0; i < n; i++) hl[i * n + i]! += got.lambda;
      const uh = await la.matmul(got.u, n, n, hl, n);
      const ut = new Float64Array(n * n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) ut[i * n + j] = got.u[j * n + i]!;
      const id = await la.matmul(ut, n, n, uh, n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.ok(Math.abs(id[i * n + j]! - (i === j ? 1 : 0)) < 1e-8, `n=${n} (${i},${j}) ${id[i * n + j]}`);
    }
  } finally {
    await la.release();
  }
});

test('obsPruneOrt equals obsPrune for every mask rule (same masks, weights to 1e-6), with and without the least-squares start', async () => {
  const la = new OrtLinalg({ leaf: 24 });
  try {
    const k = 96;
    const rows = 12;
    const keep = new Uint8Array(rows * k);
    for (let i = 0; i < keep.length; i++) keep[i] = (i * 7919) % 5 < 3 ? 1 : 0;
    const rules: [string, MaskRule][] = [
      ['count 50%', { kind: 'count', prune: Math.round(0.5 * rows * k) }],
      ['count 30%', { kind: 'count', prune: Math.round(0.3 * rows * k) }],
      ['2:4', { kind: 'nm', n: 2, m: 4, channels: k, kernel: 1 }],
      ['4:8 over 24 channels x kernel 4', { kind: 'nm', n: 4, m: 8, channels: 24, kernel: 4 }],
      ['fixed', { kind: 'fixed', keep }],
    ];
    for (const bias of [false, true]) {
      const { p, w0 } = problem(k, rows, 3 * k, 7 + (bias ? 1 : 0), bias);
      for (const [name, rule] of rules) {
        for (const [fitFirst, blockSize] of [[false, 32], [true, 32], [false, 64]] as const) {
          const opts = { fitFirst, blockSize };
          const want = obsPrune(p, w0, rule, 0.01, opts);
          const got = await obsPruneOrt(p, w0, rule, 0.01, { ...opts, linalg: la });
          const what = `${name}, bias ${bias}, fitFirst ${fitFirst}, block ${blockSize}`;
          assert.equal(sameMasks(want.keep, got.keep), 0, `${what}: masks differ`);
          const d = relDiff(want.w, got.w);
          assert.ok(d < 1e-6, `${what}: relative weight difference ${d}`);
          // the pruned weights are exactly zero, the bias column is kept
          for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) if (!got.keep[r * k + j]) assert.equal(got.w[r * (k + (bias ? 1 : 0)) + j], 0);
          const zeros = got.keep.reduce((a, v) => a + (v ? 0 : 1), 0);
          if (rule.kind === 'count') assert.equal(zeros, rule.prune, what);
          if (rule.kind === 'nm') assert.equal(zeros, (rows * k * (rule.m - rule.n)) / rule.m, what);
        }
      }
    }
  } finally {
    await la.release();
  }
});

test('obsPruneOrt opens and releases its own sessions when none are given; default block size; a shared Hinv gives the same result', async () => {
  const { p, w0 } = problem(200, 8, 300, 31, false);
  const rule: MaskRule = { kind: 'count', prune: 800 };
  const want = obsPrune(p, w0, rule, 0.01);
  const got = await obsPruneOrt(p, w0, rule, 0.01);
  assert.equal(sameMasks(want.keep, got.keep), 0);
  assert.ok(relDiff(want.w, got.w) < 1e-6);
  const la = new OrtLinalg();
  try {
    const { u } = await la.dampedUpperInverse(p.h, 200, 0.01);
    const again = await obsPruneOrt(p, w0, rule, 0.01, { linalg: la, hinv: u });
    assert.deepEqual(again.w, got.w);
    assert.deepEqual(again.keep, got.keep);
    // a second layer on the same H: another W, the same (unchanged) Hinv
    const copy = Float64Array.from(u);
    const w1 = Float64Array.from(w0, (v) => -v);
    const other = await obsPruneOrt(p, w1, rule, 0.01, { linalg: la, hinv: u });
    assert.deepEqual(u, copy);
    assert.equal(sameMasks(obsPrune(p, w1, rule, 0.01).keep, other.keep), 0);
    await assert.rejects(obsPruneOrt(p, w0, { kind: 'nm', n: 2, m: 4, channels: 50, kernel: 4 }, 0.01, { linalg: la, hinv: u }), /cannot serve N:M over kernel positions/);
  } finally {
    await la.release();
  }
});

test('singular and indefinite Hessians: the same damping retries as the JavaScript path, and the same error when none helps', async () => {
  const la = new OrtLinalg({ leaf: 8 });
  try {
    // rank-deficient H (fewer samples than columns), no damping asked: the minimum damping (1e-12 x mean) or its
    // retries make it positive definite, as in JavaScript
    const k = 40;
    const { p, w0 } = problem(k, 6, 10, 51, false);
    const rule: MaskRule = { kind: 'nm', n: 2, m: 4, channels: k, kernel: 1 };
    const jsLambda = reversedFactor(p.h, k, 0.01).lambda;
    assert.equal((await la.dampedUpperInverse(p.h, k, 0.01)).lambda, jsLambda);
    const want = obsPrune(p, w0, rule, 0.01);
    const got = await obsPruneOrt(p, w0, rule, 0.01, { linalg: la });
    assert.equal(sameMasks(want.keep, got.keep), 0);
    assert.ok(relDiff(want.w, got.w) < 1e-6, `${relDiff(want.w, got.w)}`);
    // indefinite: H - 0.5 x mean diagonal; damping 0.01 fails until 10x (0.1) ... 1.0 x mean
    const hi = Float64Array.from(p.h);
    let mean = 0;
    for (let i = 0; i < k; i++) mean += hi[i * k + i]! / k;
    for (let i = 0; i < k; i++) hi[i * k + i]! -= 0.5 * mean;
    const fj = reversedFactor(hi, k, 0.01);
    const fo = await la.dampedUpperInverse(hi, k, 0.01);
    assert.ok(fj.lambda > 0.5 * mean * 0.5, `js lambda ${fj.lambda}`);
    assert.equal(fo.lambda, fj.lambda);
    assert.ok(relDiff(upperInverse(fj), fo.u) < 1e-8);
    // never positive definite: the same error, no NaN weights
    const bad = Float64Array.from(p.h);
    bad[3 * k + 3] = Number.NaN;
    const q = { ...p, h: bad };
    assert.throws(() => obsPrune(q, w0, rule, 0.01), /not positive definite even with heavy damping/);
    await assert.rejects(obsPruneOrt(q, w0, rule, 0.01, { linalg: la }), /not positive definite even with heavy damping/);
  } finally {
    await la.release();
  }
});
