/**
 * Issue 17: the latency table (cache meta and keys), the segment latency model's widths, and the budgeted
 * planner (exact under a budget, monotone, explained, unreachable targets refused, plans that stay exact under
 * zero-then-remove in onnxruntime). Fixtures are built here (GraphBuilder) or the bundled resnet20.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor, numel, type Tensor } from '../src/ir/tensor.js';
import type { Model } from '../src/ir/graph.js';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { removeUnits } from '../src/prune/structured/surgery.js';
import { zeroUnits } from '../src/depgraph/zero.js';
import { unitImportance } from '../src/importance/importance.js';
import { CostModel } from '../src/plan/cost.js';
import { unitsOfPlan } from '../src/plan/plan.js';
import { planBudgetSync } from '../src/plan/budget.js';
import { LatencyTable, currentMeta, hashKey } from '../src/plan/latency-table.js';
import { SegmentLatency, fitCalibration, nchwcConv, nchwcLayout, standaloneSegment } from '../src/plan/latency-model.js';
import { segmentGraph } from '../src/plan/segments.js';
import { runOnce } from '../src/runtime/session.js';
import { ShearsError } from '../src/errors.js';
import { depthScoresPerMs, depthUnitTimes, nextLandingTarget, pruneToLatency } from '../src/prune/structured/latency.js';
import { pruneStructured } from '../src/prune/structured/index.js';
import { loadModel } from '../src/onnx/io.js';
import { FIXTURE_MODEL, shears } from './cli-helpers.js';
import { BlockTable, WeightCountTable } from './latency-tables.js';

const dir = mkdtempSync(join(tmpdir(), 'shears-latency-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

let seed = 7;
const rnd = () => ((seed = (seed * 16807) % 2147483647), seed / 2147483647 - 0.5);
const w = (dims: number[]): Tensor => floatTensor(dims, Array.from({ length: numel(dims) }, rnd));

/** A small residual CNN: stem 16, one residual block (16 -> 24 -> 16), a 32-wide conv, a depthwise conv, pool, Gemm. */
function cnn(batch = 2): Model {
  const b = new GraphBuilder('cnn');
  const x = b.input('x', [batch, 3, 16, 16]);
  const conv = (x: string, cin: number, cout: number) =>
    b.node('Relu', [b.node('Conv', [x, b.init(b.fresh('W'), w([cout, cin, 3, 3])), b.init(b.fresh('B'), w([cout]))], { pads: [1, 1, 1, 1] })]);
  const s = conv(x, 3, 16);
  const h = conv(s, 16, 24);
  const r = b.node('Add', [s, b.node('Conv', [h, b.init(b.fresh('W'), w([16, 24, 3, 3])), b.init(b.fresh('B'), w([16]))], { pads: [1, 1, 1, 1] })]);
  const t0 = conv(r, 16, 32);
  // depthwise: its group count follows its channels when the planner resizes it
  const t = b.node('Relu', [b.node('Conv', [t0, b.init(b.fresh('W'), w([32, 1, 3, 3])), b.init(b.fresh('B'), w([32]))], { pads: [1, 1, 1, 1], group: 32 })]);
  const p = b.node('Flatten', [b.node('GlobalAveragePool', [t])], { axis: 1 });
  b.output(b.node('Gemm', [p, b.init(b.fresh('fc'), w([5, 32])), b.init(b.fresh('fcb'), w([5]))], { transB: 1 }, { output: 'y' }), [batch, 5]);
  return b.model();
}

