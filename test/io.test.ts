import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { create, toBinary, fromBinary } from '@bufbuild/protobuf';
import { ShearsError } from '../src/errors.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import { floatTensor, type Tensor } from '../src/ir/tensor.js';
import { decodeModel, encodeModel } from '../src/onnx/codec.js';
import { FunctionProtoSchema, ModelProtoSchema } from '../src/onnx/gen/onnx_pb.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { createSession } from '../src/runtime/session.js';

const fixture = fileURLToPath(new URL('../../test/fixtures/models/fmnist_resnet20.onnx', import.meta.url));

function input(n: number): Tensor {
  const x = new Float32Array(n * 28 * 28);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37);
  return { dtype: DataType.FLOAT, dims: [n, 1, 28, 28], data: x };
}

async function outputs(model: Parameters<typeof createSession>[0]): Promise<Float32Array> {
  const s = await createSession(model);
  const out = await s.run({ input: input(2) });
  await s.release();
  return out['logits']!.data as Float32Array;
}

test('load + save of a real model gives bit-identical onnxruntime outputs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-io-'));
  const out = join(dir, 'copy.onnx');
  saveModel(loadModel(fixture), out);
  assert.deepEqual(await outputs(out), await outputs(fixture));
});

test('external data is written on request, read back, and onnxruntime runs it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-ext-'));
  const out = join(dir, 'ext.onnx');
  const res = saveModel(loadModel(fixture), out, { externalData: true });
  assert.equal(res.externalFile, join(dir, 'ext.onnx.data'));
  assert.ok(existsSync(res.externalFile!));
  assert.ok(res.bytes < 100_000, `the model file should hold no weights, has ${res.bytes} bytes`);
  const back = loadModel(out);
  const orig = loadModel(fixture);
  for (const [k, t] of orig.graph.initializers) assert.deepEqual(back.graph.initializers.get(k)!.data, t.data, k);
  assert.deepEqual(await outputs(out), await outputs(fixture));
  // And saving the externally stored model inline again.
  const inline = join(dir, 'inline.onnx');
  saveModel(back, inline);
  assert.deepEqual(await outputs(inline), await outputs(fixture));
});

test('external data pointing outside the model directory or to a missing file is rejected', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-ext-bad-'));
  const out = join(dir, 'm.onnx');
  saveModel(loadModel(fixture), out, { externalData: 'weights.bin' });
  const bytes = readFileSync(out);
  const evil = bytes.toString('latin1').replaceAll('weights.bin', '../xxx.bin_');
  writeFileSync(join(dir, 'evil.onnx'), Buffer.from(evil, 'latin1'));
  assert.throws(() => loadModel(join(dir, 'evil.onnx')), (e) => e instanceof ShearsError && /outside/.test(e.message));
  const missing = bytes.toString('latin1').replaceAll('weights.bin', 'nothere.bin');
  writeFileSync(join(dir, 'missing.onnx'), Buffer.from(missing, 'latin1'));
  assert.throws(() => loadModel(join(dir, 'missing.onnx')), (e) => e instanceof ShearsError && /not found/.test(e.message));
});

test('metadata, functions, doc strings, int64 extremes and unknown fields survive a round trip', () => {
  const b = new GraphBuilder('g');
  const x = b.input('x', ['N', 4]);
  const y = b.node('Slice', [x], { starts: [0], ends: [9223372036854775807], axes: [1] });
  b.output(y);
  const m = b.model(9);
  m.metadata.set('shears.test', '{"a":1}');
  m.docString = 'doc';
  m.functions = [create(FunctionProtoSchema, { name: 'f', domain: 'custom', input: ['a'], output: ['b'], overload: 'o1' })];
  const proto = fromBinary(ModelProtoSchema, encodeModel(m));
  // Add an unknown field (number 999, varint 42) to the node, as a newer ONNX version might.
  proto.graph!.node[0]!.$unknown = [{ no: 999, wireType: 0, data: new Uint8Array([42]) }];
  const bytes = toBinary(ModelProtoSchema, proto);
  const back = decodeModel(bytes);
  const again = fromBinary(ModelProtoSchema, encodeModel(back));
  assert.deepEqual(again.graph!.node[0]!.$unknown, [{ no: 999, wireType: 0, data: new Uint8Array([42]) }]);
  assert.equal(again.graph!.node[0]!.attribute.find((a) => a.name === 'ends')!.ints[0], 9223372036854775807n);
  assert.equal(again.docString, 'doc');
  assert.equal(again.functions[0]!.overload, 'o1');
  assert.equal(back.metadata.get('shears.test'), '{"a":1}');
});

