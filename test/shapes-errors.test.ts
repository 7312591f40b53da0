/** inferShapes on bad inputs, symbolic dims, unknown ops, weights and costs; resnet20 fixture vs onnxruntime. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { ShearsError } from '../src/errors.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor, int64Tensor } from '../src/ir/tensor.js';
import { loadModel } from '../src/onnx/io.js';
import { inferShapes, nodeContext } from '../src/analysis/shapes.js';
import { opDef, weightSpec } from '../src/ops/registry.js';
import { crossCheck } from './shapes-helpers.js';

const RESNET20 = fileURLToPath(new URL('../../test/fixtures/models/fmnist_resnet20.onnx', import.meta.url));

function convModel(cin = 3): Model {
  const b = new GraphBuilder();
  const x = b.input('x', ['N', cin, 8, 8]);
  const y = b.node('Conv', [x, b.init('w', floatTensor([4, 3, 3, 3])), b.init('bias', floatTensor([4]))], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  b.output(b.node('Relu', [y], {}, { name: 'relu1' }));
  return b.model();
}

function throwsShears(f: () => unknown, pattern: RegExp, node?: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof ShearsError, `expected a ShearsError, got ${String(e)}`);
    assert.match(e.message, pattern);
    if (node !== undefined) assert.equal(e.node, node);
    return true;
  });
}

test('inputShapes: wrong rank, conflicting fixed dim, unknown name, bad dim name the input', () => {
  const m = convModel();
  throwsShears(() => inferShapes(m, { inputShapes: { x: [1, 3, 8] } }), /input 'x' has rank 4/);
  throwsShears(() => inferShapes(m, { inputShapes: { x: [1, 4, 8, 8] } }), /input 'x' has size 3 on axis 1/);
  throwsShears(() => inferShapes(m, { inputShapes: { y: [1, 3, 8, 8] } }), /'y'.*'x'/);
  throwsShears(() => inferShapes(m, { inputShapes: { x: [1, 3, -2, 8] } }), /input 'x': bad dimension -2/);
});

test('symbolic batch stays symbolic; inputShapes fixes it', () => {
  const m = convModel();
  assert.deepEqual(inferShapes(m).types.get('relu1_out0')?.shape, ['N', 4, 8, 8]);
  assert.deepEqual(inferShapes(m, { inputShapes: { x: [5, 3, 8, 8] } }).types.get('relu1_out0')?.shape, [5, 4, 8, 8]);
});

test('symbolic dims propagate through Reshape 0/-1, Flatten, Concat, Split, Resize and shape arithmetic', () => {
  const b = new GraphBuilder();
  const x = b.input('x', ['N', 64, 1, 1]);
  const r1 = b.node('Reshape', [x, b.init('s1', int64Tensor([2], [0, -1]))]);
  const r2 = b.node('Reshape', [x, b.init('s2', int64Tensor([2], [-1, 64]))]);
  const f = b.node('Flatten', [x], { axis: 2 });
  const sh = b.node('Shape', [x]);
  const n = b.node('Gather', [sh, b.init('zero', int64Tensor([1], [0]))]);
  const n2 = b.node('Mul', [n, b.init('two', int64Tensor([1], [2]))]);
  const r3 = b.node('Reshape', [x, b.node('Concat', [n2, b.init('m1', int64Tensor([1], [-1]))], { axis: 0 })]);
  const c = b.node('Concat', [r1, r2], { axis: 0 });
  const y = b.input('y', ['B', 3, 'H', 'W']);
  const rs = b.node('Resize', [y, '', b.init('sc', floatTensor([4], [1, 1, 2, 2]))]);
  const cv = b.node('Conv', [y, b.init('w', floatTensor([8, 3, 3, 3]))], { pads: [1, 1, 1, 1] });
  const cs = b.node('Conv', [y, b.init('w2', floatTensor([8, 3, 3, 3]))], { strides: [2, 2] });
  const info = inferShapes(b.model());
  const t = (v: string) => info.types.get(v)?.shape;
  assert.deepEqual(t(r1), ['N', 64]);
  assert.deepEqual(t(r2), ['N', 64]);
  assert.deepEqual(t(f), ['N*64', 1]);
  assert.deepEqual(info.values.get(sh), ['N', 64, 1, 1]);
  assert.deepEqual(info.values.get(n2), ['N*2']);
  assert.deepEqual(t(r3), ['N*2', 32]);
  assert.deepEqual(t(c), ['N+N', 64]);
  assert.deepEqual(t(rs), ['B', 3, 'H*2', 'W*2']);
  assert.deepEqual(t(cv), ['B', 8, 'H', 'W']);
  const strided = t(cs)!;
  assert.equal(strided[0], 'B');
  assert.ok(typeof strided[2] === 'string' && strided[2] !== 'H', 'a strided unknown size gets a fresh symbol');
});

test('op errors name the node: conv channel mismatch, broadcast failure, reshape count, bad axis', () => {
  throwsShears(() => inferShapes(convModel(5)), /input has 5 channels/, 'conv1');
  const b = new GraphBuilder();
  const x = b.input('x', [2, 3]);
  b.output(b.node('Add', [x, b.init('c', floatTensor([4]))], {}, { name: 'add1' }));
  throwsShears(() => inferShapes(b.model()), /do not broadcast/, 'add1');
  const r = new GraphBuilder();
  const y = r.input('y', ['N', 3, 4]);
  r.output(r.node('Reshape', [y, r.init('s', int64Tensor([2], [5, 5]))], {}, { name: 'reshape1' }));
  throwsShears(() => inferShapes(r.model(), { inputShapes: { y: [1, 3, 4] } }), /cannot reshape/, 'reshape1');
  const t = new GraphBuilder();
  const z = t.input('z', [2, 3]);
  t.output(t.node('Softmax', [z], { axis: 2 }, { name: 'sm' }));
  throwsShears(() => inferShapes(t.model()), /axis 2 is out of range/, 'sm');
  const g = new GraphBuilder();
  const a = g.input('a', [2, 3]);
  g.output(g.node('Gemm', [a, g.init('B', floatTensor([4, 5]))], {}, { name: 'fc' }));
  throwsShears(() => inferShapes(g.model()), /inner dimensions differ/, 'fc');
});

test('unknown ops and other domains do not throw: listed, outputs from value_info', () => {
  const b = new GraphBuilder();
  const x = b.input('x', ['N', 3]);
  const y = b.node('FancyOp', [x], {}, { name: 'fancy', domain: 'com.example' });
  const z = b.node('NotAnOnnxOp', [y], {}, { name: 'mystery' });
  b.graph.valueInfo.set(y, { name: y, type: { elemType: DataType.FLOAT, shape: ['N', 7] } });
  b.output(b.node('Relu', [y]));
  b.output(b.node('Relu', [z]));
  const info = inferShapes(b.model(17, [{ domain: 'com.example', version: 1 }]));
  assert.deepEqual(info.unknownOps, [{ node: 'fancy', opType: 'com.example.FancyOp' }, { node: 'mystery', opType: 'NotAnOnnxOp' }]);
  assert.deepEqual(info.types.get(y)?.shape, ['N', 7]);
  assert.equal(info.types.get(z), undefined);
});

test('unknown dims get fresh symbols that are followed through the graph', () => {
  const b = new GraphBuilder();
  const x = b.input('x', [null, 3, null]);
  const t = b.node('Transpose', [x], { perm: [2, 1, 0] });
  b.output(b.node('Add', [t, b.node('Transpose', [x], { perm: [2, 1, 0] })]));
  const info = inferShapes(b.model());
  const s = info.types.get(x)!.shape!;
  assert.ok(typeof s[0] === 'string' && typeof s[2] === 'string' && s[0] !== s[2]);
  assert.deepEqual(info.types.get(t)?.shape, [s[2], 3, s[0]]);
});

test('control flow: If merges declared branch types, Loop carries input types, nothing throws', () => {
  const branch = (shape: (number | string)[]) => {
    const g = new GraphBuilder('branch');
    g.graph.nodes.push({ name: 'c', opType: 'Constant', domain: '', inputs: [], outputs: ['v'], attrs: new Map([['value', { kind: 'tensor', value: floatTensor(shape as number[]) }]]) });
    g.graph.outputs.push({ name: 'v', type: { elemType: DataType.FLOAT, shape } });
    return g.graph;
  };
  const b = new GraphBuilder();
  const cond = b.input('cond', [], DataType.BOOL);
  const x = b.input('x', [2, 3]);
  const y = b.node('If', [cond], { then_branch: branch([2, 3]), else_branch: branch([2, 4]) });
  const body = new GraphBuilder('body');
  body.input('i', [], DataType.INT64);
  const c = body.input('c', [], DataType.BOOL);
  const acc = body.input('acc', [2, 3]);
  body.graph.outputs.push({ name: c }, { name: body.node('Relu', [acc], {}, { output: 'acc_out' }), type: { elemType: DataType.FLOAT, shape: [2, 3] } });
  body.graph.outputs.push({ name: 'acc_out2', type: { elemType: DataType.FLOAT, shape: [3] } });
  const [l1, l2] = b.nodeN('Loop', [b.init('M', int64Tensor([], [3])), '', x], { body: body.graph }, 2);
  b.output(y);
  b.output(l1!);
  b.output(l2!);
  const info = inferShapes(b.model());
  const ty = info.types.get(y)!;
  assert.equal(ty.elemType, DataType.FLOAT);
  assert.equal(ty.shape?.[0], 2);
  assert.ok(typeof ty.shape?.[1] === 'string', 'branches disagree on dim 1: unknown (fresh symbol)');
  assert.deepEqual(info.types.get(l1!)?.shape, [2, 3]);
  assert.equal(info.types.get(l2!)?.shape?.length, 2);
});

test('weightSpec: Conv, ConvTranspose, Gemm by transB, MatMul only with a 2-D weight', () => {
  const node = (opType: string, attrs: Record<string, number> = {}, inputs = ['x', 'w', 'b']) => {
    const b = new GraphBuilder();
    b.node(opType, inputs, attrs);
    return b.graph.nodes[0]!;
  };
  assert.deepEqual(weightSpec(node('Conv')), { input: 1, outAxis: 0, inAxis: 1, bias: 2 });
  assert.deepEqual(weightSpec(node('Conv', {}, ['x', 'w'])), { input: 1, outAxis: 0, inAxis: 1 });
  assert.deepEqual(weightSpec(node('ConvTranspose')), { input: 1, outAxis: 1, inAxis: 0, bias: 2 });
  assert.deepEqual(weightSpec(node('Gemm', { transB: 1 })), { input: 1, outAxis: 0, inAxis: 1, bias: 2 });
  assert.deepEqual(weightSpec(node('Gemm')), { input: 1, outAxis: 1, inAxis: 0, bias: 2 });
  assert.deepEqual(weightSpec(node('MatMul', {}, ['x', 'w']), [8, 4]), { input: 1, outAxis: 1, inAxis: 0 });
  assert.equal(weightSpec(node('MatMul', {}, ['x', 'w']), [2, 8, 4]), undefined);
  assert.equal(weightSpec(node('Relu', {}, ['x'])), undefined);
  assert.equal(weightSpec(node('Add', {}, ['x', 'y'])), undefined);
});

test('cost: MACs of Conv, ConvTranspose, Gemm, batched MatMul; flops of pools', () => {
  const b = new GraphBuilder();
  const x = b.input('x', [2, 6, 11, 13]);
  const c = b.node('Conv', [x, b.init('w', floatTensor([4, 3, 3, 3]))], { group: 2, strides: [2, 2] }, { name: 'c' });
  const t = b.node('ConvTranspose', [x, b.init('wt', floatTensor([6, 2, 3, 3]))], { group: 2 }, { name: 't' });
  const p = b.node('MaxPool', [x], { kernel_shape: [3, 3] }, { name: 'p' });
  const g = b.node('Gemm', [b.input('a', [7, 5]), b.init('B', floatTensor([3, 5])), b.init('C', floatTensor([3]))], { transB: 1 }, { name: 'g' });
  const m = b.node('MatMul', [b.input('m1', [4, 1, 7, 5]), b.input('m2', [3, 5, 2])], {}, { name: 'm' });
  for (const o of [c, t, p, g, m]) b.output(o);
  const model = b.model();
  const info = inferShapes(model);
  const cost = (name: string) => {
    const n = model.graph.nodes.find((k) => k.name === name)!;
    return opDef(n)!.cost!(nodeContext(model, info, n));
  };
  assert.deepEqual(info.types.get(c)?.shape, [2, 4, 5, 6]);
  assert.equal(cost('c').macs, 2 * 4 * 5 * 6 * 3 * 9);
  assert.equal(cost('t').macs, 2 * 6 * 11 * 13 * 2 * 9);
  assert.deepEqual(cost('p'), { macs: 0, flops: 2 * 6 * 9 * 11 * 9 });
  assert.deepEqual(cost('g'), { macs: 7 * 3 * 5, flops: 7 * 3 });
  assert.equal(cost('m').macs, 4 * 3 * 7 * 2 * 5);
});

test('fmnist_resnet20 fixture: every value matches onnxruntime (symbolic batch 3 and fixed batch 1)', async () => {
  const model = loadModel(RESNET20);
  const input = model.graph.inputs[0]!.name;
  const r = await crossCheck(model, { sizes: { N: 3 } });
  assert.ok(r.checked >= model.graph.nodes.length);
  assert.deepEqual(r.info.unknownOps, []);
  const fixed = await crossCheck(model, { inputShapes: { [input]: [1, 1, 28, 28] } });
  for (const [name, t] of fixed.info.types) {
    assert.ok(t.shape?.every((d) => typeof d === 'number'), `'${name}' is static with a fixed input shape`);
  }
});
