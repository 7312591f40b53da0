/**
 * Detection data (data/yolo.ts) and the eval command on it: an Ultralytics YOLO layout and a COCO JSON built here,
 * Ultralytics' label-path rule, background images, letterbox geometry and pixels, boxes back to the original
 * image exactly, `shears eval --task detect` end to end on constant-output detectors built with the GraphBuilder
 * (a YOLOv8-shaped head and an end-to-end [1, K, 6] one), and the bad inputs: exit 2 with the file and line named.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor, int64Tensor } from '../src/ir/tensor.js';
import { saveModel } from '../src/onnx/io.js';
import { openDataset } from '../src/data/spec.js';
import { cocoSource, imageTruth, loadYoloDataset, isDetectionSource, labelPathOf, parseDataYaml, parseYoloLabels, yoloSource } from '../src/data/yolo.js';
import { letterboxGeometry, preprocessImage, outputShape } from '../src/data/preprocess.js';
import { boxesToOriginal } from '../src/metrics/detection-eval.js';
import { ShearsError } from '../src/errors.js';
import { isUserError, shears } from './cli-helpers.js';
import { collect, pngBytes, tempDir } from './data-helpers.js';

/** A YOLO data set: val (a 64x32 RGB image with one object, a 32x32 gray one with two, a background image), train. */
function yoloFixture(): string {
  const root = tempDir('shears-yolo-');
  for (const d of ['images/val', 'images/train', 'labels/val', 'labels/train']) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, 'images/val/a.png'), pngBytes(64, 32, 3, new Uint8Array(64 * 32 * 3).fill(200)));
  writeFileSync(join(root, 'labels/val/a.txt'), '0 0.5 0.5 0.25 0.5\n');
  writeFileSync(join(root, 'images/val/b.png'), pngBytes(32, 32, 1, new Uint8Array(32 * 32).fill(50)));
  writeFileSync(join(root, 'labels/val/b.txt'), '1 0.25 0.25 0.5 0.5\n\n0 0.75 0.75 0.2 0.2\n1 0.25 0.25 0.5 0.5\n');
  writeFileSync(join(root, 'images/val/c.png'), pngBytes(16, 16, 1, new Uint8Array(16 * 16)));
  writeFileSync(join(root, 'images/train/t.png'), pngBytes(16, 16, 1, new Uint8Array(16 * 16)));
  writeFileSync(join(root, 'data.yaml'), "path: .  # this folder\ntrain: images/train\nval: images/val\nnc: 2\nnames:\n  0: 'cat'\n  1: 'dog'\n");
  return root;
}

test("Ultralytics' label path rule: the last /images/ becomes /labels/, the extension .txt", () => {
  assert.equal(labelPathOf('/d/images/val/x.png'), '/d/labels/val/x.txt');
  assert.equal(labelPathOf('/images/d/images/val/x.y.jpg'), '/images/d/labels/val/x.y.txt');
  assert.equal(labelPathOf('/d/val/x.png'), '/d/val/x.txt');
});

test('data.yaml: names as a mapping or a list, nc checked against them, splits resolved against path', () => {
  const a = parseDataYaml("path: ../ds\ntrain: images/train\nval: [images/v1, images/v2]\nnames: [x, y, z]\n", '/a/b/data.yaml');
  assert.deepEqual(a, { root: '/a/ds', splits: { train: ['/a/ds/images/train'], val: ['/a/ds/images/v1', '/a/ds/images/v2'] }, nc: 3, names: ['x', 'y', 'z'] });
  const b = parseDataYaml('val: images/val\nnc: 2\nnames: {1: dog, 0: cat}\n', '/r/data.yaml');
  assert.deepEqual(b.names, ['cat', 'dog']);
  assert.equal(b.root, '/r');
  assert.deepEqual(parseDataYaml('val: v\nnc: 2\n', '/r/d.yaml').names, ['class0', 'class1']);
  assert.throws(() => parseDataYaml('val: v\nnc: 3\nnames: [a, b]\n', '/r/d.yaml'), /'\/r\/d\.yaml' line 2: nc is 3 but names lists 2 classes/);
  assert.throws(() => parseDataYaml('val: v\nnames: {0: a, 2: c}\n', '/r/d.yaml'), /names has no entry for class 1/);
  assert.throws(() => parseDataYaml('val: [v\nnc: 2\n', '/r/d.yaml'), /data\.yaml '\/r\/d\.yaml' line \d+ does not parse/);
  assert.throws(() => parseDataYaml('val: v\n', '/r/d.yaml'), /neither names nor nc/);
});