test('latency table: a file written for another runtime, CPU or thread count is ignored; the same meta is read back', () => {
  const meta = currentMeta(1);
  const path = join(dir, 'sub', 'table.json');
  const t = LatencyTable.open(meta, path);
  assert.equal(t.entries.size, 0);
  t.set('k1', 1.5);
  t.save();
  assert.ok(existsSync(path), 'save creates the folder and the file');
  const back = LatencyTable.open(meta, path);
  assert.equal(back.get('k1'), 1.5);
  assert.equal(back.ignored, undefined);
  for (const other of [{ ...meta, runtime: 'onnxruntime-node 0.0.1' }, { ...meta, cpu: 'Some Other CPU' }, { ...meta, threads: 4 }]) {
    const o = LatencyTable.open(other, path);
    assert.equal(o.entries.size, 0, `a table of ${JSON.stringify(meta)} must not be trusted for ${JSON.stringify(other)}`);
    assert.match(o.ignored ?? '', /written for/);
  }
  writeFileSync(join(dir, 'bad.json'), '{ not json');
  const bad = LatencyTable.open(meta, join(dir, 'bad.json'));
  assert.equal(bad.entries.size, 0);
  assert.match(bad.ignored ?? '', /unreadable/);
  assert.notEqual(hashKey('a'), hashKey('b'));
  assert.equal(hashKey('abc'), hashKey('abc'));
});

test('NCHWc rule and calibration fit', () => {
  assert.equal(nchwcConv([16, 8, 3, 3], 1, 8), true);
  assert.equal(nchwcConv([16, 3, 3, 3], 1, 8), true, 'a first layer of fewer than 8 inputs reads NCHW');
  assert.equal(nchwcConv([12, 8, 3, 3], 1, 8), true, 'outputs are padded up to the block');
  assert.equal(nchwcConv([16, 12, 3, 3], 1, 8), false, 'the strict rule: inputs at whole blocks');
  // onnxruntime-node 1.30 with blocks of 16 pads inputs that are a multiple of 4 (probed: 20 and 36 in, not 22)
  const avx512 = { block: 16, align: 4 };
  assert.equal(nchwcConv([32, 20, 1, 1], 1, avx512), true);
  assert.equal(nchwcConv([32, 22, 1, 1], 1, avx512), false);
  assert.equal(nchwcConv([32, 10, 1, 1], 1, avx512), true, 'fewer inputs than the block: read NCHW');
  assert.equal(nchwcConv([16, 1, 3, 3], 16, 8), true, 'depthwise');
  assert.equal(nchwcConv([100, 1, 3, 3], 100, avx512), true, 'depthwise at the alignment');
  assert.equal(nchwcConv([98, 1, 3, 3], 98, avx512), false);
  assert.equal(nchwcConv([16, 2, 3, 3], 8, 8), false, 'grouped, not depthwise');
  // two points on whole = 2 + 0.7 * nchwc (no other segments, no boundaries, no overhead)
  const c = fitCalibration([{ nchwc: 100, other: 0, boundary: 0, whole: 72 }, { nchwc: 40, other: 0, boundary: 0, whole: 30 }], 0);
  assert.ok(Math.abs(c.nchwc - 0.7) < 1e-9 && Math.abs(c.offset - 2) < 1e-9, JSON.stringify(c));
  const one = fitCalibration([{ nchwc: 100, other: 10, boundary: 0, whole: 80 }], 0);
  assert.ok(Math.abs(one.nchwc - 0.7) < 1e-9 && one.other === 1 && one.offset === 0);
  // a transformer: the whole model runs faster than its other (non-NCHWc) segments' sum, so every segment shares
  // the factor; two points fit whole - boundary = 1 + 0.8 * (sum - boundary) (before: one ratio, no offset)
  const tf = fitCalibration([{ nchwc: 2, other: 98, boundary: 2, whole: 81.4 }, { nchwc: 2, other: 38, boundary: 2, whole: 33.4 }], 0);
  assert.ok(Math.abs(tf.other - 0.8) < 1e-9 && tf.nchwc === tf.other && Math.abs(tf.offset - 1) < 1e-9, JSON.stringify(tf));
  const tf1 = fitCalibration([{ nchwc: 0, other: 100, boundary: 0, whole: 81 }], 0);
  assert.ok(Math.abs(tf1.other - 0.81) < 1e-9 && tf1.offset === 0, JSON.stringify(tf1));
});

