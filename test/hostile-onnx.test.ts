/**
 * Hostile ONNX files: tensors that claim more than their bytes, impossible dims, external data that points
 * outside the model's folder (absolute, '..', symbolic links) or outside its file, files that are not regular
 * files, a model file too large for protobuf, and a graph of 10^6 nodes (which must load, just slowly).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ShearsError } from '../src/errors.js';
import { loadModel, parseModel } from '../src/onnx/io.js';
import { chainModel, describeRun, matmulModel, runMeasured, userErrorLine, type TensorSpec } from './hostile-helpers.js';

const root = mkdtempSync(join(tmpdir(), 'shears-hostile-onnx-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;

/** Writes the model (and side files) into a fresh folder; returns the model's path. */
function modelDir(bytes: Uint8Array, files: Record<string, Uint8Array> = {}): string {
  const dir = join(root, `m${dirs++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'model.onnx'), bytes);
  for (const [name, b] of Object.entries(files)) writeFileSync(join(dir, name), b);
  return join(dir, 'model.onnx');
}

function rejects(path: string, message: RegExp): void {
  assert.throws(() => loadModel(path), (e: unknown) => {
    assert.ok(e instanceof ShearsError, `expected a ShearsError, got ${(e as Error).name}: ${(e as Error).message}`);
    assert.match(e.message, message);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
}

const ext = (kv: Record<string, string>): TensorSpec => ({ external: kv });
const floats = (n: number, f: (i: number) => number) => new Uint8Array(Float32Array.from({ length: n }, (_, i) => f(i)).buffer);

test('tensors that claim more elements than their bytes, or impossible dims, are refused', () => {
  rejects(modelDir(matmulModel({ raw: new Uint8Array(60) })), /tensor 'W': raw_data holds 60 bytes, float of 16 elements needs 64/);
  rejects(modelDir(matmulModel({ floats: [1, 2, 3] })), /tensor 'W' holds 3 values for 16 needed/);
  rejects(modelDir(matmulModel({ dims: [-4, -4], raw: new Uint8Array(64) })), /tensor 'W' has an invalid dimension -4/);
  rejects(modelDir(matmulModel({ dims: [1n << 60n, 1n << 60n], raw: new Uint8Array(64) })), /tensor 'W' has an invalid dimension 1152921504606846976/);
  rejects(modelDir(matmulModel({ dims: [2 ** 31 - 1, 2 ** 31 - 1, 2 ** 31 - 1], raw: new Uint8Array(64) })), /tensor 'W' has dims \[2147483647, 2147483647, 2147483647\]: more elements than any tensor can hold/);
  // the well-formed model loads
  assert.equal(loadModel(modelDir(matmulModel())).graph.initializers.get('W')!.dims.join('x'), '4x4');
});

test('external data: locations outside the model folder are refused, links included (real paths compared)', () => {
  const outside = join(root, 'outside.bin');
  writeFileSync(outside, new Uint8Array(64));
  rejects(modelDir(matmulModel(ext({ location: outside }))), /external data location '.*outside\.bin' points outside the model's directory/);
  rejects(modelDir(matmulModel(ext({ location: '../outside.bin' }))), /location '\.\.\/outside\.bin' points outside/);
  rejects(modelDir(matmulModel(ext({ location: 'a/../../outside.bin' }))), /location 'a\/\.\.\/\.\.\/outside\.bin' points outside/);
  // a link inside the folder to a file outside it, and a linked folder
  const viaFile = modelDir(matmulModel(ext({ location: 'w.bin' })));
  symlinkSync(outside, join(viaFile, '..', 'w.bin'));
  rejects(viaFile, /location 'w\.bin' leads outside the model's directory through a symbolic link \(to '.*outside\.bin'\)/);
  const viaDir = modelDir(matmulModel(ext({ location: 'sub/outside.bin' })));
  symlinkSync(root, join(viaDir, '..', 'sub'));
  rejects(viaDir, /location 'sub\/outside\.bin' leads outside the model's directory through a symbolic link/);
  // a link that stays inside the folder is fine
  const inside = modelDir(matmulModel(ext({ location: 'link.bin' })), { 'real.bin': floats(16, (i) => i) });
  symlinkSync('real.bin', join(inside, '..', 'link.bin'));
  assert.equal((loadModel(inside).graph.initializers.get('W')!.data as Float32Array)[5], 5);
});

test('external data: ranges outside the file, bad offsets and lengths, overlapping tensors, non-files', async () => {
  const w = { 'w.bin': floats(24, (i) => i) }; // 96 bytes
  rejects(modelDir(matmulModel(ext({ location: 'w.bin', offset: '4096' })), w), /tensor 'W': external data \[4096, 4160\) is outside '.*w\.bin' \(96 bytes\)/);
  rejects(modelDir(matmulModel(ext({ location: 'w.bin', offset: '64' })), w), /external data \[64, 128\) is outside/);
  rejects(modelDir(matmulModel(ext({ location: 'w.bin', length: '1000000' })), w), /tensor 'W' has external data of 1000000 bytes, float of dims \[4, 4\] needs 64/);
  rejects(modelDir(matmulModel(ext({ location: 'w.bin', offset: '-8' })), w), /tensor 'W' has external data offset '-8', not a byte count/);
  rejects(modelDir(matmulModel(ext({ location: 'w.bin', length: 'abc' })), w), /external data length 'abc', not a byte count/);
  rejects(modelDir(matmulModel(ext({ location: 'w.bin', offset: '18446744073709551616' })), w), /offset '18446744073709551616', not a byte count/);
  rejects(modelDir(matmulModel(ext({ location: 'missing.bin' })), w), /external data file '.*missing\.bin' not found/);
  const dir = modelDir(matmulModel(ext({ location: 'd' })));
  mkdirSync(join(dir, '..', 'd'));
  rejects(dir, /location 'd' is not a regular file/);
  // two tensors on the same bytes share them; ranges that overlap otherwise would read a file many times over
  const shared = loadModel(modelDir(matmulModel(ext({ location: 'w.bin' }), [1, 4], ext({ location: 'w.bin' })), w)).graph.initializers;
  assert.deepEqual([...(shared.get('V')!.data as Float32Array)], [...(shared.get('W')!.data as Float32Array)]);
  rejects(modelDir(matmulModel(ext({ location: 'w.bin' }), [1, 4], ext({ location: 'w.bin', offset: '32' })), w), /the tensors' external data in '.*w\.bin' overlap \(128 bytes read from a file of 96\)/);
  // a FIFO would block the read forever
  const fifo = modelDir(matmulModel(ext({ location: 'w.bin' })));
  execFileSync('mkfifo', [join(fifo, '..', 'w.bin')]);
  const r = await runMeasured(['inspect', fifo], 20_000);
  assert.match(userErrorLine(r) ?? describeRun(r), /tensor 'W': external data location 'w\.bin' is not a regular file/);
});

test('external data beyond 2 GiB into its file is read (a sparse 3 GiB side file)', () => {
  const path = modelDir(matmulModel(ext({ location: 'big.bin', offset: String(3 * 2 ** 30) })));
  const side = join(path, '..', 'big.bin');
  const fd = openSync(side, 'w');
  writeSync(fd, floats(16, (i) => i + 0.5), 0, 64, 3 * 2 ** 30);
  closeSync(fd);
  const w = loadModel(path).graph.initializers.get('W')!;
  assert.equal((w.data as Float32Array)[15], 15.5);
});

test('a model file over protobuf\'s 2 GiB is refused before it is read; a FIFO is not a model', async () => {
  const path = join(root, 'huge.onnx');
  closeSync(openSync(path, 'w'));
  truncateSync(path, 3 * 2 ** 30);
  rejects(path, /'.*huge\.onnx' is 3221225472 bytes, more than a protobuf \(an ONNX model file\) can hold \(2 GiB\)/);
  const r = await runMeasured(['inspect', path], 20_000);
  assert.match(userErrorLine(r) ?? describeRun(r), /more than a protobuf/);
  assert.ok(r.peakMiB < 300, describeRun(r));
  const fifo = join(root, 'fifo.onnx');
  execFileSync('mkfifo', [fifo]);
  rejects(fifo, /cannot read '.*fifo\.onnx': not a file/);
});

test('a chain of 10^6 Identity nodes loads (decode, topological check) without recursion, in linear time', () => {
  const bytes = chainModel(1_000_000, 'Identity');
  const t0 = performance.now();
  const model = parseModel(bytes);
  const seconds = (performance.now() - t0) / 1000;
  assert.equal(model.graph.nodes.length, 1_000_000);
  assert.deepEqual(model.graph.nodes[0]!.inputs, ['X']);
  assert.deepEqual(model.graph.nodes[999_999]!.outputs, ['Y']);
  // ~25 s alone on a 2-core machine; a quadratic step would take hours
  assert.ok(seconds < 240, `loading took ${seconds.toFixed(0)} s`);
});

test('shears inspect works on a chain of 10^5 Relu nodes', async () => {
  const path = modelDir(chainModel(100_000, 'Relu'));
  const r = await runMeasured(['inspect', path, '--json'], 120_000);
  assert.equal(r.code, 0, describeRun(r));
  const report = JSON.parse(r.stdout) as { nodes: number; opCounts: Record<string, number> };
  assert.equal(report.nodes, 100_000);
  assert.equal(report.opCounts['Relu'], 100_000);
});
