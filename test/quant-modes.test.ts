/** fp16 conversion, dynamic int8 and weight-only int4 (MatMulNBits). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { F, GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { checkGraph } from '../src/ir/edit.js';
import type { Tensor } from '../src/ir/tensor.js';
import { halfToFloat } from '../src/ir/tensor.js';
import { loadModel } from '../src/onnx/io.js';
import { runOnce } from '../src/runtime/session.js';
import { activationParams, convertFp16, optimizedOpTypes, packInt4, quantizeDynamic, quantizeInt4, quantizeValue, unpackInt4 } from '../src/quant/index.js';
import { FIXTURE_MODEL } from './cli-helpers.js';
import { randTensor, saturationCases, u8s8Saturates } from './quant-fixture.js';

const run = (model: Model, feeds: Record<string, Tensor>) => runOnce(model, feeds, { threads: 1 });

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** x [3, 40] -> MatMul W1 [40, 24] -> Relu -> Gemm (W2 [8, 24], transB, alpha 0.5, beta 2, bias) -> y [3, 8]. */
function mlp(): Model {
  const b = new GraphBuilder('mlp');
  b.input('x', [3, 40]);
  b.init('W1', randTensor([40, 24], 31, 0.3));
  b.init('W2', randTensor([8, 24], 32, 0.3));
  b.init('B2', randTensor([8], 33, 0.5));
  const h = b.node('MatMul', ['x', 'W1'], {}, { name: 'mm' });
  const r = b.node('Relu', [h], {}, { name: 'relu' });
  b.node('Gemm', [r, 'W2', 'B2'], { transB: 1, alpha: 0.5, beta: F(2) }, { name: 'fc', output: 'y' });
  b.output('y', [3, 8]);
  return b.model(17);
}

test('fp16: weights become float16, inputs/outputs stay float32, results stay close (resnet20)', async () => {
  const m = loadModel(FIXTURE_MODEL);
  const { model: h, report } = convertFp16(m);
  assert.deepEqual(checkGraph(h.graph), []);
  assert.ok(report.initializers > 40);
  const floats = [...h.graph.initializers.values()].filter((t) => t.dtype === DataType.FLOAT);
  assert.equal(floats.length, 0, 'no float32 initializer left');
  assert.equal(h.graph.inputs[0]!.type!.elemType, DataType.FLOAT);
  const x = randTensor([4, 1, 28, 28], 5, 2);
  const a = (await run(m, { input: x }))['logits']!;
  const b = (await run(h, { input: x }))['logits']!;
  assert.equal(b.dtype, DataType.FLOAT);
  const d = maxAbsDiff(a.data as Float32Array, b.data as Float32Array);
  const scale = Math.max(...Array.from(a.data as Float32Array, Math.abs));
  // float16 weights and activations: ~3 significant digits per step, 21 layers deep
  assert.ok(d < 0.02 * scale, `max diff ${d} vs output scale ${scale}`);
  // every stored weight is the float16 rounding of the original
  const w = m.graph.initializers.get('fc.weight') ?? [...m.graph.initializers.values()].find((t) => t.dims.length === 2)!;
  const key = [...m.graph.initializers].find(([, t]) => t === w)![0];
  const hw = h.graph.initializers.get(key)!;
  const orig = w.data as Float32Array;
  const half = hw.data as Uint16Array;
  for (let i = 0; i < orig.length; i++) assert.ok(Math.abs(halfToFloat(half[i]!) - orig[i]!) <= Math.abs(orig[i]!) * 2 ** -11 + 2 ** -24);
});

test('fp16: float16 inputs/outputs on request, Cast targets follow', async () => {
  const b = new GraphBuilder();
  b.input('x', [2, 3]);
  b.init('c', randTensor([2, 3], 3));
  const s = b.node('Add', ['x', 'c']);
  const i = b.node('Cast', [s], { to: DataType.INT32 });
  const f = b.node('Cast', [i], { to: DataType.FLOAT });
  b.node('Mul', [f, 'c'], {}, { output: 'y' });
  b.output('y', [2, 3]);
  const { model: h } = convertFp16(b.model(17), { ioFp16: true });
  assert.equal(h.graph.inputs[0]!.type!.elemType, DataType.FLOAT16);
  const casts = h.graph.nodes.filter((n) => n.opType === 'Cast').map((n) => n.attrs.get('to')!.value);
  assert.deepEqual(casts.sort(), [DataType.INT32, DataType.FLOAT16].sort());
  const x = new Uint16Array(6).fill(0x3c00); // 1.0
  const out = await run(h, { x: { dtype: DataType.FLOAT16, dims: [2, 3], data: x } });
  assert.equal(out['y']!.dtype, DataType.FLOAT16);
});

