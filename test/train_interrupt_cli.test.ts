/**
 * Ctrl-C during `shears finetune` and `shears prune --finetune-epochs`, as a user sends it: the CLI runs as its own
 * process and gets SIGINT once training has printed progress. It stops at a step boundary, writes the checkpoint,
 * prints how to resume, exits with 130, leaves the output untouched and no temporary files behind.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { saveModel } from '../src/onnx/io.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { CLI } from './cli-helpers.js';
import { npyBytes } from './data-helpers.js';
import { cnn, synth } from './train_fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'shears-intcli-'));
const data = synth(960, 1);
writeFileSync(join(dir, 'x.npy'), npyBytes('<f4', [data.n, 1, 8, 8], data.x));
writeFileSync(join(dir, 'y.npy'), npyBytes('<i8', [data.n], data.labels!));
const model = join(dir, 'model.onnx');
saveModel(cnn(), model);
// 30 steps of 32 samples per epoch, 200 epochs: far longer than the test waits.
const train = ['--train', `npy:${join(dir, 'x.npy')},${join(dir, 'y.npy')}`];

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/**
 * Runs the CLI and sends SIGINT once stderr shows a training progress line; with `twice`, a second SIGINT once
 * the CLI says it is stopping.
 */
function interrupted(args: string[], twice = false): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let sent = 0;
    const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (sent === 0 && /epoch \d+\/\d+ \[/.test(stderr)) {
        sent = 1;
        p.kill('SIGINT');
      } else if (twice && sent === 1 && /stopping at the next training step/.test(stderr)) {
        sent = 2;
        p.kill('SIGINT');
      }
    });
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

const temps = () => readdirSync(dir).filter((n) => n.includes('.shears-tmp-'));
/** Steps done by the run a checkpoint holds. */
const position = (ckpt: string, stepsPerEpoch: number) => {
  const { info } = loadCheckpoint(ckpt);
  return info.epoch * stepsPerEpoch + (info.step ?? 0);
};

test('shears finetune: SIGINT stops at a step, writes OUT.ckpt.onnx, prints the --resume command, exits 130; the printed command resumes from it', async () => {
  const out = join(dir, 'out.onnx');
  writeFileSync(out, 'the previous output');
  const args = ['finetune', model, ...train, '--batch', '32', '--replicas', '2', '--threads', '2', '--epochs', '200', '-o', out];
  const r = await interrupted(args);
  assert.equal(r.code, 130, r.stderr);
  const ckpt = join(dir, 'out.ckpt.onnx');
  assert.ok(existsSync(ckpt), r.stderr);
  const at = position(ckpt, 30);
  assert.ok(at >= 10, `stopped after ${at} steps`);
  assert.match(r.stderr, /shears: interrupted: training stopped after \d+ step\(s\) of epoch \d+; checkpoint written to .*out\.ckpt\.onnx/);
  assert.ok(r.stderr.includes(`add --resume ${ckpt} to the same command`), r.stderr);
  assert.equal(readFileSync(out, 'utf8'), 'the previous output');
  assert.deepEqual(temps(), []);
  // The printed command is the same one with --resume; run with --checkpoint naming the same file, it continues
  // from the checkpoint and checkpoints to it again.
  const line = r.stderr.split('\n').find((l) => l.startsWith('  shears finetune '))!;
  assert.deepEqual(line.trim().split(' ').slice(1), [...args, '--resume', ckpt]);
  const again = await interrupted([...args, '--checkpoint', ckpt, '--resume', ckpt]);
  assert.equal(again.code, 130, again.stderr);
  assert.ok(position(ckpt, 30) > at, 'the resumed run went on from the checkpoint');
  assert.equal(readFileSync(out, 'utf8'), 'the previous output');
  assert.deepEqual(temps(), []);
});

test('shears finetune: a second SIGINT while stopping still exits 130 and leaves no temporary files', async () => {
  const out = join(dir, 'twice.onnx');
  const r = await interrupted(['finetune', model, ...train, '--batch', '32', '--replicas', '2', '--threads', '2', '--epochs', '200', '-o', out], true);
  assert.equal(r.code, 130, r.stderr);
  assert.equal(r.signal, null);
  assert.match(r.stderr, /aborted; no checkpoint written|shears: interrupted: /);
  assert.ok(!existsSync(out));
  assert.deepEqual(temps(), []);
});

test('shears prune --finetune-epochs: SIGINT leaves the pruned model and prints a `shears finetune OUT ... --resume CKPT` command that resumes', async () => {
  const pruned = join(dir, 'pruned.onnx');
  const r = await interrupted(['prune', model, '--sparsity', '0.5', '-o', pruned, '--finetune-epochs', '200', ...train, '--finetune-batch', '32', '--finetune-replicas', '2']);
  assert.equal(r.code, 130, r.stderr);
  const ckpt = join(dir, 'pruned.ckpt.onnx');
  const at = position(ckpt, 30);
  assert.ok(existsSync(pruned), 'the pruned model stays');
  assert.match(r.stderr, /holds the pruned model, not fine-tuned/);
  const line = r.stderr.split('\n').find((l) => l.startsWith('  shears finetune '))!;
  const final = join(dir, 'pruned.finetuned.onnx');
  assert.equal(line.trim(), `shears finetune ${pruned} ${train.join(' ')} --epochs 200 --batch 32 --replicas 2 --teacher ${model} --resume ${ckpt} -o ${final}`);
  assert.deepEqual(temps(), []);
  const again = await interrupted(line.trim().split(' ').slice(1));
  assert.equal(again.code, 130, again.stderr);
  assert.ok(position(join(dir, 'pruned.finetuned.ckpt.onnx'), 30) > at, 'the printed command resumed from the checkpoint');
  assert.ok(!existsSync(final));
  assert.deepEqual(temps(), []);
});