test('NCHWc layout: probed from onnxruntime; along a segment a pool or a channel Concat keeps the blocked layout only at whole blocks', async () => {
  const layout = await nchwcLayout();
  assert.ok(layout.block >= 4 && layout.align >= 1 && layout.block % layout.align === 0, JSON.stringify(layout));
  const avx512 = { block: 16, align: 4 };
  // conv(16 -> c) + Relu + MaxPool, and conv(16 -> c) concatenated with the input, as one segment each
  const build = (c: number, tail: 'pool' | 'concat') => {
    const b = new GraphBuilder('layout');
    const x = b.input('x', [1, 16, 8, 8]);
    const y = b.node('Relu', [b.node('Conv', [x, b.init('W', w([c, 16, 1, 1]))])]);
    const out = tail === 'pool' ? b.node('MaxPool', [y], { kernel_shape: [2, 2], strides: [2, 2] }) : b.node('Concat', [x, y], { axis: 1 });
    b.output(out);
    const m = b.model();
    const an = analyzeModel(m, {});
    const segs = segmentGraph(an.model, an.shapes);
    assert.equal(segs.length, 1);
    return standaloneSegment(an.model, an.shapes, segs[0]!, undefined, avx512);
  };
  for (const [c, kept] of [[16, true], [32, true], [20, false], [24, false]] as const) {
    for (const tail of ['pool', 'concat'] as const) {
      const st = build(c, tail);
      assert.equal(st.nchwc, true, `conv 16 -> ${c} runs blocked`);
      assert.deepEqual(st.outBlocked, [kept], `${tail} after ${c} channels`);
    }
  }
});

test('timing mode per model: each timed run after an untimed one (in cache) unless the largest activation holds 32 MiB or more', () => {
  const model = (hw: number) => {
    const b = new GraphBuilder('act');
    const x = b.input('x', [1, 16, hw, hw]);
    b.output(b.node('Relu', [b.node('Conv', [x, b.init('W', w([16, 16, 1, 1]))])]));
    const an = analyzeModel(b.model(), {});
    return new SegmentLatency(an.model, an.shapes, new LatencyTable(currentMeta(1)), 16, an.dg);
  };
  assert.equal(model(64).rewarm, true, '16 x 64 x 64 floats: 256 KiB');
  assert.equal(model(1024).rewarm, false, '16 x 1024 x 1024 floats: 64 MiB');
});

test('a segment resized by the planner has the key of the same segment in the actually pruned model', () => {
  const model = cnn();
  const an = analyzeModel(model, { inputShapes: { x: [2, 3, 16, 16] } });
  const removed = new Set<number>();
  const size = Int32Array.from(an.dg.spaces, (s) => s.size);
  for (const g of an.dg.groups) {
    for (const u of g.units.slice(0, Math.floor(g.units.length / 2))) {
      removed.add(u.id);
      for (const e of u.elements) size[an.dg.elementSpace[e]!]!--;
    }
  }
  assert.ok(removed.size > 0);
  const table = new LatencyTable(currentMeta(1));
  const sl = new SegmentLatency(an.model, an.shapes, table, 8, an.dg);
  const pruned = removeUnits(an.dg, removed).model;
  const pa = analyzeModel(pruned, { inputShapes: { x: [2, 3, 16, 16] } });
  const segs = segmentGraph(pa.model, pa.shapes);
  assert.equal(segs.length, sl.segments.length);
  const resized = sl.segments.map((_, k) => sl.standalone(k, size)!.key).sort();
  const actual = segs.map((s) => standaloneSegment(pa.model, pa.shapes, s).key).sort();
  assert.deepEqual(resized, actual);
  const dense = sl.segments.map((_, k) => sl.standalone(k)!.key).sort();
  assert.notDeepEqual(dense, actual, 'other widths, other keys');
});

function planning(model: Model) {
  const an = analyzeModel(model, {});
  const cost = new CostModel(an.dg, an.shapes, an.parameters);
  const score = unitImportance(an.dg, { kind: 'l2' });
  return { an, cost, score };
}

