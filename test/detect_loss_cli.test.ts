/**
 * `shears finetune --objective detect` as a user runs it: a tiny YOLO dataset (data.yaml, PNGs, label files) and
 * the fixture detector; the loss falls and the model is written; bad input exits 2 with one clear line.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { GraphBuilder } from '../src/ir/builder.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { rng } from '../src/random.js';
import { shears, type CliResult } from './cli-helpers.js';
import { pngBytes, tempDir } from './data-helpers.js';
import { IMG, t32, tinyDetector } from './detloss-fixture.js';

/** Exit 2, the error on one line (after the preprocessing note), no stack trace. */
function isUserError(r: CliResult): boolean {
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('preprocessing:'));
  return r.code === 2 && lines.length === 1 && lines[0]!.startsWith('shears: error: ') && !/\n\s+at /.test(r.stderr);
}

/** n images of one bright square (a class per brightness) in the Ultralytics layout; `nc` in data.yaml. */
function yoloSet(dir: string, n: number, nc = 3, badClassAt?: number): string {
  const r = rng(3);
  for (const d of ['images/train', 'labels/train']) mkdirSync(join(dir, d), { recursive: true });
  for (let i = 0; i < n; i++) {
    const cls = Math.floor(r() * 3);
    const w = 8 + Math.floor(r() * 10), h = 8 + Math.floor(r() * 10);
    const x1 = Math.floor(r() * (IMG - w)), y1 = Math.floor(r() * (IMG - h));
    const px = new Uint8Array(IMG * IMG);
    for (let y = y1; y < y1 + h; y++) for (let x = x1; x < x1 + w; x++) px[y * IMG + x] = Math.round(255 * (0.3 + 0.35 * cls));
    const name = `img${String(i).padStart(3, '0')}`;
    writeFileSync(join(dir, 'images/train', `${name}.png`), pngBytes(IMG, IMG, 1, px));
    const c = i === badClassAt ? nc - 1 : cls;
    writeFileSync(join(dir, 'labels/train', `${name}.txt`), `${c} ${(x1 + w / 2) / IMG} ${(y1 + h / 2) / IMG} ${w / IMG} ${h / IMG}\n`);
  }
  const yaml = join(dir, 'data.yaml');
  writeFileSync(yaml, `path: .\ntrain: images/train\nval: images/train\nnc: ${nc}\nnames: [${Array.from({ length: nc }, (_, k) => `c${k}`).join(', ')}]\n`);
  return yaml;
}

test('shears finetune --objective detect on a YOLO data set: trains, writes the model, reports the loss', () => {
  const dir = tempDir('shears-detloss-');
  const yaml = yoloSet(dir, 32);
  const model = join(dir, 'det.onnx');
  saveModel(tinyDetector(2), model);
  const out = join(dir, 'out.onnx');
  const r = shears(['finetune', model, '--objective', 'detect', '--train', `yolo:${yaml}@train`, '--epochs', '3', '--batch', '16', '--lr', '0.03', '--scale', '--color', 'rgb', '--threads', '1', '-o', out]);
  assert.equal(r.code, 0, r.stderr);
  const m = /detection loss ([\d.]+) \(epoch 1\) -> ([\d.]+) \(last epoch\)/.exec(r.stderr);
  assert.ok(m, r.stderr);
  assert.ok(Number(m[2]) < Number(m[1]), r.stderr);
  assert.ok(loadModel(out).graph.nodes.length > 0);
  // --det-assign reference runs too
  const r2 = shears(['finetune', model, '--objective', 'detect', '--det-assign', 'reference', '--train', `yolo:${yaml}@train`, '--epochs', '1', '--batch', '16', '--scale', '--color', 'rgb', '--threads', '1', '-o', out]);
  assert.equal(r2.code, 0, r2.stderr);
  // prune forwards it: --finetune-objective detect
  const r3 = shears(['prune', model, '-o', join(dir, 'pruned.onnx'), '--structured', '--target-macs', '0.6', '--calib', `folder:${join(dir, 'images/train')}`, '--scale', '--color', 'rgb',
    '--finetune-epochs', '2', '--finetune-objective', 'detect', '--train', `yolo:${yaml}@train`, '--finetune-batch', '16', '--finetune-threads', '1']);
  assert.equal(r3.code, 0, r3.stderr);
  assert.match(r3.stderr, /detection loss [\d.]+ \(epoch 1\) -> [\d.]+ \(last epoch\)/);
});

test('shears finetune --objective detect: bad input exits 2 with one line', () => {
  const dir = tempDir('shears-detloss-bad-');
  // data.yaml declares 5 classes and a label uses class 4; the detector's head has 3
  const yaml = yoloSet(dir, 16, 5, 7);
  const model = join(dir, 'det.onnx');
  saveModel(tinyDetector(2), model);
  const out = join(dir, 'out.onnx');
  const common = ['--train', `yolo:${yaml}@train`, '--epochs', '1', '--batch', '16', '--scale', '--color', 'rgb', '--threads', '1', '-o', out];
  const r = shears(['finetune', model, '--objective', 'detect', ...common]);
  assert.ok(isUserError(r), r.stderr);
  assert.match(r.stderr, /class 4, outside the detector's 3 classes/);
  // a model with no YOLO head
  const b = new GraphBuilder('cnn');
  b.input('images', ['N', 3, IMG, IMG]);
  b.output(b.node('Flatten', [b.node('GlobalAveragePool', [b.node('Conv', ['images', b.init('w', t32([4, 3, 3, 3], rng(1), 0.3))], { kernel_shape: [3, 3] })])]));
  const cnn = join(dir, 'cnn.onnx');
  saveModel(b.model(17), cnn);
  const r2 = shears(['finetune', cnn, '--objective', 'detect', ...common]);
  assert.ok(isUserError(r2), r2.stderr);
  assert.match(r2.stderr, /no YOLO detection head/);
  // --det-assign without the detect objective
  const r3 = shears(['finetune', model, '--det-assign', 'student', '--teacher', model, ...common]);
  assert.ok(isUserError(r3), r3.stderr);
  assert.match(r3.stderr, /det-assign/);
  // image data without boxes
  const r4 = shears(['finetune', model, '--objective', 'detect', '--train', `folder:${join(dir, 'images/train')}`, '--epochs', '1', '--batch', '16', '--scale', '--color', 'rgb', '-o', out]);
  assert.ok(isUserError(r4), r4.stderr);
  assert.match(r4.stderr, /needs boxes/);
});
