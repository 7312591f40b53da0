/** `shears repair` and `shears prune --repair`: JSON stage scores, exit code 2 on bad input. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURE = join(root, 'test', 'fixtures', 'models', 'fmnist_resnet20.onnx');
const DEMO = join(root, 'data', 'fashion-mnist-demo');
const PRE = ['--scale', '1/255', '--mean', '0.2860', '--std', '0.3530'];

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [join(root, 'dist', 'src', 'cli', 'main.js'), ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('shears prune --pattern 2:4 --repair obs: the JSON report scores dense, pruned and repaired', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-repair-'));
  const out = join(dir, 'nm.onnx');
  const r = cli(['prune', FIXTURE, '--pattern', '2:4', '-o', out, '--repair', 'obs', '--calib', `${DEMO}@train`, '--calib-size', '64', ...PRE,
    '--data', DEMO, '--data-limit', '200', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const rep = JSON.parse(r.stdout).repair;
  assert.deepEqual(rep.methods, ['obs']);
  assert.equal(rep.steps[0].calibSamples, 64);
  const s = rep.scores;
  assert.equal(s.dense.accuracy.correct1, 186); // the first 200 demo images (see eval.test.ts)
  assert.ok(s.repaired.accuracy.top1 > s.pruned.accuracy.top1 + 0.1, `${s.pruned.accuracy.top1} -> ${s.repaired.accuracy.top1}`);
  assert.ok(s.repaired.fidelity.logits.relMse < s.pruned.fidelity.logits.relMse);
  // the repaired model keeps its 2:4 masks and its preprocessing: eval needs no flags and agrees
  const e = cli(['eval', out, '--data', DEMO, '--limit', '200', '--json']);
  assert.equal(e.status, 0, e.stderr);
  assert.equal(JSON.parse(e.stdout).accuracy.correct1, s.repaired.accuracy.correct1);
  assert.doesNotMatch(e.stderr, /warning/);
});

test('shears repair: bad input exits 2 with one error line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-repair-'));
  for (const args of [
    ['repair', FIXTURE, '--dense', FIXTURE, '-o', join(dir, 'x.onnx')], // no --calib
    ['repair', FIXTURE, '--dense', FIXTURE, '-o', join(dir, 'x.onnx'), '--calib', DEMO, '--method', 'magic'],
    ['repair', FIXTURE, '--dense', FIXTURE, '--calib', DEMO], // no -o
    ['prune', FIXTURE, '--sparsity', '0.5', '-o', join(dir, 'y.onnx'), '--calib-seed', '3'], // needs --repair
    ['repair', FIXTURE, '--dense', FIXTURE, '-o', join(dir, 'x.onnx'), '--calib', join(dir, 'missing')],
  ]) {
    const r = cli(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('shears: error:')).length, 1, r.stderr);
  }
});