test('dynamic int8: MatMul and Gemm (transB, alpha, beta, bias) become a chain ORT fuses; outputs stay close', async () => {
  const m = mlp();
  const { model: q, report } = quantizeDynamic(m);
  assert.deepEqual(report.quantized, { MatMul: 1, Gemm: 1 });
  assert.equal(report.weightBits, 7, 'uint8 activations: 7-bit weights by default');
  assert.deepEqual(checkGraph(q.graph), []);
  const f = await optimizedOpTypes(q);
  assert.equal(f.opTypes['com.microsoft.DynamicQuantizeMatMul'], 2, JSON.stringify(f.opTypes));
  const x = randTensor([3, 40], 7);
  const a = (await run(m, { x }))['y']!.data as Float32Array;
  const b = (await run(q, { x }))['y']!.data as Float32Array;
  // 8-bit activations and weights: each product error is below ~1% of the output range here
  const scale = Math.max(...Array.from(a, Math.abs));
  assert.ok(maxAbsDiff(a, b) < 0.03 * scale, `max diff ${maxAbsDiff(a, b)} vs ${scale}`);
});

/**
 * What the dynamic int8 chain computes, done exactly in integers: DynamicQuantizeLinear of each input (uint8 over
 * [min(x, 0), max(x, 0)]), sum_k (xq - zp) * wq, times s_x * s_w, plus the bias. Read from the quantized model.
 */
function dynamicReference(q: Model, x: Tensor): Float32Array {
  const g = q.graph;
  const mm = g.nodes.find((n) => n.opType === 'MatMulInteger')!;
  const wt = g.initializers.get(mm.inputs[1]!)!;
  const [k, n] = wt.dims as [number, number];
  const wq = wt.data as Int8Array;
  const xScale = g.nodes.find((nd) => nd.opType === 'DynamicQuantizeLinear')!.outputs[1];
  const ws = g.initializers.get(g.nodes.find((nd) => nd.opType === 'Mul' && nd.inputs[0] === xScale)!.inputs[1]!)!.data as Float32Array;
  const add = g.nodes.find((nd) => nd.opType === 'Add');
  const bias = add ? (g.initializers.get(add.inputs[1]!)!.data as Float32Array) : undefined;
  const xs = x.data as Float32Array;
  const p = activationParams(Math.min(...xs), Math.max(...xs), 'uint8');
  const xq = Array.from(xs, (v) => quantizeValue(v, p));
  const rows = xs.length / k;
  const y = new Float32Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < n; o++) {
      let acc = 0;
      for (let kk = 0; kk < k; kk++) acc += (xq[r * k + kk]! - p.zeroPoint) * wq[kk * n + o]!;
      const v = Math.fround(acc * Math.fround(p.scale * ws[ws.length === 1 ? 0 : o]!));
      y[r * n + o] = bias ? Math.fround(v + bias[o]!) : v;
    }
  }
  return y;
}

const dynamicCases = () => saturationCases().filter((c) => c.name !== 'Conv');

test('dynamic int8 equals its integer arithmetic done exactly where u8*s8 pair sums are largest (MatMul, Gemm)', async () => {
  for (const c of dynamicCases()) {
    const { model: q, report } = quantizeDynamic(c.model);
    assert.equal(report.weightBits, 7);
    assert.equal((await optimizedOpTypes(q)).opTypes['com.microsoft.DynamicQuantizeMatMul'], 1);
    for (const x of c.inputs) {
      const ref = dynamicReference(q, x);
      const y = (await run(q, { x }))['y']!.data as Float32Array;
      const scale = Math.max(...Array.from(ref, Math.abs));
      // exact integer sums; float32 rounding of the scale products only
      assert.ok(maxAbsDiff(y, ref) <= 1e-5 * scale, `${c.name}: max diff ${maxAbsDiff(y, ref)} vs ${scale}`);
    }
  }
});

