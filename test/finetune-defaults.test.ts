/**
 * Defaults of fine-tuning after pruning (issue 13): distillation from the dense model is on unless `--no-kd`,
 * BatchNorm is re-inserted where the exporter folded it (detected on the network, reported), the help says so,
 * and `--save-recipe` records the choices that ran.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor, numel } from '../src/ir/tensor.js';
import { detectFoldedBatchNorm } from '../src/train/bn.js';
import { loadModel } from '../src/onnx/io.js';
import { cloneModel } from '../src/ir/clone.js';
import { pruneStructured } from '../src/prune/structured/index.js';
import { finetuneChoices } from '../src/pipeline/finetune.js';
import type { FinetuneStep } from '../src/pipeline/steps.js';
import { parseRecipe } from '../src/pipeline/recipe.js';
import { FIXTURE_MODEL, shears } from './cli-helpers.js';
import { rng } from './gradcheck.js';

/** Two 3x3 convs; `bn`: each followed by BatchNormalization (as trained), else with a bias feeding Relu (BN folded). */
function net(o: { bn?: boolean; bias?: boolean; prefix?: string } = {}): Model {
  const r = rng(3);
  const b = new GraphBuilder('net');
  const f = (dims: number[], s = 0.5) => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: numel(dims) }, () => (r() - 0.5) * s) });
  const pos = (dims: number[]) => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: numel(dims) }, () => 0.5 + r()) });
  b.input('input', ['N', 1, 8, 8]);
  let h = 'input';
  for (const [i, [cout, cin]] of [[6, 1], [8, 6]].entries()) {
    const bias = o.bias !== false && !o.bn ? [b.init(`b${i}`, f([cout!], 0.2))] : [];
    h = b.node('Conv', [h, b.init(`w${i}`, f([cout!, cin!, 3, 3])), ...bias], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name: `${o.prefix ?? ''}conv${i}` });
    if (o.bn) h = b.node('BatchNormalization', [h, b.init(`s${i}`, pos([cout!])), b.init(`bb${i}`, f([cout!])), b.init(`m${i}`, f([cout!])), b.init(`v${i}`, pos([cout!]))]);
    h = b.node('Relu', [h]);
  }
  h = b.node('Flatten', [b.node('GlobalAveragePool', [h])]);
  b.node('Gemm', [h, b.init('wf', f([3, 8])), b.init('bf', f([3], 0.1))], { transB: 1 }, { output: 'logits' });
  b.output('logits');
  return b.model(17);
}

test('detectFoldedBatchNorm: a BN-folded network (conv bias into Relu, no BN) is detected; one with BN, without biases or without matching statistics is not', () => {
  const folded = net();
  assert.deepEqual(detectFoldedBatchNorm(folded, folded), { folded: true, convs: 2, withStatistics: 2 });
  const withBn = net({ bn: true });
  assert.deepEqual(detectFoldedBatchNorm(withBn, withBn), { folded: false, reason: 'the model has BatchNormalization nodes' });
  const noBias = net({ bias: false });
  assert.deepEqual(detectFoldedBatchNorm(noBias, noBias), { folded: false, reason: 'no Conv with a bias feeds an activation directly' });
  // Statistics come from the reference's conv of the same name: another network's names match none.
  assert.deepEqual(detectFoldedBatchNorm(folded, net({ prefix: 'other/' })), { folded: false, reason: 'the dense model\'s statistics match only 0 of 2 convs' });
});

