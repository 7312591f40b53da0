/**
 * The planner's head rate: under a MAC target in uniform mode, attention units (heads: several channels per
 * axis) lose `headRate` times the fraction the other groups (MLP neurons) lose; the pipeline sets it for
 * transformers (a LayerNormalization or RMS norm in the graph) and leaves other networks at level fractions.
 * The budgeted planner (latency targets, --allocation budget) levels the groups the same way (heads at the rate);
 * its latency table times a transformer's segments at the planned head counts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder, F } from '../src/ir/builder.js';
import { floatTensor, int64Tensor, numel } from '../src/ir/tensor.js';
import type { Model } from '../src/ir/graph.js';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { unitImportance } from '../src/importance/importance.js';
import { CostModel } from '../src/plan/cost.js';
import { groupStates, planStructured, type StructuredPlan } from '../src/plan/plan.js';
import { planBudgetSync } from '../src/plan/budget.js';
import { LatencyTable, currentMeta } from '../src/plan/latency-table.js';
import { SegmentLatency, standaloneSegment } from '../src/plan/latency-model.js';
import { segmentGraph } from '../src/plan/segments.js';
import { removeUnits } from '../src/prune/structured/surgery.js';
import { pruneToLatency } from '../src/prune/structured/latency.js';
import { encodeModel } from '../src/onnx/codec.js';
import { loadModel } from '../src/onnx/io.js';
import { shears } from './cli-helpers.js';
import { WeightCountTable } from './latency-tables.js';

let seed = 3;
const w = (dims: number[]) => floatTensor(dims, Array.from({ length: numel(dims) }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5));
const T = 6, D = 32, H = 4, HD = 8, M = 64;

/** Two pre-norm transformer blocks (4 heads of 8, ReLU MLP of 64) on [1, 6, 32]; LayerNorm optional. */
function transformer(layerNorm: boolean): Model {
  const b = new GraphBuilder();
  let x = b.node('MatMul', [b.input('x', [1, T, 16]), b.init('emb', w([16, D]))]);
  const norm = (t: string, name: string) => (layerNorm ? b.node('LayerNormalization', [t, b.init(`${name}g`, w([D])), b.init(`${name}b`, w([D]))], { axis: -1, epsilon: F(1e-5) }) : t);
  for (let l = 0; l < 2; l++) {
    const n1 = norm(x, `l${l}n1`);
    const proj = (p: string) => b.node('MatMul', [n1, b.init(`l${l}${p}`, w([D, D]))]);
    const heads = (t: string, perm: number[]) => b.node('Transpose', [b.node('Reshape', [t, b.init(b.fresh('hs'), int64Tensor([4], [1, T, H, HD]))])], { perm });
    // the query scaled after the split (as torch's attention does): a weight read after the Reshape target
    const q = b.node('Mul', [heads(proj('q'), [0, 2, 1, 3]), b.init(b.fresh('scale'), floatTensor([], [0.35]))]);
    const s = b.node('Softmax', [b.node('MatMul', [q, heads(proj('k'), [0, 2, 3, 1])])], { axis: -1 });
    const o = b.node('Transpose', [b.node('MatMul', [s, heads(proj('v'), [0, 2, 1, 3])])], { perm: [0, 2, 1, 3] });
    const merged = b.node('Reshape', [o, b.init(b.fresh('ms'), int64Tensor([3], [1, T, D]))]);
    x = b.node('Add', [b.node('MatMul', [merged, b.init(`l${l}o`, w([D, D]))]), x]);
    const n2 = norm(x, `l${l}n2`);
    x = b.node('Add', [b.node('MatMul', [b.node('Relu', [b.node('MatMul', [n2, b.init(`l${l}up`, w([D, M]))])]), b.init(`l${l}down`, w([M, D]))]), x]);
  }
  const y = b.node('MatMul', [x, b.init('head', w([D, 3]))], {}, { output: 'y' });
  b.output(y, [1, T, 3]);
  return b.model(17);
}