test('dynamic int8 with 8-bit weights (reduceRange: false) saturates those sums on x86 without VNNI', { skip: u8s8Saturates() ? false : 'needs x86-64 Linux without VNNI' }, async () => {
  for (const c of dynamicCases()) {
    const { model: q, report } = quantizeDynamic(c.model, { reduceRange: false });
    assert.equal(report.weightBits, 8);
    const x = c.inputs[0]!;
    const ref = dynamicReference(q, x);
    const y = (await run(q, { x }))['y']!.data as Float32Array;
    // if this fails, onnxruntime no longer saturates here: the 7-bit default could be revisited
    assert.ok(maxAbsDiff(y, ref) > 0.1 * Math.max(...Array.from(ref, Math.abs)), `${c.name}: max diff only ${maxAbsDiff(y, ref)}`);
  }
});

test('int4: packing round-trips to the block-quantized weight; MatMulNBits equals MatMul with the dequantized weight', async () => {
  const k = 40, n = 6, bs = 16;
  const w = randTensor([k, n], 41, 0.7).data as Float32Array;
  const p = packInt4(w, k, n, bs);
  assert.equal(p.blocks, 3);
  assert.equal(p.b.length, n * 3 * 8);
  const wq = unpackInt4(p, k, n, bs);
  for (let o = 0; o < n; o++) {
    for (let kk = 0; kk < k; kk++) {
      const s = p.scales[o * 3 + Math.floor(kk / bs)]!;
      assert.ok(Math.abs(wq[kk * n + o]! - w[kk * n + o]!) <= s / 2 + 1e-6, 'within half a step of its block');
    }
  }
  const m = mlp();
  const { model: q, report } = quantizeInt4(m, { blockSize: 16 });
  assert.deepEqual(report.quantized, { MatMul: 1, Gemm: 1 });
  // reference: the float model with the int4-dequantized weights
  const w1 = unpackInt4(packInt4(m.graph.initializers.get('W1')!.data as Float32Array, 40, 24, 16), 40, 24, 16);
  const w2t = m.graph.initializers.get('W2')!.data as Float32Array; // [8, 24] -> [24, 8]
  const w2 = new Float32Array(24 * 8);
  for (let o = 0; o < 8; o++) for (let kk = 0; kk < 24; kk++) w2[kk * 8 + o] = w2t[o * 24 + kk]!;
  const w2q = unpackInt4(packInt4(w2, 24, 8, 16), 24, 8, 16);
  const w2qt = new Float32Array(8 * 24);
  for (let o = 0; o < 8; o++) for (let kk = 0; kk < 24; kk++) w2qt[o * 24 + kk] = w2q[kk * 8 + o]!;
  const ref: Model = { ...m, graph: { ...m.graph, initializers: new Map(m.graph.initializers) } };
  ref.graph.initializers.set('W1', { dtype: DataType.FLOAT, dims: [40, 24], data: w1 });
  ref.graph.initializers.set('W2', { dtype: DataType.FLOAT, dims: [8, 24], data: w2qt });
  const x = randTensor([3, 40], 8);
  const a = (await run(ref, { x }))['y']!.data as Float32Array;
  const b = (await run(q, { x }))['y']!.data as Float32Array;
  const scale = Math.max(...Array.from(a, Math.abs));
  // same weights, float accumulation in a different order: float32 rounding only
  assert.ok(maxAbsDiff(a, b) < 1e-4 * scale + 1e-6, `max diff ${maxAbsDiff(a, b)}`);
  const f = await optimizedOpTypes(q);
  assert.equal(f.opTypes['com.microsoft.MatMulNBits'], 2, JSON.stringify(f.opTypes));
  assert.throws(() => quantizeInt4(m, { blockSize: 48 }), /block size/);
});

test('dynamic/int4 refuse models without matrix-product layers', () => {
  const b = new GraphBuilder();
  b.input('x', [1, 2, 4, 4]);
  b.init('W', randTensor([2, 2, 1, 1], 1));
  b.node('Conv', ['x', 'W'], {}, { output: 'y' });
  b.output('y');
  assert.throws(() => quantizeDynamic(b.model(17)), /nothing to quantize/);
  assert.throws(() => quantizeInt4(b.model(17)), /nothing to quantize/);
});
