/**
 * Multi-input and stateful models (--feed / --carry), arrays that are not images, and fidelity of outputs of one
 * value per sample. Fixtures: test/feeds-fixture.ts (built here, no shared files).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Dataset } from '../src/data/dataset.js';
import { arraySource, inMemoryRows } from '../src/data/arrays.js';
import { feedsFromArgs, planInputs } from '../src/data/feeds.js';
import { openDataset } from '../src/data/spec.js';
import { validateRecipe } from '../src/pipeline/recipe.js';
import { evaluate } from '../src/metrics/evaluate.js';
import { FidelityMeter } from '../src/metrics/fidelity.js';
import { datasetCalibration } from '../src/quant/data.js';
import { createSession } from '../src/runtime/session.js';
import { saveModel } from '../src/onnx/io.js';
import { floatTensor, type Tensor } from '../src/ir/tensor.js';
import { ShearsError } from '../src/errors.js';
import { randn } from './repair-fixture.js';
import { sileroLike, wakeWordHead, writeNpy } from './feeds-fixture.js';
import { isUserError, shears } from './cli-helpers.js';

const CHUNKS = 12;
const audio = () => new Dataset(arraySource(inMemoryRows({ dims: [CHUNKS, 512], data: randn(CHUNKS * 512, 11, 0.5) }), undefined, 'chunks', 'audio chunks'));
const SILERO_FEEDS = feedsFromArgs(['sr=const:16000', 'h=zeros', 'c=zeros'], ['hn=h', 'cn=c']);

test('a multi-input model without feeds is refused before work, listing its inputs and how to feed them', async () => {
  const m = sileroLike();
  await assert.rejects(evaluate(m, audio()), (e: Error) => {
    assert.ok(e instanceof ShearsError, e.message);
    assert.match(e.message, /has 4 inputs: input \(float \[1, 512\]\), sr \(int64 \[\]\), h \(float \[2, 1, 64\]\), c \(float \[2, 1, 64\]\)/);
    assert.match(e.message, /--feed sr=const:16000 --feed h=zeros --feed c=zeros/);
    return true;
  });
  // one input left unfed: still refused, naming what is fed
  assert.throws(() => planInputs(m, feedsFromArgs(['sr=const:16000', 'h=zeros'])), /E\.g\. --feed c=zeros \(fed now: sr, h\)/);
  // a feed or carry that names nothing
  assert.throws(() => planInputs(m, feedsFromArgs(['rate=const:8000'])), /--feed rate: the model has no input 'rate' \(inputs: input/);
  assert.throws(() => planInputs(m, feedsFromArgs(['sr=const:16000', 'h=zeros', 'c=zeros'], ['hx=h'])), /--carry hx=h: the model has no output 'hx' \(outputs: out, hn, cn\)/);
  assert.throws(() => planInputs(m, feedsFromArgs(['sr=npy:sr.npy', 'h=zeros', 'c=zeros'])), /--feed sr=npy:sr\.npy: input 'sr' is int64, data sets feed float32/);
  assert.throws(() => feedsFromArgs(['sr=16000']), /--feed sr: '16000' is not a feed \(const:V\[@SHAPE\], zeros\[@SHAPE\] or a data spec/);
});

test('feeds: a constant scalar in the input\'s int64 type, zeros in its declared shape; carried state is the model\'s own output (ORT parity)', async () => {
  const m = sileroLike();
  const ds = audio().withFeeds(SILERO_FEEDS);
  const calls: Record<string, Tensor>[] = [];
  for await (const f of datasetCalibration(m, ds, 5)()) calls.push(f);
  assert.equal(calls.length, 5); // one chunk per call, the first 5 in order
  assert.deepEqual(calls[0]!['sr']!.dims, []);
  assert.equal((calls[0]!['sr']!.data as BigInt64Array)[0], 16000n);
  assert.deepEqual(calls[0]!['h']!.dims, [2, 1, 64]);
  assert.ok((calls[0]!['h']!.data as Float32Array).every((v) => v === 0));
  // replay the sequence by hand in onnxruntime: call k + 1's h and c are call k's hn and cn
  const s = await createSession(m);
  try {
    let h = floatTensor([2, 1, 64], new Float32Array(128));
    let c = floatTensor([2, 1, 64], new Float32Array(128));
    const x = (await ds.readBatch([0, 1, 2, 3, 4])).x.data as Float32Array;
    for (let k = 0; k < 5; k++) {
      assert.deepEqual(calls[k]!['input']!.data, x.subarray(k * 512, (k + 1) * 512));
      assert.deepEqual(calls[k]!['h']!.data, h.data, `h of call ${k}`);
      assert.deepEqual(calls[k]!['c']!.data, c.data, `c of call ${k}`);
      const sr = calls[0]!['sr']!;
      const out = await s.run({ input: floatTensor([1, 512], x.slice(k * 512, (k + 1) * 512)), sr, h, c });
      h = out['hn']!;
      c = out['cn']!;
    }
    assert.ok((calls[4]!['h']!.data as Float32Array).some((v) => v !== 0));
  } finally {
    await s.release();
  }
});

test('eval of a stateful model: every chunk scored, each model carries its own state; the [1, 1] score gets correlation and decisions, not cosine', async () => {
  const m = sileroLike();
  const self = await evaluate(m, audio().withFeeds(SILERO_FEEDS), { reference: m });
  assert.equal(self.samples, CHUNKS);
  assert.equal(self.batchSize, 1);
  assert.deepEqual(self.feeds, { feeds: { sr: 'const:16000', h: 'zeros', c: 'zeros' }, carry: { hn: 'h', cn: 'c' } });
  const out = self.fidelity!['out']!;
  assert.equal(out.cosine, undefined);
  assert.equal(out.scalar!.correlation, 1);
  assert.equal(out.scalar!.relError, 0);
  assert.equal(out.scalar!.decisionAgreement, 1);
  assert.match(out.scalar!.note, /cosine is always 1/);
  assert.equal(self.fidelity!['hn']!.cosine, 1); // a state of 128 values per sample keeps its cosine
  // a perturbed copy: its own state drifts from the reference's, which the per-chunk score shows
  const p = sileroLike(); // (a clone would share the weight arrays)
  const w = p.graph.initializers.get('uh')!;
  const d = w.data as Float32Array;
  for (let i = 0; i < d.length; i++) d[i] = d[i]! * (i % 2 ? 1.6 : 0.2);
  const r = await evaluate(p, audio().withFeeds(SILERO_FEEDS), { reference: m });
  const s = r.fidelity!['out']!.scalar!;
  assert.ok(s.relError > 0 && s.correlation! < 1, JSON.stringify(s));
});

test('fidelity of a [N, 1] output: Pearson correlation across samples, relative error, agreement at 0.5 (cosine would be 1)', () => {
  const ref = [0.1, 0.4, 0.6, 0.9, 0.2, 0.7];
  const y = [0.2, 0.45, 0.4, 0.8, 0.1, 0.75]; // sample 2 flips its decision
  const m = new FidelityMeter('p');
  m.add(floatTensor([3, 1], y.slice(0, 3)), floatTensor([3, 1], ref.slice(0, 3)));
  m.add(floatTensor([3, 1], y.slice(3)), floatTensor([3, 1], ref.slice(3)));
  const f = m.report();
  assert.equal(f.cosine, undefined);
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  const my = mean(y), mr = mean(ref);
  let cov = 0, vy = 0, vr = 0;
  for (let i = 0; i < 6; i++) {
    cov += (y[i]! - my) * (ref[i]! - mr);
    vy += (y[i]! - my) ** 2;
    vr += (ref[i]! - mr) ** 2;
  }
  assert.ok(Math.abs(f.scalar!.correlation! - cov / Math.sqrt(vy * vr)) < 1e-6);
  const absd = y.reduce((s, v, i) => s + Math.abs(Math.fround(v) - Math.fround(ref[i]!)), 0);
  assert.ok(Math.abs(f.scalar!.relError - absd / ref.reduce((s, v) => s + v, 0)) < 1e-6);
  assert.ok(Math.abs(f.scalar!.decisionAgreement! - 5 / 6) < 1e-12);
  // logits (outside [0, 1]): no decision agreement; a constant output: no correlation, and the note says why
  const k = new FidelityMeter('logit');
  k.add(floatTensor([3, 1], [2, 2, 2]), floatTensor([3, 1], [-1, 3, 5]));
  const kf = k.report();
  assert.equal(kf.scalar!.decisionAgreement, undefined);
  assert.equal(kf.scalar!.correlation, undefined);
  assert.match(kf.scalar!.note, /the output is constant over the samples/);
});

test('an npy of [N, 25, 96] feeds a [N, 25, 96] (and a [1, 25, 96]) input as it is, not as gray images (ORT parity)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-feeds-'));
  const npy = join(dir, 'feats.npy');
  const data = randn(7 * 25 * 96, 3);
  writeNpy(npy, [7, 25, 96], data);
  for (const batch of ['N', 1] as const) {
    const m = wakeWordHead(5, batch);
    const ds = openDataset(`npy:${npy}`).forInput(m.graph.inputs[0]!.type!.shape!);
    const b = await ds.readBatch([2, 3]);
    assert.deepEqual(b.x.dims, [2, 25, 96]);
    assert.deepEqual(b.x.data, data.slice(2 * 2400, 4 * 2400));
    const r = await evaluate(m, openDataset(`npy:${npy}`), { reference: m });
    assert.equal(r.samples, 7);
    assert.equal(r.fidelity!['score']!.scalar!.relError, 0);
    // the scores equal onnxruntime's on the array rows
    const s = await createSession(m);
    try {
      const direct = await s.run({ x: floatTensor([1, 25, 96], data.slice(3 * 2400, 4 * 2400)) });
      const viaData = await s.run({ x: (await ds.readBatch([3])).x });
      assert.deepEqual(viaData['score']!.data, direct['score']!.data);
    } finally {
      await s.release();
    }
  }
  // image preprocessing does not apply to such arrays, and says so
  const m = wakeWordHead();
  await assert.rejects(evaluate(m, openDataset(`npy:${npy}`, { color: 'rgb' })), /not an image .*--color does not apply/);
  await assert.rejects(evaluate(m, openDataset(`npy:${npy}`, { resize: 10 })), /not an image: --resize\/--crop do not apply/);
});

test('recipes: feeds and carry are validated and kept', () => {
  const base = { format: 'shears.recipe', version: 1, steps: [{ kind: 'score', data: 'x.npy' }] };
  const r = validateRecipe({ ...base, feeds: { sr: 'const:16000', h: 'zeros@2x1x64' }, carry: { hn: 'h' } });
  assert.deepEqual(r.feeds, { sr: 'const:16000', h: 'zeros@2x1x64' });
  assert.deepEqual(r.carry, { hn: 'h' });
  assert.throws(() => validateRecipe({ ...base, feeds: { sr: 'sixteen' } }), /recipe: feeds\.sr: 'sixteen' is not a feed/);
  assert.throws(() => validateRecipe({ ...base, feeds: ['sr'] }), /feeds must be an object/);
});

test('CLI: eval, quantize --calib, repair and run feed a stateful model; finetune refuses it clearly', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-feeds-cli-'));
  const model = join(dir, 'vad.onnx');
  saveModel(sileroLike(), model);
  const npy = join(dir, 'chunks.npy');
  writeNpy(npy, [CHUNKS, 512], randn(CHUNKS * 512, 11, 0.5));
  const FEED = ['--feed', 'sr=const:16000', '--feed', 'h=zeros', '--feed', 'c=zeros', '--carry', 'hn=h', '--carry', 'cn=c'];
  // without feeds: one line naming the inputs and the flags
  const bare = shears(['eval', model, '--data', `npy:${npy}`]);
  assert.ok(isUserError(bare), bare.stderr);
  assert.match(bare.stderr, /has 4 inputs: input \(float \[1, 512\]\), sr \(int64 \[\]\).*--feed sr=const:16000 --feed h=zeros --feed c=zeros/);
  const ev = shears(['eval', model, '--data', `npy:${npy}`, ...FEED, '--reference', model]);
  assert.equal(ev.code, 0, ev.stderr);
  assert.match(ev.stdout, /samples: 12 /);
  assert.match(ev.stdout, /feeds: sr=const:16000, h=zeros, c=zeros; carried from call to call \(one sample per call\): hn -> h, cn -> c/);
  assert.match(ev.stdout, /out: correlation 1\.000000 {2}rel\. error 0\.000e\+0 {2}decisions at 0\.5 agree 100\.00% \(one value per sample: no cosine, it is always 1\)/);
  const q = shears(['quantize', model, '--calib', `npy:${npy}`, ...FEED, '-o', join(dir, 'q.onnx'), '--data', `npy:${npy}`, '--json']);
  assert.equal(q.code, 0, q.stderr);
  const qa = JSON.parse(q.stdout).after.fidelity.out;
  assert.ok(qa.scalar.relError < 0.05 && qa.scalar.correlation > 0.9, JSON.stringify(qa));
  const pruned = join(dir, 'pruned.onnx');
  const p = shears(['prune', model, '--sparsity', '0.5', '-o', pruned, '--repair', 'lsq', '--calib', `npy:${npy}`, ...FEED, '--data', `npy:${npy}`, '--json']);
  assert.equal(p.code, 0, p.stderr);
  const rep = JSON.parse(p.stdout).repair;
  assert.ok(rep.steps[0].calibSamples === CHUNKS, JSON.stringify(rep.steps[0]));
  const recipe = join(dir, 'r.json');
  const run = shears(['prune', model, '--sparsity', '0.3', '-o', join(dir, 'p2.onnx'), '--save-recipe', recipe, '--data', `npy:${npy}`, ...FEED]);
  assert.equal(run.code, 0, run.stderr);
  const saved = JSON.parse(readFileSync(recipe, 'utf8'));
  assert.deepEqual([saved.feeds, saved.carry], [{ sr: 'const:16000', h: 'zeros', c: 'zeros' }, { hn: 'h', cn: 'c' }]);
  const rerun = shears(['run', recipe, model, '-o', join(dir, 'p3.onnx')]);
  assert.equal(rerun.code, 0, rerun.stderr);
  const rp = shears(['report', model, join(dir, 'q.onnx'), '--data', `npy:${npy}`, ...FEED, '--runs', '2']);
  assert.equal(rp.code, 0, rp.stderr);
  assert.match(rp.stdout, /\nq +- +100\.00% /); // the agree column: decisions at 0.5 of the [1, 1] output
  // (before: a raw onnxruntime error from a Reshape fed a batch of 4 zero-size states)
  const labels = join(dir, 'labels.npy');
  writeNpy(labels, [CHUNKS], Float32Array.from({ length: CHUNKS }, (_, i) => i % 2));
  const ft = shears(['finetune', model, '--train', `npy:${npy},${labels}`, '--epochs', '1', '--batch', '4', '-o', join(dir, 'f.onnx')]);
  assert.ok(isUserError(ft), ft.stderr);
  assert.match(ft.stderr, /has 4 inputs: input \(float \[1, 512\]\), sr \(int64 \[\]\).*--feed sr=const:16000 --feed h=zeros --feed c=zeros/);
  // carried state cannot be trained through: refused before work, naming the way out
  const carried = shears(['prune', model, '--sparsity', '0.3', '-o', join(dir, 'f2.onnx'), '--finetune-epochs', '1', '--train', `npy:${npy},${labels}`, ...FEED]);
  assert.ok(isUserError(carried), carried.stderr);
  assert.match(carried.stderr, /fine-tuning does not carry state from call to call \(--carry hn=h, cn=c\).*--feed h=zeros\) and no --carry/);
});

test('a second data set feeds a second input sample by sample (--feed m=npy:...), aligned through sampling (ORT parity)', async () => {
  const { GraphBuilder } = await import('../src/ir/builder.js');
  const b = new GraphBuilder('two_inputs');
  const x = b.input('x', ['N', 4]);
  const mask = b.input('m', ['N', 4]);
  b.node('ReduceSum', [b.node('Mul', [x, mask]), b.init('ax', { dtype: 7, dims: [1], data: BigInt64Array.from([1n]) })], { keepdims: 1 }, { output: 'y' });
  b.output('y', ['N', 1]);
  const model = b.model(17);
  const dir = mkdtempSync(join(tmpdir(), 'shears-feeds2-'));
  const xs = randn(10 * 4, 21);
  const ms = xs.map((v) => 2 * v); // row i of m is 2 x row i of x: any misalignment shows
  writeNpy(join(dir, 'x.npy'), [10, 4], xs);
  writeNpy(join(dir, 'm.npy'), [10, 4], ms);
  const feeds = feedsFromArgs([`m=npy:${join(dir, 'm.npy')}`]);
  const ds = openDataset(`npy:${join(dir, 'x.npy')}`).withFeeds(feeds, { open: (s) => openDataset(s), inputs: model.graph.inputs });
  const s = await createSession(model);
  try {
    let seen = 0;
    for await (const f of datasetCalibration(model, ds, 6, 4, 3)()) {
      const xv = f['x']!.data as Float32Array;
      assert.deepEqual(f['m']!.data, xv.map((v) => 2 * v));
      const want = await s.run({ x: f['x']!, m: floatTensor(f['x']!.dims, xv.map((v) => 2 * v)) });
      assert.deepEqual((await s.run(f))['y']!.data, want['y']!.data);
      seen += f['x']!.dims[0]!;
    }
    assert.equal(seen, 6);
  } finally {
    await s.release();
  }
  const r = await evaluate(model, ds, { reference: model, batchSize: 3 });
  assert.equal(r.samples, 10);
  assert.equal(r.fidelity!['y']!.scalar!.relError, 0);
  writeNpy(join(dir, 'short.npy'), [9, 4], ms.slice(0, 36));
  assert.throws(() => openDataset(`npy:${join(dir, 'x.npy')}`).withFeeds(feedsFromArgs([`m=npy:${join(dir, 'short.npy')}`]), { open: (p) => openDataset(p), inputs: model.graph.inputs }),
    /--feed m=npy:.*short\.npy: it holds 9 samples, the data set 10/);
  const saved = join(dir, 'two.onnx');
  saveModel(model, saved);
  const cliRun = shears(['eval', saved, '--data', `npy:${join(dir, 'x.npy')}`, '--feed', `m=npy:${join(dir, 'm.npy')}`, '--reference', saved]);
  assert.equal(cliRun.code, 0, cliRun.stderr);
  assert.match(cliRun.stdout, /feeds: m=npy:.*m\.npy/);
});

test('finetune a multi-input model: the other inputs pinned to their constant feeds while it trains, inputs again in the result', async () => {
  const { GraphBuilder } = await import('../src/ir/builder.js');
  const { DataType } = await import('../src/ir/dtype.js');
  const { createTensor } = await import('../src/ir/tensor.js');
  const { loadModel } = await import('../src/onnx/io.js');
  const { pinFeeds, unpinFeeds } = await import('../src/train/pin-feeds.js');
  const { buildTrainingGraph } = await import('../src/autodiff/training.js');
  // y = (x * scale) @ W + b + 1e-5 * float(sr) + colsum(state): x [N, 8] is the data; scale [1], sr (int64 scalar)
  // and state [1, 3] must be fed
  const b = new GraphBuilder('three_inputs');
  const x = b.input('x', ['N', 8]);
  const scale = b.input('scale', [1]);
  const sr = b.input('sr', [], DataType.INT64);
  const state = b.input('state', [1, 3]);
  const srf = b.node('Mul', [b.node('Cast', [sr], { to: DataType.FLOAT }), b.init('k', floatTensor([], [1e-5]))]);
  const mm = b.node('MatMul', [b.node('Mul', [x, scale]), b.init('W', floatTensor([8, 3], randn(24, 3, 0.3)))], {}, { name: 'fc' });
  b.node('Add', [b.node('Add', [b.node('Add', [mm, b.init('bias', floatTensor([3], [0, 0, 0]))]), srf]), state], {}, { output: 'y' });
  b.output('y', ['N', 3]);
  const model = b.model(17);
  const dir = mkdtempSync(join(tmpdir(), 'shears-feeds-ft-'));
  const path = join(dir, 'm.onnx');
  saveModel(model, path);
  const n = 64;
  const xs = randn(n * 8, 5);
  const ys = Float32Array.from({ length: n }, (_, i) => (xs[i * 8]! > 0 ? 1 : xs[i * 8 + 1]! > 0 ? 2 : 0));
  writeNpy(join(dir, 'x.npy'), [n, 8], xs);
  writeNpy(join(dir, 'y.npy'), [n], ys);
  const data = `npy:${join(dir, 'x.npy')},${join(dir, 'y.npy')}`;
  const FEED = ['--feed', 'scale=const:2', '--feed', 'sr=const:16000', '--feed', 'state=zeros'];
  const out = join(dir, 'f.onnx');
  const ft = shears(['finetune', path, '--train', data, '--val', data, '--epochs', '3', '--batch', '16', '--lr', '0.1', '--replicas', '1', ...FEED, '-o', out]);
  assert.equal(ft.code, 0, ft.stderr);
  assert.match(ft.stdout + ft.stderr, /fine-tuning with 'scale', 'sr', 'state' pinned to their feeds \(scale=const:2, sr=const:16000, state=zeros\); the written model keeps them as inputs/);
  const tuned = loadModel(out);
  // the interface is the model's: the fed inputs are inputs again, not baked-in constants
  assert.deepEqual(tuned.graph.inputs.filter((i) => !tuned.graph.initializers.has(i.name)).map((i) => i.name), ['x', 'scale', 'sr', 'state']);
  const w0 = model.graph.initializers.get('W')!.data as Float32Array;
  const w1 = tuned.graph.initializers.get('W')!.data as Float32Array;
  assert.ok(w1.some((v, i) => Math.abs(v - w0[i]!) > 1e-4), 'W was trained');
  // the result runs in onnxruntime with the feeds, and the pinned scale was used while training: scale 2 vs 1 differ
  const run = async (s: number) => {
    const sess = await createSession(tuned);
    const feeds: Record<string, Tensor> = {
      x: floatTensor([n, 8], xs), scale: floatTensor([1], [s]), sr: createTensor(DataType.INT64, [], BigInt64Array.from([16000n])), state: floatTensor([1, 3], [0, 0, 0]),
    };
    const y = (await sess.run(feeds))['y']!.data as Float32Array;
    await sess.release();
    let right = 0;
    for (let i = 0; i < n; i++) {
      const row = [y[i * 3]!, y[i * 3 + 1]!, y[i * 3 + 2]!];
      if (row.indexOf(Math.max(...row)) === ys[i]) right++;
    }
    return right / n;
  };
  assert.ok((await run(2)) > 0.6, `trained with scale 2: ${await run(2)}`);
  // library: pinned inputs are never trained (they are initializers of the training model, not weights)
  const pin = pinFeeds(model, feedsFromArgs(['scale=const:2', 'sr=const:16000', 'state=zeros']));
  assert.deepEqual(pin.pinned, ['scale', 'sr', 'state']);
  const tg = await buildTrainingGraph(pin.model, { batch: 4, loss: { ce: {} }, frozen: pin.pinned });
  assert.deepEqual(tg.params.map((p) => p.name).sort(), ['W', 'bias']);
  const freed = unpinFeeds(pin.model, pin.pinned);
  assert.equal(freed.graph.initializers.has('state'), false);
  assert.equal(model.graph.initializers.has('state'), false, 'the input model is untouched');
  // per-sample feeds and batch-shaped constants cannot be pinned: refused before work
  assert.throws(() => pinFeeds(model, feedsFromArgs([`scale=npy:${join(dir, 'x.npy')}`, 'sr=const:1', 'state=zeros'])), /fine-tuning takes constant feeds only/);
  const b2 = new GraphBuilder('batch_state');
  const x2 = b2.input('x', ['N', 3]);
  const s2 = b2.input('s', ['N', 3]);
  b2.node('Add', [x2, s2], {}, { output: 'y' });
  b2.output('y', ['N', 3]);
  assert.throws(() => pinFeeds(b2.model(17), feedsFromArgs(['s=zeros'])), /input 's' \[N, 3\] has a symbolic dimension, which a training batch sets/);
});
