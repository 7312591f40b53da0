/**
 * Recurrent layers (RNN, GRU, LSTM): shapes of Y, Y_h, Y_c against onnxruntime for every direction and layout
 * with the optional inputs; MACs and parameter counts; W and R as unstructured pruning weights; hidden-unit
 * structured pruning through the gate blocks, exact against the zeroed model in onnxruntime; the refusal to
 * fine-tune.
 */
import { test } from 'node:test';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { checkGraph } from '../src/ir/edit.js';
import { floatTensor, int64Tensor, numel, type Tensor } from '../src/ir/tensor.js';
import { inspectModel } from '../src/analysis/inspect.js';
import { inferShapes } from '../src/analysis/shapes.js';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { keptIndices } from '../src/depgraph/depgraph.js';
import { CostModel } from '../src/plan/cost.js';
import { removeUnits } from '../src/prune/structured/surgery.js';
import { layerWeights } from '../src/sparsity/layers.js';
import { runOnce } from '../src/runtime/session.js';
import { buildBackward } from '../src/autodiff/backward.js';
import { ShearsError } from '../src/errors.js';
import { crossCheck, rng } from './shapes-helpers.js';
import { isUserError, shears } from './cli-helpers.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { zeroUnits } from '../src/depgraph/zero.js';
import { staticValueTypes } from './gradcheck.js';

const r = rng(11);
const w = (dims: number[]): Tensor => floatTensor(dims, Array.from({ length: numel(dims) }, () => r() - 0.5));
const GATES = { RNN: 1, GRU: 3, LSTM: 4 } as const;
type Op = keyof typeof GATES;

interface Cfg {
  op: Op;
  direction?: 'forward' | 'reverse' | 'bidirectional';
  layout?: 0 | 1;
  T?: number;
  batch?: number;
  I?: number;
  H?: number;
  bias?: boolean;
  seqLens?: boolean;
  initial?: boolean;
  peep?: boolean;
  attrs?: Record<string, number>;
}

/** X (graph input) -> op with its weights as initializers; every output exposed. */
function rnnModel(c: Cfg): { model: Model; sizes: { T: number; B: number; I: number; H: number; D: number } } {
  const { op, direction = 'forward', layout = 0, T = 5, batch = 2, I = 3, H = 4 } = c;
  const D = direction === 'bidirectional' ? 2 : 1;
  const G = GATES[op];
  const b = new GraphBuilder();
  const x = b.input('x', layout ? [batch, T, I] : [T, batch, I]);
  const inputs = [x, b.init('W', w([D, G * H, I])), b.init('R', w([D, G * H, H]))];
  inputs.push(c.bias === false ? '' : b.init('B', w([D, 2 * G * H])));
  inputs.push(c.seqLens ? b.init('lens', { dtype: DataType.INT32, dims: [batch], data: Int32Array.from({ length: batch }, (_, i) => T - i) }) : '');
  const st = layout ? [batch, D, H] : [D, batch, H];
  inputs.push(c.initial ? b.init('h0', w(st)) : '');
  if (op === 'LSTM') {
    inputs.push(c.initial ? b.init('c0', w(st)) : '');
    inputs.push(c.peep ? b.init('P', w([D, 3 * H])) : '');
  }
  while (inputs[inputs.length - 1] === '') inputs.pop();
  const outs = b.nodeN(op, inputs, { hidden_size: H, direction, ...(layout ? { layout } : {}), ...(c.attrs ?? {}) }, op === 'LSTM' ? 3 : 2, { name: op.toLowerCase() });
  outs.forEach((o) => b.output(o));
  return { model: b.model(17), sizes: { T, B: batch, I, H, D } };
}

for (const op of ['RNN', 'GRU', 'LSTM'] as const) {
  test(`${op}: Y, Y_h${op === 'LSTM' ? ', Y_c' : ''} shapes match onnxruntime for every direction and layout`, async () => {
    for (const direction of ['forward', 'reverse', 'bidirectional'] as const) {
      for (const layout of [0, 1] as const) {
        const { model, sizes } = rnnModel({ op, direction, layout, seqLens: true, initial: true, peep: true, ...(op === 'GRU' ? { attrs: { linear_before_reset: 1 } } : {}) });
        const { T, B, D, H } = sizes;
        const outs = model.graph.nodes[0]!.outputs;
        // onnxruntime's CPU kernels refuse layout 1 ("Batchwise recurrent operations are not supported"): the
        // spec's shapes are checked by value there.
        const info = layout === 0 ? (await crossCheck(model)).info : inferShapes(model);
        const want = layout ? [[B, T, D, H], [B, D, H]] : [[T, D, B, H], [D, B, H]];
        outs.forEach((o, i) => assert.deepEqual(info.types.get(o)!.shape, want[Math.min(i, 1)], `${op} ${direction} layout ${layout} output ${i}`));
      }
    }
  });
}

