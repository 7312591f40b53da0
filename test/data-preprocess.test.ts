/** Preprocessing math (scale, mean/std, resize, crop, color, layout), JSON specs in metadata, CLI flag parsing. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShearsError } from '../src/errors.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { decodeModel, encodeModel } from '../src/onnx/codec.js';
import {
  fitToInput, outputShape, preprocessFor, preprocessFromFlags, preprocessFromJSON, preprocessImage, preprocessToJSON,
  readPreprocess, resizeBilinear, writePreprocess, type PreprocessSpec,
} from '../src/data/preprocess.js';
import type { RawImage } from '../src/data/types.js';

function run(img: RawImage, spec: PreprocessSpec): { dims: number[]; x: number[] } {
  const dims = outputShape(spec, img.height, img.width, img.channels);
  const out = new Float32Array(dims.reduce((a, b) => a * b, 1));
  preprocessImage(img, spec, out, 0, 'img');
  return { dims, x: [...out] };
}

test('scale, per-channel mean/std in float32 steps as torchvision (x / 255 - mean) / std', () => {
  const img: RawImage = { width: 2, height: 1, channels: 3, data: Uint8Array.from([0, 128, 255, 10, 20, 30]) };
  const spec: PreprocessSpec = { scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
  const { dims, x } = run(img, spec);
  assert.deepEqual(dims, [3, 1, 2]);
  const f = Math.fround;
  const want = (v: number, c: number) => f(f(f(v / 255) - f(spec.mean![c]!)) / f(spec.std![c]!));
  // NCHW: channel planes
  assert.deepEqual(x, [want(0, 0), want(10, 0), want(128, 1), want(20, 1), want(255, 2), want(30, 2)]);
  // fmnist: (x/255 - 0.2860)/0.3530 for one gray pixel
  const g = run({ width: 1, height: 1, channels: 1, data: Uint8Array.from([200]) }, { scale: 1 / 255, mean: [0.286], std: [0.353] });
  assert.equal(g.x[0], f(f(f(200 / 255) - f(0.286)) / f(0.353)));
  // NHWC keeps pixels interleaved
  const h = run(img, { layout: 'nhwc' });
  assert.deepEqual(h.dims, [1, 2, 3]);
  assert.deepEqual(h.x, [0, 128, 255, 10, 20, 30]);
  // a scale that is not 1/integer multiplies
  assert.deepEqual(run({ width: 1, height: 1, channels: 1, data: Uint8Array.from([3]) }, { scale: 0.5 }).x, [1.5]);
});

test('bilinear resize: half-pixel centres on upscaling, antialiased (PIL-style) on downscaling, constants kept', () => {
  // 1x2 -> 1x4: input pixels 0 and 10, output centres at 0.25, 0.75, 1.25, 1.75 -> 0, 2.5, 7.5, 10
  assert.deepEqual([...resizeBilinear(Float32Array.from([0, 10]), 1, 2, 1, 1, 4)], [0, 2.5, 7.5, 10]);
  // 1x8 -> 1x4 (factor 2): triangle weights 1/8, 3/8, 3/8, 1/8 over four inputs (normalised at the border)
  const src = Float32Array.from([0, 8, 16, 24, 32, 40, 48, 56]);
  const down = [...resizeBilinear(src, 1, 8, 1, 1, 4)];
  assert.ok(Math.abs(down[1]! - (8 / 8 + (16 * 3) / 8 + (24 * 3) / 8 + 32 / 8)) < 1e-4, String(down));
  assert.ok(Math.abs(down[0]! - ((0 * 3) / 7 + (8 * 3) / 7 + 16 / 7)) < 1e-4, String(down));
  // a constant image stays constant under any resize, per channel
  const c = new Float32Array(5 * 7 * 3);
  for (let i = 0; i < c.length; i++) c[i] = [3, 50, 200][i % 3]!;
  const r = resizeBilinear(c, 5, 7, 3, 11, 4);
  for (let i = 0; i < r.length; i++) assert.ok(Math.abs(r[i]! - [3, 50, 200][i % 3]!) < 1e-4);
  // a shorter-side resize keeps the aspect ratio like torchvision (int(size * long / short))
  assert.deepEqual(outputShape({ resize: 32 }, 28, 56, 1), [1, 32, 64]);
  assert.deepEqual(outputShape({ resize: 10 }, 30, 20, 3), [3, 15, 10]);
});

test('center crop offsets round half to even like torchvision; color conversion; crop larger than image fails', () => {
  const data = Uint8Array.from({ length: 25 }, (_, i) => i);
  const img: RawImage = { width: 5, height: 5, channels: 1, data };
  // (5 - 2) / 2 = 1.5 -> 2
  assert.deepEqual(run(img, { crop: [2, 2] }).x, [12, 13, 17, 18]);
  // (5 - 3) / 2 = 1
  assert.deepEqual(run(img, { crop: [3, 1] }).x, [7, 12, 17]);
  assert.throws(() => run(img, { crop: [6, 6] }), (e: unknown) => e instanceof ShearsError && /smaller than the crop/.test(e.message));
  // RGBA -> RGB drops alpha; gray -> RGB replicates; RGB -> gray uses PIL's luma
  const rgba: RawImage = { width: 1, height: 1, channels: 4, data: Uint8Array.from([255, 0, 0, 7]) };
  assert.deepEqual(run(rgba, {}).x, [255, 0, 0]);
  assert.deepEqual(run(rgba, { color: 'gray' }).x, [76]);
  assert.deepEqual(run({ width: 1, height: 1, channels: 1, data: Uint8Array.from([9]) }, { color: 'rgb' }).x, [9, 9, 9]);
  assert.throws(() => run(rgba, { mean: [1, 2] }), (e: unknown) => e instanceof ShearsError && /--mean has 2 values, the images have 3 channels/.test(e.message));
});

test('specs serialise to JSON and live in metadata_props; flags parse; validation', () => {
  const spec = preprocessFromFlags({ scale: '1/255', mean: '0.2860', std: '0.3530', resize: '32x30', crop: '28', layout: 'NCHW', color: 'grey' });
  assert.deepEqual(spec, { scale: 1 / 255, mean: [0.286], std: [0.353], resize: [32, 30], crop: [28, 28], layout: 'nchw', color: 'gray' });
  assert.deepEqual(preprocessFromFlags({ scale: true, resize: '256' }), { scale: 1 / 255, resize: 256 });
  assert.deepEqual(preprocessFromJSON(preprocessToJSON(spec)), spec);
  const b = new GraphBuilder();
  b.output(b.node('Relu', [b.input('x', ['N', 1, 28, 28])]));
  const m = b.model();
  assert.equal(readPreprocess(m), undefined);
  writePreprocess(m, spec);
  const back = decodeModel(encodeModel(m));
  assert.deepEqual(readPreprocess(back), spec);
  // flags override stored fields one by one
  const pf = preprocessFor(back, { std: '0.5' });
  assert.equal(pf.from, 'metadata+flags');
  assert.deepEqual(pf.spec.std, [0.5]);
  assert.deepEqual(pf.spec.mean, [0.286]);
  assert.equal(pf.warning, undefined);
  assert.match(preprocessFor(b.model(), {}).warning ?? '', /no normalisation/); // a fresh model: no metadata
  for (const [flags, re] of [
    [{ mean: '0.1,x' }, /--mean: 'x' is not a number/],
    [{ std: '0' }, /std must not be 0/],
    [{ resize: '3x' }, /--resize: '3x' is not a size/],
    [{ layout: 'chw' }, /layout must be/],
    [{ color: 'cmyk' }, /color must be/],
  ] as const) {
    assert.throws(() => preprocessFromFlags(flags), (e: unknown) => e instanceof ShearsError && re.test(e.message), JSON.stringify(flags));
  }
  assert.throws(() => preprocessFromJSON('{"scale": 1, "bogus": 2}'), (e: unknown) => e instanceof ShearsError && /unknown field 'bogus'/.test(e.message));
  assert.throws(() => preprocessFromJSON('{'), (e: unknown) => e instanceof ShearsError && /not valid JSON/.test(e.message));
});

test('layout and color default from the model input shape', () => {
  assert.deepEqual(fitToInput({}, ['N', 1, 28, 28]), { spec: { layout: 'nchw', color: 'gray' }, sampleShape: [1, 28, 28] });
  assert.deepEqual(fitToInput({}, [1, 224, 224, 3]), { spec: { layout: 'nhwc', color: 'rgb' }, sampleShape: [224, 224, 3] });
  assert.deepEqual(fitToInput({ color: 'gray' }, ['N', 3, 'H', 'W']).spec, { layout: 'nchw', color: 'gray' });
  assert.deepEqual(fitToInput({}, ['N', 3, 'H', 'W']).sampleShape, [3, null, null]);
});

test('torchvision convention: mean/std in [0,1] units on 8-bit pixels scale by 1/255 first; --scale 1, float data and big means do not', () => {
  const f = Math.fround;
  const px = { width: 1, height: 1, channels: 1, data: Uint8Array.from([200]) };
  const torch = f(f(f(200 / 255) - f(0.286)) / f(0.353));
  // no scale given: implied 1/255 (what ToTensor + Normalize computes)
  assert.equal(run(px, { mean: [0.286], std: [0.353] }).x[0], torch);
  assert.equal(run(px, { std: [0.5] }).x[0], f(f(200 / 255) / 0.5));
  // explicit --scale 1 keeps raw values
  assert.equal(run(px, { scale: 1, mean: [0.286], std: [0.353] }).x[0], f(f(200 - f(0.286)) / f(0.353)));
  // means in pixel units (Caffe-style 0..255) are not rescaled
  assert.equal(run(px, { mean: [120], std: [58] }).x[0], f(f(200 - 120) / 58));
  // float data (npy float32 in whatever range) is never rescaled
  const fl = { width: 1, height: 1, channels: 1, data: Float32Array.from([0.5]) };
  assert.equal(run(fl, { mean: [0.25], std: [0.5] }).x[0], f(f(0.5 - 0.25) / 0.5));
  // no normalisation at all: raw values (the CLI warns about that separately)
  assert.equal(run(px, {}).x[0], 200);
});