test('every dtype is preserved through raw_data', () => {
  const b = new GraphBuilder('g');
  const dtypes: [number, Tensor['data']][] = [
    [DataType.FLOAT, new Float32Array([1.5, -2])],
    [DataType.DOUBLE, new Float64Array([1e300, -0])],
    [DataType.INT8, new Int8Array([-128, 127])],
    [DataType.UINT8, new Uint8Array([0, 255])],
    [DataType.INT16, new Int16Array([-32768, 7])],
    [DataType.UINT16, new Uint16Array([65535, 1])],
    [DataType.INT32, new Int32Array([-1, 2 ** 31 - 1])],
    [DataType.UINT32, new Uint32Array([2 ** 32 - 1, 0])],
    [DataType.INT64, new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n])],
    [DataType.UINT64, new BigUint64Array([2n ** 64n - 1n, 0n])],
    [DataType.BOOL, new Uint8Array([1, 0])],
    [DataType.FLOAT16, new Uint16Array([0x3c00, 0xfbff])],
    [DataType.BFLOAT16, new Uint16Array([0x3f80, 0x8000])],
    [DataType.FLOAT8E4M3FN, new Uint8Array([0x38, 0x7e])],
    [DataType.INT4, new Uint8Array([0x7f])],
    [DataType.UINT4, new Uint8Array([0xf0])],
    [DataType.COMPLEX64, new Float32Array([1, 2, 3, 4])],
  ];
  dtypes.forEach(([dt, data], i) => b.init(`t${i}`, { dtype: dt, dims: [2], data }));
  b.init('s', { dtype: DataType.STRING, dims: [2], data: [new Uint8Array([104, 105]), new Uint8Array([0xff])] });
  const back = decodeModel(encodeModel(b.model()));
  dtypes.forEach(([dt, data], i) => {
    const t = back.graph.initializers.get(`t${i}`)!;
    assert.equal(t.dtype, dt);
    assert.deepEqual(t.data, data, `dtype ${dt}`);
  });
  assert.deepEqual(back.graph.initializers.get('s')!.data, [new Uint8Array([104, 105]), new Uint8Array([0xff])]);
});

test('typed *_data fields are converted to typed arrays', () => {
  const b = new GraphBuilder('g');
  b.init('w', floatTensor([2], [0, 0]));
  const proto = fromBinary(ModelProtoSchema, encodeModel(b.model()));
  const t = proto.graph!.initializer[0]!;
  t.rawData = new Uint8Array(0);
  t.floatData = [0.5, -3];
  const back = decodeModel(toBinary(ModelProtoSchema, proto));
  assert.deepEqual(back.graph.initializers.get('w')!.data, new Float32Array([0.5, -3]));
  t.floatData = [1];
  assert.throws(() => decodeModel(toBinary(ModelProtoSchema, proto)), ShearsError);
});

test('a cyclic graph and an undefined input are reported with the node name', () => {
  const b = new GraphBuilder('g');
  const x = b.input('x', [1, 4]);
  b.node('Add', [x, 'loop_b'], {}, { name: 'loop_a', output: 'loop_a_out' });
  b.node('Relu', ['loop_a_out'], {}, { name: 'loop_b_node', output: 'loop_b' });
  b.output('loop_b');
  const dir = mkdtempSync(join(tmpdir(), 'shears-cyc-'));
  writeFileSync(join(dir, 'c.onnx'), encodeModel(b.model()));
  assert.throws(() => loadModel(join(dir, 'c.onnx')), (e) => e instanceof ShearsError && /cycle/.test(e.message) && /loop_/.test(e.message));
  const u = new GraphBuilder('g');
  u.node('Relu', ['nowhere'], {}, { name: 'lonely', output: 'y' });
  u.output('y');
  writeFileSync(join(dir, 'u.onnx'), encodeModel(u.model()));
  assert.throws(() => loadModel(join(dir, 'u.onnx')), (e) => e instanceof ShearsError && /lonely/.test(e.message) && /nowhere/.test(e.message));
  assert.throws(() => loadModel(join(dir, 'absent.onnx')), (e) => e instanceof ShearsError && /no such file/.test(e.message));
});