test('label files: boxes, polygons, duplicates dropped, bad lines refused with the file and line', () => {
  const l = parseYoloLabels('1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.3 0.1 0.3 0.5\n1 0.5 0.5 0.2 0.4\n0 1.0000005 0.5 0.1 0.1\n', 'f.txt', 2);
  assert.deepEqual([...l.classes], [1, 0, 0]);
  assert.ok(Math.abs(l.boxes[4]! - 0.2) < 1e-12 && Math.abs(l.boxes[5]! - 0.3) < 1e-12 && Math.abs(l.boxes[6]! - 0.2) < 1e-12 && Math.abs(l.boxes[7]! - 0.4) < 1e-12);
  assert.equal(l.boxes[8], 1, 'clamped within the tolerance');
  const bad: [string, RegExp][] = [
    ['0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.1 0.1\n', /label file 'f\.txt' line 2: class 2 is outside 0\.\.1 \(nc = 2\)/],
    ['-1 0.5 0.5 0.1 0.1\n', /line 1: class -1 is outside/],
    ['0.5 0.5 0.5 0.1 0.1\n', /line 1: class 0\.5 is outside/],
    ['0 0.5 1.01 0.1 0.1\n', /line 1: coordinate 1\.01 is outside \[0, 1\]/],
    ['0 0.5 -0.001 0.1 0.1\n', /coordinate -0\.001 is outside/],
    ['0 0.5 0.5 0.1\n', /line 1: expected 'class cx cy w h'.*got 4 fields/],
    ['0 0.5 0.5 0.1 0.1 0.3\n', /got 6 fields/],
    ['\n\n0 0.5 abc 0.1 0.1\n', /line 3: 'abc' is not a number/],
  ];
  for (const [text, re] of bad) assert.throws(() => parseYoloLabels(text, 'f.txt', 2), (e) => e instanceof ShearsError && re.test(e.message), text);
});

test('yolo source: images with ground truth, background images, splits, specs and auto-detection', async () => {
  const root = yoloFixture();
  const s = yoloSource(join(root, 'data.yaml'));
  assert.equal(s.size, 3);
  assert.equal(s.labels, undefined);
  assert.equal(s.detection.instances, 3);
  assert.equal(s.detection.backgrounds, 1);
  assert.deepEqual(s.detection.names, ['cat', 'dog']);
  assert.deepEqual([...s.detection.objects(1).classes], [1, 0]);
  assert.equal(yoloSource(root, 'train').size, 1);
  for (const spec of [`yolo:${root}`, `yolo:${join(root, 'data.yaml')}@val`, root, join(root, 'data.yaml')]) {
    const ds = openDataset(spec);
    assert.ok(isDetectionSource(ds.source), spec);
    assert.equal(ds.size, 3, spec);
  }
  assert.equal(openDataset(`${root}@train`).size, 1);
  const l = loadYoloDataset(root, { split: 'train', preprocess: { letterbox: [8, 8] } });
  assert.equal(l.size, 1);
  assert.deepEqual(l.preprocess, { letterbox: [8, 8] });
  assert.throws(() => openDataset(`yolo:${root}@test`), /has no 'test' split \(it has train, val\)/);
});

