/**
 * Models larger than memory: lazy external data (read when used, released again), streamed saving, and layer-wise
 * Wanda / SparseGPT streamed over a Llama-shaped model (bench/llama-shaped.ts at toy dimensions): the streamed
 * result equals the in-memory one bit for bit, the output has external data and runs in onnxruntime, and the
 * weights read during the run are released.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildLlama, type LlamaConfig } from '../bench/llama-shaped.js';
import { bindTokens, openTokens } from '../src/data/tokens.js';
import type { Model } from '../src/ir/graph.js';
import { isResident, lazyStats, releaseTensor, resetLazyPeak } from '../src/ir/lazy.js';
import { int64Tensor } from '../src/ir/tensor.js';
import { loadModel, saveModel, StreamedSave } from '../src/onnx/io.js';
import { pruneLayerwise } from '../src/prune/stream.js';
import { createSession } from '../src/runtime/session.js';
import { rng } from '../src/random.js';
import { isUserError, shears } from './cli-helpers.js';

const TOY: LlamaConfig = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 16, mlp: 96, vocab: 101, maxPositions: 64, seed: 3 };
const T = 16;

function setup(): { dir: string; path: string; tokens: string; bytes: number } {
  const dir = mkdtempSync(join(tmpdir(), 'shears-stream-'));
  const path = join(dir, 'llama.onnx');
  saveModel(buildLlama(TOY), path, { externalData: true });
  // random token ids, int32 .npy
  const n = 4000;
  const header = `{'descr': '<i4', 'fortran_order': False, 'shape': (${n},), }`.padEnd(117, ' ') + '\n';
  const buf = Buffer.alloc(10 + header.length + 4 * n);
  buf.write('\x93NUMPY', 0, 'latin1');
  buf[6] = 1;
  buf.writeUInt16LE(header.length, 8);
  buf.write(header, 10, 'latin1');
  const r = rng(5);
  for (let i = 0; i < n; i++) buf.writeInt32LE(Math.floor(r() * TOY.vocab), 10 + header.length + 4 * i);
  const tokens = join(dir, 'tokens.npy');
  writeFileSync(tokens, buf);
  return { dir, path, tokens, bytes: readFileSync(`${path}.data`).byteLength };
}

const fx = setup();

function calib(model: Model) {
  return bindTokens(openTokens(fx.tokens, { context: T }), model).sample(12, 0);
}

/** The MatMul weights of the decoder layers (what layer-wise pruning prunes; the LM head stays). */
function layerWeights(m: Model): string[] {
  return m.graph.nodes.filter((n) => n.opType === 'MatMul' && n.name.includes('_proj/') && m.graph.initializers.has(n.inputs[1]!)).map((n) => n.inputs[1]!);
}

function bits(m: Model, name: string): Uint32Array {
  const d = m.graph.initializers.get(name)!.data as Float32Array;
  return new Uint32Array(d.buffer, d.byteOffset, d.length);
}

test('external data loads lazily: nothing read at load, a tensor read on use and released again; eager loading is kept', () => {
  const before = lazyStats();
  const m = loadModel(fx.path);
  assert.equal(lazyStats().resident, before.resident, 'loading read tensor bytes');
  const w = m.graph.initializers.get('model.layers.0.mlp.down_proj.weight')!;
  assert.equal(isResident(w), false);
  const first = (w.data as Float32Array).slice();
  assert.equal(lazyStats().resident - before.resident, TOY.mlp * TOY.hidden * 4);
  assert.ok(releaseTensor(w));
  assert.equal(lazyStats().resident, before.resident);
  // read again: the same values
  assert.deepEqual(w.data as Float32Array, first);
  releaseTensor(w);
  const eager = loadModel(fx.path, { lazy: false });
  assert.deepEqual(eager.graph.initializers.get('model.layers.0.mlp.down_proj.weight')!.data as Float32Array, first);
  assert.equal(releaseTensor(eager.graph.initializers.get('model.layers.0.mlp.down_proj.weight')!), false, 'an eager tensor has nothing to release');
});

