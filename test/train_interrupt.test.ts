/** Stopping the trainer at a step boundary (FinetuneOptions.signal) and resuming mid-epoch from its checkpoint. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finetune, type FinetuneOptions, type FinetuneResult } from '../src/train/trainer.js';
import { TrainingStopped } from '../src/train/checkpoint.js';
import { cnn, synth } from './train_fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'shears-interrupt-'));

/** Runs finetune with a signal aborted at the `at`-th progress report (every 10 steps and at each epoch's end). */
async function stoppedAt(at: number, opts: FinetuneOptions): Promise<TrainingStopped> {
  const ac = new AbortController();
  let reports = 0;
  const err = await finetune(cnn(), { ...opts, signal: ac.signal, progress: () => (++reports === at ? ac.abort() : undefined) }).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof TrainingStopped, `expected TrainingStopped, got ${String(err)}`);
  return err;
}

function sameWeights(a: FinetuneResult, b: FinetuneResult, tol: number): void {
  assert.deepEqual([...b.model.graph.initializers.keys()].sort(), [...a.model.graph.initializers.keys()].sort());
  for (const [k, t] of a.model.graph.initializers) {
    const x = t.data as Float32Array;
    const y = b.model.graph.initializers.get(k)!.data as Float32Array;
    assert.equal(y.length, x.length, k);
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(y[i]! - x[i]!) <= tol * (1 + Math.abs(x[i]!)), `${k}[${i}]: ${y[i]} vs ${x[i]}`);
  }
}

// 480 samples in batches of 32: 15 steps per epoch, progress reports after steps 10 and 15 of each epoch.
const base = {
  train: synth(480, 1), val: synth(90, 2), batch: 32, lr: 0.1, threads: 2, seed: 3, epochs: 2, progress: false as const,
  augment: { cropPad: 1, flip: true },
};

test('one session: stopped after 10 steps of epoch 1, resumed mid-epoch (checkpoint = resume file), ends as the uninterrupted run', async () => {
  const opts = { ...base, replicas: 1 };
  const full = await finetune(cnn(), opts);
  const ck = join(dir, 'one.ckpt.onnx');
  const stop = await stoppedAt(1, { ...opts, checkpoint: ck });
  assert.deepEqual([stop.epoch, stop.step, stop.checkpoint], [0, 10, ck]);
  assert.ok(existsSync(ck));
  const resumed = await finetune(cnn(), { ...opts, resume: ck, checkpoint: ck });
  sameWeights(full, resumed, 1e-6);
  // The epoch statistics carry across the stop; the starting model's score comes from the checkpoint.
  assert.equal(resumed.history.length, 2);
  assert.ok(Math.abs(resumed.history[0]!.trainLoss - full.history[0]!.trainLoss) < 1e-9, `${resumed.history[0]!.trainLoss} vs ${full.history[0]!.trainLoss}`);
  assert.equal(resumed.history[0]!.trainAcc, full.history[0]!.trainAcc);
  assert.equal(resumed.initialValAcc, full.initialValAcc);
  // The checkpoint now holds the end of the run; no temporary files are left beside it.
  assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.shears-tmp-')), []);
});

test('two replicas with BatchNorm re-inserted: stopped twice mid-epoch (epochs 1 and 2), resumed each time, ends as the uninterrupted run', async () => {
  const opts = { ...base, replicas: 2, batchNorm: 'reinsert' as const };
  const full = await finetune(cnn(), opts);
  const ck = join(dir, 'two.ckpt.onnx');
  const first = await stoppedAt(1, { ...opts, checkpoint: ck });
  assert.deepEqual([first.epoch, first.step], [0, 10]);
  // Resumed, then stopped again at its second report (epoch 2, after step 10).
  const second = await stoppedAt(2, { ...opts, resume: ck, checkpoint: ck });
  assert.deepEqual([second.epoch, second.step], [1, 10]);
  const resumed = await finetune(cnn(), { ...opts, resume: ck });
  // The rebuilt training graph may sum BN gradient contributions in another order: equal to float rounding.
  sameWeights(full, resumed, 1e-5);
  assert.equal(resumed.history.length, 2);
  assert.ok(Math.abs(resumed.history[1]!.valAcc! - full.history[1]!.valAcc!) < 0.02);
});

test('a stop requested before the first step, and one without a checkpoint path', async () => {
  const opts = { ...base, replicas: 1, epochs: 1 };
  const full = await finetune(cnn(), opts);
  const ck = join(dir, 'early.ckpt.onnx');
  const ac = new AbortController();
  ac.abort();
  const err = await finetune(cnn(), { ...opts, checkpoint: ck, signal: ac.signal }).catch((e: unknown) => e);
  assert.ok(err instanceof TrainingStopped);
  assert.deepEqual([err.epoch, err.step], [0, 0]);
  sameWeights(full, await finetune(cnn(), { ...opts, resume: ck }), 1e-6);
  const none = await stoppedAt(1, opts);
  assert.equal(none.checkpoint, undefined);
  assert.match(none.message, /stopped after 10 step\(s\) of epoch 1$/);
});

test('a mid-epoch checkpoint is refused with another batch size, data set or seed', async () => {
  const opts = { ...base, replicas: 1, epochs: 1 };
  const ck = join(dir, 'strict.ckpt.onnx');
  await stoppedAt(1, { ...opts, checkpoint: ck });
  await assert.rejects(finetune(cnn(), { ...opts, batch: 16, resume: ck }), /stopped in epoch 1 after 10 step\(s\) with a batch of 32: resume with the same batch size/);
  await assert.rejects(finetune(cnn(), { ...opts, train: synth(450, 1), resume: ck }), /on 480 training samples/);
  await assert.rejects(finetune(cnn(), { ...opts, seed: 4, resume: ck }), /with seed 3: resume with the same seed/);
  // The seed is the checkpoint's when none is given.
  const { seed: _seed, ...noSeed } = opts;
  const resumed = await finetune(cnn(), { ...noSeed, resume: ck });
  sameWeights(await finetune(cnn(), opts), resumed, 1e-6);
});
