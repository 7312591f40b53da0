/**
 * Models from the wild (issue 14): float16 models (--float32), already-quantized models, runs that would select
 * nothing (exit 2, no file), fixed DSP constants left dense, and fine-tuning a CNN with MaxPool below opset 16.
 * Fixtures are built here (fp16-fixture.ts); the dynamically quantized one by shears' own `quantize --mode dynamic`.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { toFloat32 } from '../src/ir/tensor.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { compareFp16, FP16_TOLERANCE } from '../src/pipeline/float32.js';
import { validateRecipe } from '../src/pipeline/recipe.js';
import { convertFp16, upcastFp16 } from '../src/quant/index.js';
import { getMasks } from '../src/sparsity/masks.js';
import { isUserError, shears } from './cli-helpers.js';
import { smallNet, stftNet } from './fp16-fixture.js';
import { randTensor } from './quant-fixture.js';
import { GraphBuilder } from '../src/ir/builder.js';

const dir = mkdtempSync(join(tmpdir(), 'shears-fp16q-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, m: Model): string => {
  const p = join(dir, name);
  saveModel(m, p);
  return p;
};
const HALF = file('half.onnx', smallNet({ fp16: true }));
const FLOAT = file('float.onnx', smallNet());
const DEMO = 'data/fashion-mnist-demo';
const PRE = ['--scale', '1/255', '--mean', '0.286', '--std', '0.353'];
const TRAIN = ['--train', `idx:${DEMO}@train`, '--val', `idx:${DEMO}@t10k`, '--epochs', '1', '--limit', '64', '--batch', '32', ...PRE];

/** The last stderr line of a run that must fail as a user error (exit 2, one line) and write nothing. */
function refused(args: string[], out: string): string {
  rmSync(out, { force: true });
  const r = shears(args);
  const last = r.stderr.trim().split('\n').at(-1)!;
  assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
  assert.ok(isUserError({ ...r, stderr: last }), last);
  assert.ok(!existsSync(out), `${args.join(' ')} wrote no file`);
  return last;
}

const floatDtypes = (m: Model) => new Set([...m.graph.initializers.values()].filter((t) => t.dtype === DataType.FLOAT || t.dtype === DataType.FLOAT16).map((t) => t.dtype));

test('upcastFp16 is exact and convertFp16 with the same ioFp16 restores the float16 model; onnxruntime agrees within float16 rounding', async () => {
  const half = smallNet({ fp16: true });
  const up = upcastFp16(half);
  assert.deepEqual(up.ioFp16, ['x', 'logits']);
  assert.equal(up.tensors, 6);
  assert.deepEqual([...floatDtypes(up.model)], [DataType.FLOAT]);
  for (const [k, t] of half.graph.initializers) assert.deepEqual(toFloat32(up.model.graph.initializers.get(k)!), toFloat32(t), k);
  const back = convertFp16(up.model, { ioFp16: up.ioFp16 }).model;
  assert.equal(back.graph.inputs[0]!.type?.elemType, DataType.FLOAT16);
  assert.equal(back.graph.outputs[0]!.type?.elemType, DataType.FLOAT16);
  assert.equal(back.graph.nodes.filter((n) => n.opType === 'Cast').length, 0, 'no boundary casts for float16 inputs/outputs');
  for (const [k, t] of half.graph.initializers) assert.deepEqual(back.graph.initializers.get(k)!.data, t.data, k);
  const c = await compareFp16(half, up.model, 'check');
  assert.ok(c.maxRelErr !== undefined && c.maxRelErr < FP16_TOLERANCE && c.maxRelErr > 0, `${c.maxRelErr} ${c.skipped ?? ''}`);
});

test('a float16 model: quantize and finetune refuse it naming --float32; --float32 on a float32 model is refused', () => {
  const out = join(dir, 'o.onnx');
  assert.match(refused(['quantize', HALF, '-o', out, '--calib', `idx:${DEMO}@train`, ...PRE], out), /model is float16 \(8 float16 tensors\) and quantization works in float32: add --float32/);
  assert.match(refused(['finetune', HALF, '-o', out, ...TRAIN], out), /model is float16 .* fine-tuning works in float32: add --float32/);
  assert.match(refused(['prune', FLOAT, '-o', out, '--sparsity', '0.5', '--float32'], out), /--float32: the model has no float16 tensors/);
  assert.throws(() => validateRecipe({ format: 'shears.recipe', version: 1, float32: 'yes', steps: [{ kind: 'quantize', mode: 'dynamic' }] }), /float32 must be true or false/);
});