test('saving a lazily loaded model streams it: tensors read one at a time and released, the copy is equal', () => {
  const m = loadModel(fx.path);
  const base = lazyStats().resident;
  resetLazyPeak();
  const out = join(fx.dir, 'copy.onnx');
  saveModel(m, out, { externalData: true });
  assert.equal(lazyStats().resident, base, 'tensors stay in memory after being written');
  const biggest = TOY.vocab * TOY.hidden * 4;
  assert.ok(lazyStats().peak - base <= biggest, `peak ${lazyStats().peak - base} bytes, more than one tensor (${biggest})`);
  assert.deepEqual(readFileSync(`${out}.data`), readFileSync(`${fx.path}.data`));
  // and the input cannot be written over by a streamed save (it refuses the model file itself too)
  const again = loadModel(out);
  saveModel(again, out, { externalData: true });
  assert.deepEqual(readFileSync(`${out}.data`), readFileSync(`${fx.path}.data`), 'saving over the file a lazy model reads from changed its values');
});

test('StreamedSave: a tensor put is on disk at once, read back lazily, and finish places it without copying', () => {
  const out = join(fx.dir, 'put.onnx');
  const m = loadModel(fx.path);
  const save = new StreamedSave(out);
  try {
    const name = 'model.layers.1.self_attn.q_proj.weight';
    const orig = m.graph.initializers.get(name)!;
    const values = Float32Array.from(orig.data as Float32Array, (v) => v * 2);
    const before = lazyStats().resident;
    const put = save.put({ dtype: orig.dtype, dims: [...orig.dims], data: values });
    // held until released, then read back from the data file being written
    assert.equal(lazyStats().resident - before, values.byteLength);
    assert.ok(releaseTensor(put));
    assert.equal(isResident(put), false);
    assert.equal(lazyStats().resident, before);
    assert.deepEqual(put.data as Float32Array, values);
    releaseTensor(put);
    m.graph.initializers.set(name, put);
    const r = save.finish(m);
    assert.equal(r.externalFile, `${out}.data`);
  } finally {
    save.abort();
  }
  const back = loadModel(out);
  assert.deepEqual(back.graph.initializers.get('model.layers.1.self_attn.q_proj.weight')!.data as Float32Array, Float32Array.from(loadModel(fx.path).graph.initializers.get('model.layers.1.self_attn.q_proj.weight')!.data as Float32Array, (v) => v * 2));
  assert.equal(readFileSync(`${out}.data`).byteLength, fx.bytes, 'the tensor put was written twice');
});

for (const method of ['wanda', 'obs'] as const) {
  test(`layer-wise ${method} streamed equals in memory bit for bit; the output has external data, runs, and is exactly 50% sparse per matrix`, async () => {
    // in memory: the model read eagerly, no writer
    const eager = loadModel(fx.path, { lazy: false });
    const mem = await pruneLayerwise(eager, calib(eager), { method, sparsity: 0.5 });
    // streamed: the model read lazily, each pruned weight written as it is computed
    const lazy = loadModel(fx.path);
    const base = lazyStats().resident;
    resetLazyPeak();
    const out = join(fx.dir, `${method}.onnx`);
    const save = new StreamedSave(out);
    let streamedReport;
    try {
      const r = await pruneLayerwise(lazy, calib(lazy), { method, sparsity: 0.5, output: save });
      streamedReport = r.report;
      save.finish(r.model);
    } finally {
      save.abort();
    }
    // what the run read is released; its peak is less than the model
    assert.equal(lazyStats().resident, base, 'weights read by the streamed run stay in memory');
    assert.ok(lazyStats().peak - base < fx.bytes / 2, `peak ${lazyStats().peak - base} bytes of a ${fx.bytes}-byte model`);
    assert.ok(existsSync(`${out}.data`));
    const back = loadModel(out);
    const names = layerWeights(back);
    assert.equal(names.length, 7 * TOY.layers);
    assert.equal(streamedReport.layers.length, names.length);
    assert.ok(streamedReport.skipped.some((s) => s.node === '/lm_head/MatMul'), 'the LM head is left dense');
    for (const name of names) {
      const a = bits(mem.model, name);
      const b = bits(back, name);
      let differ = 0;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) differ++;
      assert.equal(differ, 0, `${name}: ${differ} weights differ between the streamed and the in-memory run`);
      let zeros = 0;
      const d = back.graph.initializers.get(name)!.data as Float32Array;
      for (let i = 0; i < d.length; i++) if (d[i] === 0) zeros++;
      assert.equal(zeros, d.length / 2, `${name}: ${zeros} zeros of ${d.length}`);
    }
    // the LM head and the embedding are the dense ones
    assert.deepEqual(bits(back, 'lm_head.weight'), bits(eager, 'lm_head.weight'));
    // onnxruntime loads the output with its external data; the logits equal the in-memory model's
    const ids = int64Tensor([1, T], Array.from({ length: T }, (_, i) => (i * 37) % TOY.vocab));
    const fromDisk = await createSession(out);
    const y1 = (await fromDisk.run({ input_ids: ids }))['logits']!.data as Float32Array;
    await fromDisk.release();
    const inMem = await createSession(mem.model);
    const y2 = (await inMem.run({ input_ids: ids }))['logits']!.data as Float32Array;
    await inMem.release();
    assert.ok(y1.every(Number.isFinite));
    assert.deepEqual(y1, y2);
    // and pruning changed the model
    const dense = await createSession(eager);
    const y0 = (await dense.run({ input_ids: ids }))['logits']!.data as Float32Array;
    await dense.release();
    assert.notDeepEqual(y0, y1);
  });
}

