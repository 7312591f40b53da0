/**
 * Issue 17, cold planning time: timing inputs and weights filled by a repeated random stretch (fillTiled), and
 * timed runs that stop once a majority of them agree (hasSettled; measureLatencies `settle`). No timing
 * assertions: what is checked is the rule and how many runs are made where the rule's outcome is certain.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../src/ir/builder.js';
import { fillTiled, rng } from '../src/random.js';
import { hasSettled, measureLatencies } from '../src/metrics/latency.js';

test('fillTiled: the first period drawn in [lo, hi), then repeated to the end (any length)', () => {
  for (const n of [0, 1, 6, 7, 8, 50, 1001]) {
    const a = new Float32Array(n);
    fillTiled(a, rng(3), -0.1, 0.1, 7);
    for (let i = 0; i < n; i++) {
      assert.ok(a[i]! >= -0.1 && a[i]! < 0.1, `${n}: a[${i}] = ${a[i]}`);
      if (i >= 7) assert.equal(a[i], a[i - 7], `${n}: period 7 at ${i}`);
    }
  }
  // the drawn stretch is the generator's sequence
  const a = new Float64Array(20);
  fillTiled(a, rng(5), 0, 1, 9);
  const r = rng(5);
  for (let i = 0; i < 9; i++) assert.equal(a[i], r());
  assert.ok(new Set(Array.from(a.subarray(0, 9))).size > 1, 'not one value');
});

test('hasSettled: a majority of runs within the tolerance of the median', () => {
  assert.equal(hasSettled([], 0.03), false);
  assert.equal(hasSettled([10], 0.03), true, 'one run is its own majority (minRuns keeps this from happening)');
  assert.equal(hasSettled([10, 10.2], 0.03), true);
  assert.equal(hasSettled([10, 11], 0.03), false, 'two runs 10% apart');
  // a page-faulting run among three does not hold the figure back; three scattered runs do
  assert.equal(hasSettled([15, 10, 10.1], 0.03), true);
  assert.equal(hasSettled([10, 11, 12], 0.03), false);
  assert.equal(hasSettled([10, 11, 12], 0.1), true, '10 and 11 are within 10% of the median 11');
  // four runs need three together
  assert.equal(hasSettled([10, 10.1, 13, 14], 0.03), false);
  assert.equal(hasSettled([10, 10.1, 10.2, 14], 0.03), true);
});

function tiny() {
  const b = new GraphBuilder('tiny');
  const x = b.input('x', [1, 8]);
  b.output(b.node('Relu', [x]), [1, 8]);
  return b.model();
}

test('measureLatencies: without settle every model runs `runs` times; with a tolerance every set of runs meets, each stops at minRuns', async () => {
  const all = await measureLatencies([tiny(), tiny()], { threads: 1, warmup: 0, runs: 6 });
  assert.deepEqual(all.map((r) => r.runs), [6, 6]);
  const early = await measureLatencies([tiny(), tiny()], { threads: 1, warmup: 0, runs: 6, settle: 1e9, minRuns: 3 });
  assert.deepEqual(early.map((r) => r.runs), [3, 3]);
  for (const r of early) assert.ok(r.cpuMedian >= 0 && r.median >= 0);
  // minRuns above runs: runs is the most
  const capped = await measureLatencies([tiny()], { threads: 1, warmup: 0, runs: 2, settle: 1e9, minRuns: 5 });
  assert.equal(capped[0]!.runs, 2);
});
