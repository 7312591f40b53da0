/**
 * onnxruntime's fused transformer ops (com.microsoft SkipLayerNormalization, SkipSimplifiedLayerNormalization,
 * FastGelu, BiasGelu, Gelu, QuickGelu, RotaryEmbedding): shape inference against onnxruntime for every output,
 * cost and parameters, MLP neurons and rotary heads pruned exactly (zero, remove, onnxruntime's outputs
 * unchanged), the hidden size frozen by the skip norms unless `normalized`, inputs that do not fit rejected, and
 * fine-tuning refused with the op named.
 */
import { test } from 'node:test';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { analyzeModel, type AnalyzeOptions } from '../src/depgraph/analyze.js';
import { zeroUnits } from '../src/depgraph/zero.js';
import { removeUnits } from '../src/prune/structured/surgery.js';
import { inferShapes } from '../src/analysis/shapes.js';
import { analyzeCost } from '../src/analysis/cost.js';
import { createSession, runOnce } from '../src/runtime/session.js';
import { fileURLToPath } from 'node:url';
import { attrInt, type Model, type Node } from '../src/ir/graph.js';
import { cloneModel } from '../src/ir/clone.js';
import { checkGraph } from '../src/ir/edit.js';
import { DataType } from '../src/ir/dtype.js';
import { floatTensor, int64Tensor, numel, type Tensor } from '../src/ir/tensor.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { ShearsError } from '../src/errors.js';
import { appendEmitted, buildBackward } from '../src/autodiff/backward.js';
import { probeTypes } from '../src/autodiff/shapes.js';
import { opDef } from '../src/ops/registry.js';
import type { ChannelInfo } from '../src/ops/types.js';
import { isUserError, shears } from './cli-helpers.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { fusedMatMulAttentionModel, mlpBlockModel, rotaryAttentionModel, rotaryProjectionModel, skipNormChannelsModel, type ContribFixture } from './contrib-fixtures.js';
import { maxDiff } from './attention-fixtures.js';
import { staticValueTypes } from './gradcheck.js';

const msNodes = (m: Model, op: string): Node[] => m.graph.nodes.filter((n) => n.domain === 'com.microsoft' && n.opType === op);

/** Every output of every com.microsoft node as a model output: onnxruntime's shapes against shears' inference. */
async function checkShapes(f: ContribFixture): Promise<number> {
  const m = cloneModel(f.model);
  const nodes = m.graph.nodes.filter((n) => n.domain === 'com.microsoft');
  const outs = nodes.flatMap((n) => n.outputs.filter(Boolean)).filter((o) => !m.graph.outputs.some((g) => g.name === o));
  for (const o of outs) m.graph.outputs.push({ name: o, type: { elemType: DataType.FLOAT } });
  const inferred = inferShapes(m);
  const got = await runOnce(m, f.feeds);
  for (const o of outs) assert.deepEqual(inferred.types.get(o)?.shape, got[o]!.dims, `output ${o}`);
  return outs.length;
}

/**
 * Zeroes every third unit (from the second) of each prunable group, removes them, and checks onnxruntime's
 * output is unchanged (1e-5 relative) while the untouched model's output differs from the zeroed one.
 */
async function zeroThenRemove(f: ContribFixture, minGroups: number, opts: AnalyzeOptions = {}, output = 'y'): Promise<{ pruned: Model; groups: number; removed: number; maxErr: number }> {
  const an = analyzeModel(f.model, opts);
  const groups = an.dg.groups.filter((g) => g.units.length > 1);
  assert.ok(groups.length >= minGroups, `${groups.length} prunable groups; frozen: ${an.dg.frozen.map((x) => `${x.value}@${x.axis}: ${x.reason}`).join('; ')}`);
  const chosen = new Set<number>();
  for (const g of groups) g.units.forEach((u, i) => i % 3 === 1 && chosen.add(u.id));
  const zeroed = zeroUnits(an.dg, an.model, chosen);
  const an2 = analyzeModel(zeroed, opts);
  const { model: pruned } = removeUnits(an2.dg, chosen);
  assert.deepEqual(checkGraph(pruned.graph), []);
  const ref = (await runOnce(zeroed, f.feeds))[output]!;
  const got = (await runOnce(pruned, f.feeds))[output]!;
  assert.deepEqual(got.dims, ref.dims);
  const { err, abs } = maxDiff(ref.data as Float32Array, got.data as Float32Array);
  assert.ok(err <= 1e-5 * Math.max(1, abs), `max error ${err} (output magnitude ${abs})`);
  const orig = (await runOnce(f.model, f.feeds))[output]!;
  assert.ok(maxDiff(orig.data as Float32Array, ref.data as Float32Array).err > 1e-4, 'zeroing the units changes the output');
  return { pruned, groups: groups.length, removed: chosen.size, maxErr: err };
}

