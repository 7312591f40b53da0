/** `shears quantize`: bad arguments exit 2 with one line; int8/fp16/dynamic runs write loadable models and JSON. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { loadModel } from '../src/onnx/io.js';
import { FIXTURE_MODEL, isUserError, shears } from './cli-helpers.js';

const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'shears-quant-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const out = (name: string) => join(dir, name);
const PP = ['--scale', '--mean', '0.2860', '--std', '0.3530'];

/** The largest |q| over a model's int8 initializers (the quantized weights). */
function maxAbsInt8(m: Model): number {
  let max = 0;
  for (const t of m.graph.initializers.values()) if (t.dtype === DataType.INT8) for (const v of t.data as Int8Array) max = Math.max(max, Math.abs(v));
  return max;
}

test('bad arguments: one line on stderr, exit 2', () => {
  const cases: string[][] = [
    [FIXTURE_MODEL, '--mode', 'int8', '--calib', DEMO],
    [FIXTURE_MODEL, '-o', out('a.onnx'), '--mode', 'int3'],
    [FIXTURE_MODEL, '-o', out('a.onnx')],
    [FIXTURE_MODEL, '-o', out('a.onnx'), '--calib', DEMO, '--calibrator', 'kl'],
    [FIXTURE_MODEL, '-o', out('a.onnx'), '--calib', DEMO, '--exclude', '('],
    [FIXTURE_MODEL, '-o', out('a.onnx'), '--mode', 'fp16', '--calib', DEMO],
    [FIXTURE_MODEL, '-o', out('a.onnx'), '--mode', 'int4', '--block-size', '48'],
    [FIXTURE_MODEL, '-o', out('a.onnx'), '--mode', 'dynamic', '--block-size', '32'],
    [FIXTURE_MODEL, '-o', out('a.onnx'), '--calib', DEMO, '--calib-size', '0'],
    [FIXTURE_MODEL, '-o', out('a.onnx'), '--calib', join(dir, 'missing')],
    [FIXTURE_MODEL, '-o', out('a.onnx'), '--calib', DEMO, '--target', 'tpu'],
    [join(dir, 'missing.onnx'), '-o', out('a.onnx'), '--mode', 'fp16'],
  ];
  for (const args of cases) {
    const r = shears(['quantize', ...args]);
    assert.ok(isUserError(r), `${args.slice(1).join(' ')}: code ${r.code}, stderr ${r.stderr}`);
    assert.equal(r.stdout, '');
  }
  assert.ok(!existsSync(out('a.onnx')));
  const unknown = shears(['quantize', FIXTURE_MODEL, '-o', out('a.onnx'), '--bogus']);
  assert.equal(unknown.code, 2);
});

test('int8 with --calib and --data: JSON with sizes, fused op types, accuracy before/after', () => {
  const r = shears(['quantize', FIXTURE_MODEL, '-o', out('q.onnx'), '--calib', `${DEMO}@train`, '--calib-size', '64', '--data', DEMO, '--limit', '200', '--json', ...PP]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.mode, 'int8');
  assert.ok(j.size.ratio > 3, `size ratio ${j.size.ratio}`);
  assert.equal(j.onnxruntime.opTypes['QLinearConv'] ?? j.onnxruntime.opTypes['com.microsoft.QLinearConv'], 21);
  assert.equal(j.before.samples, 200);
  assert.ok(Math.abs(j.after.accuracy.top1 - j.before.accuracy.top1) <= 0.03, `${j.before.accuracy.top1} -> ${j.after.accuracy.top1}`);
  assert.ok(j.after.fidelity.logits.agreement >= 0.95);
  assert.equal(j.report.weightBits, 7, '7-bit weights by default (onnxruntime x86 without VNNI)');
  const m = loadModel(out('q.onnx'));
  assert.ok(m.graph.nodes.some((n) => n.opType === 'QuantizeLinear'));
  assert.equal(maxAbsInt8(m), 63);
  assert.equal(JSON.parse(m.metadata.get('shears.quantization')!).weightBits, 7);
  assert.ok(m.metadata.has('shears.preprocess'), 'preprocessing given by flags is stored with the model');
  // the stored preprocessing makes later runs need no flags
  const e = shears(['eval', out('q.onnx'), '--data', DEMO, '--limit', '64', '--json']);
  assert.equal(e.code, 0, e.stderr);
  assert.ok(JSON.parse(e.stdout).accuracy.top1 > 0.85);
});

