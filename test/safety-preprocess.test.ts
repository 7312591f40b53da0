/** The common preprocessing must just work, and a model fed the wrong inputs is called out. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURE_MODEL, shears } from './cli-helpers.js';

const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));

test('eval with torchvision-style --mean/--std and no --scale scores the trained model, and says what it applied', () => {
  const r = shears(['eval', FIXTURE_MODEL, '--data', DEMO, '--mean', '0.2860', '--std', '0.3530', '--limit', '200', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const top1 = JSON.parse(r.stdout).accuracy.top1 as number;
  assert.ok(top1 > 0.9, `top-1 ${top1}`);
  assert.match(r.stderr, /^preprocessing: scale 1\/255, mean 0\.286, std 0\.353 \(mean\/std in \[0,1\] units on 8-bit pixels: scaled by 1\/255 first/m);
  assert.doesNotMatch(r.stderr, /near chance/);
});

test('a model scoring near chance gets a warning naming normalisation, channel order and layout (eval, the dense model in prune --data, the teacher before finetune)', () => {
  const e = shears(['eval', FIXTURE_MODEL, '--data', DEMO, '--mean', '0.2860', '--std', '0.3530', '--scale', '1', '--limit', '200']);
  assert.equal(e.code, 0, e.stderr);
  assert.match(e.stderr, /^preprocessing: scale 1, mean 0\.286, std 0\.353$/m);
  assert.match(e.stderr, /shears: warning: the model scores \d+\.\d+% top-1 on 200 samples, near chance for 10 classes.*--scale\/--mean\/--std.*--color.*--layout/);
  const dir = mkdtempSync(join(tmpdir(), 'shears-chance-'));
  const ok = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'p.onnx'), '--sparsity', '0.3', '--data', DEMO, '--data-limit', '200']);
  const ft = shears(['finetune', FIXTURE_MODEL, '--train', `${DEMO}@train`, '--val', DEMO, '--teacher', FIXTURE_MODEL, '--limit', '64', '--batch', '32', '--scale', '1', '--mean', '0.286', '--std', '0.353', '-o', join(dir, 'f.onnx')]);
  rmSync(dir, { recursive: true });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /shears: warning: the dense model scores .* near chance/);
  assert.match(ok.stderr, /no normalisation given/);
  assert.equal(ft.code, 0, ft.stderr);
  assert.match(ft.stderr, /shears: warning: the teacher scores .* near chance/);
});
