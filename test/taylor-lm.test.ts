/** Taylor importance on a language model: next-token cross-entropy gradients on token windows (analytic check, CLI). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bindTokens, openTokens } from '../src/data/tokens.js';
import { DataType } from '../src/ir/dtype.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor } from '../src/ir/tensor.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { lmWeightGradients } from '../src/train/lm.js';
import { D, V, lmWeights, tinyLm, writeTokens } from './lm-fixture.js';
import { shears } from './cli-helpers.js';

test('lmWeightGradients: the mean next-token cross-entropy gradients of embedding and head, as computed in float64 by hand', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-taylor-lm-'));
  const { path, ids } = writeTokens(dir, 80);
  const T = 6;
  const data = bindTokens(openTokens(path, { context: T }), tinyLm()).sample(8, 0);
  const g = await lmWeightGradients(tinyLm(), data, { batch: 4, batches: 2 });
  // by hand: per batch of 4 windows, dL/dW = mean over the 4 x T positions of E[x]^T (p - y), dL/dE[x] likewise
  const { E, W } = lmWeights();
  const gW = new Float64Array(D * V);
  const gE = new Float64Array(V * D);
  const starts = (await data.readBatch([0, 1, 2, 3, 4, 5, 6, 7])).x.data as BigInt64Array;
  for (let b = 0; b < 2; b++) {
    const n = 4 * T;
    for (let w = 0; w < 4; w++) {
      const row = b * 4 + w;
      // the window's first token locates it in the stream (the fixture's stream is long enough to be unambiguous)
      const first = Number(starts[row * T]!);
      let s0 = -1;
      for (let s = 0; s + T < ids.length && s0 < 0; s++) {
        let same = true;
        for (let j = 0; j < T; j++) if (ids[s + j] !== Number(starts[row * T + j]!)) same = false;
        if (same) s0 = s;
      }
      assert.ok(s0 >= 0 && ids[s0] === first);
      for (let j = 0; j < T; j++) {
        const x = ids[s0 + j]!;
        const y = ids[s0 + j + 1]!;
        const logits = Array.from({ length: V }, (_, v) => {
          let a = 0;
          for (let d = 0; d < D; d++) a += E[x * D + d]! * W[d * V + v]!;
          return a;
        });
        const m = Math.max(...logits);
        const z = logits.reduce((acc, l) => acc + Math.exp(l - m), 0);
        for (let v = 0; v < V; v++) {
          const dz = (Math.exp(logits[v]! - m) / z - (v === y ? 1 : 0)) / n;
          for (let d = 0; d < D; d++) {
            gW[d * V + v]! += E[x * D + d]! * dz;
            gE[x * D + d]! += W[d * V + v]! * dz;
          }
        }
      }
    }
  }
  const close = (a: Float32Array, b: Float64Array, what: string) => {
    assert.equal(a.length, b.length);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-5 + 1e-4 * Math.abs(b[i]!), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  };
  close(g.get('head')!, gW, 'head');
  close(g.get('embed')!, gE, 'embed');
});

test('shears prune --structured --importance taylor --taylor-data tokens:... ranks a language model\'s MLP neurons', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-taylor-lm-'));
  const { path } = writeTokens(dir, 200);
  const b = new GraphBuilder('mlp_lm');
  const idsIn = b.input('input_ids', ['N', 'T'], DataType.INT64);
  const r = (n: number, k: number) => Array.from({ length: n }, (_, i) => Math.sin(1.7 * i + k));
  b.init('embed', floatTensor([V, 4], r(V * 4, 1)));
  b.init('w1', floatTensor([4, 8], r(32, 2)));
  b.init('w2', floatTensor([8, V], r(8 * V, 3)));
  const h = b.node('Relu', [b.node('MatMul', [b.node('Gather', ['embed', idsIn], { axis: 0 }), 'w1'])]);
  b.node('MatMul', [h, 'w2'], {}, { output: 'logits' });
  b.output('logits', ['N', 'T', V]);
  const model = join(dir, 'lm.onnx');
  saveModel(b.model(17), model);
  const out = join(dir, 'o.onnx');
  const res = shears(['prune', model, '-o', out, '--structured', '--ratio', '0.5', '--round-to', '1', '--importance', 'taylor', '--taylor-data', `tokens:${path},context=8`, '--input-shape', 'input_ids=1x8']);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout + res.stderr, /Taylor importance: next-token cross-entropy gradients over 4 batches of 8 windows of 8 tokens/);
  // half of the 8 hidden neurons removed (and half of the 4 embedding channels): w1 [2, 4], w2 [4, V]
  const pruned = loadModel(out);
  assert.deepEqual(pruned.graph.initializers.get('embed')!.dims, [V, 2]);
  assert.deepEqual(pruned.graph.initializers.get('w1')!.dims, [2, 4]);
  assert.deepEqual(pruned.graph.initializers.get('w2')!.dims, [4, V]);
});
