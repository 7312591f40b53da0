/** Data-parallel training replicas (train/step-runner.ts): same step as one session, deterministic, failures surface. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildTrainingGraph } from '../src/autodiff/training.js';
import { TEACHER } from '../src/autodiff/losses.js';
import { GraphBuilder } from '../src/ir/builder.js';
import type { Model } from '../src/ir/graph.js';
import { cloneModel } from '../src/ir/clone.js';
import { createStepRunner, defaultReplicas, stepGraphOf, type StepResult } from '../src/train/step-runner.js';
import { fillTargets } from '../src/data/in-memory.js';
import { softmaxRows } from '../src/train/logits.js';
import { DataType } from '../src/ir/dtype.js';
import { createSession, runOnce } from '../src/runtime/session.js';
import { finetune } from '../src/train/trainer.js';
import { cnn, synth } from './train_fixtures.js';
import { rng } from './gradcheck.js';

const B = 32;
const data = synth(B, 4);

/** softmax(cnn()(x) / 2), as the caller-provided teacher probabilities. */
async function teacherProbsOf(): Promise<Float32Array> {
  const s = await createSession(cnn(), { threads: 1 });
  const y = (await s.run({ input: { dtype: DataType.FLOAT, dims: [B, 1, 8, 8], data: data.x } }))['logits']!.data as Float32Array;
  await s.release();
  const out = new Float32Array(B * 3);
  softmaxRows(y, B, 3, 2, out);
  return out;
}

async function oneStep(model: Model, replicas: number, kd: false | 'model' | 'probs', accumulate = 1): Promise<StepResult & { params: Float32Array[] }> {
  const loss = kd ? { ce: { weight: 0.5 }, kd: { weight: 0.5, temperature: 2 } } : { ce: {} };
  const micro = B / replicas / accumulate;
  const tg = await buildTrainingGraph(cloneModel(model), { batch: micro, loss, inputShapes: { input: [micro, 1, 8, 8] } });
  const teacher = kd === 'model' ? { model: cnn(), input: 'input', probs: TEACHER, temperature: 2 } : kd === 'probs' ? { probs: TEACHER, temperature: 2 } : undefined;
  const runner = await createStepRunner(stepGraphOf(tg, tg.model, { input: 'input', sampleDims: [1, 8, 8], classes: 3 }, teacher), { batch: B, replicas, threads: replicas, accumulate });
  try {
    tg.params.forEach((p, k) => runner.params[k]!.set(p.init.data as Float32Array));
    assert.equal(runner.teacherProbs !== undefined, kd === 'probs');
    if (kd === 'probs') runner.teacherProbs!.set(await teacherProbsOf());
    runner.x.set(data.x);
    fillTargets(data.labels!, Array.from({ length: B }, (_, i) => i), runner.targets, 3);
    const r = await runner.step();
    // Copies: the results are views that the next step overwrites.
    return { loss: r.loss, output: Float32Array.from(r.output), grads: r.grads.map((g) => Float32Array.from(g)), state: [], params: runner.params };
  } finally {
    await runner.release();
  }
}

