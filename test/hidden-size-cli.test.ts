/** --hidden-size through the CLI: it prunes the residual stream where it can, and says so where it cannot. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder, F } from '../src/ir/builder.js';
import { floatTensor, numel } from '../src/ir/tensor.js';
import { encodeModel } from '../src/onnx/codec.js';
import { shears } from './cli-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'shears-hidden-'));
let seed = 7;
const w = (dims: number[]) => floatTensor(dims, Array.from({ length: numel(dims) }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5));

/** x -> MatMul -> LayerNorm -> MLP (residual) -> LayerNorm -> head; `streamIsOutput` also returns the stream. */
function model(streamIsOutput: boolean): string {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 5, 8]);
  const h = b.node('MatMul', [x, b.init('emb', w([8, 16]))]);
  const n1 = b.node('LayerNormalization', [h, b.init('g1', w([16])), b.init('b1', w([16]))], { axis: -1, epsilon: F(1e-5) });
  const r = b.node('Add', [h, b.node('MatMul', [b.node('Relu', [b.node('MatMul', [n1, b.init('up', w([16, 32]))])]), b.init('down', w([32, 16]))])]);
  const n2 = b.node('LayerNormalization', [r, b.init('g2', w([16])), b.init('b2', w([16]))], { axis: -1, epsilon: F(1e-5) });
  const y = b.node('MatMul', [n2, b.init('head', w([16, 4]))], {}, { output: 'y' });
  b.output(y, [1, 5, 4]);
  if (streamIsOutput) b.output(r, [1, 5, 16]);
  const p = join(dir, `m${streamIsOutput ? 'out' : ''}.onnx`);
  writeFileSync(p, encodeModel(b.model(17)));
  return p;
}

test('--hidden-size prunes the residual stream through LayerNormalization; without it the stream stays', () => {
  const m = model(false);
  const plain = shears(['prune', m, '-o', join(dir, 'a.onnx'), '--structured', '--ratio', '0.5', '--round-to', '1', '--json']);
  assert.equal(plain.code, 0, plain.stderr);
  const hidden = shears(['prune', m, '-o', join(dir, 'b.onnx'), '--structured', '--ratio', '0.5', '--round-to', '1', '--hidden-size', '--json']);
  assert.equal(hidden.code, 0, hidden.stderr);
  const a = JSON.parse(plain.stdout) as { prunableChannels: number }, c = JSON.parse(hidden.stdout) as { prunableChannels: number };
  assert.equal(a.prunableChannels, 32, 'the MLP neurons only');
  assert.equal(c.prunableChannels, 48, 'and the 16 hidden features');
  assert.doesNotMatch(hidden.stderr, /made nothing more prunable/);
});

test('--hidden-size where the stream is frozen elsewhere (a model output) warns instead of silently doing nothing', () => {
  const r = shears(['prune', model(true), '-o', join(dir, 'c.onnx'), '--structured', '--ratio', '0.5', '--round-to', '1', '--hidden-size']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /--hidden-size made nothing more prunable/);
});
