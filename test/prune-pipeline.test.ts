// `shears prune` as one pipeline: prune -> repair -> fine-tune -> quantize, reported as one JSON object.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../src/onnx/io.js';
import { FIXTURE_MODEL, shears } from './cli-helpers.js';

const demo = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));
const norm = ['--scale', '--mean', '0.2860', '--std', '0.3530'];

test('prune --structured --repair --finetune-epochs --quantize --json reports every stage', () => {
  const out = join(mkdtempSync(join(tmpdir(), 'shears-pipe-')), 'p.onnx');
  const r = shears([
    'prune', FIXTURE_MODEL, '-o', out, '--structured', '--target-macs', '0.5', '--round-to', '8',
    '--repair', 'lsq', '--calib', `${demo}@train`, '--calib-size', '128',
    '--finetune-epochs', '1', '--finetune-limit', '256', '--finetune-batch', '64', '--train', `${demo}@train`,
    '--val', demo, '--quantize', 'int8', '--data', demo, '--data-limit', '200', '--json', ...norm,
  ], { timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.ok(Math.abs(j.macsRatio - 0.5) <= 0.02, String(j.macsRatio));
  assert.deepEqual(j.repair.methods, ['lsq']);
  assert.ok(j.repair.steps[0].layers.length > 0);
  assert.equal(j.finetune.epochs, 1);
  assert.ok(j.finetune.valTop1 > 0.5, `fine-tuned top-1 ${j.finetune.valTop1}`);
  assert.equal(j.quantize.mode, 'int8');
  assert.ok(j.quantize.bytesAfter < j.quantize.bytesBefore);
  // The written model is the quantized one, and it carries the preprocessing for later commands.
  const m = loadModel(out);
  assert.ok(m.graph.nodes.some((n) => n.opType === 'QuantizeLinear'));
  assert.ok(m.metadata.has('shears.preprocess'));
});
