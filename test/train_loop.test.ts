/** The trainer on a tiny synthetic task: it learns, stays deterministic, keeps masks, resumes from checkpoints. */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setMasks, getMasks } from '../src/sparsity/masks.js';
import { evaluateAccuracy, finetune } from '../src/train/trainer.js';
import { cnn, synth } from './train_fixtures.js';

const train = synth(480, 1);
const val = synth(150, 2);
const base = { train, val, batch: 32, lr: 0.1, threads: 1, progress: false as const, seed: 5 };

test('fine-tuning learns the task; the input model is not modified', async () => {
  const m = cnn();
  const before = Float32Array.from(m.graph.initializers.get('w1')!.data as Float32Array);
  const res = await finetune(m, { ...base, epochs: 3 });
  assert.deepEqual(m.graph.initializers.get('w1')!.data, before);
  assert.ok(res.history[2]!.trainLoss < res.history[0]!.trainLoss, JSON.stringify(res.history));
  assert.ok(res.history[2]!.valAcc! > 0.9, `val acc ${res.history[2]!.valAcc}`);
  // The exported model computes what the trainer evaluated.
  const acc = await evaluateAccuracy(res.model, val, { threads: 1 });
  assert.ok(Math.abs(acc - res.history[2]!.valAcc!) < 1e-9);
});

test('same seed, same result; masks stay enforced', async () => {
  const m = cnn();
  const mask = Uint8Array.from({ length: 54 }, (_, i) => (i % 3 === 0 ? 0 : 1));
  setMasks(m, new Map([['w1', mask]]));
  const a = await finetune(m, { ...base, epochs: 2 });
  const b = await finetune(m, { ...base, epochs: 2 });
  const wa = a.model.graph.initializers.get('w1')!.data as Float32Array;
  assert.deepEqual(wa, b.model.graph.initializers.get('w1')!.data);
  for (let i = 0; i < mask.length; i++) if (!mask[i]) assert.equal(wa[i], 0);
  assert.ok(wa.some((v, i) => mask[i] && v !== 0));
  assert.equal(getMasks(a.model).size, 1);
});

test('checkpoint after epoch 1 + resume equals an uninterrupted run (SGD momentum state restored)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-ckpt-'));
  const ck = join(dir, 'ck.onnx');
  const m = cnn();
  const full = await finetune(m, { ...base, epochs: 2 });
  await finetune(m, { ...base, epochs: 2, checkpoint: ck, stopAfterEpochs: 1 });
  const resumed = await finetune(m, { ...base, epochs: 2, resume: ck });
  assert.deepEqual(resumed.model.graph.initializers.get('w1')!.data, full.model.graph.initializers.get('w1')!.data);
  assert.deepEqual(resumed.model.graph.initializers.get('w2')!.data, full.model.graph.initializers.get('w2')!.data);
  assert.equal(resumed.history.length, 2);
});

test('BatchNorm re-insertion trains and folds back into the convs', async () => {
  const res = await finetune(cnn(), { ...base, epochs: 2, batchNorm: 'reinsert' });
  assert.equal(res.model.graph.nodes.filter((n) => n.opType === 'BatchNormalization').length, 0);
  const acc = await evaluateAccuracy(res.model, val, { threads: 1 });
  assert.ok(Math.abs(acc - res.history[1]!.valAcc!) < 0.02, `${acc} vs ${res.history[1]!.valAcc}`);
  assert.ok(acc > 0.85);
});

test('bad input: too little data for one batch', async () => {
  await assert.rejects(finetune(cnn(), { ...base, train: synth(10, 3), epochs: 1 }), /fewer than one batch/);
});

test('a Dataset read batch by batch (too large to hold) trains exactly as the same samples held in memory', async () => {
  const { openDataset } = await import('../src/data/spec.js');
  const { fileURLToPath } = await import('node:url');
  const { FIXTURE_MODEL } = await import('./cli-helpers.js');
  const { loadModel } = await import('../src/onnx/io.js');
  const demo = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));
  const pp = { scale: 1 / 255, mean: [0.286], std: [0.353] };
  const ds = openDataset(`${demo}@train`, pp).subset(Array.from({ length: 128 }, (_, i) => i));
  const val = openDataset(demo, pp).subset(Array.from({ length: 100 }, (_, i) => i));
  const run = (maxInMemory?: number) => finetune(loadModel(FIXTURE_MODEL), {
    train: ds, val, batch: 32, epochs: 1, lr: 0.005, threads: 1, progress: false, seed: 3, augment: { cropPad: 2 },
    ...(maxInMemory !== undefined ? { maxInMemory } : {}),
  });
  const mem = await run();
  const streamed = await run(0);
  assert.deepEqual(streamed.history.map((h) => [h.trainLoss, h.valAcc]), mem.history.map((h) => [h.trainLoss, h.valAcc]));
  for (const [k, t] of mem.model.graph.initializers) assert.deepEqual(streamed.model.graph.initializers.get(k)!.data, t.data, k);
  assert.ok(mem.history[0]!.valAcc! > 0.5);
});