function close(a: Float32Array, b: Float32Array, tol: number, what: string): void {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol * (1 + Math.abs(b[i]!)), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

for (const [kd, other] of [[false, false], ['model', 'model'], ['model', 'probs']] as const) {
  const what = kd ? `CE + distillation, teacher run by one session vs ${other === 'model' ? 'by each replica' : 'probabilities given by the caller'}` : 'cross-entropy';
  test(`two replicas compute the step of one session: loss, outputs and gradients (${what})`, async () => {
    const model = cnn();
    // Perturb the student so that it differs from the teacher (cnn() is deterministic).
    const w2 = model.graph.initializers.get('w2')!.data as Float32Array;
    for (let i = 0; i < w2.length; i++) w2[i]! *= 1.5;
    const one = await oneStep(model, 1, kd);
    const two = await oneStep(model, 2, other);
    assert.ok(Math.abs(one.loss - two.loss) < 1e-6 * (1 + Math.abs(one.loss)), `${one.loss} vs ${two.loss}`);
    close(two.output, one.output, 1e-6, 'output');
    one.grads.forEach((g, k) => close(two.grads[k]!, g, 1e-5, `grad ${k}`));
    assert.ok(one.grads.some((g) => g.some((v) => Math.abs(v) > 1e-4)), 'gradients are not all zero');
  });
}

test('gradient accumulation: 4 micro-batches in one session, and 2 in each of 2 replicas, compute the full-batch step', async () => {
  const model = cnn();
  const one = await oneStep(model, 1, 'model');
  for (const [replicas, accumulate] of [[1, 4], [2, 2]] as const) {
    const acc = await oneStep(model, replicas, 'model', accumulate);
    assert.ok(Math.abs(one.loss - acc.loss) < 1e-6 * (1 + Math.abs(one.loss)), `${one.loss} vs ${acc.loss}`);
    close(acc.output, one.output, 1e-6, 'output');
    one.grads.forEach((g, k) => close(acc.grads[k]!, g, 1e-5, `grad ${k} (${replicas} x ${accumulate})`));
  }
});

test('fine-tuning with 2 replicas learns, is deterministic, and trains BatchNorm per replica slice', async () => {
  const base = { train: synth(480, 1), val: synth(150, 2), batch: 32, lr: 0.1, threads: 2, replicas: 2, progress: false as const, seed: 5 };
  const a = await finetune(cnn(), { ...base, epochs: 3 });
  const b = await finetune(cnn(), { ...base, epochs: 3 });
  assert.deepEqual(a.model.graph.initializers.get('w1')!.data, b.model.graph.initializers.get('w1')!.data);
  assert.ok(a.history[2]!.valAcc! > 0.9, `val acc ${a.history[2]!.valAcc}`);
  const bn = await finetune(cnn(), { ...base, epochs: 2, batchNorm: 'reinsert' });
  assert.equal(bn.model.graph.nodes.filter((n) => n.opType === 'BatchNormalization').length, 0);
  assert.ok(bn.history[1]!.valAcc! > 0.85, `val acc ${bn.history[1]!.valAcc}`);
  // Accumulation with BatchNorm: running statistics carry across micro-batches; still learns, still deterministic.
  const a1 = await finetune(cnn(), { ...base, epochs: 2, batchNorm: 'reinsert', accumulate: 2 });
  const a2 = await finetune(cnn(), { ...base, epochs: 2, batchNorm: 'reinsert', accumulate: 2 });
  assert.deepEqual(a1.model.graph.initializers.get('w1')!.data, a2.model.graph.initializers.get('w1')!.data);
  assert.ok(a1.history[1]!.valAcc! > 0.85, `val acc ${a1.history[1]!.valAcc}`);
});

test('checkpoint + resume with 2 replicas and re-inserted BN equals the uninterrupted run (to float rounding)', async () => {
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const ck = join(mkdtempSync(join(tmpdir(), 'shears-rep-ckpt-')), 'ck.onnx');
  const base = { train: synth(256, 1), batch: 64, lr: 0.1, threads: 2, replicas: 2, progress: false as const, seed: 2, epochs: 2, batchNorm: 'reinsert' as const };
  const full = await finetune(cnn(), base);
  await finetune(cnn(), { ...base, checkpoint: ck, stopAfterEpochs: 1 });
  const resumed = await finetune(cnn(), { ...base, resume: ck });
  // Bit-exact without BN; with BN the rebuilt training graph may sum gradient contributions in another order.
  for (const [k, t] of full.model.graph.initializers) {
    const a = t.data as Float32Array;
    const c = resumed.model.graph.initializers.get(k)!.data as Float32Array;
    assert.equal(c.length, a.length, k);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(c[i]! - a[i]!) <= 1e-5 * (1 + Math.abs(a[i]!)), `${k}[${i}]: ${c[i]} vs ${a[i]}`);
  }
});

