/**
 * Static int8 QDQ: parity with a reference fake-quantized float computation, the patterns onnxruntime fuses,
 * exclusion, sensitivity, graph outputs, and the real fmnist_resnet20 fixture.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DataType } from '../src/ir/dtype.js';
import type { Model, Node } from '../src/ir/graph.js';
import { checkGraph } from '../src/ir/edit.js';
import type { Tensor } from '../src/ir/tensor.js';
import { runOnce } from '../src/runtime/session.js';
import { inspectModel } from '../src/analysis/inspect.js';
import { loadModel } from '../src/onnx/io.js';
import { openDataset } from '../src/data/spec.js';
import { evaluate } from '../src/metrics/evaluate.js';
import { datasetCalibration, fakeQuant, fusionReport, optimizedModel, optimizedOpTypes, quantizeStatic, sparsity24, TRT_OPTIONS, type QParams } from '../src/quant/index.js';
import { calibFeeds, convReluModel, randTensor, saturationCases, smallCnn, u8s8Saturates, type SaturationCase } from './quant-fixture.js';
import { FIXTURE_MODEL } from './cli-helpers.js';
import { fileURLToPath } from 'node:url';

const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));

const run = (model: Model, feeds: Record<string, Tensor>, optimization: 'disabled' | 'all' = 'all') => runOnce(model, feeds, { optimization, threads: 1 });

/** Nodes of an op type in onnxruntime's optimised graph, in any domain (QLinearConv is ONNX, NHWC forms com.microsoft). */
function count(ops: Record<string, number>, op: string): number {
  return Object.entries(ops).filter(([k]) => k === op || k.endsWith(`.${op}`)).reduce((a, [, v]) => a + v, 0);
}

function scalar(m: Model, name: string): number {
  const t = m.graph.initializers.get(name);
  assert.ok(t, `initializer ${name}`);
  return Number((t.data as Float32Array | Uint8Array)[0]);
}

/** Params of the QuantizeLinear that reads `input`. */
function qParamsOf(m: Model, input: string): QParams {
  const q = m.graph.nodes.find((n) => n.opType === 'QuantizeLinear' && n.inputs[0] === input);
  assert.ok(q, `a QuantizeLinear reads ${input}`);
  return { scale: scalar(m, q.inputs[1]!), zeroPoint: scalar(m, q.inputs[2]!), type: 'uint8' };
}

/** The float values a DequantizeLinear of a constant stands for (per-channel along axis 0 or per tensor). */
function dequantConst(m: Model, dq: Node): Float32Array {
  const q = m.graph.initializers.get(dq.inputs[0]!)!;
  const s = m.graph.initializers.get(dq.inputs[1]!)!.data as Float32Array;
  const n = q.data.length;
  const per = n / s.length;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Number((q.data as Int8Array | Int32Array)[i]) * s[Math.floor(i / per)]!;
  return out;
}