test('letterbox: geometry as Ultralytics, pixels padded with 114, boxes back to the original exactly', async () => {
  // 64 wide x 32 high into 32x32: ratio 0.5, 32x16, top = round(8 - 0.1) = 8
  assert.deepEqual(letterboxGeometry(32, 64, 32, 32), { ratio: 0.5, width: 32, height: 16, left: 0, top: 8, outHeight: 32, outWidth: 32 });
  // odd free space: 100 high x 50 wide into 64x64: ratio 0.64, 32x64, dw = 16; into 64x63: ratio 0.63, 31.5 -> round half even 32
  assert.deepEqual(letterboxGeometry(100, 50, 64, 64), { ratio: 0.64, width: 32, height: 64, left: 16, top: 0, outHeight: 64, outWidth: 64 });
  const g = letterboxGeometry(10, 7, 16, 16); // ratio 1.6: 11.2 -> 11 wide, dw 2.5: left round(2.4) = 2
  assert.equal(g.width, 11);
  assert.equal(g.left, 2);
  // a 4 wide x 2 high image of value 200 into 8x8, scale 1/255: rows 0-1 and 6-7 are 114/255
  const img = { width: 4, height: 2, channels: 1, data: new Uint8Array(8).fill(200) };
  const spec = { letterbox: [8, 8] as [number, number], scale: 1 / 255, color: 'rgb' as const };
  assert.deepEqual(outputShape(spec, 2, 4, 1), [3, 8, 8]);
  const out = new Float32Array(3 * 64);
  preprocessImage(img, spec, out, 0, 'x');
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < 8; y++) {
      const want = y >= 2 && y < 6 ? Math.fround(200 / 255) : Math.fround(114 / 255);
      for (let x = 0; x < 8; x++) assert.ok(Math.abs(out[c * 64 + y * 8 + x]! - want) < 1e-6, `c${c} y${y} x${x}: ${out[c * 64 + y * 8 + x]}`);
    }
  }
  // ground truth in input pixels and back
  const root = yoloFixture();
  const ds = openDataset(`yolo:${root}`, { letterbox: [32, 32], scale: 1 / 255, color: 'rgb' });
  const [batch] = await collect(ds.batches(3));
  assert.deepEqual([...batch!.sizes!], [32, 64, 32, 32, 16, 16]);
  const t = imageTruth(ds, 0, 32, 64);
  assert.deepEqual([...t.boxes], [24, 8, 40, 24]);
  assert.deepEqual([...t.inputBoxes], [12, 12, 20, 20]);
  assert.deepEqual([...boxesToOriginal(t.inputBoxes, ds.preprocess, 32, 64)], [...t.boxes]);
  // non-power-of-two ratios: back within float rounding; boxes clip to the image
  const t2 = imageTruth(ds.withPreprocess({ letterbox: [30, 30] }), 1, 32, 32);
  const back = boxesToOriginal(t2.inputBoxes, { letterbox: [30, 30] }, 32, 32);
  back.forEach((v, i) => assert.ok(Math.abs(v - t2.boxes[i]!) < 1e-9));
  assert.deepEqual([...boxesToOriginal(Float64Array.from([-5, -5, 40, 40]), { letterbox: [32, 32] }, 32, 32)], [0, 0, 32, 32]);
});

test('COCO JSON: categories mapped to 0..nc-1 in sorted id order, pixel boxes, crowd and empty boxes skipped', () => {
  const root = tempDir('shears-coco-');
  mkdirSync(join(root, 'img'));
  writeFileSync(join(root, 'img/1.png'), pngBytes(40, 20, 1, new Uint8Array(800)));
  writeFileSync(join(root, 'img/2.png'), pngBytes(10, 10, 1, new Uint8Array(100)));
  const ann = {
    images: [{ id: 7, file_name: '1.png', width: 40, height: 20 }, { id: 9, file_name: '2.png', width: 10, height: 10 }],
    categories: [{ id: 18, name: 'dog' }, { id: 3, name: 'car' }],
    annotations: [
      { image_id: 7, category_id: 18, bbox: [10, 5, 20, 10], iscrowd: 0 },
      { image_id: 7, category_id: 3, bbox: [0, 0, 4, 4], iscrowd: 1 },
      { image_id: 7, category_id: 3, bbox: [0, 0, 0, 4] },
    ],
  };
  writeFileSync(join(root, 'ann.json'), JSON.stringify(ann));
  const s = cocoSource(join(root, 'ann.json'), join(root, 'img'));
  assert.deepEqual(s.detection.names, ['car', 'dog']);
  assert.deepEqual([...s.detection.objects(0).classes], [1]);
  assert.deepEqual([...s.detection.objects(0).boxes], [0.5, 0.5, 0.5, 0.5]);
  assert.equal(s.detection.backgrounds, 1);
  const ds = openDataset(`coco:${join(root, 'ann.json')},images=${join(root, 'img')}`);
  assert.deepEqual([...imageTruth(ds, 0, 20, 40).boxes], [10, 5, 30, 15]);
  writeFileSync(join(root, 'bad.json'), JSON.stringify({ ...ann, annotations: [{ image_id: 8, category_id: 3, bbox: [0, 0, 1, 1] }] }));
  assert.throws(() => cocoSource(join(root, 'bad.json'), join(root, 'img')), /annotations\[0\] names image_id 8/);
  assert.throws(() => openDataset(`coco:${join(root, 'ann.json')}`), /images=DIR/);
});

