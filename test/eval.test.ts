/** Evaluation: accuracy of the fixture model on the demo set, fidelity metrics, fixed-batch models, CLI exit codes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDataset } from '../src/data/spec.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor } from '../src/ir/tensor.js';
import { FidelityMeter } from '../src/metrics/fidelity.js';
import { AccuracyMeter } from '../src/metrics/accuracy.js';
import { evaluate } from '../src/metrics/evaluate.js';
import { loadModel } from '../src/onnx/io.js';
import type { Model } from '../src/ir/graph.js';
import { npyBytes, tempDir } from './data-helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURE = join(root, 'test', 'fixtures', 'models', 'fmnist_resnet20.onnx');
const DEMO = join(root, 'data', 'fashion-mnist-demo');
const FMNIST = { scale: 1 / 255, mean: [0.286], std: [0.353] };

test('fmnist_resnet20 on the 1000-image demo test set: 94.00% top-1, 100% top-5', async () => {
  // Measured once with this code (the full 10k test set gives 93.42%, the published figure); the demo set is the
  // first 1000 test images. Any change in decoding, normalisation or argmax would move this count.
  const model = loadModel(FIXTURE);
  const r = await evaluate(model, openDataset(DEMO, FMNIST), { batchSize: 100, threads: 1 });
  assert.equal(r.samples, 1000);
  assert.equal(r.accuracy?.output, 'logits');
  assert.equal(r.accuracy?.correct1, 940);
  assert.equal(r.accuracy?.correct5, 1000);
  assert.deepEqual(r.preprocess, { ...FMNIST, layout: 'nchw', color: 'gray' });
  // without normalisation the model is far worse: preprocessing really is applied
  const raw = await evaluate(model, openDataset(DEMO), { batchSize: 250, threads: 1, limit: 500 });
  assert.equal(raw.samples, 500);
  assert.ok(raw.accuracy!.top1 < 0.5, String(raw.accuracy!.top1));
});

function perturbed(model: Model, eps: number): Model {
  // scale the classifier weights' off-diagonal structure: add a fixed pattern to the last Gemm/MatMul weight
  const g = model.graph;
  const name = [...g.initializers.keys()].filter((k) => g.initializers.get(k)!.dims.length === 2).pop()!;
  const t = g.initializers.get(name)!;
  const d = Float32Array.from(t.data as Float32Array, (v, i) => v + eps * Math.sin(i * 12.9898));
  const inits = new Map(g.initializers);
  inits.set(name, { ...t, data: d });
  return { ...model, graph: { ...g, initializers: inits } };
}

test('fidelity: a model against itself is exact; against a perturbed copy it degrades monotonically', async () => {
  const model = loadModel(FIXTURE);
  const ds = openDataset(DEMO, FMNIST);
  const self = await evaluate(model, ds, { reference: model, limit: 200, batchSize: 100, threads: 1 });
  const f = self.fidelity!['logits']!;
  assert.deepEqual(f, { samples: 200, agreement: 1, kl: 0, cosine: 1, relMse: 0, maxAbs: 0 });
  const small = (await evaluate(perturbed(model, 0.05), ds, { reference: model, limit: 200, batchSize: 100, threads: 1 })).fidelity!['logits']!;
  const big = (await evaluate(perturbed(model, 0.5), ds, { reference: model, limit: 200, batchSize: 100, threads: 1 })).fidelity!['logits']!;
  assert.ok(small.kl! > 0 && small.kl! < big.kl!, `${small.kl} ${big.kl}`);
  assert.ok(small.cosine! < 1 && big.cosine! < small.cosine!);
  assert.ok(small.relMse > 0 && big.relMse > small.relMse);
  assert.ok(big.agreement! < 1 && big.agreement! <= small.agreement!);
});

test('fidelity and accuracy meters on hand-computed values', () => {
  const m = new FidelityMeter('y');
  // sample 0: identical logits; sample 1: y = [0, 0], ref = [0, ln 3] -> p_ref = (1/4, 3/4), p_y = (1/2, 1/2)
  m.add(floatTensor([2, 2], [1, 2, 0, 0]), floatTensor([2, 2], [1, 2, 0, Math.log(3)]));
  const r = m.report();
  const kl1 = 0.75 * Math.log(0.75 / 0.5) + 0.25 * Math.log(0.25 / 0.5);
  assert.ok(Math.abs(r.kl! - kl1 / 2) < 1e-6, String(r.kl));
  assert.equal(r.agreement, 0.5); // sample 1: argmax 0 (first of a tie) vs the reference's 1
  const l3 = Math.fround(Math.log(3));
  assert.ok(Math.abs(r.relMse - l3 * l3 / (1 + 4 + l3 * l3)) < 1e-6);
  assert.equal(r.cosine, (1 + 0) / 2); // sample 1: y is the zero vector -> cosine 0
  const a = new AccuracyMeter();
  a.add(floatTensor([3, 6], [0, 9, 1, 2, 3, 4, /**/ 5, 4, 3, 2, 1, 0, /**/ 1, 1, 1, 1, 1, 1]), Int32Array.from([1, 5, 3]));
  // row 0: class 1 is top; row 1: class 5 ranks 6th; row 2: all tie, class 3 ranks 4th (earlier ties count)
  assert.deepEqual(a.report(), { samples: 3, classes: 6, top1: 1 / 3, correct1: 1, top5: 2 / 3, correct5: 2 });
});

