import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeModel } from '../src/onnx/codec.js';
import { loadModel } from '../src/onnx/io.js';
import { getMasks } from '../src/sparsity/masks.js';
import { nmViolations } from '../src/sparsity/nm.js';
import { LAYERS, fixtureModel } from './sparsity-fixture.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'shears-prune-'));
const model = join(dir, 'm.onnx');
writeFileSync(model, encodeModel(fixtureModel()));
writeFileSync(join(dir, 'garbage.onnx'), 'this is not protobuf at all');

function shears(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('prune --sparsity --json: report fields, requested sparsity, masks in the output file', () => {
  const out = join(dir, 'g.onnx');
  const r = shears('prune', model, '-o', out, '--sparsity', '0.7', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.mode.scope, 'global');
  assert.equal(j.before.layerSparsity, 0);
  assert.ok(Math.abs(j.after.layerSparsity - 0.7) < 0.005, String(j.after.layerSparsity));
  assert.equal(j.after.params, j.before.params);
  assert.ok(j.after.nonzero < j.before.nonzero);
  assert.equal(j.after.fileBytes, statSync(out).size);
  for (const k of ['fileBytes', 'gzipBytes']) assert.ok(j.before[k] > 0 && j.after[k] > 0);
  assert.deepEqual(j.layers.map((l: { name: string }) => l.name), LAYERS);
  for (const l of j.layers) assert.equal(typeof l.sparsity, 'number');
  const back = loadModel(out);
  assert.deepEqual([...getMasks(back).keys()].sort(), LAYERS);
});

test('prune --per-layer is exact per layer; a second run accumulates; --no-masks stores none', () => {
  const a = join(dir, 'a.onnx');
  const b = join(dir, 'b.onnx');
  assert.equal(shears('prune', model, '-o', a, '--sparsity', '0.5', '--per-layer').code, 0);
  const r = shears('prune', a, '-o', b, '--sparsity', '0.5', '--per-layer', '--no-masks', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  for (const l of j.layers) {
    const k1 = Math.round(0.5 * l.params);
    assert.equal(l.params - l.nonzero, k1 + Math.round(0.5 * (l.params - k1)), l.name);
  }
  assert.equal(j.masksStored, false);
  assert.equal(getMasks(loadModel(b)).size, 0);
});

test('prune --pattern 2:4 warns about the layer it leaves dense and writes valid groups', () => {
  const out = join(dir, 'nm.onnx');
  const r = shears('prune', model, '-o', out, '--pattern', '2:4', '--exclude', '^w4$');
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /w0 left dense: reduction size 3/);
  const m = loadModel(out);
  for (const [n, axis] of [['w1', 1], ['w2', 1], ['w3', 1]] as const) {
    const t = m.graph.initializers.get(n)!;
    assert.equal(nmViolations(t.data as Float32Array, t.dims, axis, { n: 2, m: 4 }), 0);
  }
  assert.equal((m.graph.initializers.get('w4')!.data as Float32Array).every((v) => v !== 0), true);
});

test('bad arguments exit with code 2 and one line on stderr', () => {
  const out = join(dir, 'bad.onnx');
  const cases: string[][] = [
    ['prune', model, '-o', out, '--sparsity', '1'],
    ['prune', model, '-o', out, '--sparsity', '-0.1'],
    ['prune', model, '-o', out, '--sparsity', 'half'],
    ['prune', model, '-o', out, '--pattern', '4:2'],
    ['prune', model, '-o', out, '--pattern', '2x4'],
    ['prune', model, '-o', out, '--pattern', '1:5'],
    ['prune', model, '-o', out, '--sparsity', '0.5', '--pattern', '2:4'],
    ['prune', model, '-o', out],
    ['prune', model, '--sparsity', '0.5'],
    ['prune', join(dir, 'missing.onnx'), '-o', out, '--sparsity', '0.5'],
    ['prune', join(dir, 'garbage.onnx'), '-o', out, '--sparsity', '0.5'],
    ['prune', model, '-o', out, '--sparsity', '0.5', '--global', '--lamp'],
    ['prune', model, '-o', out, '--sparsity', '0.5', '--method', 'l3'],
    ['prune', model, '-o', out, '--sparsity', '0.5', '--exclude', '('],
    ['prune', model, '-o', out, '--sparsity', '0.5', '--layer-sparsity', 'nope=0.5'],
  ];
  for (const args of cases) {
    const r = shears(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.equal(r.err.trim().split('\n').length, 1, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, /^shears: error: /);
    assert.equal(r.out, '');
  }
});
