/**
 * The planner's head rate: under a MAC target in uniform mode, attention units (heads: several channels per
 * axis) lose `headRate` times the fraction the other groups (MLP neurons) lose; the pipeline sets it for
 * transformers (a LayerNormalization or RMS norm in the graph) and leaves other networks at level fractions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder, F } from '../src/ir/builder.js';
import { floatTensor, int64Tensor, numel } from '../src/ir/tensor.js';
import type { Model } from '../src/ir/graph.js';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { unitImportance } from '../src/importance/importance.js';
import { CostModel } from '../src/plan/cost.js';
import { planStructured, type StructuredPlan } from '../src/plan/plan.js';
import { encodeModel } from '../src/onnx/codec.js';
import { shears } from './cli-helpers.js';

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
    const s = b.node('Softmax', [b.node('MatMul', [heads(proj('q'), [0, 2, 1, 3]), heads(proj('k'), [0, 2, 3, 1])])], { axis: -1 });
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