test('a model with a fixed batch dimension gets padded batches; tensor samples from npy pass through', async () => {
  const b = new GraphBuilder();
  const x = b.input('x', [4, 3]);
  const w = b.init('w', floatTensor([3, 2], [1, 0, 0, 1, 1, 1]));
  b.output(b.node('MatMul', [x, w], {}, { output: 'y' }), [4, 2]);
  const model = b.model();
  const dir = tempDir();
  writeFileSync(join(dir, 'x.npy'), npyBytes('<f4', [6, 3], [1, 0, 0, 0, 1, 0, 0, 0, 1, 2, 0, 0, 0, 2, 1, 5, 0, 0]));
  writeFileSync(join(dir, 'y.npy'), npyBytes('<i8', [6], [0, 1, 1, 0, 1, 1]));
  const r = await evaluate(model, openDataset(`npy:${join(dir, 'x.npy')},${join(dir, 'y.npy')}`), { batchSize: 32 });
  // scores: [1,0] [0,1] [1,1] [2,0] [0,3] [5,0]; argmax (ties -> first): 0 1 0 0 1 0 vs labels 0 1 1 0 1 1
  assert.equal(r.batchSize, 4);
  assert.equal(r.samples, 6);
  assert.equal(r.accuracy!.correct1, 4);
});

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const res = spawnSync(process.execPath, [join(root, 'dist', 'src', 'cli', 'main.js'), ...args], { encoding: 'utf8' });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

test('shears eval: --json report, exit 2 with one line on bad input', () => {
  const ok = cli(['eval', FIXTURE, '--data', DEMO, '--limit', '200', '--batch', '100', '--threads', '1', '--scale', '1/255', '--mean', '0.2860', '--std', '0.3530', '--json']);
  assert.equal(ok.status, 0, ok.stderr);
  const rep = JSON.parse(ok.stdout);
  assert.equal(rep.samples, 200);
  assert.equal(rep.accuracy.correct1, 186); // measured: 186 of the first 200 demo images (93.0%)
  assert.equal(rep.preprocessFrom, 'flags');
  for (const args of [
    ['eval', FIXTURE, '--data', join(DEMO, 'nothing-here')],
    ['eval', FIXTURE, '--data', `${DEMO}@valid`],
    ['eval', FIXTURE, '--data', DEMO, '--mean', 'abc'],
    ['eval', FIXTURE, '--data', DEMO, '--limit', '0'],
    ['eval', FIXTURE, '--data', DEMO, '--resize', '32'],
    ['eval', join(DEMO, 'README.txt'), '--data', DEMO],
  ]) {
    const r = cli(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    const errLines = r.stderr.split('\n').filter((l) => l.startsWith('shears: error:'));
    assert.equal(errLines.length, 1, r.stderr);
  }
});
