import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeModel, encodeModel } from '../src/onnx/codec.js';
import { MASKS_KEY, applyMasks, getMasks, packBits, removeMasks, setMasks, unpackBits, dropStaleMasks } from '../src/sparsity/masks.js';
import { rng } from '../src/random.js';
import { floatTensor } from '../src/ir/tensor.js';
import { fixtureModel } from './sparsity-fixture.js';

test('bitmaps pack LSB first and round trip for every length', () => {
  assert.deepEqual([...packBits(Uint8Array.from([1, 0, 0, 0, 0, 0, 0, 1, 1]))], [0x81, 0x01]);
  const next = rng(3);
  for (const n of [0, 1, 7, 8, 9, 1000]) {
    const m = Uint8Array.from({ length: n }, () => (next() < 0.4 ? 1 : 0));
    assert.deepEqual(unpackBits(packBits(m), n), m);
  }
});

test('masks survive encode/decode, applyMasks zeros exactly the masked weights, removeMasks bakes them in', () => {
  const model = fixtureModel();
  const w1 = model.graph.initializers.get('w1')!;
  const orig = Float32Array.from(w1.data as Float32Array);
  const next = rng(5);
  const m1 = Uint8Array.from({ length: orig.length }, () => (next() < 0.3 ? 0 : 1));
  setMasks(model, new Map([['w1', m1]]));
  // masks do not touch weights until applied
  assert.deepEqual(model.graph.initializers.get('w1')!.data, orig);
  const back = decodeModel(encodeModel(model));
  assert.ok(back.metadata.has(MASKS_KEY));
  assert.deepEqual(getMasks(back).get('w1'), m1);
  const zeroed = m1.reduce((c, k, i) => c + (!k && orig[i] !== 0 ? 1 : 0), 0);
  assert.equal(applyMasks(back), zeroed);
  const after = back.graph.initializers.get('w1')!.data as Float32Array;
  for (let i = 0; i < orig.length; i++) assert.equal(after[i], m1[i] ? orig[i] : 0);
  // the original tensor of the first model was not written to
  assert.deepEqual(model.graph.initializers.get('w1')!.data, orig);
  assert.deepEqual(removeMasks(back), ['w1']);
  assert.equal(back.metadata.has(MASKS_KEY), false);
  assert.equal(getMasks(back).size, 0);
  assert.deepEqual(back.graph.initializers.get('w1')!.data, after);
});

test('bad masks and stale masks are user errors', () => {
  const model = fixtureModel();
  assert.throws(() => setMasks(model, new Map([['nope', new Uint8Array(3)]])), { name: 'ShearsError' });
  assert.throws(() => setMasks(model, new Map([['w1', new Uint8Array(3)]])), { name: 'ShearsError' });
  setMasks(model, new Map([['w4', new Uint8Array(120).fill(1)]]));
  model.graph.initializers.set('w4', floatTensor([6, 10]));
  assert.throws(() => getMasks(model), { name: 'ShearsError', message: /stale/ });
  assert.deepEqual(dropStaleMasks(model), ['w4']);
  assert.equal(getMasks(model).size, 0);
  model.metadata.set(MASKS_KEY, '{"version":7}');
  assert.throws(() => getMasks(model), { name: 'ShearsError' });
});