test('budget planner (MACs, params): at or under the budget, close to it, monotone, explained', () => {
  const model = loadModel(FIXTURE_MODEL);
  const { an, cost, score } = planning(model);
  let last = Infinity;
  for (const target of [0.9, 0.7, 0.5, 0.3]) {
    for (const kind of ['macs', 'params'] as const) {
      const { plan } = planBudgetSync(an.dg, cost, score, { kind, target, roundTo: 1 });
      const a = plan.allocation!;
      const base = kind === 'macs' ? cost.baseMacs : cost.baseParams;
      const got = kind === 'macs' ? plan.estimate.macs : plan.estimate.params;
      assert.equal(a.base, base);
      assert.ok(got <= target * base * (1 + 1e-9), `${kind} ${target}: ${got / base}`);
      assert.ok(got >= target * base * 0.97, `${kind} ${target}: stops at the budget, not below (${got / base})`);
      assert.equal(a.reached, got);
      for (const g of a.groups) {
        assert.ok(g.kept <= g.channels && g.kept >= 1);
        if (g.kept < g.channels) assert.ok(g.importanceLost > 0 && g.saved > 0 && g.lastRatio !== null, JSON.stringify(g));
        else assert.equal(g.importanceLost, 0);
      }
      assert.equal(plan.options['allocation'], 'budget');
      if (kind === 'macs') {
        assert.ok(got < last, 'a lower budget keeps fewer MACs');
        last = got;
      }
    }
  }
  // roundTo is a constraint on widths
  const { plan } = planBudgetSync(an.dg, cost, score, { kind: 'macs', target: 0.5, roundTo: 8 });
  for (const g of plan.allocation!.groups) assert.ok(g.kept === g.channels || g.kept % 8 === 0, `kept ${g.kept}`);
  // unreachable: a ShearsError naming the closest figure
  assert.throws(() => planBudgetSync(an.dg, cost, score, { kind: 'macs', target: 0.001, roundTo: 8 }), (e: unknown) => e instanceof ShearsError && /closest reachable is \d/.test((e as Error).message));
});

/**
 * A latency table whose "measurements" are a deterministic function of the graph (its weight count): the planner's
 * logic is tested, not this machine's timings (a tiny CNN's segments are microseconds, within load noise).
 */
test('latency planner: where the next two widths of every group save nothing (padded to a block), it looks further instead of calling the target unreachable', async () => {
  for (const allocation of ['level', undefined] as const) {
    const table = new BlockTable(currentMeta(1), join(dir, `block-table-${allocation ?? 'price'}.json`));
    // roundTo 4: the 32-channel group's next two widths (28, 24) pad back to 32; only 16 saves, four steps down
    const res = await pruneToLatency(cnn(4), 0.7, { importance: 'l2', roundTo: 4, ...(allocation ? { allocation } : {}) }, { batch: 4, threads: 1, table, runs: 5 });
    assert.ok(res.latency.ratio <= 0.7 + 1e-9, JSON.stringify(res.latency));
    const g32 = res.plan.allocation!.groups.find((g) => g.channels === 32)!;
    assert.equal(g32.kept, 16, JSON.stringify(res.plan.allocation!.groups));
  }
});

test('budget planner (latency table): the plan replays, and zero-then-remove stays exact in onnxruntime', async () => {
  const model = cnn(4);
  const table = new WeightCountTable(currentMeta(1), join(dir, 'cnn-table.json'));
  const res = await pruneToLatency(model, 0.7, { importance: 'l2', roundTo: 8 }, { batch: 4, threads: 1, table, runs: 5 });
  const L = res.latency;
  assert.ok(L.dense > 0 && L.predicted <= 0.7 * res.plan.allocation!.base * (1 + 1e-9), JSON.stringify(L));
  assert.ok(L.measured > 0, 'a cold table measures');
  assert.equal(res.plan.allocation!.kind, 'latency');
  assert.ok(res.plan.removed.length > 0);
  for (const g of res.plan.allocation!.groups) assert.ok(g.kept === g.channels || g.kept % 8 === 0);
  table.save();
  // warm: nothing measured again
  const warm = LatencyTable.open(currentMeta(1), join(dir, 'cnn-table.json'));
  const again = await pruneToLatency(model, 0.7, { importance: 'l2', roundTo: 8 }, { batch: 4, threads: 1, table: warm, runs: 5 });
  assert.equal(again.latency.measured, 0);
  assert.deepEqual(again.plan.removed, res.plan.removed);
  // exactness: zeroing the plan's units and removing them give the same outputs
  const an = analyzeModel(model, {});
  const units = unitsOfPlan(an.dg, res.plan);
  const x = w([4, 3, 16, 16]);
  const zeroed = await runOnce(zeroUnits(an.dg, an.model, units), { x });
  const pruned = await runOnce(res.model, { x });
  const a = zeroed['y']!.data as Float32Array, b = pruned['y']!.data as Float32Array;
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 1e-4 * (1 + Math.abs(a[i]!)), `${i}: ${a[i]} vs ${b[i]}`);
  // unreachable: exit 2 (a ShearsError) with the closest figure
  await assert.rejects(pruneToLatency(model, 0.01, { importance: 'l2', roundTo: 8 }, { batch: 4, threads: 1, table: warm, runs: 5 }), /closest reachable is \d/);
});