const ROTARY_REASON = 'head_size axis of a rotary embedding: it rotates pairs of a head\'s elements with cos/sin caches sized by the head (whole heads prune)';

const initDims = (m: Model, n: Node, i: number): number[] => m.graph.initializers.get(n.inputs[i]!)!.dims;

// ------------------------------------------------------------------------------------------ shapes, cost

test('shape inference matches onnxruntime for every output of the fused transformer ops', async () => {
  let outputs = 0;
  for (const f of [mlpBlockModel(), skipNormChannelsModel(), rotaryAttentionModel(), rotaryAttentionModel({ rank: 4 }), rotaryAttentionModel({ interleaved: true }), fusedMatMulAttentionModel()]) outputs += await checkShapes(f);
  assert.ok(outputs >= 24, `${outputs} outputs compared`);
  // mean and inv_std_var are float [..., 1]; input_skip_bias_sum has the input's shape.
  const m = mlpBlockModel().model;
  const sln = msNodes(m, 'SkipLayerNormalization')[0]!;
  const shapes = inferShapes(m);
  assert.deepEqual(sln.outputs.map((o) => shapes.types.get(o)?.shape), [[2, 4, 12], [2, 4, 1], [2, 4, 1], [2, 4, 12]]);
  assert.equal(shapes.types.get(sln.outputs[1]!)?.elemType, DataType.FLOAT);
});

test('cost: FLOPs per output element, and gamma, beta, bias counted as parameters', () => {
  const m = mlpBlockModel().model;
  const layers = analyzeCost(m, inferShapes(m)).layers;
  const layer = (op: string, i = 0) => layers.filter((l) => l.opType === op)[i]!;
  assert.deepEqual([layer('SkipLayerNormalization').flops, layer('SkipLayerNormalization').params], [8 * 2 * 4 * 12, 3 * 12]);
  assert.deepEqual([layer('SkipSimplifiedLayerNormalization').flops, layer('SkipSimplifiedLayerNormalization').params], [6 * 2 * 4 * 12, 2 * 12]);
  assert.deepEqual([layer('BiasGelu').flops, layer('BiasGelu').params], [9 * 2 * 4 * 16, 16]);
  assert.deepEqual([layer('FastGelu').flops, layer('FastGelu').params, layer('FastGelu', 1).params], [9 * 2 * 4 * 16, 16, 0]);
  assert.deepEqual([layer('Gelu').flops, layer('QuickGelu').flops], [8 * 2 * 4 * 16, 5 * 2 * 4 * 16]);
  const r = rotaryAttentionModel().model;
  const rl = analyzeCost(r, inferShapes(r)).layers.filter((l) => l.opType === 'RotaryEmbedding');
  assert.deepEqual(rl.map((l) => [l.flops, l.params]), [[3 * 2 * 4 * 16, 0], [3 * 2 * 4 * 16, 0]]);
});

