/** Dependency graph structure: groups, couplings, frozen axes, planning parts, slicing, stable unit keys. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor, numel } from '../src/ir/tensor.js';
import { loadModel } from '../src/onnx/io.js';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { sliceTensorAxes } from '../src/prune/structured/surgery.js';
import { unitImportance } from '../src/importance/importance.js';
import { CostModel } from '../src/plan/cost.js';
import { planStructured } from '../src/plan/plan.js';

const FIXTURE = fileURLToPath(new URL('../../test/fixtures/models/fmnist_resnet20.onnx', import.meta.url));
const w = (dims: number[]) => floatTensor(dims, Array.from({ length: numel(dims) }, (_, i) => Math.sin(i + dims[0]!)));

test('resnet20: residual stages are single groups that reach the classifier; model input/output stay', () => {
  const { dg } = analyzeModel(loadModel(FIXTURE));
  const groups = dg.groups.filter((g) => g.units.length > 0);
  assert.deepEqual(groups.map((g) => g.units.length).sort((a, b) => a - b), [16, 16, 16, 16, 32, 32, 32, 32, 64, 64, 64, 64]);
  const fcIn = dg.spaces.find((s) => s.param && dg.model.graph.nodes.some((n) => n.opType === 'Gemm' && n.inputs[1] === s.value) && s.axis === 1);
  assert.ok(fcIn, 'the Gemm input features are coupled');
  const stage3 = dg.groups[fcIn.group]!;
  // The last stage's residual group touches every conv that writes or reads the residual stream (6 convs + shortcut + fc).
  assert.ok(stage3.nodes.length >= 7);
  assert.ok(dg.frozen.some((f) => f.reason === 'model output'));
  const stem = dg.model.graph.nodes.find((n) => n.opType === 'Conv')!;
  assert.equal(dg.spaceOf.get(`${stem.inputs[1]}@1`), undefined, 'a 1-channel input axis is not a space');
});

test('unit keys are stable across analyses', () => {
  const m = loadModel(FIXTURE);
  const a = analyzeModel(m).dg.units.map((u) => u.key);
  const b = analyzeModel(m).dg.units.map((u) => u.key);
  assert.deepEqual(a, b);
  assert.equal(new Set(a).size, a.length);
});

test('Concat of two producers: one group, each producer rounded on its own', () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 3, 8, 8]);
  const p = b.node('Conv', [x, b.init('wa', w([24, 3, 3, 3]))], { pads: [1, 1, 1, 1] });
  const q = b.node('Conv', [x, b.init('wb', w([40, 3, 3, 3]))], { pads: [1, 1, 1, 1] });
  const c = b.node('Relu', [b.node('Concat', [p, q], { axis: 1 })]);
  const y = b.node('Conv', [c, b.init('wc', w([5, 64, 1, 1]))], {}, { output: 'y' });
  b.output(y, [1, 5, 8, 8]);
  const an = analyzeModel(b.model());
  const groups = an.dg.groups.filter((g) => g.units.length);
  assert.equal(groups.length, 1);
  assert.equal(groups[0]!.units.length, 64);
  const score = unitImportance(an.dg, { kind: 'l2' });
  const { removed } = planStructured(an.dg, new CostModel(an.dg, an.shapes), score, { ratio: 0.5, roundTo: 8 });
  const fromA = [...removed].filter((u) => an.dg.units[u]!.key.startsWith('wa@')).length;
  const fromB = [...removed].filter((u) => an.dg.units[u]!.key.startsWith('wb@')).length;
  assert.equal((24 - fromA) % 8, 0);
  assert.equal((40 - fromB) % 8, 0);
  assert.ok(fromA > 0 && fromB > 0);
});

test('target MACs lands within 2% with round-to 1 and with the default alignment', () => {
  const an = analyzeModel(loadModel(FIXTURE));
  const cost = new CostModel(an.dg, an.shapes);
  const score = unitImportance(an.dg, { kind: 'l1' });
  for (const roundTo of [1, 16]) {
    for (const global of [false, true]) {
      const { plan } = planStructured(an.dg, cost, score, { targetMacs: 0.5, roundTo, global });
      const r = plan.estimate.macs / plan.estimate.baseMacs;
      assert.ok(Math.abs(r - 0.5) <= 0.01, `round-to ${roundTo} global ${global}: ${r}`);
    }
  }
});

test('sliceTensorAxes keeps the given indices of several axes in one pass (new data)', () => {
  const t = floatTensor([2, 3, 4], Array.from({ length: 24 }, (_, i) => i));
  const s = sliceTensorAxes(t, new Map([[0, Int32Array.from([1])], [2, Int32Array.from([0, 3])]]));
  assert.deepEqual(s.dims, [1, 3, 2]);
  assert.deepEqual([...(s.data as Float32Array)], [12, 15, 16, 19, 20, 23]);
  assert.notEqual((s.data as Float32Array).buffer, (t.data as Float32Array).buffer);
  const u = sliceTensorAxes(t, new Map([[1, Int32Array.from([2])]]));
  assert.deepEqual([...(u.data as Float32Array)], [8, 9, 10, 11, 20, 21, 22, 23]);
});

test('every channel rule names an op the registry knows', async () => {
  const { CHANNEL_RULES } = await import('../src/ops/channels.js');
  const { OPS } = await import('../src/ops/registry.js');
  const missing = Object.keys(CHANNEL_RULES).filter((k) => !(k in OPS));
  assert.deepEqual(missing, []);
  for (const k of Object.keys(CHANNEL_RULES)) assert.equal(typeof (OPS as Record<string, { channels?: unknown }>)[k]!.channels, 'function', k);
});

test('old exports: initializers listed as graph inputs are still parameters, and their declared shapes follow', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 3, 6, 6]);
  const c = b.node('Relu', [b.node('Conv', [x, b.init('w1', w([8, 3, 3, 3]))], { pads: [1, 1, 1, 1] })]);
  const y = b.node('Conv', [c, b.init('w2', w([4, 8, 1, 1]))], {}, { output: 'y' });
  b.output(y, [1, 4, 6, 6]);
  for (const n of ['w1', 'w2']) b.graph.inputs.push({ name: n, type: { elemType: 1, shape: [...b.graph.initializers.get(n)!.dims] } });
  const an = analyzeModel(b.model(8));
  assert.equal(an.dg.units.length, 8);
  const { removeUnits } = await import('../src/prune/structured/surgery.js');
  const { model } = removeUnits(an.dg, new Set([0, 3]));
  assert.deepEqual(model.graph.inputs.find((i) => i.name === 'w1')!.type!.shape, [6, 3, 3, 3]);
  assert.deepEqual(model.graph.inputs.find((i) => i.name === 'w2')!.type!.shape, [4, 6, 1, 1]);
});

test('a dynamic non-batch input dimension asks for --input-shape; given shapes are used', () => {
  const b = new GraphBuilder();
  const x = b.input('x', ['N', 3, 'H', 'W']);
  const c = b.node('Relu', [b.node('Conv', [x, b.init('w1', w([8, 3, 3, 3]))], { pads: [1, 1, 1, 1] })]);
  const y = b.node('Conv', [c, b.init('w2', w([4, 8, 1, 1]))], {}, { output: 'y' });
  b.output(y, ['N', 4, 'H', 'W']);
  assert.throws(() => analyzeModel(b.model()), /--input-shape x=1x3xDxD/);
  const an = analyzeModel(b.model(), { inputShapes: { x: [2, 3, 16, 16] } });
  assert.deepEqual(an.inputShapes, { x: [2, 3, 16, 16] });
  assert.equal(an.dg.units.length, 8);
});