test('CLI: --target-latency plans with the table; an unreachable target is exit 2; --no-latency-cache writes nothing', async () => {
  const cache = join(dir, 'cli-table.json');
  const o = join(dir, 'l.onnx');
  // The table the CLI reads is filled beforehand by the library with deterministic times (weight counts) along the
  // same plan, so the CLI's plan measures nothing and does not depend on this machine's load.
  const filled = new WeightCountTable(currentMeta(1), cache);
  // (the CLI's default for a latency target, level allocation, and --allocation budget's price-driven plan)
  await pruneToLatency(loadModel(FIXTURE_MODEL), 0.7, { importance: 'l2', roundTo: 8, allocation: 'level' }, { batch: 2, threads: 1, table: filled });
  await pruneToLatency(loadModel(FIXTURE_MODEL), 0.7, { importance: 'l2', roundTo: 8 }, { batch: 2, threads: 1, table: filled });
  filled.save();
  const r = shears(['prune', FIXTURE_MODEL, '-o', o, '--structured', '--target-latency', '0.7', '--batch', '2', '--threads', '1', '--latency-cache', cache, '--save-plan', join(dir, 'l.plan.json'), '--json'], { timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.ok(j.latency.dense > 0 && j.latency.predicted > 0 && j.latency.ratio <= 0.7 + 1e-9, JSON.stringify(j.latency));
  assert.equal(j.latency.measured, 0, `the CLI plans on the filled table: ${r.stderr}`);
  assert.ok(existsSync(cache));
  const plan = JSON.parse(readFileSync(join(dir, 'l.plan.json'), 'utf8'));
  assert.equal(plan.allocation.kind, 'latency');
  assert.equal(plan.allocation.level, true, 'a latency target levels the groups by default');
  assert.ok(plan.allocation.groups.every((g: { kept: number; channels: number }) => g.kept <= g.channels));
  const warm = shears(['prune', FIXTURE_MODEL, '-o', o, '--structured', '--target-latency', '0.7', '--batch', '2', '--threads', '1', '--latency-cache', cache, '--json'], { timeoutMs: 300_000 });
  assert.equal(warm.code, 0, warm.stderr);
  assert.equal(JSON.parse(warm.stdout).latency.measured, 0, 'a second plan of the same model measures nothing');
  const bad = shears(['prune', FIXTURE_MODEL, '-o', o, '--structured', '--target-latency', '0.02', '--batch', '2', '--threads', '1', '--latency-cache', cache], { timeoutMs: 300_000 });
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr.trim().split('\n').pop()!, /^shears: error: the target 2\.0% of the predicted latency cannot be reached .* closest reachable is \d/);
  assert.ok(!/\n\s+at /.test(bad.stderr), 'no stack trace');
  const macs = shears(['prune', FIXTURE_MODEL, '-o', o, '--structured', '--target-macs', '0.5', '--allocation', 'budget', '--save-plan', join(dir, 'm.plan.json'), '--json'], { timeoutMs: 300_000 });
  assert.equal(macs.code, 0, macs.stderr);
  assert.ok(Math.abs(JSON.parse(macs.stdout).macsRatio - 0.5) <= 0.01);
  assert.equal(JSON.parse(readFileSync(join(dir, 'm.plan.json'), 'utf8')).allocation.kind, 'macs');
  for (const extra of [['--ratio', '0.3'], ['--target-macs', '0.5', '--global']]) {
    const r = shears(['prune', FIXTURE_MODEL, '-o', o, '--structured', '--allocation', 'budget', ...extra], { timeoutMs: 300_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--allocation budget plans a MAC or parameter target/);
  }
  // --allocation budget: the same table, groups by price alone (no levelling), nothing measured either
  const price = shears(['prune', FIXTURE_MODEL, '-o', o, '--structured', '--target-latency', '0.7', '--allocation', 'budget', '--batch', '2', '--threads', '1', '--latency-cache', cache, '--save-plan', join(dir, 'b.plan.json'), '--json'], { timeoutMs: 300_000 });
  assert.equal(price.code, 0, price.stderr);
  assert.equal(JSON.parse(price.stdout).latency.measured, 0);
  assert.equal(JSON.parse(readFileSync(join(dir, 'b.plan.json'), 'utf8')).allocation.level, undefined);
  const none = join(dir, 'none.json');
  const n = shears(['prune', FIXTURE_MODEL, '-o', o, '--structured', '--target-latency', '0.9', '--batch', '2', '--threads', '1', '--latency-cache', none, '--no-latency-cache', '--json'], { timeoutMs: 300_000 });
  // measured for real here: on a loaded machine a small model's 0.9 can be out of reach (exit 2, said); either way
  // no table file is written
  assert.ok(n.code === 0 || (n.code === 2 && /cannot be reached/.test(n.stderr)), n.stderr);
  assert.ok(!existsSync(none));
});

test('levelled latency planner: lazy timing (untimed steps ranked by a table-independent estimate) times fewer graphs than the price-driven planner, and a second plan on its table is the same plan and measures nothing', async () => {
  const model = loadModel(FIXTURE_MODEL);
  const opts = { importance: 'l2' as const, roundTo: 8, allocation: 'level' as const };
  const cold = new WeightCountTable(currentMeta(1));
  const lazy = await pruneToLatency(model, 0.6, opts, { batch: 2, threads: 1, table: cold });
  assert.ok(lazy.latency.ratio <= 0.6 + 1e-9 && lazy.latency.measured > 0);
  const warm = await pruneToLatency(model, 0.6, opts, { batch: 2, threads: 1, table: cold });
  assert.equal(warm.latency.measured, 0, 'a second plan of the same model measures nothing');
  assert.deepEqual(warm.plan.removed, lazy.plan.removed);
  // a table that also holds what the price-driven planner times: the levelled plan takes the same steps on it
  const price = new WeightCountTable(currentMeta(1));
  await pruneToLatency(model, 0.6, { importance: 'l2', roundTo: 8 }, { batch: 2, threads: 1, table: price });
  assert.ok(price.entries.size > cold.entries.size, `the lazy plan timed fewer graphs (${cold.entries.size} against ${price.entries.size})`);
  const known = await pruneToLatency(model, 0.6, opts, { batch: 2, threads: 1, table: price });
  assert.deepEqual(known.plan.removed, lazy.plan.removed);
});

test('landing check: the next target scales the last plan\'s prediction by its miss, then follows the secant; a target already asked ends it', () => {
  // +25% off: the prediction scaled by target/measured
  const t1 = nextLandingTarget(0.6, [{ planned: 0.6, predicted: 0.59, measured: 0.75 }])!;
  assert.ok(Math.abs(t1 - 0.59 * 0.6 / 0.75) < 1e-12, `${t1}`);
  // two plans: the secant through (predicted, measured)
  const t2 = nextLandingTarget(0.6, [{ planned: 0.6, predicted: 0.59, measured: 0.75 }, { planned: t1, predicted: 0.47, measured: 0.55 }])!;
  const slope = (0.55 - 0.75) / (0.47 - 0.59);
  assert.ok(Math.abs(t2 - (0.47 + (0.6 - 0.55) / slope)) < 1e-12, `${t2}`);
  // capped at 1; a target asked before is not asked again
  assert.equal(nextLandingTarget(0.95, [{ planned: 0.95, predicted: 0.95, measured: 0.5 }]), 1);
  assert.equal(nextLandingTarget(0.6, [{ planned: 0.48, predicted: 0.6, measured: 0.75 }]), undefined);
});

test('landing check: a plan measured off the target is planned again for a corrected target, the closest landing kept; off when asked', async () => {
  const model = cnn(4);
  const weights = (m: Model) => [...m.graph.initializers.values()].reduce((s, t) => s + numel(t.dims), 0);
  const dense = weights(model);
  // "measured" 1.25x what the weight-count table predicts: the first plan lands 25% over
  const calls: number[] = [];
  const measureLanding = async (pruned: Model) => {
    const m = Math.min(1, 1.25 * (weights(pruned) / dense));
    calls.push(m);
    return m;
  };
  const table = new WeightCountTable(currentMeta(1), join(dir, 'landing-table.json'));
  const res = await pruneToLatency(model, 0.7, { importance: 'l2', roundTo: 1 }, { batch: 4, threads: 1, table, runs: 5, measureLanding });
  const L = res.latency.landing!;
  assert.ok(L.attempts.length >= 2, JSON.stringify(L));
  assert.deepEqual(L.attempts.map((a) => a.measured), calls);
  assert.equal(L.attempts[0]!.planned, 0.7);
  assert.ok(L.attempts[1]!.planned < 0.7, 'a plan landing over the target is planned again for less');
  assert.ok(Math.abs(L.attempts[0]!.measured / 0.7 - 1) > 0.03);
  for (const a of L.attempts) assert.ok(Math.abs(L.measured - 0.7) <= Math.abs(a.measured - 0.7) + 1e-12, 'the closest landing is kept');
  assert.equal(L.measured, L.attempts[L.kept]!.measured);
  assert.ok(Math.abs(L.measured / 0.7 - 1) < Math.abs(L.attempts[0]!.measured / 0.7 - 1));
  assert.deepEqual(res.plan.allocation!.landing, L, 'the plan records the landing');
  // the kept plan is the model returned: its weight count gives the kept landing
  assert.ok(Math.abs(Math.min(1, 1.25 * weights(res.model) / dense) - L.measured) < 1e-12);
  // off: one plan, nothing measured for it
  calls.length = 0;
  const off = await pruneToLatency(model, 0.7, { importance: 'l2', roundTo: 1 }, { batch: 4, threads: 1, table, runs: 5, measureLanding, landingCheck: false });
  assert.equal(off.latency.landing, undefined);
  assert.equal(calls.length, 0);
});

test('CLI: the latency table and landing-check flags without a latency target are exit 2, not ignored', () => {
  for (const flag of [['--no-landing-check'], ['--latency-cache', join(dir, 'unused.json')]]) {
    const r = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'nl.onnx'), '--structured', '--target-macs', '0.5', ...flag]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /applies to a latency target only/);
    assert.ok(!existsSync(join(dir, 'nl.onnx')));
  }
});

