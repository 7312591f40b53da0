import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor } from '../src/ir/tensor.js';
import { encodeModel } from '../src/onnx/codec.js';
import { inspectModel } from '../src/analysis/inspect.js';
import { FIXTURE_MODEL, isUserError, shears } from './cli-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'shears-inspect-'));

test('inspect --json reports exact params and MACs of ResNet-20', () => {
  const r = shears(['inspect', FIXTURE_MODEL, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  // Conv/Gemm weights and biases (BN is folded into the convs by the exporter).
  assert.equal(j.params, 271_402);
  // 21 convs + the classifier at batch 1: the conv/linear MACs of ResNet-20 on 28x28 inputs.
  assert.equal(j.macs, 31_021_952);
  assert.equal(j.layers.length, 52);
  assert.equal(j.sparsity, 0);
  assert.deepEqual(j.inputs, [{ name: 'input', dtype: 'float', shape: ['N', 1, 28, 28] }]);
  assert.deepEqual(j.analysedInputShapes, { input: [1, 1, 28, 28] });
  const conv = j.layers.find((l: { name: string }) => l.name === '/conv/Conv');
  assert.deepEqual(conv.outputShape, [1, 16, 28, 28]);
  assert.equal(conv.params, 16 * 9 + 16);
  assert.equal(conv.macs, 16 * 28 * 28 * 9);
});

test('inspect scales MACs with the batch given by --input-shape and prints a table', () => {
  const j = JSON.parse(shears(['inspect', FIXTURE_MODEL, '--json', '--input-shape', 'input=4x1x28x28']).stdout);
  assert.equal(j.macs, 4 * 31_021_952);
  const text = shears(['inspect', FIXTURE_MODEL]);
  assert.equal(text.code, 0);
  assert.match(text.stdout, /params\s+271,402/);
  assert.match(text.stdout, /\/layers\/layers\.8\/conv2\/Conv\s+Conv\s+\[1, 64, 7, 7\]\s+36,928/);
});

test('sparsity and MACs of a hand-built model (grouped conv, MatMul, zeros)', () => {
  const b = new GraphBuilder('g');
  const x = b.input('x', [2, 8, 10, 10]);
  const w = new Float32Array(8 * 2 * 3 * 3);
  for (let i = 0; i < w.length; i++) w[i] = i % 4 === 0 ? 0 : 1;
  const y = b.node('Conv', [x, b.init('w', floatTensor([8, 2, 3, 3], w))], { group: 4, strides: [2, 2], pads: [1, 1, 1, 1] });
  const f = b.node('Reshape', [y, b.init('shape', { dtype: 7, dims: [2], data: new BigInt64Array([2n, -1n]) })]);
  const z = b.node('MatMul', [f, b.init('m', floatTensor([200, 3]))]);
  b.output(z);
  const r = inspectModel(b.model(), { x: [2, 8, 10, 10] });
  assert.equal(r.params, 144 + 600);
  assert.equal(r.zeroParams, 36 + 600);
  assert.equal(r.macs, 2 * 8 * 5 * 5 * 2 * 9 + 2 * 200 * 3);
  assert.deepEqual(r.layers[2]!.outputShape, [2, 3]);
});

test('bad inputs exit with code 2 and one clear line', () => {
  const bad = join(dir, 'text.onnx');
  writeFileSync(bad, 'not a model at all\n');
  const truncated = join(dir, 'trunc.onnx');
  writeFileSync(truncated, readFileSync(FIXTURE_MODEL).subarray(0, 5000));
  const cases: [string[], RegExp][] = [
    [['inspect', join(dir, 'missing.onnx')], /no such file/],
    [['inspect', bad], /not a valid ONNX model/],
    [['inspect', truncated], /not a valid ONNX model/],
    [['inspect', FIXTURE_MODEL, '--input-shape', 'input=1x3x28x28'], /input/],
    [['inspect', FIXTURE_MODEL, '--input-shape', 'input=1x1x28'], /rank|dims|dimensions/],
    [['inspect', FIXTURE_MODEL, '--input-shape', 'nope=1x1x28x28'], /no input 'nope'/],
    [['inspect', FIXTURE_MODEL, '--input-shape', 'input=1xx28'], /dimensions/],
    [['inspect', dir], /not a file/],
    [['inspect'], /.*/],
  ];
  for (const [args, re] of cases) {
    const r = shears(args);
    if (args.length === 1) {
      assert.equal(r.code, 2, 'missing argument');
      continue;
    }
    assert.ok(isUserError(r), `${args.join(' ')}: code ${r.code}, stderr ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
});

test('a custom-domain op is refused by name unless --allow-unknown-ops', () => {
  const b = new GraphBuilder('g');
  const x = b.input('x', [1, 4]);
  const y = b.node('FancyOp', [x], {}, { name: 'my_fancy_node', domain: 'com.example' });
  b.output(y, [1, 4]);
  const m = b.model(17, [{ domain: 'com.example', version: 1 }]);
  const p = join(dir, 'custom.onnx');
  writeFileSync(p, encodeModel(m));
  const r = shears(['inspect', p]);
  assert.ok(isUserError(r), r.stderr);
  assert.match(r.stderr, /my_fancy_node/);
  const ok = shears(['inspect', p, '--allow-unknown-ops', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(JSON.parse(ok.stdout).unknownOps, [{ node: 'my_fancy_node', opType: 'com.example.FancyOp' }]);
});

test('inspect shows exact per-layer weight sparsity after per-layer pruning and overall after global', () => {
  const perLayer = join(dir, 'per-layer.onnx');
  assert.equal(shears(['prune', FIXTURE_MODEL, '-o', perLayer, '--sparsity', '0.5', '--per-layer']).code, 0);
  const j = JSON.parse(shears(['inspect', perLayer, '--json']).stdout);
  const layers = j.layers.filter((l: { weightParams: number }) => l.weightParams > 0);
  assert.equal(layers.length, 22);
  for (const l of layers) assert.equal(l.sparsity, Math.floor(l.weightParams * 0.5) / l.weightParams, l.name);
  const global = join(dir, 'global.onnx');
  assert.equal(shears(['prune', FIXTURE_MODEL, '-o', global, '--sparsity', '0.7', '--global']).code, 0);
  const g = JSON.parse(shears(['inspect', global, '--json']).stdout);
  assert.ok(Math.abs(g.weightSparsity - 0.7) < 0.005, `weight sparsity ${g.weightSparsity}`);
  assert.ok(Math.abs(g.sparsity - 0.7) < 0.005, `overall sparsity ${g.sparsity}`);
});

test('weights held in Constant nodes (as Paddle exports keep them) count once, also through Identity', () => {
  const b = new GraphBuilder('g');
  const x = b.input('x', [1, 3, 8, 8]);
  const w = b.node('Constant', [], { value: floatTensor([20, 3, 3, 3], new Float32Array(540).fill(1)) });
  const y1 = b.node('Conv', [x, w]);
  const y2 = b.node('Conv', [x, b.node('Identity', [w])]);
  const bias = b.node('Constant', [], { value: floatTensor([1, 20, 1, 1], new Float32Array(20)) });
  b.output(b.node('Add', [b.node('Add', [y1, y2]), bias]));
  const r = inspectModel(b.model(), { x: [1, 3, 8, 8] });
  assert.equal(r.params, 540 + 20);
  assert.equal(r.zeroParams, 20);
  assert.equal(r.weightParams, 540);
  assert.equal(r.weightBytes, 560 * 4);
  assert.equal(r.macs, 2 * 20 * 6 * 6 * 27);
});

test('unstructured pruning finds weights held in Constant nodes (hoisted to initializers, outputs unchanged)', async () => {
  const { pruneUnstructured } = await import('../src/sparsity/unstructured.js');
  const { createSession } = await import('../src/runtime/session.js');
  const b = new GraphBuilder('g');
  const x = b.input('x', [1, 3, 8, 8]);
  const wv = new Float32Array(4 * 3 * 3 * 3).map((_, i) => Math.sin(i + 0.5));
  const w = b.node('Constant', [], { value: floatTensor([4, 3, 3, 3], wv) }, { output: 'w_const' });
  b.output(b.node('Conv', [x, w], { pads: [1, 1, 1, 1] }), [1, 4, 8, 8]);
  const model = b.model();
  const xin = { dtype: 1, dims: [1, 3, 8, 8], data: new Float32Array(192).map((_, i) => Math.cos(i)) };
  const before = Object.values(await (await createSession(model)).run({ x: xin }))[0]!.data as Float32Array;
  const dense = JSON.parse(JSON.stringify([...before]));
  const report = pruneUnstructured(model, { sparsity: 0.5, scope: 'layer' });
  assert.equal(report.layers.length, 1);
  assert.ok(model.graph.initializers.has('w_const'));
  const r = inspectModel(model, { x: [1, 3, 8, 8] });
  assert.equal(r.weightZeros, 54);
  // Zeroing the same weights by hand in the original layout gives the same outputs.
  const kept = model.graph.initializers.get('w_const')!.data as Float32Array;
  const ref = new GraphBuilder('ref');
  ref.input('x', [1, 3, 8, 8]);
  ref.output(ref.node('Conv', ['x', ref.init('w', floatTensor([4, 3, 3, 3], kept))], { pads: [1, 1, 1, 1] }), [1, 4, 8, 8]);
  const a = Object.values(await (await createSession(model)).run({ x: xin }))[0]!.data as Float32Array;
  const e = Object.values(await (await createSession(ref.model())).run({ x: xin }))[0]!.data as Float32Array;
  assert.deepEqual([...a], [...e]);
  assert.notDeepEqual([...a], dense);
});
