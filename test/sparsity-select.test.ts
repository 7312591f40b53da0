import { test } from 'node:test';
import assert from 'node:assert/strict';
import { countCandidates, dropSelected, selectSmallest, selectedPerInput, sortedAbs, type SelectInput } from '../src/sparsity/select.js';
import { lampScores } from '../src/sparsity/unstructured.js';
import { nmMask, nmViolations, parsePattern } from '../src/sparsity/nm.js';
import { rng } from '../src/random.js';
import { gauss } from './sparsity-fixture.js';

/** Brute force: indices (array, index) of the k smallest |x| among candidates, ties by position. */
function bruteMasks(inputs: SelectInput[], k: number): Uint8Array[] {
  const all: { a: number; i: number; v: number }[] = [];
  inputs.forEach(({ values, keep }, a) => values.forEach((v, i) => (!keep || keep[i]) && all.push({ a, i, v: Math.abs(v) })));
  all.sort((p, q) => p.v - q.v || p.a - q.a || p.i - q.i);
  const out = inputs.map(({ values, keep }) => Uint8Array.from(values, (_, i) => (!keep || keep[i] ? 1 : 0)));
  for (const { a, i } of all.slice(0, k)) out[a]![i] = 0;
  return out;
}

function randomInputs(seed: number, withTies: boolean, withKeep: boolean): SelectInput[] {
  const next = rng(seed);
  return [37, 1, 250, 64].map((n) => {
    let v = gauss(next, n);
    if (withTies) v = v.map((x) => Math.round(x * 4) / 4); // many equal magnitudes, zeros, both signs
    const keep = withKeep ? Uint8Array.from({ length: n }, () => (next() < 0.7 ? 1 : 0)) : undefined;
    return { values: Float32Array.from(v), keep };
  });
}

test('radix select picks exactly the k smallest |x| (ties by position), matching a full sort', () => {
  for (const [seed, ties, keep] of [[1, false, false], [2, true, false], [3, true, true], [4, false, true]] as const) {
    const inputs = randomInputs(seed, ties, keep);
    const n = countCandidates(inputs);
    for (const k of [0, 1, 7, Math.floor(n / 2), n - 1, n]) {
      const t = selectSmallest(inputs, k);
      const got = dropSelected(inputs, t);
      const want = bruteMasks(inputs, k);
      assert.deepEqual(got, want, `seed ${seed} k ${k}`);
      const per = selectedPerInput(inputs, t);
      const dropped = inputs.map((inp, a) => inp.values.reduce((c, _, i) => c + ((!inp.keep || inp.keep[i]) && !got[a]![i] ? 1 : 0), 0));
      assert.deepEqual(per, dropped);
    }
  }
});

test('radix select handles negative zero, subnormals, infinities and an all-equal array', () => {
  const values = Float32Array.from([-0, 0, 1e-42, -1e-42, Infinity, -3, 3, 2, -Infinity]);
  const t = selectSmallest([{ values }], 4);
  assert.deepEqual([...dropSelected([{ values }], t)[0]!], [0, 0, 0, 0, 1, 1, 1, 1, 1]);
  const same = new Float32Array(10).fill(-0.5);
  assert.deepEqual([...dropSelected([{ values: same }], selectSmallest([{ values: same }], 3))[0]!], [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
});

test('LAMP scores match the definition and are non-decreasing', () => {
  const w = Float32Array.from([0.5, -2, 1, 0, -1]);
  const keep = Uint8Array.from([1, 1, 1, 1, 0]);
  const s = lampScores(w, keep);
  // survivors squared ascending: 0, 0.25, 1, 4 -> suffix sums 5.25, 5.25, 5, 4
  assert.deepEqual([...s], [0, 0.25 / 5.25, 1 / 5, 1].map(Math.fround));
});

test('N:M masks keep the N largest of every group of M along the reduction axis', () => {
  const next = rng(9);
  const dims = [3, 8, 2, 2]; // Conv-like [Cout, Cin, kh, kw], groups along Cin
  const w = Float32Array.from(gauss(next, 96));
  const p = parsePattern('2:4');
  const m = nmMask(w, undefined, dims, 1, p);
  const masked = Float32Array.from(w, (v, i) => (m[i] ? v : 0));
  assert.equal(nmViolations(masked, dims, 1, p), 0);
  assert.equal(m.reduce((a, b) => a + b, 0), 48);
  // brute check of one group: (cout 1, cin 4..7, kh 1, kw 0)
  const idx = [4, 5, 6, 7].map((c) => ((1 * 8 + c) * 2 + 1) * 2 + 0);
  const kept = idx.filter((e) => m[e]);
  const top2 = idx.slice().sort((a, b) => Math.abs(w[b]!) - Math.abs(w[a]!)).slice(0, 2);
  assert.deepEqual(kept.sort(), top2.sort());
  // the original weights violate the pattern
  assert.ok(nmViolations(w, dims, 1, p) > 0);
  // an existing mask: pruned weights are never revived
  const keep = Uint8Array.from({ length: 96 }, () => (next() < 0.5 ? 1 : 0));
  const m2 = nmMask(w, keep, dims, 1, parsePattern('1:4'));
  for (let i = 0; i < 96; i++) if (!keep[i]) assert.equal(m2[i], 0);
  assert.equal(nmViolations(Float32Array.from(w, (v, i) => (m2[i] ? v : 0)), dims, 1, parsePattern('1:4')), 0);
});

test('bad N:M patterns are user errors', () => {
  for (const bad of ['4:2', '2-4', '0:4', 'a:b', '2:', '2:4:8']) assert.throws(() => parsePattern(bad), { name: 'ShearsError' }, bad);
  assert.deepEqual(parsePattern(' 1:8 '), { n: 1, m: 8 });
});

test('sortedAbs (radix sort on bit patterns) equals a native sort of |x| among candidates', () => {
  const next = rng(21);
  for (const n of [10, 40_000]) {
    const v = Float32Array.from(gauss(next, n), (x, i) => (i % 7 === 0 ? Math.round(x) : x * 10 ** ((i % 5) - 2)));
    const keep = Uint8Array.from({ length: n }, () => (next() < 0.8 ? 1 : 0));
    const want = Float32Array.from([...v].filter((_, i) => keep[i]).map(Math.abs)).sort();
    assert.deepEqual(sortedAbs(v, keep), want);
  }
});
