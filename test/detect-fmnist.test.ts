/**
 * Optional (needs ../shared or /work/shared): `shears eval --task detect` on fmnist_det.onnx and the 500
 * FMNIST-Det validation canvases reproduces the reference figures measured with PyTorch (shared README): mAP50
 * 0.7706, mAP50-95 0.6227 (COCO 101-point), to within 0.002; 1,436 objects.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { shears } from './cli-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SHARED = [join(ROOT, '..', 'shared'), '/work/shared'].find((d) => existsSync(join(d, 'models', 'fmnist_det.onnx')) && existsSync(join(d, 'data', 'fmnist-det', 'data.yaml')));

test('fmnist_det on FMNIST-Det val: mAP50 0.7706 and mAP50-95 0.6227 within 0.002', { skip: SHARED === undefined ? 'no shared fmnist_det.onnx / data/fmnist-det here (../shared)' : false }, () => {
  const r = shears(['eval', join(SHARED!, 'models', 'fmnist_det.onnx'), '--data', `yolo:${join(SHARED!, 'data', 'fmnist-det', 'data.yaml')}`, '--json'], { timeoutMs: 600_000 });
  assert.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as { samples: number; map: { instances: number; map50: number; map5095: number } };
  assert.equal(rep.samples, 500);
  assert.equal(rep.map.instances, 1436);
  assert.ok(Math.abs(rep.map.map50 - 0.7706) <= 0.002, `mAP50 ${rep.map.map50}`);
  assert.ok(Math.abs(rep.map.map5095 - 0.6227) <= 0.002, `mAP50-95 ${rep.map.map5095}`);
});