test('finetuneChoices: after a prune step kd is on and BN re-inserted on a BN-folded net; options given win; without a prune step kd stays off, BN is re-inserted only with the original given', () => {
  const folded = net();
  const step: FinetuneStep = { kind: 'finetune', epochs: 1, train: 'x' };
  assert.deepEqual(finetuneChoices(folded, step, folded, { afterPrune: true }),
    { kd: true, kdDefault: true, bn: 'reinsert', bnDefault: true, bnLine: 'BatchNorm: re-inserted after 2 convs (the exporter folded it)', kdNote: ' (the default after pruning; --no-kd turns it off)', optimizer: 'sgd', lr: 0.02, batch: 128, lrNote: 'learning rate 0.02 (the default when distilling with BatchNorm)' });
  const off = finetuneChoices(folded, { ...step, kd: false, bn: 'none' }, folded, { afterPrune: true });
  assert.deepEqual([off.kd, off.kdDefault, off.bn, off.bnDefault, off.lr, off.lrNote], [false, false, 'none', false, 0.01, '']);
  // distilled but without BatchNorm (asked): the plain CNN rate; a given rate wins, without a note
  assert.deepEqual([finetuneChoices(folded, { ...step, kd: true, bn: 'none' }, folded, { afterPrune: true }).lr], [0.01]);
  assert.deepEqual(Object.values((({ lr, lrNote }) => ({ lr, lrNote }))(finetuneChoices(folded, { ...step, lr: 0.005 }, folded, { afterPrune: true }))), [0.005, '']);
  const alone = finetuneChoices(folded, step, folded, {});
  assert.deepEqual([alone.kd, alone.bn], [false, 'none']);
  assert.match(alone.bnLine, /no original model given \(--teacher or --bn-reference\)/);
  // shears finetune with the original given (--teacher, or --bn-reference): BatchNorm re-inserted by default there
  // too; distillation stays as asked.
  const given = finetuneChoices(folded, step, net(), {});
  assert.deepEqual([given.kd, given.bn, given.bnDefault], [false, 'reinsert', true]);
  assert.equal(finetuneChoices(folded, step, folded, { bnReference: net() }).bn, 'reinsert');
  const withBn = net({ bn: true });
  const c = finetuneChoices(withBn, step, withBn, { afterPrune: true });
  assert.deepEqual([c.kd, c.bn, c.bnLine], [true, 'none', 'BatchNorm: none re-inserted (the model has BatchNormalization nodes)']);
  // No BatchNorm at all (none to re-insert): distillation stays off by default (it diverged there), on when asked.
  const noBias = net({ bias: false });
  const n = finetuneChoices(noBias, step, noBias, { afterPrune: true });
  assert.deepEqual([n.kd, n.bn], [false, 'none']);
  assert.match(n.kdNote, /--finetune-kd turns it on/);
  assert.equal(finetuneChoices(noBias, { ...step, kd: true }, noBias, { afterPrune: true }).kd, true);
  // Resuming keeps the checkpoint's BatchNorm; training from scratch is not a case of a folded BN.
  assert.equal(finetuneChoices(folded, { ...step, resume: 'c.onnx' }, folded, { afterPrune: true }).bn, 'none');
  assert.equal(finetuneChoices(folded, { ...step, reinit: true }, folded, { afterPrune: true }).bn, 'none');
});

test('detectFoldedBatchNorm after a repair: the kept channels recorded by the surgery name the original channels the repaired biases no longer match', () => {
  const dense = loadModel(FIXTURE_MODEL);
  const pruned = pruneStructured(dense, { targetMacs: 0.5, importance: 'l2' }).model;
  assert.deepEqual(detectFoldedBatchNorm(pruned, dense), { folded: true, convs: 21, withStatistics: 21 });
  // a repair re-fits the biases (here: moved a little)
  const repaired = cloneModel(pruned);
  for (const n of repaired.graph.nodes) {
    const b = n.opType === 'Conv' && n.inputs[2] ? repaired.graph.initializers.get(n.inputs[2]) : undefined;
    if (b) repaired.graph.initializers.set(n.inputs[2]!, { ...b, data: Float32Array.from(b.data as Float32Array, (v) => v * 1.01 + 1e-3) });
  }
  // the surgery recorded each kept channel's original index in the model (shears.kept_channels): found anyway
  assert.ok(repaired.metadata.has('shears.kept_channels'));
  assert.deepEqual(detectFoldedBatchNorm(repaired, dense), { folded: true, convs: 21, withStatistics: 21 });
  // without that record (a model pruned elsewhere, or an older shears), the repaired biases no longer match
  const bare = cloneModel(repaired);
  bare.metadata.delete('shears.kept_channels');
  assert.equal(detectFoldedBatchNorm(bare, dense).folded, false);
  // a second pruning composes the record: indices into the original, not into the first result
  const twice = pruneStructured(pruned, { targetMacs: 0.5, importance: 'l2' }).model;
  const rec = JSON.parse(twice.metadata.get('shears.kept_channels')!) as Record<string, number[]>;
  const first = JSON.parse(pruned.metadata.get('shears.kept_channels')!) as Record<string, number[]>;
  for (const [k, v] of Object.entries(rec)) for (const j of v) assert.ok(first[k] ? first[k]!.includes(j) : true, `${k}: ${j}`);
  assert.deepEqual(detectFoldedBatchNorm(twice, dense), { folded: true, convs: 21, withStatistics: 21 });
});

test('shears prune --repair lsq --finetune-epochs: BatchNorm re-inserted and distilled by default after the repair too', () => {
  const r = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'rep.onnx'), ...run, '--repair', 'lsq', '--calib', `${DEMO}@train`, '--calib-size', '64'], { timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /distilled from the dense model \(the default after pruning/);
  assert.match(r.stdout, /^BatchNorm: re-inserted after 21 convs \(the exporter folded it\)$/m);
});