test('recurrent shapes without B and with GRU linear_before_reset=0; a hidden_size that disagrees with R is refused', async () => {
  await crossCheck(rnnModel({ op: 'GRU', bias: false }).model);
  await crossCheck(rnnModel({ op: 'LSTM', bias: false, direction: 'bidirectional' }).model);
  const { model } = rnnModel({ op: 'LSTM' });
  model.graph.nodes[0]!.attrs.set('hidden_size', { kind: 'int', value: 5 });
  assert.throws(() => inspectModel(model, {}), (e: unknown) => e instanceof ShearsError && /LSTM: .*hidden/.test(e.message));
});

test('recurrent cost: MACs = T * D * batch * gates * H * (I + H); W, R, B, P count as parameters', () => {
  for (const op of ['RNN', 'GRU', 'LSTM'] as const) {
    for (const direction of ['forward', 'bidirectional'] as const) {
      const { model, sizes } = rnnModel({ op, direction, peep: true, initial: true, seqLens: true });
      const { T, B, I, H, D } = sizes;
      const rep = inspectModel(model, {});
      assert.deepEqual(rep.unknownOps, []);
      assert.equal(rep.macs, T * D * B * GATES[op] * H * (I + H), `${op} ${direction} MACs`);
      const G = GATES[op];
      const params = D * G * H * I + D * G * H * H + D * 2 * G * H + (op === 'LSTM' ? D * 3 * H : 0);
      assert.equal(rep.params, params, `${op} ${direction} params (initial states are not parameters)`);
    }
  }
});

test('unstructured pruning selects W and R of a recurrent layer', () => {
  const { model } = rnnModel({ op: 'LSTM', peep: true });
  const names = layerWeights(model).map((l) => `${l.name}:${l.spec.outAxis}/${l.spec.inAxis}`);
  assert.deepEqual(names, ['W:1/2', 'R:1/2']);
});

// ---------------------------------------------------------------------------------------- structured


async function run(model: Model, x: Tensor): Promise<Record<string, Float32Array>> {
  const out = await runOnce(model, { x });
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
}

/**
 * Stacked recurrent model: x -> op1 (Y) -> ReduceSum over the directions -> op2 -> Y_h -> MatMul
 * head; hidden units of op1 are coupled to op2's input features, op2's units to the head's rows.
 */
function stacked(op: Op, direction: 'forward' | 'reverse' | 'bidirectional', layout: 0 | 1, opts: { initial?: boolean; peep?: boolean; attrs?: Record<string, number> } = {}): Model {
  const T = 4, B = 2, I = 3, H1 = 6, H2 = 5, D = direction === 'bidirectional' ? 2 : 1, G = GATES[op];
  const b = new GraphBuilder();
  const x = b.input('x', layout ? [B, T, I] : [T, B, I]);
  const layer = (inp: string, i: number, h: number, name: string): string[] => {
    const st = layout ? [B, D, h] : [D, B, h];
    const ins = [inp, b.init(`${name}_W`, w([D, G * h, i])), b.init(`${name}_R`, w([D, G * h, h])), b.init(`${name}_B`, w([D, 2 * G * h])), ''];
    if (opts.initial) ins.push(b.init(`${name}_h0`, w(st)));
    if (op === 'LSTM' && (opts.initial || opts.peep)) ins.push(opts.initial ? b.init(`${name}_c0`, w(st)) : '');
    if (op === 'LSTM' && opts.peep) ins.push(b.init(`${name}_P`, w([D, 3 * h])));
    return b.nodeN(op, ins, { hidden_size: h, direction, ...(layout ? { layout } : {}), ...(opts.attrs ?? {}) }, op === 'LSTM' ? 3 : 2, { name });
  };
  const [y1] = layer(x, I, H1, 'l1');
  // Y [T, D, B, H] -> [T, B, H]: the directions summed (Keras merge_mode='sum'; onnxruntime runs layout 0 only).
  const seq = b.node('ReduceSum', [y1!, b.init('dir_axis', int64Tensor([1], [1]))], { keepdims: 0 });
  const outs2 = layer(seq, H1, H2, 'l2');
  const head = b.init('head', w([H2, 3]));
  b.output(b.node('MatMul', [outs2[1]!, head], {}, { output: 'yh' }));
  if (op === 'LSTM') b.output(b.node('MatMul', [outs2[2]!, b.init('head_c', w([H2, 3]))], {}, { output: 'yc' }));
  return b.model(17);
}