test('distillation in the trainer: teacher probabilities tabled once (no augmentation) or run per step (augmentation)', async () => {
  const base = { train: synth(480, 1), val: synth(150, 2), batch: 32, lr: 0.1, threads: 2, replicas: 2, progress: false as const, seed: 5, epochs: 2 };
  // A teacher that learned the task, and a student started from scratch.
  const teacher = (await finetune(cnn(), { ...base, epochs: 3 })).model;
  for (const augment of [undefined, { flip: true }]) {
    const r = await finetune(cnn(), { ...base, teacher, kdWeight: 0.7, ...(augment ? { augment } : {}) });
    assert.ok(r.history[1]!.valAcc! > 0.9, `val acc ${r.history[1]!.valAcc} (augment ${JSON.stringify(augment)})`);
  }
  // A teacher whose class count differs from the student's is refused.
  const wrong = cloneModel(teacher);
  const wf = wrong.graph.initializers.get('w2')!;
  wrong.graph.initializers.set('w2', { ...wf, dims: [2, 24], data: (wf.data as Float32Array).slice(0, 48) });
  wrong.graph.initializers.set('b2', { dtype: DataType.FLOAT, dims: [2], data: new Float32Array(2) });
  await assert.rejects(finetune(cnn(), { ...base, teacher: wrong }), /the teacher has 2 outputs per sample, the model 3/);
});

test('bad input: a batch that does not split evenly; a replica whose session fails is reported, not hung', async () => {
  const model = cnn();
  const tg = await buildTrainingGraph(cloneModel(model), { batch: 16, loss: { ce: {} }, inputShapes: { input: [16, 1, 8, 8] } });
  const sg = stepGraphOf(tg, tg.model, { input: 'input', sampleDims: [1, 8, 8], classes: 3 });
  await assert.rejects(createStepRunner(sg, { batch: 32, replicas: 3 }), /does not split into 3/);
  await assert.rejects(createStepRunner(sg, { batch: 32, replicas: 1, accumulate: 3 }), /does not split into 1 replica\(s\) of 3 equal micro-batches/);
  await assert.rejects(finetune(model, { train: synth(96, 1), batch: 32, replicas: 3, epochs: 1, progress: false }), /replicas 3 must be a positive integer dividing the batch of 32/);
  // A training graph onnxruntime cannot load (an unknown op): each worker reports it.
  const bad = new GraphBuilder('bad');
  bad.input('input', [16, 1, 8, 8]);
  bad.node('NoSuchOp', ['input'], {}, { output: 'y' });
  bad.output('y');
  await assert.rejects(createStepRunner({ ...sg, model: bad.model(17) }, { batch: 32, replicas: 2 }), /training replica \d: onnxruntime cannot load the model/);
});

test('default replicas: one per core up to 4, slices of at least 32 samples', () => {
  assert.equal(defaultReplicas(128, 2), 2);
  assert.equal(defaultReplicas(128, 1), 1);
  assert.equal(defaultReplicas(128, 16), 4);
  assert.equal(defaultReplicas(32, 8), 1);
  assert.equal(defaultReplicas(96, 8), 2);
  assert.equal(defaultReplicas(100, 8), 2);
  assert.equal(defaultReplicas(127, 8), 1);
});