test('QDQ Conv+Relu equals the float layer on fake-quantized input, weights and bias, then fake-quantized output (<= 1 step)', async () => {
  const m = convReluModel();
  const { model: q, report } = await quantizeStatic(m, calibFeeds([2, 4, 6, 6]));
  assert.deepEqual(report.quantized, { Conv: 1 });
  assert.equal(report.weightBits, 7, 'uint8 activations: 7-bit weights by default');
  assert.deepEqual(checkGraph(q.graph), []);
  assert.equal(q.graph.outputs[0]!.name, 'y', 'the graph output keeps its name');
  const conv = q.graph.nodes.find((n) => n.opType === 'Conv')!;
  const prod = (name: string) => q.graph.nodes.find((n) => n.outputs.includes(name))!;
  const wDq = prod(conv.inputs[1]!);
  const bDq = prod(conv.inputs[2]!);
  assert.equal(q.graph.initializers.get(wDq.inputs[0]!)!.dtype, DataType.INT8, 'int8 weights');
  assert.equal(q.graph.initializers.get(bDq.inputs[0]!)!.dtype, DataType.INT32, 'int32 bias');
  // symmetric 7-bit per channel: each channel's largest weight is +-63
  const wq = q.graph.initializers.get(wDq.inputs[0]!)!.data as Int8Array;
  for (let c = 0; c < 6; c++) assert.equal(Math.max(...Array.from(wq.subarray(c * 36, (c + 1) * 36), Math.abs)), 63);
  const px = qParamsOf(q, 'x');
  // the Relu output is quantized (its range starts at 0: zero point 0), the Conv output is not
  const relu = q.graph.nodes.find((n) => n.opType === 'Relu')!;
  const py = qParamsOf(q, relu.outputs[0]!);
  assert.equal(py.zeroPoint, 0);
  assert.ok(!q.graph.nodes.some((n) => n.opType === 'QuantizeLinear' && n.inputs[0] === conv.outputs[0]));
  // bias scale = s_x * s_w per channel
  const ws = q.graph.initializers.get(wDq.inputs[1]!)!.data as Float32Array;
  const bs = q.graph.initializers.get(bDq.inputs[1]!)!.data as Float32Array;
  for (let c = 0; c < 6; c++) assert.ok(Math.abs(bs[c]! - px.scale * ws[c]!) <= 1e-6 * bs[c]!);
  // reference: the float model with dequantized weights/bias, fed the fake-quantized input
  const ref: Model = { ...m, graph: { ...m.graph, initializers: new Map([
    ['W', { dtype: DataType.FLOAT, dims: [6, 4, 3, 3], data: dequantConst(q, wDq) }],
    ['B', { dtype: DataType.FLOAT, dims: [6], data: dequantConst(q, bDq) }],
  ]) } };
  const x = randTensor([2, 4, 6, 6], 555, 1.2);
  const xq = { ...x, data: (x.data as Float32Array).map((v) => fakeQuant(v, px)) };
  const yRef = ((await run(ref, { x: xq }))['y']!.data as Float32Array).map((v) => fakeQuant(v, py));
  for (const level of ['all', 'disabled'] as const) {
    const y = (await run(q, { x }, level))['y']!.data as Float32Array;
    let exact = 0;
    for (let i = 0; i < y.length; i++) {
      const d = Math.abs(y[i]! - yRef[i]!);
      assert.ok(d <= py.scale * 1.0001, `${level}: element ${i} differs by ${d / py.scale} steps`);
      if (d < 1e-6) exact++;
    }
    // Integer accumulation is exact; only the requantization rounding (float vs fixed-point multiplier) may
    // flip an output that lies within float error of a rounding boundary.
    assert.ok(exact / y.length > 0.97, `${level}: ${exact} of ${y.length} outputs identical`);
  }
});

/**
 * Largest difference, in output steps, between onnxruntime's fused integer kernels (optimization 'all') and the
 * QDQ graph as ONNX defines it (optimization 'disabled': DequantizeLinear, the float op, QuantizeLinear), and the
 * fraction of outputs that are identical.
 */
async function fusedVsQdq(q: Model, inputs: Tensor[]): Promise<{ worst: number; exact: number }> {
  const dq = q.graph.nodes.find((n) => n.opType === 'DequantizeLinear' && n.outputs[0] === 'y')!;
  const step = scalar(q, dq.inputs[1]!);
  let worst = 0, exact = 0, total = 0;
  for (const x of inputs) {
    const a = (await run(q, { x }, 'all'))['y']!.data as Float32Array;
    const b = (await run(q, { x }, 'disabled'))['y']!.data as Float32Array;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i]! - b[i]!) / step;
      worst = Math.max(worst, d);
      if (d < 1e-3) exact++;
    }
    total += a.length;
  }
  return { worst, exact: exact / total };
}

const calibOn = (c: SaturationCase) => () => c.inputs.map((x) => ({ x }));