/** A detector whose output does not depend on its input: [1, 3, 32, 32] -> `value` of shape `shape`. */
/**
 * A YOLOv8 output [1, 6, 21] (2 classes; 21 anchors = 16 + 4 + 1 at strides 8/16/32 of 32x32): anchor 0 the cat at
 * [12, 12, 20, 20] (0.9), anchor 1 a dog elsewhere (0.3).
 */
const YOLO_VALUE = (() => {
  const A = 21;
  const v = new Array<number>(6 * A).fill(0);
  const set = (j: number, a: number[]) => a.forEach((x, ch) => (v[ch * A + j] = x));
  set(0, [16, 16, 8, 8, 0.9, 0.0001]);
  set(1, [6, 16, 4, 4, 0.0001, 0.3]);
  return v;
})();

function constantDetector(path: string, shape: number[], value: number[]): void {
  const b = new GraphBuilder();
  const x = b.input('images', [1, 3, 32, 32]);
  const m = b.node('ReduceMean', [x], { axes: [1, 2, 3], keepdims: 1 });
  const r = b.node('Reshape', [m, b.init('shape', int64Tensor([3], [1, 1, 1]))]);
  const z = b.node('Mul', [r, b.init('zero', floatTensor([1], [0]))]);
  b.output(b.node('Add', [z, b.init('value', floatTensor(shape, value))], {}, { output: 'output0' }), shape);
  saveModel(b.model(), path);
}