/** A detector-shaped net exported with a fixed batch of 1: input [1,1,8,8] -> Conv -> Relu -> Conv 1x1 -> Reshape [1, 6, 64]. */
function fixedBatchHead(noise: number): Model {
  const r = rng(3);
  const b = new GraphBuilder('head');
  b.input('input', [1, 1, 8, 8]);
  const f = (dims: number[], s: number) => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: dims.reduce((a, c) => a * c, 1) }, () => (r() - 0.5) * s) });
  const w1 = f([4, 1, 3, 3], 0.8);
  const n = rng(11);
  const w1d = w1.data as Float32Array;
  for (let i = 0; i < w1d.length; i++) w1d[i]! += (n() - 0.5) * noise;
  const h = b.node('Relu', [b.node('Conv', ['input', b.init('w1', w1), b.init('b1', f([4], 0.1))], { pads: [1, 1, 1, 1] })]);
  const y = b.node('Conv', [h, b.init('w2', f([6, 4, 1, 1], 0.8)), b.init('b2', f([6], 0.1))]);
  b.node('Reshape', [y, b.init('shape', { dtype: DataType.INT64, dims: [3], data: BigInt64Array.from([1n, 6n, 64n]) })], {}, { output: 'boxes' });
  b.output('boxes');
  return b.model(17);
}

test('match-teacher: an unlabelled, fixed-batch, non-classifier model learns its teacher\'s outputs (on a rebatched copy)', async () => {
  const unlabelled = (n: number, seed: number) => {
    const d = synth(n, seed);
    return { x: d.x, sampleDims: d.sampleDims, n: d.n };
  };
  const teacher = fixedBatchHead(0);
  const base = { train: unlabelled(256, 1), val: unlabelled(40, 2), batch: 8, replicas: 2, threads: 2, lr: 0.05, progress: false as const, seed: 1 };
  const r = await finetune(fixedBatchHead(1), { ...base, teacher, epochs: 4, lr: 0.1 });
  assert.equal(r.initialValAcc, undefined);
  const before = r.initialValRelMse!;
  const after = r.history.at(-1)!.valRelMse!;
  assert.ok(before > 0.05, `the perturbed student starts away from the teacher (${before})`);
  assert.ok(after < 0.3 * before, `relMSE ${before} -> ${after}`);
  assert.equal(r.history.at(-1)!.trainAcc, undefined);
  // It trained on a rebatched copy (one run per micro-batch); the exported model keeps the fixed-batch contract.
  assert.equal(r.rebatched, 1);
  assert.deepEqual(r.model.graph.inputs.find((i) => i.name === 'input')!.type!.shape, [1, 1, 8, 8]);
  assert.deepEqual(r.model.graph.outputs.find((o) => o.name === 'boxes')!.type!.shape, [1, 6, 64]);
  const one = { dtype: DataType.FLOAT, dims: [1, 1, 8, 8], data: Float32Array.from(base.val.x.subarray(0, 64)) };
  assert.deepEqual((await runOnce(r.model, { input: one })).boxes!.dims, [1, 6, 64]);
  // The same steps run per sample and accumulated (an explicit --accumulate keeps the static batch): the same
  // gradients, so the same weights up to float rounding.
  const acc = await finetune(fixedBatchHead(1), { ...base, teacher, epochs: 2, lr: 0.1, accumulate: 4 });
  const reb = await finetune(fixedBatchHead(1), { ...base, teacher, epochs: 2, lr: 0.1 });
  assert.equal(acc.rebatched, undefined);
  assert.equal(reb.rebatched, 1);
  for (const k of ['w1', 'b1', 'w2', 'b2']) {
    const a = acc.model.graph.initializers.get(k)!.data as Float32Array, b = reb.model.graph.initializers.get(k)!.data as Float32Array;
    let d = 0;
    for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
    assert.ok(d < 1e-4, `${k}: accumulated per sample vs rebatched differ by ${d}`);
  }
  // Matching an intermediate tensor (the Relu before the last conv) instead of the output; outputs stay as they were.
  const relu = teacher.graph.nodes.find((n) => n.opType === 'Relu')!.outputs[0]!;
  const mid = await finetune(fixedBatchHead(1), { ...base, teacher, epochs: 4, lr: 0.1, matchOutput: relu });
  assert.ok(mid.history.at(-1)!.valRelMse! < 0.5 * mid.initialValRelMse!, `${mid.initialValRelMse} -> ${mid.history.at(-1)!.valRelMse}`);
  assert.deepEqual(mid.model.graph.outputs.map((o) => o.name), ['boxes']);
  await assert.rejects(finetune(fixedBatchHead(1), { ...base, teacher, epochs: 1, matchOutput: 'nope' }), /'nope' is not a value of the model/);
  // A matched value that no output reads (as the detector default's distillation target) survives the rebatching.
  const withSide = (m: Model) => {
    const c = cloneModel(m);
    const r = c.graph.nodes.find((n) => n.opType === 'Relu')!.outputs[0]!;
    c.graph.nodes.push({ name: 'side', opType: 'Sigmoid', domain: '', inputs: [r], outputs: ['side'], attrs: new Map() });
    return c;
  };
  const side = await finetune(withSide(fixedBatchHead(1)), { ...base, teacher: withSide(teacher), epochs: 1, lr: 0.1, matchOutput: 'side' });
  assert.equal(side.rebatched, 1);
  assert.ok(side.history.at(-1)!.valRelMse! < side.initialValRelMse!);
  // Without a teacher there is nothing to train on; a batch that cannot be split into samples of 1 is refused.
  await assert.rejects(finetune(fixedBatchHead(1), { ...base, epochs: 1 }), /training data needs labels|give a teacher/);
  await assert.rejects(finetune(fixedBatchHead(1), { ...base, teacher, epochs: 1, accumulate: 2 }), /fixed batch of 1/);
  // BatchNorm re-insertion needs batch statistics: the rebatched copy has them.
  const bn = await finetune(fixedBatchHead(1), { ...base, teacher, epochs: 1, batchNorm: 'reinsert' });
  assert.deepEqual(bn.model.graph.inputs.find((i) => i.name === 'input')!.type!.shape, [1, 1, 8, 8]);
});