test('--float32: prune and finetune a float16 model, result float16 and checked; int8 quantize keeps float32 scales', () => {
  const pruned = join(dir, 'pruned16.onnx');
  const p = shears(['prune', HALF, '-o', pruned, '--sparsity', '0.5', '--float32', '--json']);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stderr, /--float32: 6 float16 tensors made float32; the float16 model vs its float32 upcast: largest output difference \S+ of the output range/);
  assert.match(p.stderr, /--float32: result cast back to float16; the float16 result vs the float32 result: largest output difference/);
  const rep = JSON.parse(p.stdout);
  assert.equal(rep.float32.castBack, true);
  assert.equal(rep.float32.checks.length, 2);
  for (const c of rep.float32.checks) assert.ok(c.maxRelErr < FP16_TOLERANCE, JSON.stringify(c));
  const m = loadModel(pruned);
  assert.deepEqual([...floatDtypes(m)], [DataType.FLOAT16]);
  assert.equal(m.graph.inputs[0]!.type?.elemType, DataType.FLOAT16);
  assert.ok(getMasks(m).size >= 3, 'masks kept');
  assert.ok(Math.abs(rep.after.layerSparsity - 0.5) < 0.01);

  const tuned = join(dir, 'tuned16.onnx');
  const f = shears(['finetune', pruned, '-o', tuned, ...TRAIN, '--float32']);
  assert.equal(f.code, 0, f.stderr);
  const t = loadModel(tuned);
  assert.deepEqual([...floatDtypes(t)], [DataType.FLOAT16]);
  const w = toFloat32(t.graph.initializers.get('W2')!);
  const mask = getMasks(t).get('W2')!;
  for (let i = 0; i < w.length; i++) if (!mask[i]) assert.equal(w[i], 0, 'pruned weights stay zero through the float32 round trip');

  const q = join(dir, 'q16.onnx');
  const r = shears(['quantize', HALF, '-o', q, '--calib', `idx:${DEMO}@train`, ...PRE, '--float32']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /the quantized result keeps float32 scales and activations/);
  assert.ok(loadModel(q).graph.nodes.some((n) => n.opType === 'QuantizeLinear'));
});

test('already quantized models are refused by quantize (every mode), with the ops named', () => {
  const dyn = join(dir, 'dyn.onnx');
  const d = shears(['quantize', FLOAT, '-o', dyn, '--mode', 'dynamic']);
  assert.equal(d.code, 0, d.stderr);
  const out = join(dir, 'o.onnx');
  const re = /the model is already quantized \(DynamicQuantizeLinear 1, MatMulInteger 1\): quantizing it again would round its rounded weights a second time/;
  assert.match(refused(['quantize', dyn, '-o', out, '--calib', `idx:${DEMO}@train`, ...PRE], out), re);
  assert.match(refused(['quantize', dyn, '-o', out, '--mode', 'fp16'], out), re);
  const q8 = join(dir, 'q8.onnx');
  assert.equal(shears(['quantize', FLOAT, '-o', q8, '--calib', 'random']).code, 0);
  assert.match(refused(['quantize', q8, '-o', out, '--mode', 'dynamic'], out), /already quantized \(DequantizeLinear \d+, QuantizeLinear \d+\)/);
  // Pruning it: the integer weight is named as not pruned (unstructured), its op frozen with the reason (structured).
  const u = shears(['prune', dyn, '-o', out, '--sparsity', '0.5']);
  assert.equal(u.code, 0, u.stderr);
  assert.match(u.stderr, /warning: fc_W_quantized not pruned: int8 weight of MatMulInteger \S+ \(quantized: prune the float model, then quantize\)/);
  const s = shears(['prune', dyn, '-o', out, '--structured', '--ratio', '0.5', '--round-to', '1']);
  assert.equal(s.code, 0, s.stderr);
  assert.match(s.stdout, /1 x MatMulInteger computes on quantized values \(prune the float model, then quantize\)/);
});

test('runs that select nothing exit 2 and write nothing: fp16 of a float16 or weightless model, int8 with every weighted layer excluded', () => {
  const out = join(dir, 'o.onnx');
  assert.match(refused(['quantize', HALF, '-o', out, '--mode', 'fp16'], out), /nothing to convert to float16: the model has no float32 weights \(it is float16 already: 8 float16 tensors\)/);
  const b = new GraphBuilder('relu');
  b.input('x', [1, 4]);
  b.node('Relu', ['x'], {}, { output: 'y' });
  b.output('y', [1, 4]);
  assert.match(refused(['quantize', file('relu.onnx', b.model(17)), '-o', out, '--mode', 'fp16'], out), /nothing to convert to float16: the model has no float32 weights$/);
  assert.match(refused(['quantize', FLOAT, '-o', out, '--calib', 'random', '--exclude', 'conv|fc'], out),
    /nothing to quantize: every layer with weights is kept float \(conv1: excluded; conv2: excluded; fc: excluded\); only GlobalAveragePool would be quantized/);
});