test('a latency table that cannot be saved (a full disk) is said, and the plan goes on', async () => {
  class FullDiskTable extends WeightCountTable {
    override save(): void {
      throw new ShearsError(`cannot write '${this.path}': no space left on the device; nothing was replaced`);
    }
  }
  const said: string[] = [];
  const table = new FullDiskTable(currentMeta(1), join(dir, 'full', 'table.json'));
  const res = await pruneToLatency(cnn(4), 0.7, { importance: 'l2', roundTo: 8, progress: (m) => said.push(m) }, { batch: 4, threads: 1, table, runs: 5 });
  assert.ok(res.plan.removed.length > 0);
  assert.ok(said.some((m) => /latency table: not saved \(cannot write .*no space left/.test(m)), said.join('\n'));
});

test('latency target with --remove-blocks: the block goes first, the widths are planned on the rest for the target scaled by its share, and the plan replays', async () => {
  const model = cnn(4);
  const table = new WeightCountTable(currentMeta(1), join(dir, 'depth-table.json'));
  // what removing the residual block saves, by the table
  const ms = await depthUnitTimes(model, { importance: 'l2' }, { batch: 4, threads: 1, table });
  assert.equal(ms.size, 1);
  const [[unit, saved]] = [...ms];
  assert.ok(saved! > 0, `${unit}: ${saved}`);
  assert.deepEqual([...depthScoresPerMs(new Map([[unit!, 0.5]]), ms)], [[unit, 0.5 / saved!]]);
  assert.equal(depthScoresPerMs(new Map([['x', 1]]), new Map()).get('x'), Number.MAX_VALUE, 'a unit that saves nothing goes last');
  const res = await pruneToLatency(model, 0.35, { importance: 'l2', roundTo: 4, removeBlocks: 1 }, { batch: 4, threads: 1, table, landingCheck: false });
  assert.equal(res.plan.removedBlocks.length, 1);
  assert.deepEqual(res.report.removedBlocks, res.plan.removedBlocks);
  assert.ok(res.latency.ratio <= 0.35 + 1e-9, JSON.stringify(res.latency));
  assert.ok(res.plan.removed.length > 0, 'the block alone does not reach 0.35: widths too');
  // the plan (blocks and channels) replays to the same model
  const again = pruneStructured(model, { plan: res.plan });
  const x = w([4, 3, 16, 16]);
  const a = (await runOnce(res.model, { x }))['y']!.data as Float32Array;
  const b = (await runOnce(again.model, { x }))['y']!.data as Float32Array;
  assert.deepEqual(Array.from(a), Array.from(b));
  // a target the block alone reaches (within the landing tolerance) keeps every width; one far above what the
  // block alone leaves is refused, naming the figure, instead of writing a model far off it
  const share = (await pruneToLatency(model, 0.9, { importance: 'l2', roundTo: 4, removeBlocks: 1 }, { batch: 4, threads: 1, table, landingCheck: false }).catch((e: Error) => e)) as Error;
  assert.ok(share instanceof ShearsError && /cannot be reached with 1 depth unit\(s\) removed: without them the model already runs at \d/.test(share.message), String(share));
  const at = Number(/runs at ([\d.]+)%/.exec(share.message)![1]) / 100 + 0.001; // (the figure is rounded to 0.1%)
  const only = await pruneToLatency(model, at, { importance: 'l2', roundTo: 4, removeBlocks: 1 }, { batch: 4, threads: 1, table, landingCheck: false });
  assert.equal(only.plan.removedBlocks.length, 1);
  assert.equal(only.plan.removed.length, 0);
});

test('latency table: a reading over its bound is timed again and the lower reading kept; within its bound, once', async () => {
  class Flaky extends LatencyTable {
    readings = new Map<string, number[]>();
    protected override async measureAll(todo: Map<string, () => Model>): Promise<void> {
      for (const k of todo.keys()) {
        const left = this.readings.get(k) ?? [1];
        this.set(k, left.shift()!);
        this.measured++;
      }
    }
  }
  const t = new Flaky(currentMeta(1), undefined);
  t.readings.set('slow', [4.8, 0.62]);
  t.readings.set('ok', [0.7, 0.1]);
  t.readings.set('dense', [1.0]);
  const model = () => cnn(1);
  await t.measure([
    { key: 'slow', model, bound: () => 1.5 * t.get('dense')! },
    { key: 'ok', model, bound: () => 1.5 * t.get('dense')! },
    { key: 'dense', model },
  ]);
  assert.equal(t.get('slow'), 0.62, 'timed again, the lower kept');
  assert.equal(t.get('ok'), 0.7, 'within its bound: one reading');
  assert.equal(t.remeasured, 1);
  // a graph already in the table is not timed again, whatever its bound
  t.readings.set('slow', [9]);
  await t.measure([{ key: 'slow', model, bound: () => 0.1 }]);
  assert.equal(t.get('slow'), 0.62);
});