test('process exit while both replicas are inside onnxruntime ends cleanly (no SIGABRT); one step at a time', async () => {
  const { spawnSync } = await import('node:child_process');
  const url = (p: string) => new URL(p, import.meta.url).href;
  // A step of 2 x 2048 samples, and process.exit at a random moment of the next one.
  const script = `
    const { buildTrainingGraph } = await import(${JSON.stringify(url('../src/autodiff/training.js'))});
    const { createStepRunner, stepGraphOf } = await import(${JSON.stringify(url('../src/train/step-runner.js'))});
    const { cnn } = await import(${JSON.stringify(url('./train_fixtures.js'))});
    const tg = await buildTrainingGraph(cnn(), { batch: 2048, loss: { ce: {} }, inputShapes: { input: [2048, 1, 8, 8] } });
    const runner = await createStepRunner(stepGraphOf(tg, tg.model, { input: 'input', sampleDims: [1, 8, 8], classes: 3 }), { batch: 4096, replicas: 2, threads: 2 });
    runner.x.fill(0.5);
    const t0 = performance.now();
    await runner.step();
    const dt = performance.now() - t0;
    void runner.step();
    setTimeout(() => process.exit(7), Math.random() * dt);`;
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const file = join(mkdtempSync(join(tmpdir(), 'shears-exit-')), 'exit-mid-step.mjs');
  writeFileSync(file, script);
  for (let i = 0; i < 4; i++) {
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.signal, null, `run ${i}: ${r.stderr}`);
    assert.equal(r.status, 7, `run ${i}: ${r.stderr}`);
  }
  // In this process: a second step while one runs is refused; after release, steps are refused.
  const tg = await buildTrainingGraph(cnn(), { batch: 16, loss: { ce: {} }, inputShapes: { input: [16, 1, 8, 8] } });
  const runner = await createStepRunner(stepGraphOf(tg, tg.model, { input: 'input', sampleDims: [1, 8, 8], classes: 3 }), { batch: 32, replicas: 2, threads: 2 });
  const first = runner.step();
  await assert.rejects(runner.step(), /while a step is running/);
  await first;
  await runner.release();
  await assert.rejects(runner.step(), /after release/);
});