test('fixed DSP constants (an STFT basis, an averaging filter) are left dense with a warning; --include prunes them; a weight computed in the graph is named', () => {
  const stft = file('stft.onnx', stftNet());
  const out = join(dir, 'stft-pruned.onnx');
  const r = shears(['prune', stft, '-o', out, '--sparsity', '0.5', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: stft_basis not pruned: looks like a fixed constant, not a trained weight: a windowed Fourier basis \(9 frequencies over 16 samples: an STFT\); left dense \(name it in --include to prune it\)/);
  assert.match(r.stderr, /warning: avg not pruned: .*every value is 0\.05556 \(a fixed averaging\/box filter\)/);
  const m = loadModel(out);
  const orig = stftNet();
  assert.deepEqual(m.graph.initializers.get('stft_basis')!.data, orig.graph.initializers.get('stft_basis')!.data);
  assert.deepEqual(m.graph.initializers.get('avg')!.data, orig.graph.initializers.get('avg')!.data);
  const w = toFloat32(m.graph.initializers.get('W')!);
  assert.equal(w.filter((v) => v === 0).length, w.length / 2, 'the learned layer takes the whole sparsity');
  const forced = shears(['prune', stft, '-o', out, '--sparsity', '0.5', '--include', 'stft_basis|W$']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.ok(toFloat32(loadModel(out).graph.initializers.get('stft_basis')!).filter((v) => v === 0).length > 100);
  const computed = file('stftc.onnx', stftNet({ computed: true }));
  const c = shears(['prune', computed, '-o', out, '--sparsity', '0.5']);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stderr, /warning: window_out0 not pruned: weight of Conv stft is computed in the graph, not stored/);
});

test('finetune a CNN with overlapping MaxPool at opset 13 (no ScatterElements reduction before opset 16)', () => {
  const op13 = file('op13.onnx', smallNet({ opset: 13 }));
  const out = join(dir, 'op13-tuned.onnx');
  const r = shears(['finetune', op13, '-o', out, ...TRAIN, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.history.length, 1);
  assert.ok(Number.isFinite(rep.history[0].trainLoss), JSON.stringify(rep.history[0]));
  assert.equal(loadModel(out).opsetImports.find((o) => o.domain === '')?.version, 13);
});

test('--float32 for repair (the float16 --dense upcast too) and float32: true in a recipe (shears run)', () => {
  const pruned = join(dir, 'p16.onnx');
  assert.equal(shears(['prune', HALF, '-o', pruned, '--sparsity', '0.5', '--float32']).code, 0);
  const out = join(dir, 'r16.onnx');
  const calib = ['--calib', `idx:${DEMO}@train`, '--calib-size', '64', ...PRE];
  assert.match(refused(['repair', pruned, '--dense', HALF, '-o', out, ...calib], out), /repair works in float32: add --float32/);
  const r = shears(['repair', pruned, '--dense', HALF, '-o', out, ...calib, '--float32']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual([...floatDtypes(loadModel(out))], [DataType.FLOAT16]);
  const recipe = join(dir, 'r.json');
  writeFileSync(recipe, JSON.stringify({
    format: 'shears.recipe', version: 1, float32: true, preprocess: { scale: '1/255', mean: [0.286], std: [0.353] },
    steps: [{ kind: 'prune', mode: 'structured', target: { kind: 'ratio', value: 0.5 }, roundTo: 1 }],
  }));
  const run = join(dir, 'run16.onnx');
  const s = shears(['run', recipe, HALF, '-o', run, '--json']);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(JSON.parse(s.stdout).float32.castBack, true);
  const m = loadModel(run);
  assert.deepEqual([...floatDtypes(m)], [DataType.FLOAT16]);
  assert.ok(m.graph.initializers.get('W2')!.dims[0]! < 8, 'channels removed');
});

test('a weight shared by several layers is pruned once, with a warning that suggests --exclude', () => {
  const b = new GraphBuilder('shared');
  b.input('x', [1, 4, 6, 6]);
  b.init('Wshared', randTensor([4, 4, 3, 3], 41, 0.3));
  const c1 = b.node('Conv', ['x', 'Wshared'], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'conv_a' });
  const r = b.node('Relu', [c1], {}, { name: 'relu' });
  b.node('Conv', [r, 'Wshared'], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'conv_b', output: 'y' });
  b.output('y', [1, 4, 6, 6]);
  const out = join(dir, 'shared-pruned.onnx');
  const p = shears(['prune', file('shared.onnx', b.model(17)), '-o', out, '--sparsity', '0.5']);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stderr, /warning: Wshared is the weight of 2 nodes \(conv_a, conv_b\): pruned once for all of them; if it is a fixed constant rather than a trained weight, --exclude it/);
});
