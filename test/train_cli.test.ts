import assert from 'node:assert/strict';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from '../src/cli/main.js';
import { loadModel } from '../src/onnx/io.js';
import { getMasks } from '../src/sparsity/masks.js';

const dir = mkdtempSync(join(tmpdir(), 'shears-ft-'));
const model = 'test/fixtures/models/fmnist_resnet20.onnx';
const data = ['--train', 'idx:data/fashion-mnist-demo@train', '--val', 'idx:data/fashion-mnist-demo@t10k', '--scale', '1/255', '--mean', '0.286', '--std', '0.353'];

async function capture(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const chunks: string[] = [];
  const errs: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  // node --test reports through stdout with binary chunks: pass those on, keep the command's text.
  process.stdout.write = ((s: unknown, ...rest: unknown[]) => (typeof s === 'string' ? (chunks.push(s), true) : (write as (...a: unknown[]) => boolean)(s, ...rest))) as typeof process.stdout.write;
  process.stderr.write = ((s: unknown, ...rest: unknown[]) => (typeof s === 'string' ? (errs.push(s), true) : (errWrite as (...a: unknown[]) => boolean)(s, ...rest))) as typeof process.stderr.write;
  try {
    const code = await runCli(argv);
    return { code, out: chunks.join(''), err: errs.join('') };
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
  }
}

test('shears finetune: two steps on the demo data (2 replicas), JSON report, model written with preprocessing metadata', async () => {
  const out = join(dir, 'ft.onnx');
  const r = await capture(['finetune', model, ...data, '--limit', '128', '--batch', '64', '--epochs', '1', '--threads', '2', '--replicas', '2', '-o', out, '--json']);
  assert.equal(r.code, 0);
  const rep = JSON.parse(r.out);
  assert.equal(rep.history.length, 1);
  assert.equal(rep.train, 128);
  assert.ok(rep.finalValAcc > 0.85, `val ${rep.finalValAcc}`);
  assert.ok(existsSync(out));
  const m = loadModel(out);
  assert.ok(m.metadata.get('shears.preprocess'));
});

test('shears finetune --gmp keeps masks in the output', async () => {
  const out = join(dir, 'gmp.onnx');
  const r = await capture(['finetune', model, ...data, '--limit', '64', '--batch', '64', '--epochs', '1', '--gmp', '0.5', '--prune-steps', '1', '--threads', '1', '-o', out, '--json']);
  assert.equal(r.code, 0);
  const rep = JSON.parse(r.out);
  assert.equal(rep.mode, 'gmp');
  const masks = getMasks(loadModel(out));
  assert.ok(masks.size > 0);
});

test('shears finetune --objective match-teacher: a pruned model matches the original\'s logits (BatchNorm re-inserted by default with --teacher); JSON reports val relMSE', async () => {
  const pruned = join(dir, 'p70.onnx');
  assert.equal((await capture(['prune', model, '--structured', '--target-macs', '0.7', '--round-to', '16', '-o', pruned])).code, 0);
  const out = join(dir, 'matched.onnx');
  const r = await capture(['finetune', pruned, ...data, '--teacher', model, '--objective', 'match-teacher', '--limit', '512', '--batch', '64',
    '--epochs', '2', '--lr', '0.02', '--threads', '2', '-o', out, '--json']);
  assert.equal(r.code, 0);
  // The original given (--teacher): BatchNorm re-inserted by default on this BN-folded network, and said.
  assert.match(r.err, /BatchNorm: re-inserted after \d+ convs \(the exporter folded it\), statistics from the original model/);
  const rep = JSON.parse(r.out);
  assert.equal(rep.finalValAcc, undefined);
  assert.ok(rep.finalValRelMse < 0.5 * rep.initialValRelMse, `${rep.initialValRelMse} -> ${rep.finalValRelMse}`);
  assert.equal((await capture(['finetune', model, ...data, '--objective', 'regress', '-o', join(dir, 'x.onnx')])).code, 2);
});

test('shears finetune: bad arguments exit 2', async () => {
  assert.equal((await capture(['finetune', model, ...data, '--bn', 'sideways', '-o', join(dir, 'x.onnx')])).code, 2);
  assert.equal((await capture(['finetune', model, ...data, '--gmp', '0.5', '--lottery', '0.5', '-o', join(dir, 'x.onnx')])).code, 2);
  assert.equal((await capture(['finetune', model, ...data, '--optimizer', 'rmsprop', '-o', join(dir, 'x.onnx')])).code, 2);
});

test('shears prune --sparsity 0.5 --finetune-epochs 1: prune then fine-tune in one command, masks kept', async () => {
  const out = join(dir, 'pruned-ft.onnx');
  const r = await capture(['prune', model, '--sparsity', '0.5', '-o', out, '--json', '--finetune-epochs', '1', '--finetune-limit', '128', '--finetune-batch', '64',
    '--train', 'idx:data/fashion-mnist-demo@train', '--val', 'idx:data/fashion-mnist-demo@t10k', '--scale', '1/255', '--mean', '0.286', '--std', '0.353', '--finetune-threads', '1']);
  assert.equal(r.code, 0);
  // --threads is not the fine-tuning's: unused by magnitude pruning, it is an error naming the other flag
  const bad = await capture(['prune', model, '--sparsity', '0.5', '-o', join(dir, 'never.onnx'), '--finetune-epochs', '1', '--finetune-limit', '128',
    '--train', 'idx:data/fashion-mnist-demo@train', '--scale', '1/255', '--threads', '1']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--threads needs .*; the same option of another step: --finetune-threads \(finetune\)/);
  const m = loadModel(out);
  const masks = getMasks(m);
  assert.ok(masks.size > 0);
  let zeros = 0;
  let total = 0;
  for (const [k, mask] of masks) {
    const d = m.graph.initializers.get(k)!.data as Float32Array;
    for (let i = 0; i < mask.length; i++) {
      total++;
      if (!mask[i]) {
        zeros++;
        assert.equal(d[i], 0);
      }
    }
  }
  assert.ok(Math.abs(zeros / total - 0.5) < 0.01);
  assert.ok(m.metadata.get('shears.preprocess'));
});
