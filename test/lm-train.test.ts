/** Language-model fine-tuning on token data (train/lm.ts): the loss and its gradient, learning, distillation, the CLI. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { buildTrainingGraph } from '../src/autodiff/training.js';
import { TARGET } from '../src/autodiff/losses.js';
import { openDataset } from '../src/data/spec.js';
import type { TokenDataset } from '../src/data/tokens.js';
import { floatView, type Tensor } from '../src/ir/tensor.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { createSession } from '../src/runtime/session.js';
import { finetuneLM } from '../src/train/lm.js';
import { tempDir } from './data-helpers.js';
import { isUserError, shears } from './cli-helpers.js';
import { referenceNll, tinyLm, V, writeTokens } from './lm-fixture.js';
import { writeFileSync } from 'node:fs';

const dir = tempDir('shears-lmtrain-');
const { path: BIN, ids } = writeTokens(dir, 300);
/** A learnable stream: mostly id k followed by id (k + 1) mod V. */
const PATTERN = join(dir, 'pattern.bin');
writeFileSync(PATTERN, Uint8Array.from({ length: 2000 }, (_, i) => (i % 11 === 0 ? (i * 5) % V : i % V)));

test('the next-token loss over [B, T, V] is the mean NLL of every position, and its gradient matches finite differences', async () => {
  const model = tinyLm();
  const ds = openDataset(`tokens:${BIN},context=6`) as TokenDataset;
  const pos = [3, 50, 120];
  const b = await ds.readBatch(pos);
  const tg = await buildTrainingGraph(model, { batch: 3, loss: { ce: {} }, inputShapes: { input_ids: [3, 6] } });
  const target = new Float32Array(3 * 6 * V);
  b.targets!.forEach((y, i) => (target[i * V + y] = 1));
  const feeds: Record<string, Tensor> = { input_ids: b.x, [TARGET]: floatView([3, 6, V], target) };
  for (const p of tg.params) feeds[p.name] = p.init;
  const s = await createSession(tg.model, { threads: 1 });
  try {
    const out = await s.run(feeds);
    const loss = Number((out[tg.loss]!.data as Float32Array)[0]);
    const ref = referenceNll(ids, pos, 6);
    assert.ok(Math.abs(loss - ref.nll) < 1e-5, `${loss} vs ${ref.nll}`);
    // central differences of the loss in a few weights of each parameter
    for (const p of tg.params) {
      const g = out[tg.gradOutputs.get(p.name)!]!.data as Float32Array;
      for (const i of [0, 5, p.init.data.length - 1]) {
        const at = async (d: number) => {
          const v = Float32Array.from(p.init.data as Float32Array);
          v[i] += d;
          return Number(((await s.run({ ...feeds, [p.name]: floatView(p.dims, v) }, [tg.loss]))[tg.loss]!.data as Float32Array)[0]);
        };
        const eps = 1e-2;
        const num = ((await at(eps)) - (await at(-eps))) / (2 * eps);
        assert.ok(Math.abs(num - g[i]!) < 2e-3 + 3e-2 * Math.abs(num), `${p.name}[${i}]: analytic ${g[i]} vs numeric ${num}`);
      }
    }
  } finally {
    await s.release();
  }
});

test('fine-tuning learns a patterned stream: the loss goes down and validation bits per byte improve', async () => {
  const train = openDataset(`tokens:${PATTERN},context=8`) as TokenDataset;
  const r = await finetuneLM(tinyLm(), { train, val: train, valWindows: 16, steps: 40, batch: 8, lr: 0.05, seed: 1, threads: 1 });
  assert.equal(r.steps, 40);
  assert.equal(r.losses.length, 40);
  const first = r.losses.slice(0, 5).reduce((a, b) => a + b) / 5;
  const last = r.losses.slice(-5).reduce((a, b) => a + b) / 5;
  assert.ok(last < 0.7 * first, `loss ${first} -> ${last}`);
  assert.ok(r.valAfter!.bitsPerToken < r.valBefore!.bitsPerToken - 0.5, `${r.valBefore!.bitsPerToken} -> ${r.valAfter!.bitsPerToken}`);
  assert.equal(r.valAfter!.unit, 'byte');
  // the returned model is an ordinary model with the trained weights
  assert.notDeepEqual(Array.from(r.model.graph.initializers.get('head')!.data as Float32Array), Array.from(tinyLm().graph.initializers.get('head')!.data as Float32Array));
});