test('fused integer kernels equal the QDQ graph (<= 1 step) where u8*s8 pair sums are largest: Conv, MatMul, Gemm', async () => {
  for (const c of saturationCases()) {
    const { model: q, report } = await quantizeStatic(c.model, calibOn(c));
    assert.equal(report.weightBits, 7);
    assert.equal(count((await optimizedOpTypes(q)).opTypes, c.fused), 1, `${c.name} fused into ${c.fused}`);
    const { worst, exact } = await fusedVsQdq(q, c.inputs);
    assert.ok(worst <= 1.0001, `${c.name}: the fused output differs from the QDQ graph by ${worst} steps`);
    // integer accumulation is exact; only the requantization rounding may flip an output at a rounding boundary
    assert.ok(exact > 0.9, `${c.name}: ${exact} of the outputs identical`);
  }
});

test('8-bit weights (reduceRange: false) do saturate those sums on x86 without VNNI: the reason 7 bits are the default', { skip: u8s8Saturates() ? false : 'needs x86-64 Linux without VNNI' }, async () => {
  for (const c of saturationCases()) {
    const { model: q, report } = await quantizeStatic(c.model, calibOn(c), { reduceRange: false });
    assert.equal(report.weightBits, 8);
    const { worst } = await fusedVsQdq(q, c.inputs);
    // if this fails, onnxruntime no longer saturates here: the 7-bit default could be revisited
    assert.ok(worst > 4, `${c.name}: 8-bit weights differ from the QDQ graph by only ${worst} steps`);
  }
});

test('onnxruntime fuses the produced QDQ patterns into integer kernels (no float Conv/Gemm left)', async () => {
  const m = smallCnn();
  const { model: q, report } = await quantizeStatic(m, calibFeeds([4, 3, 12, 12]));
  assert.deepEqual(report.quantized, { Conv: 2, Add: 1, GlobalAveragePool: 1, Gemm: 1 });
  const f = await optimizedOpTypes(q);
  const ops = f.opTypes;
  assert.equal(count(ops, 'QLinearConv'), 2, JSON.stringify(ops));
  assert.equal(count(ops, 'QLinearAdd'), 1);
  assert.equal(count(ops, 'QLinearGlobalAveragePool'), 1);
  assert.equal(count(ops, 'QGemm'), 1);
  for (const k of Object.keys(ops)) assert.ok(!/(^|\.)(Conv|FusedConv|Gemm|FusedGemm|MatMul|Add|Relu)$/.test(k), `float ${k} left: ${JSON.stringify(ops)}`);
  // Q/DQ only at the model boundary
  assert.equal(f.qdqNodes, 2);
  // and it still computes the float model's function closely
  const x = randTensor([4, 3, 12, 12], 9);
  const a = (await run(m, { x }))['logits']!.data as Float32Array;
  const b = (await run(q, { x }))['logits']!.data as Float32Array;
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += a[i]! ** 2;
  }
  assert.ok(num / den < 1e-3, `relative MSE ${num / den}`);
});

test('int8 (symmetric) activations, the TensorRT form, are not fused by the x86 CPU provider', async () => {
  const m = smallCnn();
  const { model: q } = await quantizeStatic(m, calibFeeds([4, 3, 12, 12]), { ...TRT_OPTIONS });
  // weights stay float behind QuantizeLinear -> DequantizeLinear, biases float
  const conv = q.graph.nodes.filter((n) => n.opType === 'Conv');
  assert.equal(conv.length, 2);
  for (const c of conv) assert.ok(q.graph.initializers.has(c.inputs[2]!), 'float bias');
  const f = await optimizedOpTypes(q);
  assert.equal(count(f.opTypes, 'QLinearConv'), 0, `int8 activations fused: ${JSON.stringify(f.opTypes)}`);
  // zeros stay zeros: a 2:4 weight keeps its pattern through Q/DQ
  const s = sparsity24(q);
  assert.equal(s.length, 3);
  assert.ok(s.every((l) => l.violations > 0 || !l.fits), 'random weights are dense');
});