test('shape inference rejects inputs that do not fit the ops', () => {
  const cases: [string, (m: Model) => void, RegExp][] = [
    ['gamma length', (m) => m.graph.initializers.set(msNodes(m, 'SkipLayerNormalization')[0]!.inputs[2]!, floatTensor([11], new Array(11).fill(1))), /gamma \[11\] differs from the hidden size 12/],
    ['BiasGelu bias rank', (m) => m.graph.initializers.set(msNodes(m, 'BiasGelu')[0]!.inputs[1]!, floatTensor([1, 16], new Array(16).fill(1))), /bias must be 1-D, got \[1,16\]/],
    ['FastGelu bias length', (m) => m.graph.initializers.set(msNodes(m, 'FastGelu')[0]!.inputs[1]!, floatTensor([12], new Array(12).fill(1))), /bias \[12\] differs from the hidden size 16/],
  ];
  for (const [what, edit, re] of cases) {
    const m = mlpBlockModel().model;
    edit(m);
    assert.throws(() => inferShapes(m), (e: unknown) => e instanceof ShearsError && re.test(e.message), what);
  }
  const c = skipNormChannelsModel().model;
  c.graph.initializers.set(msNodes(c, 'SkipLayerNormalization')[1]!.inputs[1]!, floatTensor([3, 6], new Array(18).fill(1)));
  assert.throws(() => inferShapes(c), /skip \[3,6\] does not fit input \[1,8,6\]/);
  const r = rotaryAttentionModel().model;
  msNodes(r, 'RotaryEmbedding')[1]!.attrs.set('num_heads', { kind: 'int', value: 5 });
  assert.throws(() => inferShapes(r), /hidden size 16 is not a multiple of num_heads 5/);
  const r2 = rotaryAttentionModel().model;
  const q = msNodes(r2, 'RotaryEmbedding')[0]!;
  r2.graph.initializers.set(q.inputs[2]!, floatTensor([8, 3], new Array(24).fill(1)));
  assert.throws(() => inferShapes(r2), /sin_cache \[8,2\] and cos_cache \[8,3\] differ/);
});

// ------------------------------------------------------------------------------------------ pruning

test('MLP neurons prune exactly through BiasGelu, FastGelu (with and without bias), Gelu and QuickGelu; biases follow', async () => {
  const r = await zeroThenRemove(mlpBlockModel(), 6);
  assert.equal(r.groups, 6, 'six MLPs, one group each; the hidden size is frozen');
  // 16 neurons per MLP, every third from the second removed: 5 go, 11 stay.
  for (const op of ['BiasGelu', 'FastGelu']) assert.deepEqual(initDims(r.pruned, msNodes(r.pruned, op)[0]!, 1), [11]);
  for (const op of ['Gelu', 'QuickGelu']) assert.deepEqual(inferShapes(r.pruned).types.get(msNodes(r.pruned, op)[0]!.outputs[0]!)?.shape, [2, 4, 11]);
  // The norms keep the hidden size.
  assert.deepEqual(initDims(r.pruned, msNodes(r.pruned, 'SkipLayerNormalization')[0]!, 2), [12]);
});

