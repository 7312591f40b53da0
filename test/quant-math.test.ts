/** Quantization arithmetic: rounding, saturation, scale/zero point, per-channel axes, bias, observers. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import { createSession } from '../src/runtime/session.js';
import {
  activationParams, dequantizeValue, entropyThreshold, percentileRange, quantizeBias, quantizeValue, quantizeWeight, roundHalfEven,
} from '../src/quant/index.js';
import { minWeightScales } from '../src/quant/math.js';

test('roundHalfEven rounds ties to the even neighbour', () => {
  const cases: [number, number][] = [[0.5, 0], [1.5, 2], [2.5, 2], [3.5, 4], [-0.5, -0], [-1.5, -2], [-2.5, -2], [2.4999, 2], [2.5001, 3], [-2.5001, -3], [7, 7]];
  for (const [v, r] of cases) assert.equal(roundHalfEven(v), r, `round(${v})`);
});

test('quantizeValue matches onnxruntime QuantizeLinear (ties to even, saturation) for uint8 and int8', async () => {
  const xs = [0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49, 126.5, 127.5, 300, -300, 1000.25, -1000.75, 0.25];
  for (const [type, zp, dt] of [['uint8', 10, DataType.UINT8], ['int8', -3, DataType.INT8]] as const) {
    const scale = 0.5;
    const b = new GraphBuilder();
    b.input('x', [xs.length]);
    b.init('s', { dtype: DataType.FLOAT, dims: [], data: Float32Array.of(scale) });
    b.init('z', dt === DataType.UINT8 ? { dtype: dt, dims: [], data: Uint8Array.of(zp) } : { dtype: dt, dims: [], data: Int8Array.of(zp) });
    const q = b.node('QuantizeLinear', ['x', 's', 'z'], {}, { output: 'q' });
    b.output(q, [xs.length], dt);
    const run = await createSession(b.model(13));
    const out = await run.run({ x: { dtype: DataType.FLOAT, dims: [xs.length], data: Float32Array.from(xs) } });
    await run.release();
    const got = Array.from(out['q']!.data as Uint8Array | Int8Array);
    const want = xs.map((x) => quantizeValue(x, { scale, zeroPoint: zp, type }));
    assert.deepEqual(got, want, type);
    // saturation ends
    assert.equal(quantizeValue(1e9, { scale, zeroPoint: zp, type }), type === 'uint8' ? 255 : 127);
    assert.equal(quantizeValue(-1e9, { scale, zeroPoint: zp, type }), type === 'uint8' ? 0 : -128);
  }
});

test('activationParams: uint8 asymmetric covers the range, zero is exact; int8 symmetric', () => {
  const p = activationParams(-1, 3);
  assert.equal(p.type, 'uint8');
  assert.ok(Math.abs(p.scale - 4 / 255) < 1e-7);
  assert.equal(p.zeroPoint, Math.round(1 / (4 / 255)));
  assert.equal(dequantizeValue(quantizeValue(0, p), p), 0, 'zero is exactly representable');
  assert.equal(quantizeValue(-1, p), 0);
  assert.equal(quantizeValue(3, p), 255);
  // ranges that exclude 0 are widened to include it
  const pos = activationParams(2, 6);
  assert.equal(pos.zeroPoint, 0);
  assert.ok(Math.abs(pos.scale - 6 / 255) < 1e-7);
  const neg = activationParams(-6, -2);
  assert.equal(neg.zeroPoint, 255);
  const s = activationParams(-1, 3, 'int8');
  assert.equal(s.zeroPoint, 0);
  assert.ok(Math.abs(s.scale - 3 / 127) < 1e-7);
  // a constant-zero tensor still gets a positive scale
  assert.ok(activationParams(0, 0).scale > 0);
  assert.throws(() => activationParams(1, 0));
  assert.throws(() => activationParams(NaN, 1));
});

test('quantizeWeight: symmetric per channel along the given axis, per tensor without one', () => {
  // dims [2, 3, 2]: channel c along axis 0 / axis 1
  const vals = Array.from({ length: 12 }, (_, i) => (i % 2 ? -1 : 1) * (i + 1) * 0.1);
  const w = { dtype: DataType.FLOAT, dims: [2, 3, 2], data: Float32Array.from(vals) };
  const a0 = quantizeWeight(w, 0);
  assert.equal(a0.scales.length, 2);
  assert.ok(Math.abs(a0.scales[0]! - 0.6 / 127) < 1e-8 && Math.abs(a0.scales[1]! - 1.2 / 127) < 1e-8);
  const q0 = a0.q.data as Int8Array;
  assert.equal(Math.abs(q0[5]!), 127, 'the largest |w| of channel 0 maps to 127');
  assert.equal(Math.abs(q0[11]!), 127);
  const a1 = quantizeWeight(w, 1);
  assert.equal(a1.scales.length, 3);
  // channel 1 along axis 1 holds elements 2,3,8,9 -> max |w| = 1.0
  assert.ok(Math.abs(a1.scales[1]! - 1.0 / 127) < 1e-8);
  assert.equal(Math.abs((a1.q.data as Int8Array)[9]!), 127);
  for (let i = 0; i < 12; i++) {
    const c = Math.floor(i / 2) % 3;
    const err = Math.abs((a1.q.data as Int8Array)[i]! * a1.scales[c]! - vals[i]!);
    assert.ok(err <= a1.scales[c]! / 2 + 1e-7, `element ${i} within half a step`);
  }
  const t = quantizeWeight(w, undefined);
  assert.equal(t.scales.length, 1);
  assert.ok(Math.abs(t.scales[0]! - 1.2 / 127) < 1e-8);
  assert.ok(Array.from(t.q.data as Int8Array).every((v) => v >= -127 && v <= 127));
  const r = quantizeWeight(w, 0, true);
  assert.ok(Array.from(r.q.data as Int8Array).every((v) => v >= -63 && v <= 63), 'reduce range: 7 bits');
});

test('quantizeBias: int32 with scale s_x * s_w per channel', () => {
  const b = { dtype: DataType.FLOAT, dims: [2], data: Float32Array.of(0.3, -1.7) };
  const { q, scales } = quantizeBias(b, 0.02, Float32Array.of(0.01, 0.5));
  assert.equal(q.dtype, DataType.INT32);
  assert.ok(Math.abs(scales[0]! - 0.0002) < 1e-9 && Math.abs(scales[1]! - 0.01) < 1e-9);
  assert.deepEqual(Array.from(q.data as Int32Array), [1500, -170]);
});

test('percentileRange clips rare outliers; entropyThreshold keeps the bulk of a distribution', () => {
  // signed histogram over [-10, 10], 200 bins: bulk in [-1, 1], one outlier at 9.95
  const h = new Float64Array(200);
  for (let i = 90; i < 110; i++) h[i] = 1000;
  h[199] = 1;
  const r = percentileRange(h, 10, 99.99, -1, 10);
  assert.ok(r.hi <= 1.01 && r.hi >= 0.99, `hi ${r.hi}`);
  assert.ok(r.lo >= -1.01 && r.lo <= -0.99, `lo ${r.lo}`);
  // |x| histogram: most mass in the first 300 of 2048 bins, a thin tail up to the end
  const a = new Float64Array(2048);
  for (let i = 0; i < 300; i++) a[i] = 1000 - i;
  for (let i = 300; i < 2048; i++) a[i] = 0.01;
  const t = entropyThreshold(a, 128);
  assert.ok(t >= 128 && t < 1024, `threshold ${t}`);
  // a uniform histogram is best kept whole
  const u = new Float64Array(512).fill(5);
  assert.ok(entropyThreshold(u, 128) >= 500);
});

test('bias overflow: weight scales are raised so the int32 bias stays in range', () => {
  const w = { dtype: DataType.FLOAT, dims: [2, 3], data: Float32Array.of(1e-6, -2e-6, 3e-6, 0.5, 0.1, -0.2) };
  const b = { dtype: DataType.FLOAT, dims: [2], data: Float32Array.of(50, 0.001) };
  const sx = 1e-9;
  const plain = quantizeWeight(w, 0);
  const q0 = quantizeBias(b, sx, plain.scales);
  assert.equal((q0.q.data as Int32Array)[0], 2 ** 31 - 1, 'without the adjustment the bias saturates');
  const adj = quantizeWeight(w, 0, false, minWeightScales(b, sx));
  assert.ok(adj.scales[0]! > plain.scales[0]!, 'channel 0 scale raised');
  assert.equal(adj.scales[1], plain.scales[1], 'channel 1 untouched');
  const q1 = quantizeBias(b, sx, adj.scales);
  const v = (q1.q.data as Int32Array)[0]!;
  assert.ok(v < 2 ** 31 - 1 && Math.abs(v * q1.scales[0]! - 50) / 50 < 1e-5, 'bias representable');
});
