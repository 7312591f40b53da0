/** `shears bench`: the JSON report's fields and consistency, input shapes from --batch, bad arguments. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FIXTURE_MODEL, isUserError, shears } from './cli-helpers.js';

test('bench --json reports median, p90, mean, min over the timed runs with the batch as the dynamic dim', () => {
  const r = shears(['bench', FIXTURE_MODEL, '--batch', '4', '--runs', '5', '--warmup', '1', '--threads', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.deepEqual(j.inputShapes, { input: [4, 1, 28, 28] });
  assert.equal(j.runs, 5);
  assert.equal(j.warmup, 1);
  assert.equal(j.threads, 1);
  for (const k of ['median', 'p90', 'mean', 'min']) assert.ok(Number.isFinite(j[k]) && j[k] > 0, k);
  assert.ok(j.min <= j.median && j.median <= j.p90);
  assert.ok(j.min <= j.mean);
  const t = shears(['bench', FIXTURE_MODEL, '--input-shape', 'input=2x1x28x28', '--runs', '2', '--warmup', '0']);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /median [\d.]+ ms, p90 [\d.]+ ms/);
  assert.match(t.stdout, /input=2x1x28x28/);
});

test('bench: bad arguments exit 2', () => {
  for (const extra of [['--runs', '0'], ['--batch', 'x'], ['--threads', '0'], ['--input-shape', 'nope=1x1x28x28']]) {
    const r = shears(['bench', FIXTURE_MODEL, ...extra]);
    assert.ok(isUserError(r), `${extra.join(' ')}: ${r.code} ${r.stderr}`);
  }
  assert.ok(isUserError(shears(['bench', '/nonexistent.onnx'])));
});