/** Kept heads and MLP neurons per block of a plan. */
function widths(plan: StructuredPlan): { heads: number[]; mlp: number[] } {
  const after = (k: string, full: number) => plan.tensors[k]?.after ?? full;
  return { heads: [0, 1].map((l) => after(`l${l}q@1`, D) / HD), mlp: [0, 1].map((l) => after(`l${l}up@1`, M)) };
}

function plan(model: Model, opts: { targetMacs: number; headRate?: number; global?: boolean }): StructuredPlan {
  const an = analyzeModel(model, {});
  const cost = new CostModel(an.dg, an.shapes, an.parameters);
  return planStructured(an.dg, cost, unitImportance(an.dg, { kind: 'l2', aggregate: 'mean' }), { roundTo: 1, ...opts }).plan;
}

test('head rate 1 keeps fractions level; 0.3 cuts the MLP first and fewer heads for the same MACs', () => {
  const m = transformer(true);
  const level = plan(m, { targetMacs: 0.6 });
  const low = plan(m, { targetMacs: 0.6, headRate: 0.3 });
  for (const p of [level, low]) assert.ok(Math.abs(p.estimate.macs / p.estimate.baseMacs - 0.6) <= 0.6 * 0.02 + 1e-9, `${p.estimate.macs / p.estimate.baseMacs} within 2% of 0.6`);
  const a = widths(level), b = widths(low);
  const removed = (v: number[], full: number) => 1 - v.reduce((s, x) => s + x, 0) / (v.length * full);
  assert.ok(removed(a.heads, H) > 0, `level fractions remove heads too (${a.heads})`);
  assert.ok(Math.abs(removed(a.heads, H) - removed(a.mlp, M)) <= 0.25 + 1e-9, `level: heads ${a.heads} and MLP ${a.mlp} within a head step`);
  assert.ok(removed(b.heads, H) < removed(a.heads, H), `rate 0.3 removes fewer heads (${b.heads} vs ${a.heads})`);
  assert.ok(removed(b.mlp, M) > removed(a.mlp, M), `and more MLP neurons (${b.mlp} vs ${a.mlp})`);
  // Lower, heads must go too: a head step is taken only when the heads' fraction after it, over 0.3, stays below
  // the MLP's after its next step (one neuron more).
  const deep = widths(plan(m, { targetMacs: 0.55, headRate: 0.3 }));
  assert.ok(removed(deep.heads, H) > 0, `at 55% of the MACs heads go too (${deep.heads}, MLP ${deep.mlp})`);
  assert.ok(removed(deep.heads, H) <= 0.3 * (removed(deep.mlp, M) + 1 / M) + 1e-9, `heads ${deep.heads} cut at most 0.3x the MLP's fraction (${deep.mlp})`);
  assert.equal(low.options['headRate'], 0.3, 'the plan records the rate');
  // --global ranks by importance: the rate does not apply
  assert.deepEqual(plan(m, { targetMacs: 0.6, global: true, headRate: 0.3 }).removed, plan(m, { targetMacs: 0.6, global: true }).removed);
  assert.throws(() => plan(m, { targetMacs: 0.6, headRate: 0 }), /headRate must be in \(0, 1\]/);
});

test('the CLI applies the transformer head rate by default (printed), to LayerNorm networks only; --head-rate 1 levels', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-headrate-'));
  const run = (ln: boolean, extra: string[]) => {
    const src = join(dir, `m${ln ? 'ln' : ''}.onnx`);
    writeFileSync(src, encodeModel(transformer(ln)));
    const planFile = join(dir, `p${ln}${extra.join('')}.json`);
    const r = shears(['prune', src, '-o', join(dir, 'o.onnx'), '--structured', '--target-macs', '0.6', '--round-to', '1', '--save-plan', planFile, ...extra]);
    assert.equal(r.code, 0, r.stderr);
    return { stderr: r.stderr, plan: JSON.parse(readFileSync(planFile, 'utf8')) as StructuredPlan };
  };
  const t = run(true, []);
  assert.match(t.stderr, /a transformer: attention units \(heads\) lose 0\.3x the fraction the MLP neurons lose/);
  assert.equal(t.plan.options['headRate'], 0.3);
  const level = run(true, ['--head-rate', '1']);
  assert.doesNotMatch(level.stderr, /a transformer: attention units/);
  assert.ok(widths(t.plan).heads.reduce((s, x) => s + x) > widths(level.plan).heads.reduce((s, x) => s + x), 'the default keeps more heads than level fractions');
  const plain = run(false, []);
  assert.doesNotMatch(plain.stderr, /a transformer/);
  assert.equal(plain.plan.options['headRate'], undefined, 'no LayerNorm: level fractions, as before');
});