async function checkExact(model: Model, xShape: number[], what: string): Promise<Model> {
  const an = analyzeModel(model);
  const groups = an.dg.groups.filter((g) => g.units.length > 1);
  assert.equal(groups.length, 2, `${what}: two prunable groups (the hidden units of each layer), got ${groups.length}: ${JSON.stringify(an.dg.frozen)}`);
  const chosen = new Set<number>();
  for (const g of groups) g.units.forEach((u, i) => i % 3 === 1 && chosen.add(u.id));
  const zeroed = zeroUnits(an.dg, an.model, chosen);
  const an2 = analyzeModel(zeroed);
  const { model: pruned } = removeUnits(an2.dg, chosen);
  assert.deepEqual(checkGraph(pruned.graph), []);
  const x = w(xShape);
  const ref = await run(zeroed, x);
  const got = await run(pruned, x);
  const orig = await run(model, x);
  for (const k of Object.keys(ref)) {
    const a = ref[k]!, c = got[k]!;
    assert.equal(c.length, a.length, `${what}: output ${k} size`);
    let maxErr = 0, changed = 0;
    for (let i = 0; i < a.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(a[i]! - c[i]!));
      changed = Math.max(changed, Math.abs(a[i]! - orig[k]![i]!));
    }
    assert.ok(maxErr <= 1e-5, `${what}: output ${k}: pruned differs from zeroed by ${maxErr}`);
    assert.ok(changed > 1e-3, `${what}: output ${k}: zeroing had no effect (the test would prove nothing)`);
  }
  const n1 = pruned.graph.nodes.find((n) => n.name === 'l1')!;
  const n2 = pruned.graph.nodes.find((n) => n.name === 'l2')!;
  assert.equal(n1.attrs.get('hidden_size')!.value, 4, `${what}: l1 keeps 4 of 6 units`);
  assert.equal(n2.attrs.get('hidden_size')!.value, 3, `${what}: l2 keeps 3 of 5 units`);
  return pruned;
}

for (const op of ['RNN', 'GRU', 'LSTM'] as const) {
  test(`${op}: removing hidden units equals zeroing them (onnxruntime), all directions`, async () => {
    for (const direction of ['forward', 'reverse', 'bidirectional'] as const) {
      {
        // (onnxruntime's CPU kernels run layout 0 only.)
        const model = stacked(op, direction, 0, { initial: true, peep: true });
        const pruned = await checkExact(model, [4, 2, 3], `${op} ${direction}`);
        const D = direction === 'bidirectional' ? 2 : 1, G = GATES[op];
        const init = pruned.graph.initializers;
        const W2 = [...init].find(([k]) => k === pruned.graph.nodes.find((n) => n.name === 'l2')!.inputs[1])![1];
        assert.deepEqual(W2.dims, [D, G * 3, 4], 'l2 W loses its gate rows and the input features of l1\'s removed units');
      }
    }
  });
}

test('GRU with linear_before_reset=1 and LSTM without initial states: removal is exact', async () => {
  await checkExact(stacked('GRU', 'bidirectional', 0, { attrs: { linear_before_reset: 1 } }), [4, 2, 3], 'GRU lbr=1');
  await checkExact(stacked('LSTM', 'forward', 0), [4, 2, 3], 'LSTM plain');
});

test('LSTM: a unit with zero W, R, B, P rows and zero initial states has h = 0 at every step (why removal is exact)', async () => {
  const model = stacked('LSTM', 'forward', 0, { initial: true, peep: true });
  const an = analyzeModel(model);
  const g = an.dg.groups.find((gr) => gr.spaces.some((s) => s.value === 'l1_R'))!;
  const unit = g.units[2]!;
  const zeroed = zeroUnits(an.dg, an.model, new Set([unit.id]));
  const y1 = zeroed.graph.nodes.find((n) => n.name === 'l1')!.outputs[0]!;
  zeroed.graph.outputs.push({ name: y1 });
  const out = await runOnce(zeroed, { x: w([4, 2, 3]) });
  const y = out[y1]!.data as Float32Array; // [T, 1, B, 6]
  let maxUnit = 0, maxOther = 0;
  for (let i = 0; i < y.length; i++) {
    if (i % 6 === 2) maxUnit = Math.max(maxUnit, Math.abs(y[i]!));
    else maxOther = Math.max(maxOther, Math.abs(y[i]!));
  }
  assert.equal(maxUnit, 0);
  assert.ok(maxOther > 1e-3);
});

/** Adds a scalar loss (ReduceSum of yh) to the graph. */
function b2loss(model: Model): string {
  model.graph.nodes.push({ name: 'loss', opType: 'ReduceSum', domain: '', inputs: ['yh'], outputs: ['loss'], attrs: new Map([['keepdims', { kind: 'int', value: 0 }]]) });
  return 'loss';
}

