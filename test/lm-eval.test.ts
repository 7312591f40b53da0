/** Token data (tokens:FILE) and language-model evaluation: NLL against an independent computation, windows, bad input. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDataset } from '../src/data/spec.js';
import { TokenDataset, bindTokens } from '../src/data/tokens.js';
import { DataType } from '../src/ir/dtype.js';
import { evaluate } from '../src/metrics/evaluate.js';
import { evaluatePerplexity } from '../src/metrics/perplexity.js';
import { saveModel } from '../src/onnx/io.js';
import { npyBytes, tempDir } from './data-helpers.js';
import { isUserError, shears } from './cli-helpers.js';
import { referenceNll, tinyLm, V, writeTokens } from './lm-fixture.js';

const dir = tempDir('shears-lm-');
const { path: BIN, ids } = writeTokens(dir, 200);
const evenly = (n: number, L: number, t: number) => Array.from({ length: n }, (_, k) => Math.floor((k * (L - t - 1)) / (n - 1)));

test('perplexity of a tiny LM on byte tokens equals an independent float64 computation (evenly spaced windows)', async () => {
  const model = tinyLm();
  const r = await evaluatePerplexity(model, openDataset(`tokens:${BIN},context=5`), { limit: 4, batchSize: 3 });
  const ref = referenceNll(ids, evenly(4, 200, 5), 5);
  assert.equal(r.perplexity.predictions, 20);
  assert.equal(ref.n, 20);
  assert.ok(Math.abs(r.perplexity.nll - ref.nll) < 1e-5, `${r.perplexity.nll} vs ${ref.nll}`);
  assert.ok(Math.abs(r.perplexity.bitsPerToken - ref.nll / Math.LN2) < 2e-5);
  assert.ok(Math.abs(r.perplexity.perplexity - Math.exp(ref.nll)) < 1e-4);
  assert.equal(r.perplexity.top1, ref.top1);
  assert.equal(r.perplexity.unit, 'byte');
  assert.equal(r.perplexity.vocabulary, V);
  assert.equal(r.samples, 4);
  // other windows give another figure: the windows really are the evenly spaced ones
  const other = referenceNll(ids, [0, 1, 2, 3], 5);
  assert.ok(Math.abs(other.nll - ref.nll) > 1e-3);
  // evaluate() on token data is the same evaluation (the score steps and `shears eval` go through it)
  const e = await evaluate(model, openDataset(`tokens:${BIN},context=5`), { limit: 4 });
  assert.ok(Math.abs(e.perplexity!.nll - ref.nll) < 1e-5);
});

test('a 1-D .npy of token ids reads as the same stream; a reference model is scored on the same windows', async () => {
  const npy = join(dir, 'ids.npy');
  writeFileSync(npy, npyBytes('<i8', [ids.length], ids));
  const model = tinyLm();
  const r = await evaluatePerplexity(model, openDataset(`tokens:${npy},context=6`), { limit: 5, reference: tinyLm({ seed: 9 }) });
  const ref = referenceNll(ids, evenly(5, 200, 6), 6);
  assert.ok(Math.abs(r.perplexity.nll - ref.nll) < 1e-5);
  assert.equal(r.perplexity.unit, 'token');
  const other = referenceNll(ids, evenly(5, 200, 6), 6, 9);
  assert.ok(Math.abs(r.referencePerplexity!.nll - other.nll) < 1e-5);
  assert.ok(r.agreement! >= 0 && r.agreement! < 1, String(r.agreement));
  const same = await evaluatePerplexity(model, openDataset(`tokens:${npy},context=6`), { limit: 5, reference: model });
  assert.equal(same.agreement, 1);
});

test('windows: sample i starts at token i, targets are the next tokens; seeded random offsets; evenly spaced starts', async () => {
  const ds = openDataset(`tokens:${BIN},context=4`) as TokenDataset;
  assert.equal(ds.size, 196);
  const b = await ds.readBatch([0, 10]);
  assert.equal(b.x.dtype, DataType.INT64);
  assert.deepEqual(b.x.dims, [2, 4]);
  assert.deepEqual(Array.from(b.x.data as BigInt64Array, Number), [...ids.slice(0, 4), ...ids.slice(10, 14)]);
  assert.deepEqual(Array.from(b.targets!), [...ids.slice(1, 5), ...ids.slice(11, 15)]);
  const s1 = ds.sample(8, 3);
  const s2 = ds.sample(8, 3);
  const offs = (d: TokenDataset) => Array.from({ length: d.size }, (_, i) => d.sourceIndex(i));
  assert.deepEqual(offs(s1), offs(s2));
  assert.notDeepEqual(offs(s1), offs(ds.sample(8, 4)));
  assert.ok(offs(s1).every((o) => o >= 0 && o + 5 <= 200));
  assert.deepEqual(offs(ds.evenly(3)), [0, 97, 195]);
  // batches with a limit on the whole stream take evenly spaced windows, not the first overlapping ones
  const got: number[] = [];
  for await (const bb of ds.batches(2, { limit: 3 })) got.push(...Array.from(bb.x.data as BigInt64Array, Number).filter((_, i) => i % 4 === 0));
  assert.deepEqual(got, [ids[0], ids[97], ids[195]]);
});

test('the window length comes from a static input dimension; a conflicting or missing one is refused', async () => {
  const fixed = tinyLm({ seqDim: 5 });
  const bound = bindTokens(openDataset(`tokens:${BIN}`) as TokenDataset, fixed);
  assert.equal(bound.context, 5);
  const r = await evaluatePerplexity(fixed, openDataset(`tokens:${BIN}`), { limit: 2 });
  assert.equal(r.perplexity.predictions, 10);
  await assert.rejects(evaluatePerplexity(fixed, openDataset(`tokens:${BIN},context=6`)), /context length 6 does not fit .* exactly 5 tokens/);
  await assert.rejects(evaluatePerplexity(tinyLm(), openDataset(`tokens:${BIN}`)), /takes sequences of any length: give the window length/);
});

test('bad token data is refused with a clear message', async () => {
  const empty = join(dir, 'empty.bin');
  writeFileSync(empty, new Uint8Array(0));
  assert.throws(() => openDataset(`tokens:${empty}`), /is empty: no tokens/);
  const short = join(dir, 'short.bin');
  writeFileSync(short, new Uint8Array([1, 2, 3, 4, 5]));
  assert.throws(() => openDataset(`tokens:${short},context=5`), /too short for windows of 5 tokens: it needs at least 6/);
  const big = join(dir, 'big.bin');
  writeFileSync(big, Uint8Array.from({ length: 50 }, (_, i) => (i === 33 ? 9 : i % V)));
  await assert.rejects(evaluatePerplexity(tinyLm(), openDataset(`tokens:${big},context=4`)), /token 33 is id 9, outside the model's vocabulary of 7/);
  const twoD = join(dir, 'two.npy');
  writeFileSync(twoD, npyBytes('<i4', [2, 3], [1, 2, 3, 4, 5, 6]));
  assert.throws(() => openDataset(`tokens:${twoD}`), /must be a 1-D array/);
  const neg = join(dir, 'neg.npy');
  writeFileSync(neg, npyBytes('<i4', [3], [1, -2, 3]));
  assert.throws(() => openDataset(`tokens:${neg}`), /element 1 is -2, not a token id/);
  assert.throws(() => openDataset(`tokens:${BIN},window=3`), /'window=3' is not a token data option/);
  await assert.rejects(evaluatePerplexity(tinyLm({ inputType: DataType.FLOAT }), openDataset(`tokens:${BIN},context=4`)), /token data feeds int64 token ids, and the model's input 'input_ids' is float/);
  // image/array data into an int64 input is refused before running
  const x = join(dir, 'x.npy');
  writeFileSync(x, npyBytes('<f4', [2, 4], [0, 1, 2, 3, 4, 5, 6, 0]));
  await assert.rejects(evaluate(tinyLm({ seqDim: 4 }), openDataset(`npy:${x}`)), /input 'input_ids' is int64 \(token ids\?\): image and array data sets feed float32; token data/);
});

test('shears eval on token data: bits per byte, --json, --metric perplexity, --context; errors exit 2', () => {
  const m = join(dir, 'lm.onnx');
  saveModel(tinyLm(), m);
  const ref = referenceNll(ids, evenly(4, 200, 5), 5);
  const r = shears(['eval', m, '--data', BIN, '--metric', 'perplexity', '--context', '5', '--limit', '4', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.ok(Math.abs(j.perplexity.bitsPerToken - ref.nll / Math.LN2) < 2e-5);
  assert.equal(j.perplexity.predictions, 20);
  const t = shears(['eval', m, '--data', `tokens:${BIN},context=5`, '--limit', '4', '--reference', m]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, new RegExp(`bits per byte ${(ref.nll / Math.LN2).toFixed(4)}`));
  assert.match(t.stdout, /next-byte agreement with the reference: 100\.00%/);
  assert.ok(isUserError(shears(['eval', m, '--data', `tokens:${BIN}`])));
  assert.ok(isUserError(shears(['eval', m, '--data', `npy:${join(dir, 'x.npy')}`, '--metric', 'perplexity'])));
  assert.ok(isUserError(shears(['eval', m, '--data', `tokens:${BIN}`, '--context', '500'])));
});

test('token data calibrates a repair: lsq restores a perturbed LM head from 8 windows at random offsets', async () => {
  const { repair } = await import('../src/repair/repair.js');
  const dense = tinyLm();
  const broken = tinyLm();
  const head = broken.graph.initializers.get('head')!;
  const w = Float32Array.from(head.data as Float32Array, (v, i) => v * 1.3 + (i % 3) * 0.2 - 0.1);
  broken.graph.initializers.set('head', { ...head, data: w });
  const ds = (openDataset(`tokens:${BIN},context=8`) as TokenDataset).sample(8, 1);
  const before = await evaluatePerplexity(broken, ds);
  const want = await evaluatePerplexity(dense, ds);
  const { model, report } = await repair(dense, broken, ds, { method: 'lsq', damp: 1e-6 });
  assert.equal(report.calibSamples, 8);
  assert.equal(report.layers.length, 1);
  const after = await evaluatePerplexity(model, ds);
  assert.ok(Math.abs(before.perplexity.nll - want.perplexity.nll) > 1e-2, `${before.perplexity.nll} ${want.perplexity.nll}`);
  assert.ok(Math.abs(after.perplexity.nll - want.perplexity.nll) < 1e-3, `${after.perplexity.nll} vs ${want.perplexity.nll}`);
});

test('shears report on token data: bits per byte of every model and next-token agreement with the base', () => {
  const m = join(dir, 'lm-r.onnx');
  saveModel(tinyLm(), m);
  const o = join(dir, 'lm-r2.onnx');
  saveModel(tinyLm({ seed: 5 }), o);
  const r = shears(['report', m, o, '--data', `tokens:${BIN},context=5`, '--data-limit', '4', '--runs', '3', '--warmup', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  const ref = referenceNll(ids, evenly(4, 200, 5), 5);
  assert.ok(Math.abs(j.models[0].perplexity.bitsPerToken - ref.nll / Math.LN2) < 2e-5);
  assert.ok(Math.abs(j.models[1].perplexity.nll - referenceNll(ids, evenly(4, 200, 5), 5, 5).nll) < 1e-5);
  assert.ok(j.models[1].agreement >= 0 && j.models[1].agreement < 1);
});

test('a pipeline binds token data to the dense model: a score step in bits per byte, the window length from --input-shape', async () => {
  const { runPipeline } = await import('../src/pipeline/run.js');
  const { tokenContextHint } = await import('../src/pipeline/context.js');
  assert.equal(tokenContextHint(tinyLm(), ['input_ids=1x5']), 5);
  assert.equal(tokenContextHint(tinyLm(), ['other=1x5']), undefined);
  assert.equal(tokenContextHint(tinyLm({ seqDim: 7 }), ['input_ids=1x5']), undefined); // a static dimension wins
  const model = tinyLm();
  const openData = async (spec: string) => openDataset(spec);
  const recipe = { format: 'shears.recipe' as const, version: 1 as const, steps: [{ kind: 'score' as const, data: '$val', limit: 4, dense: false }] };
  const { report } = await runPipeline(model, recipe as never, { openData, data: { val: `tokens:${BIN},context=5` } });
  const s = (report as { scores: { model: { perplexity: { nll: number; predictions: number } } }[] }).scores[0]!.model.perplexity;
  assert.equal(s.predictions, 20);
  assert.ok(Math.abs(s.nll - referenceNll(ids, evenly(4, 200, 5), 5).nll) < 1e-5);
  // without a window length anywhere: refused, naming the ways to give one
  await assert.rejects(runPipeline(model, recipe as never, { openData, data: { val: `tokens:${BIN}` } }), /takes sequences of any length: give the window length/);
});