test('shears eval --task detect end to end: a letterboxed image, YOLOv8 and end-to-end outputs, --json', () => {
  const root = yoloFixture();
  // only the 64x32 image in val: its object is [12, 12, 20, 20] in input pixels
  writeFileSync(join(root, 'one.yaml'), 'val: images/val/a.png\nnames: [cat, dog]\n');
  const yolo = join(root, 'yolo.onnx');
  constantDetector(yolo, [1, 6, 21], YOLO_VALUE);
  const r = shears(['eval', yolo, '--data', `yolo:${join(root, 'one.yaml')}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /task: detect \(yolo: data\)/);
  assert.match(r.stderr, /preprocessing: letterbox 32x32 \(pad 114\), scale 1\/255, layout nchw, color rgb/);
  assert.match(r.stdout, /mAP50 1\.0000 {2}mAP50-95 1\.0000/);
  assert.match(r.stdout, /Ultralytics val: mAP50 0\.9950 {2}mAP50-95 0\.9950/);
  assert.match(r.stdout, /cat +1 +1 /);
  const e2e = join(root, 'e2e.onnx');
  constantDetector(e2e, [1, 2, 6], [12, 12, 20, 20, 0.9, 0, 0, 0, 4, 4, 0.8, 1]);
  const j = shears(['eval', e2e, '--data', join(root, 'one.yaml'), '--json', '--reference', yolo]);
  assert.equal(j.code, 0, j.stderr);
  const rep = JSON.parse(j.stdout) as { task: string; format: { kind: string }; map: { map5095: number }; fidelity: { recall: number; matched: number; meanIou: number } };
  assert.equal(rep.task, 'detect');
  assert.equal(rep.format.kind, 'end2end');
  assert.ok(Math.abs(rep.map.map5095 - 1) < 1e-12);
  // the reference detects the cat (0.9 >= 0.25) and the dog (0.3); the model the cat at the same box only
  assert.equal(rep.fidelity.matched, 1);
  assert.equal(rep.fidelity.recall, 0.5);
  assert.ok(Math.abs(rep.fidelity.meanIou - 1) < 1e-12);
  // the same image through COCO annotations (category 5 -> class 0, 9 -> class 1): the same mAP
  writeFileSync(join(root, 'ann.json'), JSON.stringify({
    images: [{ id: 1, file_name: 'a.png', width: 64, height: 32 }],
    categories: [{ id: 9, name: 'dog' }, { id: 5, name: 'cat' }],
    annotations: [{ id: 1, image_id: 1, category_id: 5, bbox: [24, 8, 16, 16], iscrowd: 0 }],
  }));
  const c = shears(['eval', yolo, '--data', `coco:${join(root, 'ann.json')},images=${join(root, 'images/val')}`, '--json']);
  assert.equal(c.code, 0, c.stderr);
  const crep = JSON.parse(c.stdout) as { map: { map5095: number; perClass: { name: string }[] } };
  assert.ok(Math.abs(crep.map.map5095 - 1) < 1e-12);
  assert.deepEqual(crep.map.perClass.map((x) => x.name), ['cat']);
  // a [1, 6, 8] output on a 32x32 input is no YOLO head (8 is no anchor count of strides 8/16/32): classify
  const odd = join(root, 'odd.onnx');
  constantDetector(odd, [1, 6, 8], YOLO_VALUE.slice(0, 48));
  const o = shears(['eval', odd, '--data', `folder:${join(root, 'images/val')}`, '--reference', odd]);
  assert.doesNotMatch(o.stderr, /task: detect/);
  // auto task from the output shape on unlabelled images
  const f = shears(['eval', yolo, '--data', `folder:${join(root, 'images/val')}`, '--reference', yolo]);
  assert.equal(f.code, 0, f.stderr);
  assert.match(f.stderr, /task: detect \(output 'output0' \[1, 6, 21\] looks like a YOLOv8-style head, 2 classes\)/);
  assert.match(f.stdout, /detection fidelity vs reference .* recall 1\.0000/);
  // a channel mismatch is refused before onnxruntime
  const g = shears(['eval', yolo, '--data', join(root, 'one.yaml'), '--color', 'gray']);
  assert.equal(g.code, 2, g.stderr);
  assert.doesNotMatch(g.stderr, /onnxruntime|\n\s+at /);
  // ... and through the pipeline's data (every command's): classify on the same model
  const p = shears(['eval', yolo, '--task', 'classify', '--data', `folder:${join(root, 'images/val')}`, '--color', 'gray']);
  assert.equal(p.code, 2, p.stderr);
  assert.match(p.stderr, /input 'images' takes 3 channels but the preprocessing gives 1 \(color gray\): give --color rgb/);
  assert.doesNotMatch(p.stderr, /onnxruntime|\n\s+at /);
  assert.match(g.stderr, /input 'images' takes 3 channels but the preprocessing gives 1/);
});

test('bad detection data: exit 2, one line naming the file (and line)', () => {
  const root = yoloFixture();
  const model = join(root, 'yolo.onnx');
  constantDetector(model, [1, 6, 21], YOLO_VALUE);
  const cases: [string, () => string, RegExp][] = [
    ['class id outside nc', () => (writeFileSync(join(root, 'labels/val/b.txt'), '0 0.5 0.5 0.1 0.1\n5 0.5 0.5 0.1 0.1\n'), join(root, 'data.yaml')), /label file '.*labels\/val\/b\.txt' line 2: class 5 is outside 0\.\.1/],
    ['coordinate outside [0, 1]', () => (writeFileSync(join(root, 'labels/val/b.txt'), '0 0.5 1.5 0.1 0.1\n'), join(root, 'data.yaml')), /labels\/val\/b\.txt' line 1: coordinate 1\.5/],
    ['malformed line', () => (writeFileSync(join(root, 'labels/val/b.txt'), '0 0.5 0.5\n'), join(root, 'data.yaml')), /labels\/val\/b\.txt' line 1: expected 'class cx cy w h'/],
    ['yaml that does not parse', () => (writeFileSync(join(root, 'broken.yaml'), 'val: [images/val\nnames: [a, b]\n'), join(root, 'broken.yaml')), /data\.yaml '.*broken\.yaml' line \d+ does not parse/],
    ['missing folder', () => (writeFileSync(join(root, 'missing.yaml'), 'val: images/nope\nnames: [a, b]\n'), join(root, 'missing.yaml')), /'.*images\/nope' does not exist/],
    ['nc/names inconsistent', () => (writeFileSync(join(root, 'nc.yaml'), 'val: images/val\nnc: 3\nnames: [a, b]\n'), join(root, 'nc.yaml')), /nc\.yaml' line 2: nc is 3 but names lists 2 classes/],
    ['missing labels folder', () => {
      const other = tempDir('shears-nolabels-');
      mkdirSync(join(other, 'images/val'), { recursive: true });
      writeFileSync(join(other, 'images/val/x.png'), pngBytes(8, 8, 1, new Uint8Array(64)));
      writeFileSync(join(other, 'data.yaml'), 'val: images/val\nnames: [a]\n');
      return join(other, 'data.yaml');
    }, /the labels folder '.*labels\/val' for the images in '.*images\/val' does not exist/],
  ];
  for (const [what, make, re] of cases) {
    const yaml = make();
    const r = shears(['eval', model, '--data', `yolo:${yaml}`]);
    assert.ok(isUserError(r), `${what}: ${r.code} ${r.stderr}`);
    assert.match(r.stderr, re, what);
  }
});

test('shears report --task detect: mAP and detection fidelity per variant, the HTML draws the images with boxes', () => {
  const root = yoloFixture();
  writeFileSync(join(root, 'one.yaml'), 'val: images/val/a.png\nnames: [cat, dog]\n');
  const yolo = join(root, 'yolo.onnx');
  constantDetector(yolo, [1, 6, 21], YOLO_VALUE);
  const e2e = join(root, 'e2e.onnx');
  constantDetector(e2e, [1, 2, 6], [12, 12, 20, 20, 0.9, 0, 0, 0, 4, 4, 0.8, 1]);
  const html = join(root, 'r.html');
  const r = shears(['report', yolo, e2e, '--labels', 'dense,e2e', '--data', join(root, 'one.yaml'), '--runs', '2', '--warmup', '1', '--html', html]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /model +mAP50 mAP50-95 fid\.rec fid\.IoU/);
  assert.match(r.stdout, /dense +1\.0000 +1\.0000 +base +base/);
  // the e2e model finds the cat (IoU 1) but not the reference's dog: recall 0.5
  assert.match(r.stdout, /e2e +1\.0000 +1\.0000 +0\.5000 +1\.0000/);
  const page = readFileSync(html, 'utf8');
  assert.match(page, /<h2>Detections on validation images<\/h2>/);
  const svgs = page.match(/<svg xmlns[^]*?<\/svg>/g) ?? [];
  assert.equal(svgs.length, 2, 'one image, two models');
  assert.ok(svgs.every((s) => /<image href="data:image\/png;base64,/.test(s)));
  // dense: the cat at [24, 8, 40, 24] in the 64x32 image, the truth dashed; e2e: the cat only (its dog box is degenerate after clipping)
  assert.match(svgs[0]!, /<rect x="24" y="8" width="16" height="16" fill="none" stroke="#e15759"/);
  assert.match(svgs[0]!, /stroke-dasharray/);
  assert.match(svgs[0]!, />dog 0\.30</);
  const section = page.slice(page.indexOf('<table class="dets">'), page.indexOf('</table>', page.indexOf('<table class="dets">')));
  assert.doesNotMatch(section, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/, 'no network references in the drawings');
});

test('eval --task detect: a corrupt image met while the model runs (a fixed batch of 1 reads ahead) is exit 2 with one line', () => {
  const root = yoloFixture();
  // c.png (the last image) cut short: it is read while the model runs on the image before it
  const c = readFileSync(join(root, 'images/val/c.png'));
  writeFileSync(join(root, 'images/val/c.png'), c.subarray(0, Math.floor(c.length / 2)));
  const yolo = join(root, 'yolo.onnx');
  constantDetector(yolo, [1, 6, 21], YOLO_VALUE);
  const r = shears(['eval', yolo, '--data', `yolo:${join(root, 'data.yaml')}`]);
  // exit 2, the last line the error (after the preprocessing and task lines), no stack trace
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr.trim().split('\n').at(-1)!, /^shears: error: corrupt image file '.*c\.png'/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});