test('skip norms: the hidden size is frozen by default, with the reason of LayerNormalization', () => {
  const an = analyzeModel(mlpBlockModel().model);
  for (const op of ['SkipLayerNormalization', 'SkipSimplifiedLayerNormalization']) {
    const f = an.dg.frozen.find((x) => x.reason.startsWith(`${op} '`));
    assert.match(f?.reason ?? '', /normalised axis: removing features changes the normalisation statistics \(prune the hidden size with normalized\/--hidden-size/, an.dg.frozen.map((x) => x.reason).join('; '));
  }
  const gamma = msNodes(an.model, 'SkipLayerNormalization')[0]!.inputs[2]!;
  assert.equal(an.dg.units.filter((u) => u.key.startsWith(`${gamma}@`)).length, 0, 'no gamma element is prunable');
});

test('skip norms with normalized (--hidden-size): the residual stream, gamma, beta and bias lose features together; the model runs', async () => {
  const f = mlpBlockModel();
  const an = analyzeModel(f.model, { normalized: true });
  const sln = msNodes(an.model, 'SkipLayerNormalization')[0]!, ssln = msNodes(an.model, 'SkipSimplifiedLayerNormalization')[0]!;
  const space = (v: string, axis: number) => an.dg.spaceOf.get(`${v}@${axis}`)!;
  const hidden = space(sln.inputs[0]!, 2);
  for (const [v, axis] of [[sln.inputs[1]!, 2], [sln.inputs[2]!, 0], [sln.inputs[3]!, 0], [sln.inputs[4]!, 0], [sln.outputs[0]!, 2], [sln.outputs[3]!, 2], [ssln.inputs[0]!, 2], [ssln.inputs[2]!, 0], [ssln.inputs[3]!, 0], [ssln.outputs[0]!, 2]] as const) {
    assert.equal(space(v, axis).group, hidden.group, `${v}@${axis} is in the hidden group`);
  }
  const group = an.dg.groups[hidden.group]!;
  assert.equal(group.units.length, 12);
  const chosen = new Set(group.units.filter((_, i) => i % 4 === 1).map((u) => u.id));
  const { model: pruned } = removeUnits(an.dg, chosen);
  assert.deepEqual(checkGraph(pruned.graph), []);
  const p = msNodes(pruned, 'SkipLayerNormalization')[0]!, ps = msNodes(pruned, 'SkipSimplifiedLayerNormalization')[0]!;
  for (const i of [2, 3, 4]) assert.deepEqual(initDims(pruned, p, i), [9]);
  for (const i of [2, 3]) assert.deepEqual(initDims(pruned, ps, i), [9]);
  const y = (await runOnce(pruned, f.feeds))['y']!;
  assert.deepEqual(y.dims, [2, 4, 5]);
  assert.ok((y.data as Float32Array).every(Number.isFinite));
  assert.deepEqual(inferShapes(pruned).types.get(p.outputs[3]!)?.shape, [2, 4, 9]);
});

test('skip norms pass the other axes element by element (channels of 1-D convolutions through the norms\' sequence axis), exactly', async () => {
  const f = skipNormChannelsModel();
  const r = await zeroThenRemove(f, 1);
  assert.equal(r.removed, 3, 'one group of 8 channels: 3 removed');
  const skip = msNodes(r.pruned, 'SkipLayerNormalization')[1]!;
  assert.deepEqual(initDims(r.pruned, skip, 1), [5, 6], 'the 2-D skip loses the removed rows');
  assert.deepEqual(inferShapes(r.pruned).types.get(msNodes(r.pruned, 'SkipLayerNormalization')[0]!.outputs[1]!)?.shape, [1, 5, 1]);
});

test('RotaryEmbedding: whole heads prune exactly (3-D with and without num_heads, partial and interleaved rotation, 4-D); num_heads follows', async () => {
  for (const o of [{}, { interleaved: true }]) {
    const f = rotaryAttentionModel(o);
    const r = await zeroThenRemove(f, 1);
    assert.equal(r.removed, 1, 'one head of four');
    const [q, k] = msNodes(r.pruned, 'RotaryEmbedding');
    assert.equal(attrInt(q!, 'num_heads', 0), 0, 'without num_heads the head size comes from the cache');
    assert.equal(attrInt(k!, 'num_heads', 0), 3);
    assert.equal(attrInt(msNodes(r.pruned, 'MultiHeadAttention')[0]!, 'num_heads', 0), 3);
    assert.deepEqual(inferShapes(r.pruned).types.get(k!.outputs[0]!)?.shape, [2, 4, 12]);
  }
  // Only the rotary rule ties the heads here (no attention op downstream).
  const rp = await zeroThenRemove(rotaryProjectionModel(), 1);
  assert.equal(rp.removed, 1);
  assert.equal(attrInt(msNodes(rp.pruned, 'RotaryEmbedding')[0]!, 'num_heads', 0), 3);
  const r4 = await zeroThenRemove(rotaryAttentionModel({ rank: 4 }), 1);
  assert.equal(r4.removed, 1);
  const q4 = msNodes(r4.pruned, 'RotaryEmbedding')[0]!;
  assert.deepEqual(inferShapes(r4.pruned).types.get(q4.outputs[0]!)?.shape, [2, 3, 4, 4]);
});

test('RotaryEmbedding: a head\'s elements are one unit; head_size of a 4-D input and positions from a start offset freeze', () => {
  const an = analyzeModel(rotaryAttentionModel().model);
  const q = msNodes(an.model, 'RotaryEmbedding')[0]!;
  const s = an.dg.spaceOf.get(`${q.inputs[0]}@2`)!;
  const unit = (j: number) => an.dg.elementUnit[s.offset + j]!;
  for (const j of [1, 2, 3]) assert.equal(unit(j), unit(0), `element ${j} is in head 0`);
  assert.notEqual(unit(4), unit(0));
  // The sequence axis comes from the model input (frozen first, for that reason): the rule itself says why.
  const rule = (n: Node, shapes: typeof an.shapes) => {
    const dims = (v: string | undefined) => (v ? (shapes.types.get(v)?.shape as number[] | undefined) : undefined);
    return opDef(n)!.channels!({ node: n, opset: 1, inShape: (i) => dims(n.inputs[i]), outShape: (i) => dims(n.outputs[i]), constant: () => undefined });
  };
  const info = rule(q, an.shapes) as ChannelInfo;
  assert.deepEqual(info.frozen?.map((f) => [f.ref.axis, f.reason]), [[1, 'positions from a start offset (position_ids of one element): removing a token moves the later ones']]);
  const an4 = analyzeModel(rotaryAttentionModel({ rank: 4 }).model);
  // 4-D: head_size freezes (the projections' columns reach it only through the heads axis of the Reshape, so the
  // dependency graph never builds that axis); positions per token ([B, S]) tie the sequence axis to position_ids.
  const info4 = rule(msNodes(an4.model, 'RotaryEmbedding')[0]!, an4.shapes) as ChannelInfo;
  assert.deepEqual(info4.frozen?.map((f) => [f.ref.io, f.ref.axis, f.reason]), [['in', 3, ROTARY_REASON], ['out', 3, ROTARY_REASON]]);
  assert.ok(info4.links.some((l) => l.a.axis === 1 && l.b.io === 'out' && l.b.axis === 1), 'the head axis passes');
  assert.ok(info4.links.some((l) => l.b.io === 'in' && l.b.index === 1 && l.b.axis === 1 && l.a.axis === 2));
});

test('FusedMatMul: heads prune exactly through transposed projections and the Q K^T scores; MACs as MatMul on the transposed operands', async () => {
  const f = fusedMatMulAttentionModel();
  const shapes = inferShapes(f.model);
  const layers = analyzeCost(f.model, shapes).layers.filter((l) => l.opType === 'FusedMatMul');
  // Q and K projections 2*4*16*12 each, the scores 2*4*4*4*4 (K = D), the transA projection 2*4*6*16.
  assert.deepEqual(layers.map((l) => l.macs), [2 * 4 * 16 * 12, 2 * 4 * 16 * 12, 2 * 4 * 4 * 4 * 4, 2 * 4 * 6 * 16]);
  const r = await zeroThenRemove(f, 1);
  assert.equal(r.removed, 1, 'one head of four');
  const [wq, , , wo2] = msNodes(r.pruned, 'FusedMatMul').map((n) => r.pruned.graph.initializers.get(n.inputs[1]!)?.dims);
  assert.deepEqual(wq, [12, 12], 'the transposed Q weight loses its rows');
  assert.deepEqual(wo2, [12, 6], 'the transA projection loses the head\'s rows');
  // transBatchA/transBatchB are not modelled: shape unknown, no channel rule, the weight keeps every row.
  const m = fusedMatMulAttentionModel().model;
  const node = msNodes(m, 'FusedMatMul')[0]!;
  node.attrs.set('transBatchB', { kind: 'int', value: 1 });
  const an = analyzeModel(m);
  assert.equal(an.shapes.types.get(node.outputs[0]!)?.shape, undefined);
  const dims = (v: string | undefined) => (v ? (an.shapes.types.get(v)?.shape as number[] | undefined) : undefined);
  const why = opDef(node)!.channels!({ node, opset: 17, inShape: (i) => dims(node.inputs[i]), outShape: (i) => dims(node.outputs[i]), constant: () => undefined });
  assert.equal(why, 'transBatchA/transBatchB (batch axes moved into the matrices) are not modelled');
  assert.equal(an.dg.units.filter((u) => u.key.startsWith(`${node.inputs[1]}@`)).length, 0);
});

// ------------------------------------------------------------------------------------------ training

/**
 * x [1, 64] spread over [-3, 3] -> op -> y, loss = sum(y): the gradient is f'(x) element by element. Returns the
 * gradient from the rule (autodiff, run in onnxruntime) and central differences of onnxruntime's forward per
 * element (eps 1e-2, about 3e-5 accurate in float32).
 */
async function elementwiseGrad(op: string, attrs: Record<string, { kind: 'float'; value: number }>, withBias: boolean): Promise<{ analytic: number[]; numeric: number[] }> {
  const xs = Array.from({ length: 64 }, (_, i) => -3 + (6 * i) / 63);
  const build = () => {
    const b = new GraphBuilder();
    const x = b.input('x', [1, 64]);
    const inputs = withBias ? [x, b.init('bias', floatTensor([64], xs.map((v) => 0.1 * Math.sin(7 * v))))] : [x];
    const y = b.nodeN(op, inputs, attrs, 1, { domain: 'com.microsoft' })[0]!;
    return { b, y };
  };
  const fwd = build();
  fwd.b.output(fwd.y, [1, 64]);
  const f = fwd.b.model(17, [{ domain: 'com.microsoft', version: 1 }]);
  const at = async (d: number) => (await runOnce(f, { x: floatTensor([1, 64], xs.map((v) => v + d)) }))[fwd.y]!.data as Float32Array;
  const [hi, lo] = [await at(1e-2), await at(-1e-2)];
  const numeric = xs.map((_, i) => (hi[i]! - lo[i]!) / 2e-2);
  const g = build();
  const loss = g.b.node('ReduceSum', [g.y], { keepdims: 0 }, { output: 'loss' });
  g.b.output(loss, []);
  const m = g.b.model(17, [{ domain: 'com.microsoft', version: 1 }]);
  const feeds = { x: floatTensor([1, 64], xs) };
  const back = buildBackward(m, { loss, wrt: ['x'], types: await probeTypes(m, {}, feeds), elemType: DataType.FLOAT });
  appendEmitted(m.graph, back.emitter);
  m.graph.outputs.push({ name: back.grads.get('x')! });
  const analytic = Array.from((await runOnce(m, feeds))[back.grads.get('x')!]!.data as Float32Array);
  return { analytic, numeric };
}

test('GELU family gradients follow the form onnxruntime computes (erf, tanh, x*sigmoid(alpha x)) to 2e-4', async () => {
  // The erf and tanh forms' derivatives differ by up to 8.7e-4 (at x = -2.02): the check tells them apart.
  for (const [op, attrs, bias] of [['Gelu', {}, false], ['BiasGelu', {}, true], ['FastGelu', {}, false], ['FastGelu', {}, true], ['QuickGelu', { alpha: { kind: 'float' as const, value: 1.3 } }, false]] as const) {
    const { analytic, numeric } = await elementwiseGrad(op, attrs, bias);
    const err = Math.max(...analytic.map((a, i) => Math.abs(a - numeric[i]!)));
    assert.ok(err < 2e-4, `${op}${bias ? ' with bias' : ''}: max |analytic - numeric| ${err}`);
  }
});

test('training through a fused transformer op is refused with a message naming the op', () => {
  // The backward pass meets the last fused op first.
  const rb = new GraphBuilder();
  const rx = rb.input('x', [1, 2, 8]);
  const w = (dims: number[]) => rb.init(rb.fresh('w'), floatTensor(dims, Array.from({ length: numel(dims) }, (_, i) => Math.sin(i))));
  const rot = rb.nodeN('RotaryEmbedding', [rb.node('MatMul', [rx, w([8, 8])]), rb.init('pos', int64Tensor([1], [0])), w([4, 2]), w([4, 2])], {}, 1, { domain: 'com.microsoft' })[0]!;
  rb.output(rb.node('MatMul', [rot, w([8, 3])], {}, { output: 'y' }), [1, 2, 3]);
  const rotary = { model: rb.model(17, [{ domain: 'com.microsoft', version: 1 }]), feeds: {} };
  for (const [f, op] of [[mlpBlockModel(), 'SkipSimplifiedLayerNormalization'], [rotary, 'RotaryEmbedding']] as const) {
    const an = analyzeModel(f.model);
    const types = staticValueTypes(an.shapes.types);
    an.model.graph.nodes.push({ name: 'loss', opType: 'ReduceSum', domain: '', inputs: ['y'], outputs: ['loss'], attrs: new Map([['keepdims', { kind: 'int', value: 0 }]]) });
    const wrt = [...an.model.graph.initializers.keys()].filter((k) => an.model.graph.initializers.get(k)!.dims.length === 2 && numel(an.model.graph.initializers.get(k)!.dims) > 8);
    assert.throws(
      () => buildBackward(an.model, { loss: 'loss', wrt, types, elemType: DataType.FLOAT }),
      (e: unknown) => e instanceof ShearsError && new RegExp(`${op}: shears has no gradient rule for this op; fine-tuning and training through onnxruntime's fused skip norms, rotary embeddings and FusedMatMul \\(com\\.microsoft\\) are not supported`).test(e.message),
    );
  }
});

test('CLI: structured pruning of an optimizer-fused block; fine-tuning it is refused before any work, naming the op', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-contrib-'));
  const src = join(dir, 'block.onnx');
  saveModel(mlpBlockModel().model, src);
  const out = join(dir, 'narrow.onnx');
  const r = shears(['prune', src, '-o', out, '--structured', '--ratio', '0.5', '--round-to', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /channels removed: 48 of 96 prunable in 6 groups/);
  assert.match(r.stdout, /SkipLayerNormalization 'SkipLayerNormalization_\d+': normalised axis/);
  const m = loadModel(out);
  assert.deepEqual(m.graph.initializers.get(msNodes(m, 'BiasGelu')[0]!.inputs[1]!)!.dims, [8]);
  const ft = shears(['prune', src, '-o', join(dir, 'ft.onnx'), '--sparsity', '0.5', '--finetune-epochs', '1', '--train', `npy:${join(dir, 'absent.npy')}`]);
  assert.ok(isUserError(ft), ft.stderr);
  assert.match(ft.stderr, /SkipLayerNormalization \(node '[^']+'\): shears has no gradient rule for this op; fine-tuning and training through onnxruntime's fused skip norms/);
  assert.equal(existsSync(join(dir, 'ft.onnx')), false);
});

// ------------------------------------------------------------------------------------------ shared models

const SHARED = [fileURLToPath(new URL('../../../shared/models', import.meta.url)), '/work/shared/models'].find((d) => existsSync(d));

test('shared models as onnxruntime\'s own optimizer rewrites them (BiasGelu, QuickGelu, FusedMatMul): the same groups as the original, removal exact', async (t) => {
  if (!SHARED) {
    t.skip('no ../shared/models');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'shears-contrib-opt-'));
  const cases: { file: string; fused: string[]; feeds: Record<string, Tensor>; groups: number }[] = [
    { file: 'vit_fmnist.onnx', fused: ['BiasGelu', 'FusedMatMul'], feeds: { input: floatTensor([2, 1, 28, 28], Array.from({ length: 1568 }, (_, i) => Math.sin(i * 0.37))) }, groups: 8 },
    { file: 'tiny_llama_py.onnx', fused: ['QuickGelu', 'FusedMatMul'], feeds: { input_ids: int64Tensor([1, 16], Array.from({ length: 16 }, (_, i) => (i * 37) % 256)) }, groups: 9 },
  ];
  for (const c of cases) {
    const optimized = join(dir, c.file);
    await (await createSession(join(SHARED, c.file), { optimization: 'extended', optimizedModelPath: optimized })).release();
    const m = loadModel(optimized);
    for (const op of c.fused) assert.ok(msNodes(m, op).length > 0, `onnxruntime wrote com.microsoft.${op} into ${c.file}`);
    const inputShapes = Object.fromEntries(Object.entries(c.feeds).map(([k, v]) => [k, v.dims]));
    const original = analyzeModel(loadModel(join(SHARED, c.file)), { inputShapes });
    const r = await zeroThenRemove({ model: m, feeds: c.feeds }, c.groups, { inputShapes }, Object.keys(await runOnce(m, c.feeds))[0]!);
    assert.equal(r.groups, c.groups, `${c.file}: the optimized model has the original's ${original.dg.groups.filter((g) => g.units.length > 1).length} groups`);
    assert.equal(original.dg.groups.filter((g) => g.units.length > 1).length, c.groups);
  }
});