test('--exclude keeps matching nodes float; auto-exclude ranks nodes by measured sensitivity', async () => {
  const m = smallCnn();
  const { model: q, report } = await quantizeStatic(m, calibFeeds([4, 3, 12, 12]), { exclude: /^(conv1|fc)$/ });
  assert.deepEqual(report.quantized, { Conv: 1, Add: 1, GlobalAveragePool: 1 });
  assert.deepEqual(report.excluded.map((e) => e.node).sort(), ['conv1', 'fc']);
  const conv1 = q.graph.nodes.find((n) => n.name === 'conv1')!;
  assert.equal(conv1.inputs[1], 'W1', 'excluded conv keeps its float weight');
  assert.equal(q.graph.initializers.get('W1')!.dtype, DataType.FLOAT);
  const f = await optimizedOpTypes(q);
  assert.equal(count(f.opTypes, 'QLinearConv'), 1, JSON.stringify(f.opTypes));

  const auto = await quantizeStatic(m, calibFeeds([4, 3, 12, 12]), { autoExclude: 1 });
  const sens = auto.report.sensitivity!;
  assert.deepEqual(sens.map((x) => x.node).sort(), ['conv1', 'conv2', 'fc'], 'the weighted nodes are measured');
  for (let i = 1; i < sens.length; i++) assert.ok(sens[i - 1]!.gain >= sens[i]!.gain);
  // leaving the most sensitive node float gives the lowest error
  assert.equal(Math.min(...sens.map((x) => x.relMse)), sens[0]!.relMse);
  assert.deepEqual(auto.report.excluded.map((e) => e.node), [sens[0]!.node]);
  assert.equal(auto.report.excluded[0]!.reason, 'most sensitive (auto-exclude)');
});

test('the input model is not modified', async () => {
  const m = smallCnn();
  const before = JSON.stringify(m.graph.nodes.map((n) => [n.name, n.inputs, n.outputs]));
  const inits = [...m.graph.initializers.keys()];
  await quantizeStatic(m, calibFeeds([4, 3, 12, 12]));
  assert.equal(JSON.stringify(m.graph.nodes.map((n) => [n.name, n.inputs, n.outputs])), before);
  assert.deepEqual([...m.graph.initializers.keys()], inits);
});

test('fmnist_resnet20 int8: fully fused, agrees with the float model on the demo test set', async () => {
  const m = loadModel(FIXTURE_MODEL);
  const pp = { scale: 1 / 255, mean: [0.286], std: [0.353] };
  const calib = datasetCalibration(m, openDataset(`${DEMO}@train`, pp), 128, 64);
  const { model: q, report } = await quantizeStatic(m, calib, { calibrator: 'percentile' });
  assert.deepEqual(report.quantized, { Conv: 21, Add: 9, GlobalAveragePool: 1, Gemm: 1 });
  const fusedModel = await optimizedModel(q);
  const f = fusionReport(fusedModel);
  assert.equal(count(f.opTypes, 'QLinearConv'), 21);
  const r = await evaluate(q, openDataset(DEMO, pp), { reference: m, limit: 300 });
  assert.ok(r.fidelity!['logits']!.agreement! >= 0.97, JSON.stringify(r.fidelity));
  assert.ok(r.accuracy!.top1 >= 0.9, `top-1 ${r.accuracy!.top1}`);
  // inspect counts the quantized weights (read through DequantizeLinear) as the layers' parameters, in int8 bytes.
  const shapes = { input: [1, 1, 28, 28] };
  const fi = inspectModel(m, shapes);
  const qi = inspectModel(q, shapes);
  assert.equal(qi.params, fi.params);
  assert.equal(qi.macs, fi.macs);
  assert.ok(qi.weightBytes < 0.35 * fi.weightBytes, `${qi.weightBytes} vs ${fi.weightBytes}`);
  const conv = (rep: typeof fi) => rep.layers.filter((l) => l.opType === 'Conv').map((l) => `${l.name}=${l.params}`).sort();
  assert.deepEqual(conv(qi), conv(fi));
  assert.ok(qi.layers.filter((l) => l.opType === 'DequantizeLinear').every((l) => l.params === 0));
  // onnxruntime's fused form (QLinearConv with int8 weight and int32 bias inputs) counts the same per layer.
  const fused = inspectModel(fusedModel, shapes).layers.filter((l) => l.opType === 'QLinearConv').map((l) => `${l.name}=${l.params}`).sort();
  assert.deepEqual(fused, conv(fi));
});