test('training through a recurrent layer is refused with a message naming the op', () => {
  const model = stacked('LSTM', 'forward', 0);
  const an = analyzeModel(model);
  const types = staticValueTypes(an.shapes.types);
  const loss = b2loss(an.model);
  assert.throws(
    () => buildBackward(an.model, { loss, wrt: ['l1_W'], types, elemType: DataType.FLOAT }),
    (e: unknown) => e instanceof ShearsError && /^node 'l2': LSTM: shears has no gradient rule for this op; fine-tuning and training are not supported for recurrent models/.test(e.message),
  );
});

test('the structured planner prices a pruned recurrent layer like inspect does on the pruned model', async () => {
  const model = stacked('LSTM', 'bidirectional', 0, { initial: true, peep: true });
  const an = analyzeModel(model);
  const cm = new CostModel(an.dg, an.shapes);
  assert.equal(cm.baseMacs, inspectModel(model, {}).macs);
  const chosen = new Set<number>();
  for (const g of an.dg.groups) g.units.forEach((u, i) => i % 3 === 1 && chosen.add(u.id));
  const size = cm.initialSizes();
  for (const [sid, kept] of keptIndices(an.dg, chosen)) size[sid] = kept.length;
  const { model: pruned } = removeUnits(an.dg, chosen);
  const after = inspectModel(pruned, {});
  assert.ok(after.macs < cm.baseMacs);
  assert.equal(cm.macs(size), after.macs);
  assert.equal(cm.paramCount(size), after.params);
});

test('CLI: inspect counts an LSTM model, prune --sparsity sparsifies W and R, prune --structured halves the hidden units', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-recurrent-'));
  const b = new GraphBuilder();
  const x = b.input('x', [6, 2, 8]);
  const [, yh] = b.nodeN('LSTM', [x, b.init('W', w([1, 64, 8])), b.init('R', w([1, 64, 16])), b.init('B', w([1, 128]))], { hidden_size: 16 }, 3, { name: 'lstm' });
  b.output(b.node('MatMul', [yh!, b.init('head', w([16, 3]))], {}, { output: 'y' }), [1, 2, 3]);
  const src = join(dir, 'lstm.onnx');
  saveModel(b.model(17), src);
  const ins = shears(['inspect', src, '--json']);
  assert.equal(ins.code, 0, ins.stderr);
  const rep = JSON.parse(ins.stdout) as { unknownOps: unknown[]; macs: number; params: number; weightParams: number };
  assert.deepEqual(rep.unknownOps, []);
  assert.equal(rep.macs, 6 * 2 * 4 * 16 * (8 + 16) + 2 * 16 * 3);
  assert.equal(rep.params, 64 * 8 + 64 * 16 + 128 + 48);
  assert.equal(rep.weightParams, 64 * 8 + 64 * 16 + 48, 'W, R and the head are the layer weights');

  const sparse = join(dir, 'sparse.onnx');
  const u = shears(['prune', src, '-o', sparse, '--sparsity', '0.5', '--per-layer']);
  assert.equal(u.code, 0, u.stderr);
  const sm = loadModel(sparse);
  for (const name of ['W', 'R']) {
    const d = sm.graph.initializers.get(name)!.data as Float32Array;
    assert.equal(d.filter((v) => v === 0).length, d.length / 2, `${name} is half zeros`);
  }

  const narrow = join(dir, 'narrow.onnx');
  const s = shears(['prune', src, '-o', narrow, '--structured', '--ratio', '0.5', '--round-to', '1']);
  assert.equal(s.code, 0, s.stderr);
  const nm = loadModel(narrow);
  assert.equal(nm.graph.nodes.find((n) => n.opType === 'LSTM')!.attrs.get('hidden_size')!.value, 8);
  assert.deepEqual(nm.graph.initializers.get(nm.graph.nodes.find((n) => n.opType === 'LSTM')!.inputs[2]!)!.dims, [1, 32, 8]);
  const out = await runOnce(nm, { x: w([6, 2, 8]) });
  assert.deepEqual(out['y']!.dims, [1, 2, 3]);
  // fine-tuning after the prune is refused before any work (no prune, no data read), naming the op and node
  const ft = shears(['prune', src, '-o', join(dir, 'ft.onnx'), '--sparsity', '0.5', '--finetune-epochs', '1', '--train', `npy:${join(dir, 'absent.npy')}`]);
  assert.ok(isUserError(ft), ft.stderr);
  assert.match(ft.stderr, /LSTM \(node 'lstm'\): shears has no gradient rule for this op; fine-tuning and training are not supported for recurrent models/);
  assert.equal(existsSync(join(dir, 'ft.onnx')), false);
});