test('distilling from the model itself (weight 1, plain SGD without decay) leaves the weights where they are', async () => {
  const model = tinyLm();
  const train = openDataset(`tokens:${BIN},context=6`) as TokenDataset;
  const r = await finetuneLM(model, { train, steps: 3, batch: 4, teacher: model, kdWeight: 1, kdTemperature: 2, optimizer: { kind: 'sgd', momentum: 0, weightDecay: 0 }, lr: 0.5, threads: 1 });
  for (const k of ['embed', 'head']) {
    const a = r.model.graph.initializers.get(k)!.data as Float32Array;
    const b = model.graph.initializers.get(k)!.data as Float32Array;
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-5, `${k}[${i}] moved: ${b[i]} -> ${a[i]}`);
  }
  // while cross-entropy on the data moves them
  const ce = await finetuneLM(model, { train, steps: 1, batch: 4, optimizer: { kind: 'sgd', momentum: 0, weightDecay: 0 }, lr: 0.5, threads: 1 });
  assert.ok((ce.model.graph.initializers.get('head')!.data as Float32Array).some((v, i) => Math.abs(v - (model.graph.initializers.get('head')!.data as Float32Array)[i]!) > 1e-4));
});

test('shears finetune on token data: --steps, validation bits per byte, refusals of options that do not apply', () => {
  const m = join(dir, 'lm.onnx');
  const out = join(dir, 'lm-ft.onnx');
  saveModel(tinyLm(), m);
  const spec = `tokens:${PATTERN},context=8`;
  const r = shears(['finetune', m, '--train', spec, '--val', spec, '--steps', '30', '--batch', '8', '--lr', '0.05', '--threads', '1', '-o', out, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.lm.steps, 30);
  assert.ok(j.lm.valAfter.bitsPerToken < j.lm.valBefore.bitsPerToken, JSON.stringify(j.lm));
  assert.ok(loadModel(out).graph.initializers.has('head'));
  assert.ok(isUserError(shears(['finetune', m, '--train', spec, '--augment', 'flip', '-o', join(dir, 'never.onnx')])));
  assert.ok(isUserError(shears(['finetune', m, '--train', `tokens:${PATTERN}`, '-o', join(dir, 'never.onnx')])));
});

test('pruning masks stored in the model stay enforced while a language model fine-tunes', async () => {
  const { setMasks } = await import('../src/sparsity/masks.js');
  const model = tinyLm();
  const head = model.graph.initializers.get('head')!;
  const mask = Uint8Array.from({ length: head.data.length }, (_, i) => (i % 3 === 0 ? 0 : 1));
  model.graph.initializers.set('head', { ...head, data: Float32Array.from(head.data as Float32Array, (v, i) => (mask[i] ? v : 0)) });
  setMasks(model, new Map([['head', mask]]));
  const train = openDataset(`tokens:${PATTERN},context=8`) as TokenDataset;
  const r = await finetuneLM(model, { train, steps: 5, batch: 4, lr: 0.05, threads: 1 });
  const w = r.model.graph.initializers.get('head')!.data as Float32Array;
  assert.ok(w.every((v, i) => mask[i] || v === 0), 'a pruned weight came back');
  assert.ok(w.some((v, i) => mask[i] && v !== (model.graph.initializers.get('head')!.data as Float32Array)[i]), 'the kept weights trained');
});