/** Removed fraction of each attention group and the largest of the others', from a budget plan's allocation. */
function headShares(plan: StructuredPlan): { heads: number[]; others: number } {
  const gs = plan.allocation!.groups;
  const lost = (g: { channels: number; kept: number }) => (g.channels - g.kept) / g.channels;
  return { heads: gs.filter((g) => g.attention).map(lost), others: Math.max(...gs.filter((g) => !g.attention).map(lost)) };
}

test('budget planner (MAC budget) with a head rate: groups levelled, heads at the rate (within a step); said in the plan', () => {
  const m = transformer(true);
  const an = analyzeModel(m, {});
  const cost = new CostModel(an.dg, an.shapes, an.parameters);
  const score = unitImportance(an.dg, { kind: 'l2', aggregate: 'mean' });
  // heads made cheap to lose (a head's score scaled down): without the rule the planner takes heads first
  const headUnits = new Set(groupStates(an.dg, score, 0.9, 1, true).filter((st) => st.multi).flatMap((st) => st.order));
  assert.equal(headUnits.size, 2 * H);
  const cheap = Float64Array.from(score, (s, u) => (headUnits.has(u) ? s * 0.01 : s));
  const free = planBudgetSync(an.dg, cost, cheap, { kind: 'macs', target: 0.6, roundTo: 1 }).plan;
  const held = planBudgetSync(an.dg, cost, cheap, { kind: 'macs', target: 0.6, roundTo: 1, headRate: 0.3 }).plan;
  const f = widths(free), h = widths(held);
  assert.ok(f.heads.some((x) => x < H), `without the rule cheap heads go (${f.heads})`);
  assert.ok(h.heads.reduce((a, b) => a + b) > f.heads.reduce((a, b) => a + b), `the rule keeps more heads (${h.heads} vs ${f.heads})`);
  assert.equal(held.allocation!.headRate, 0.3);
  assert.equal(free.allocation!.headRate, undefined);
  const s = headShares(held);
  assert.equal(s.heads.length, 2, 'two attention groups flagged');
  // a head step is taken when its fraction over the rate stays within the others' after their next step (1 of 64)
  for (const x of s.heads) assert.ok(x <= 0.3 * (s.others + 1 / M) + 1e-9, `heads lost ${x}, others ${s.others}`);
  assert.ok(s.heads.some((x) => x > 0), `heads go too at the rate (${h.heads}, MLP ${h.mlp})`);
  assert.ok(Math.max(...h.mlp) - Math.min(...h.mlp) <= 2, `the MLPs are levelled (${h.mlp})`);
  assert.ok(held.estimate.macs <= 0.6 * held.estimate.baseMacs * (1 + 1e-9), 'the budget is kept');
  assert.ok(held.allocation!.groups.some((g) => g.attention && g.next?.heldByHeadRate), 'a head step held back is said');
  // Deeper: the heads' level runs out before the others' (at most 90% of a group removed): heads go on
  const deep = planBudgetSync(an.dg, cost, cheap, { kind: 'macs', target: 0.3, roundTo: 1, headRate: 0.3, allowShort: true }).plan;
  assert.ok(widths(deep).heads.some((x) => x < H), `at 30% heads go too (${widths(deep).heads}, MLP ${widths(deep).mlp})`);
  assert.throws(() => planBudgetSync(an.dg, cost, cheap, { kind: 'macs', target: 0.6, headRate: 0 }), /headRate must be in \(0, 1\]/);
});