test('the dense-layer target needs a sparsity or pattern (never prunes nothing silently)', async () => {
  const m = loadModel(fx.path);
  await assert.rejects(pruneLayerwise(m, calib(m), { method: 'wanda' }), /give a sparsity or an N:M pattern/);
});

test('shears prune streams an external-data model through Wanda (--repair wanda --calib tokens:...)', () => {
  const out = join(fx.dir, 'cli.onnx');
  const r = shears(['prune', fx.path, '-o', out, '--sparsity', '0.5', '--repair', 'wanda', '--calib', `tokens:${fx.tokens},context=${T}`, '--calib-size', '12', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as { streamed: boolean; externalData: string; zeros: number; prunedParams: number; layers: unknown[] };
  assert.equal(rep.streamed, true);
  assert.equal(rep.externalData, `${out}.data`);
  assert.equal(rep.layers.length, 7 * TOY.layers);
  assert.equal(rep.zeros * 2, rep.prunedParams);
  assert.ok(existsSync(`${out}.data`));
  // the same output as the library's streamed run
  const lib = loadModel(join(fx.dir, 'wanda.onnx'));
  const cli = loadModel(out);
  for (const name of layerWeights(cli)) assert.deepEqual(bits(cli, name), bits(lib, name), name);
  // an output whose data file is the input's data file is refused (the input's side files are inputs too)
  const a = join(fx.dir, 'a.onnx');
  saveModel(loadModel(fx.path), a, { externalData: 'b.onnx.data' });
  const clash = shears(['prune', a, '-o', join(fx.dir, 'b.onnx'), '--sparsity', '0.5', '--repair', 'wanda', '--calib', `tokens:${fx.tokens},context=${T}`, '--calib-size', '4']);
  assert.ok(isUserError(clash), clash.stderr);
  assert.match(clash.stderr, /refusing to write '.*b\.onnx\.data': it is the input/);
  assert.deepEqual(readFileSync(join(fx.dir, 'b.onnx.data')), readFileSync(`${fx.path}.data`));
});

test('shears prune --method sparsegpt (and wanda) stream too: the same weights as the library\'s streamed run', () => {
  for (const [method, lib] of [['sparsegpt', 'obs.onnx'], ['wanda', 'wanda.onnx']] as const) {
    const out = join(fx.dir, `cli-${method}.onnx`);
    const r = shears(['prune', fx.path, '-o', out, '--sparsity', '0.5', '--method', method, '--calib', `tokens:${fx.tokens},context=${T}`, '--calib-size', '12', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as { streamed: boolean; method: string; zeros: number; prunedParams: number };
    assert.equal(rep.streamed, true);
    assert.equal(rep.method, method);
    assert.equal(rep.zeros * 2, rep.prunedParams);
    const a = loadModel(join(fx.dir, lib));
    const b = loadModel(out);
    for (const name of layerWeights(b)) assert.deepEqual(bits(b, name), bits(a, name), name);
  }
});

test('shears prune --pattern 2:4 --repair wanda streams too: 2 of every 4 consecutive input channels zero in every column', () => {
  const out = join(fx.dir, 'nm.onnx');
  const r = shears(['prune', fx.path, '-o', out, '--pattern', '2:4', '--repair', 'wanda', '--calib', `tokens:${fx.tokens},context=${T}`, '--calib-size', '8', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { streamed: boolean }).streamed, true);
  const m = loadModel(out);
  for (const name of layerWeights(m)) {
    const t = m.graph.initializers.get(name)!;
    const [k, n] = t.dims as [number, number];
    const d = t.data as Float32Array;
    for (let c = 0; c < n; c++) {
      for (let g = 0; g < k; g += 4) {
        let zeros = 0;
        for (let i = g; i < g + 4; i++) if (d[i * n + c] === 0) zeros++;
        assert.equal(zeros, 2, `${name}: column ${c}, rows ${g}..${g + 3}`);
      }
    }
  }
});