test('help: shears prune lists --no-kd and the BatchNorm default; shears finetune says --teacher is off by default', () => {
  const p = shears(['prune', '--help']);
  assert.equal(p.code, 0);
  const help = p.stdout.replace(/\s+/g, ' ');
  assert.match(help, /--finetune-kd \[finetune\] distil from the original \(dense\) model while fine-tuning \(the default after pruning, where the network has or gets BatchNorm, and for a detector: on its pre-decode head\)/);
  assert.match(help, /--no-kd \[finetune\] fine-tune on the labels alone/);
  assert.match(help, /--finetune-bn <mode> .*\(default: after a prune step, reinsert where the exporter folded BatchNorm into the convs \(detected and reported\); else none\)/);
  const f = shears(['finetune', '--help']);
  assert.match(f.stdout.replace(/\s+/g, ' '), /--teacher <onnx> .*\(default: no distillation here;/);
  assert.match(f.stdout.replace(/\s+/g, ' '), /--bn <mode> .*\(default: reinsert where the exporter folded BatchNorm into the convs and the original model is given \(--teacher or --bn-reference; detected and reported\); else none\)/);
});

const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'shears-defaults-'));
const run = ['--structured', '--target-macs', '0.5', '--finetune-epochs', '1', '--finetune-limit', '128', '--finetune-batch', '64',
  '--train', `${DEMO}@train`, '--val', DEMO, '--mean', '0.2860', '--std', '0.3530', '--finetune-threads', '1'];

test('shears prune --finetune-epochs on the BN-folded fmnist_resnet20: distils and re-inserts BatchNorm by default, reports both, the saved recipe records them', () => {
  const recipe = join(dir, 'r.json');
  const r = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'a.onnx'), ...run, '--save-recipe', recipe], { timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^fine-tuned 1 epoch\(s\) on 128 samples in [\d.]+ s: val top-1 [\d.]+% -> [\d.]+%; distilled from the dense model \(the default after pruning; --no-kd turns it off\)$/m);
  assert.match(r.stdout, /^BatchNorm: re-inserted after 21 convs \(the exporter folded it\)$/m);
  const steps = parseRecipe(readFileSync(recipe, 'utf8'), recipe).steps;
  assert.deepEqual(steps[1], { kind: 'finetune', epochs: 1, train: `${DEMO}@train`, val: DEMO, limit: 128, batch: 64, threads: 1, kd: true, bn: 'reinsert' });
});

test('shears prune --finetune-epochs --no-kd --finetune-bn none: neither, as asked', () => {
  const r = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'b.onnx'), ...run, '--no-kd', '--finetune-bn', 'none', '--json'], { timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  const c = JSON.parse(r.stdout).finetune.choices;
  assert.deepEqual(c, { kd: false, kdDefault: false, bn: 'none', bnDefault: false, bnLine: 'BatchNorm: none re-inserted (--finetune-bn none)', kdNote: '', optimizer: 'sgd', lr: 0.01, batch: 64, lrNote: '' });
});

test('finetuneChoices: a transformer (LayerNormalization) fine-tunes with AdamW at 3e-4 by default (SGD at 0.003), a CNN with SGD at 0.02 when distilled with BatchNorm; given options win', () => {
  const b = new GraphBuilder();
  const x = b.input('x', [2, 5, 8]);
  const h = b.node('LayerNormalization', [b.node('MatMul', [x, b.init('w', floatTensor([8, 8], new Array(64).fill(0.1)))]), b.init('g', floatTensor([8], new Array(8).fill(1)))], { axis: -1 });
  const y = b.node('MatMul', [h, b.init('w2', floatTensor([8, 3], new Array(24).fill(0.1)))], {}, { output: 'y' });
  b.output(y, [2, 5, 3]);
  const vit = b.model(17);
  const step: FinetuneStep = { kind: 'finetune', epochs: 1, train: 'x' };
  const c = finetuneChoices(vit, step, vit, { afterPrune: true });
  assert.equal(c.optimizer, 'adamw');
  assert.equal(c.lr, 3e-4);
  assert.equal(c.batch, 64);
  assert.match(c.lrNote!, /^AdamW, learning rate 0.0003, batch 64 \(the default for a transformer/);
  const given = finetuneChoices(vit, { ...step, lr: 0.02 }, vit, { afterPrune: true });
  assert.deepEqual([given.optimizer, given.lr], ['adamw', 0.02]);
  assert.match(given.lrNote, /^AdamW, batch 64 \(the default/);
  const sgd = finetuneChoices(vit, { ...step, optimizer: 'sgd' }, vit, { afterPrune: true });
  assert.deepEqual([sgd.optimizer, sgd.lr], ['sgd', 0.003]);
  assert.match(sgd.lrNote, /^learning rate 0.003, batch 64 \(the default for a transformer/);
  const momentum = finetuneChoices(vit, { ...step, momentum: 0.8 }, vit, { afterPrune: true });
  assert.deepEqual([momentum.optimizer, momentum.lr], ['sgd', 0.003], 'SGD\'s momentum given: SGD');
  assert.equal(finetuneChoices(vit, { ...step, optimizer: 'adamw', lr: 1e-3, batch: 128 }, vit, { afterPrune: true }).lrNote, '', 'nothing by default: no note');
  const cnn = finetuneChoices(net(), step, net(), { afterPrune: true });
  assert.deepEqual([cnn.optimizer, cnn.lr, cnn.batch, cnn.lrNote], ['sgd', 0.02, 128, 'learning rate 0.02 (the default when distilling with BatchNorm)']);
});