test('latency target on a transformer: every segment is timed at the planned widths (the heads Reshape follows) and the head rate holds', async () => {
  const m = transformer(true);
  const an = analyzeModel(m, {});
  // one head and half the MLP of every block removed: the segments resized on the dependency graph are the
  // segments of the actually pruned model (same keys), none falls back to its dense time
  const removed = new Set<number>();
  const size = Int32Array.from(an.dg.spaces, (s) => s.size);
  for (const g of an.dg.groups) for (const u of g.units.slice(0, g.units.length === H ? 1 : Math.floor(g.units.length / 2))) {
    removed.add(u.id);
    for (const e of u.elements) size[an.dg.elementSpace[e]!]!--;
  }
  const sl = new SegmentLatency(an.model, an.shapes, new LatencyTable(currentMeta(1)), 8, an.dg);
  const resized = sl.segments.map((_, k) => sl.standalone(k, size));
  assert.ok(resized.every((s) => s !== null), 'every segment builds at the planned widths');
  assert.equal(sl.unbuildable.size, 0);
  const pa = analyzeModel(removeUnits(an.dg, removed).model, {});
  const actual = segmentGraph(pa.model, pa.shapes).map((s) => standaloneSegment(pa.model, pa.shapes, s).key).sort();
  assert.deepEqual(resized.map((s) => s!.key).sort(), actual);
  // the latency planner keeps the head rate
  const table = new WeightCountTable(currentMeta(1));
  const res = await pruneToLatency(m, 0.6, { importance: 'l2', roundTo: 1, headRate: 0.3 }, { batch: 1, threads: 1, table });
  const a = res.plan.allocation!;
  assert.equal(a.kind, 'latency');
  assert.equal(a.headRate, 0.3);
  assert.ok(res.latency.ratio <= 0.6 + 1e-9, JSON.stringify(res.latency));
  const s = headShares(res.plan);
  assert.equal(s.heads.length, 2);
  // latency steps of the 64-wide MLPs are 4 neurons (at most 16 widths per group)
  for (const x of s.heads) assert.ok(x <= 0.3 * (s.others + 4 / M) + 1e-9, `heads lost ${x}, others ${s.others}`);
  const none = await pruneToLatency(m, 0.6, { importance: 'l2', roundTo: 1 }, { batch: 1, threads: 1, table });
  assert.equal(none.plan.allocation!.headRate, undefined, 'no rate given: none applied (the CLI gives 0.3 to transformers)');
});

test('CLI: --target-latency on a transformer plans with the default head rate, recorded in the plan', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-headrate-lat-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const src = join(dir, 'm.onnx');
  const m = transformer(true);
  writeFileSync(src, encodeModel(m));
  // the table the CLI reads is filled beforehand with deterministic times along the same plan (nothing measured)
  const cache = join(dir, 'table.json');
  const filled = new WeightCountTable(currentMeta(1), cache);
  // (the model as the CLI reads it: float attributes such as LayerNorm's epsilon are float32 there, and in the keys)
  await pruneToLatency(loadModel(src), 0.7, { importance: 'l2', roundTo: 8, headRate: 0.3 }, { batch: 1, threads: 1, table: filled });
  filled.save();
  const planFile = join(dir, 'p.json');
  const r = shears(['prune', src, '-o', join(dir, 'o.onnx'), '--structured', '--target-latency', '0.7', '--threads', '1', '--latency-cache', cache, '--save-plan', planFile]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /a transformer: attention units \(heads\) lose 0\.3x the fraction the MLP neurons lose/);
  const plan = JSON.parse(readFileSync(planFile, 'utf8')) as StructuredPlan;
  assert.equal(plan.allocation!.kind, 'latency');
  assert.equal(plan.allocation!.headRate, 0.3);
  assert.equal(plan.options['headRate'], 0.3);
  assert.equal(plan.allocation!.measured, 0, 'the CLI planned on the filled table');
});
