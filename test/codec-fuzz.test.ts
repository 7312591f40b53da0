import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ShearsError } from '../src/errors.js';
import { parseModel } from '../src/onnx/io.js';
import { rng } from '../src/random.js';

const fixture = fileURLToPath(new URL('../../test/fixtures/models/fmnist_resnet20.onnx', import.meta.url));
const bytes = new Uint8Array(readFileSync(fixture));


/** Either a valid model (its graph passes the invariant checks inside parseModel) or a ShearsError. */
function parseOrUserError(b: Uint8Array): 'ok' | 'error' {
  try {
    parseModel(b);
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof ShearsError, `expected a ShearsError, got ${(e as Error).name}: ${(e as Error).message}`);
    assert.ok(!(e as Error).message.includes('\n'), 'error messages are one line');
    return 'error';
  }
}

test('the fixture itself parses', () => {
  assert.equal(parseOrUserError(bytes), 'ok');
});

test('truncations of a real model give a clear error, never a crash', () => {
  const r = rng(1);
  const cuts = [1, 2, 10, 100, 1000, bytes.length - 1, bytes.length - 2];
  for (let i = 0; i < 150; i++) cuts.push(Math.floor(r() * bytes.length));
  let errors = 0;
  for (const c of cuts) if (parseOrUserError(bytes.subarray(0, c)) === 'error') errors++;
  // Almost every cut lands inside a length-delimited field; a cut exactly between top-level fields can
  // still be a valid (smaller) model, which is fine as long as it passes the invariant checks.
  assert.ok(errors >= cuts.length * 0.9, `only ${errors}/${cuts.length} truncations were rejected`);
});

test('random byte flips give a valid model or a clear error', () => {
  const r = rng(2);
  // Flips in the first 64 KiB hit the graph structure (nodes, names, dims); later ones mostly hit weights.
  const region = Math.min(bytes.length, 65536);
  for (let i = 0; i < 300; i++) {
    const b = bytes.slice();
    const flips = 1 + Math.floor(r() * 8);
    for (let k = 0; k < flips; k++) {
      const at = r() < 0.7 ? Math.floor(r() * region) : Math.floor(r() * b.length);
      b[at] = b[at]! ^ (1 << Math.floor(r() * 8));
    }
    parseOrUserError(b);
  }
});

test('non-ONNX inputs are rejected with a clear error', () => {
  const inputs = [
    new Uint8Array(0),
    new TextEncoder().encode('hello, this is not a model\n'),
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]),
    new Uint8Array(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff)),
  ];
  for (const b of inputs) assert.equal(parseOrUserError(b), 'error');
});