test('fp16 and dynamic modes write loadable models', () => {
  const r = shears(['quantize', FIXTURE_MODEL, '-o', out('h.onnx'), '--mode', 'fp16', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.ok(j.size.ratio > 1.9 && j.size.ratio < 2.1, `fp16 size ratio ${j.size.ratio}`);
  const h = loadModel(out('h.onnx'));
  assert.ok([...h.graph.initializers.values()].some((t) => t.dtype === DataType.FLOAT16));
  const d = shears(['quantize', FIXTURE_MODEL, '-o', out('d.onnx'), '--mode', 'dynamic']);
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /quantized: Gemm 1 \(7-bit weights\)/);
  assert.match(d.stdout, /DynamicQuantizeMatMul 1/);
  assert.equal(maxAbsInt8(loadModel(out('d.onnx'))), 63);
  // --no-reduce-range: full 8-bit weights, for targets with VNNI (or ARM)
  const d8 = shears(['quantize', FIXTURE_MODEL, '-o', out('d8.onnx'), '--mode', 'dynamic', '--no-reduce-range', '--json']);
  assert.equal(d8.code, 0, d8.stderr);
  assert.equal(JSON.parse(d8.stdout).report.weightBits, 8);
  assert.equal(maxAbsInt8(loadModel(out('d8.onnx'))), 127);
});

test('shears prune ... --quantize: quantization as the last step of a pruning run', () => {
  const bad = shears(['prune', FIXTURE_MODEL, '--sparsity', '0.5', '-o', out('p.onnx'), '--quantize', 'int8']);
  assert.ok(isUserError(bad), bad.stderr);
  assert.ok(!existsSync(out('p.onnx')), 'bad step arguments fail before pruning writes anything');
  const bad2 = shears(['prune', FIXTURE_MODEL, '--sparsity', '0.5', '-o', out('p.onnx'), '--calib', DEMO]);
  assert.ok(isUserError(bad2), bad2.stderr);
  const r = shears(['prune', FIXTURE_MODEL, '--sparsity', '0.5', '-o', out('p.onnx'), '--quantize', 'int8', '--calib', `${DEMO}@train`, '--calib-size', '64', ...PP]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /quantized .*int8: Conv 21/);
  const m = loadModel(out('p.onnx'));
  // the pruned zeros survive as int8 zeros
  const w = [...m.graph.initializers.values()].filter((t) => t.dtype === DataType.INT8 && t.dims.length === 4);
  assert.equal(w.length, 21);
  let zeros = 0, total = 0;
  for (const t of w) for (const v of t.data as Int8Array) {
    total++;
    if (v === 0) zeros++;
  }
  assert.ok(zeros / total >= 0.5, `zero fraction ${zeros / total}`);
});

test('--target trt on a 2:4-pruned model: explicit Q/DQ, float weights stay 2:4', () => {
  const p = shears(['prune', FIXTURE_MODEL, '--pattern', '2:4', '--no-masks', '-o', out('s24.onnx')]);
  assert.equal(p.code, 0, p.stderr);
  const r = shears(['quantize', out('s24.onnx'), '-o', out('trt.onnx'), '--calib', `${DEMO}@train`, '--calib-size', '64', '--target', 'trt', '--json', ...PP]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.report.activations, 'int8');
  assert.equal(j.report.weightBits, 8, 'int8 activations keep 8-bit weights (no U8S8 kernel reads them)');
  const s24 = j.report.sparsity24 as { layer: string; violations: number; fits: boolean }[];
  assert.equal(s24.length, 22);
  // every layer whose input-channel count divides by 4 is 2:4 (the first conv has 1 input channel)
  for (const l of s24) if (l.fits) assert.equal(l.violations, 0, l.layer);
  assert.ok(s24.filter((l) => l.fits).length >= 20);
  const m = loadModel(out('trt.onnx'));
  const acts = m.graph.nodes.filter((n) => n.opType === 'QuantizeLinear').map((n) => m.graph.initializers.get(n.inputs[2]!)!);
  assert.ok(acts.every((z) => z.dtype === DataType.INT8 && Array.from(z.data as Int8Array).every((v) => v === 0)), 'symmetric int8 (zero points 0)');
});
