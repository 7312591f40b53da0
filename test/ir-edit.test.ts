import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../src/ir/builder.js';
import { emptyGraph, type Graph } from '../src/ir/graph.js';
import {
  GraphIndex, checkGraph, insertNodes, nodeReads, outerScopeReads, removeDeadNodes, replaceAllUses, sortGraph, topoSort, uniqueName,
} from '../src/ir/edit.js';
import { cloneModel } from '../src/ir/clone.js';
import { floatTensor } from '../src/ir/tensor.js';
import { decodeModel, encodeModel } from '../src/onnx/codec.js';
import { createSession } from '../src/runtime/session.js';
import { DataType } from '../src/ir/dtype.js';

/** y = If(cond) then (x_outer * 2) else (x_outer + 1), where x_outer = Relu(x) is only read inside the branches. */
function ifModel() {
  const b = new GraphBuilder('main');
  const x = b.input('x', [2, 3]);
  const cond = b.input('cond', [], DataType.BOOL);
  const outer = b.node('Relu', [x], {}, { name: 'outer_relu', output: 'x_outer' });
  const branch = (name: string, op: string, c: number): Graph => {
    const g = emptyGraph(name);
    g.initializers.set(`${name}_c`, floatTensor([], [c]));
    g.nodes.push({ name: `${name}_op`, opType: op, domain: '', inputs: [outer, `${name}_c`], outputs: [`${name}_y`], attrs: new Map() });
    g.outputs.push({ name: `${name}_y`, type: { elemType: DataType.FLOAT } });
    return g;
  };
  const y = b.node('If', [cond], { then_branch: branch('then', 'Mul', 2), else_branch: branch('else', 'Add', 1) }, { name: 'the_if' });
  b.output(y);
  b.node('Sigmoid', [x], {}, { name: 'dead_sigmoid' });
  return b.model(17);
}

test('values read only inside If branches are uses: order, liveness, validity', async () => {
  const m = ifModel();
  const g = m.graph;
  const theIf = g.nodes.find((n) => n.name === 'the_if')!;
  assert.deepEqual(outerScopeReads((theIf.attrs.get('then_branch') as { value: Graph }).value), new Set(['x_outer']));
  assert.deepEqual(new Set(nodeReads(theIf)), new Set(['cond', 'x_outer']));
  assert.deepEqual(new GraphIndex(g).consumersOf('x_outer').map((n) => n.name), ['the_if']);
  // Put the If first: topological order must move the Relu before it.
  g.nodes = [theIf, ...g.nodes.filter((n) => n !== theIf)];
  sortGraph(g);
  assert.ok(g.nodes.findIndex((n) => n.name === 'outer_relu') < g.nodes.findIndex((n) => n.name === 'the_if'));
  assert.equal(removeDeadNodes(g), 1);
  assert.deepEqual(g.nodes.map((n) => n.name), ['outer_relu', 'the_if']);
  assert.deepEqual(checkGraph(g), []);
  // The subgraphs survive a round trip and onnxruntime runs both branches.
  const s = await createSession(decodeModel(encodeModel(m)));
  const x = { dtype: DataType.FLOAT, dims: [2, 3], data: new Float32Array([-1, 0, 1, 2, -3, 4]) };
  const t = await s.run({ x, cond: { dtype: DataType.BOOL, dims: [], data: new Uint8Array([1]) } });
  assert.deepEqual([...(Object.values(t)[0]!.data as Float32Array)], [0, 0, 2, 4, 0, 8]);
  const f = await s.run({ x, cond: { dtype: DataType.BOOL, dims: [], data: new Uint8Array([0]) } });
  assert.deepEqual([...(Object.values(f)[0]!.data as Float32Array)], [1, 1, 2, 3, 1, 5]);
});

test('replaceAllUses rewires node inputs and subgraph reads, and keeps graph output names', async () => {
  const m = ifModel();
  const g = m.graph;
  const b = g.nodes.find((n) => n.name === 'outer_relu')!;
  insertNodes(g, [{ name: 'alt', opType: 'Abs', domain: '', inputs: ['x'], outputs: ['x_alt'], attrs: new Map() }], b);
  replaceAllUses(g, 'x_outer', 'x_alt');
  const theIf = g.nodes.find((n) => n.name === 'the_if')!;
  assert.deepEqual(outerScopeReads((theIf.attrs.get('else_branch') as { value: Graph }).value), new Set(['x_alt']));
  removeDeadNodes(g);
  assert.ok(!g.nodes.some((n) => n.name === 'outer_relu'));
  assert.deepEqual(checkGraph(g), []);
  // Replacing a graph output keeps the output's name through an Identity.
  const out = g.outputs[0]!.name;
  g.nodes.push({ name: 'neg', opType: 'Neg', domain: '', inputs: [out], outputs: ['negated'], attrs: new Map() });
  replaceAllUses(g, out, 'negated');
  sortGraph(g);
  assert.equal(g.outputs[0]!.name, out);
  assert.ok(g.nodes.some((n) => n.opType === 'Identity' && n.outputs[0] === out && n.inputs[0] === 'negated'));
  assert.deepEqual(checkGraph(g), []);
  const s = await createSession(m);
  const x = { dtype: DataType.FLOAT, dims: [2, 3], data: new Float32Array([-1, 0, 1, 2, -3, 4]) };
  const r = await s.run({ x, cond: { dtype: DataType.BOOL, dims: [], data: new Uint8Array([1]) } });
  assert.deepEqual([...(r[out]!.data as Float32Array)], [-2, -0, -2, -4, -6, -8]);
});

test('checkGraph finds double producers, undefined reads, cycles and bad initializers', () => {
  const b = new GraphBuilder('g');
  const x = b.input('x', [1]);
  b.node('Relu', [x], {}, { name: 'a', output: 'y' });
  b.node('Neg', [x], {}, { name: 'b', output: 'y' });
  b.node('Abs', ['ghost'], {}, { name: 'c', output: 'z' });
  b.output('y');
  b.output('never');
  b.init('bad', { dtype: DataType.STRING, dims: [3], data: [new Uint8Array(1)] });
  const p = checkGraph(b.graph).join('\n');
  assert.match(p, /'y' is produced twice/);
  assert.match(p, /'c' .*undefined value 'ghost'/);
  assert.match(p, /output 'never' is never produced/);
  assert.match(p, /'bad' holds 1 strings for 3 elements/);
  const c = new GraphBuilder('cyc');
  c.node('Relu', ['q'], {}, { name: 'p1', output: 'p' });
  c.node('Relu', ['p'], {}, { name: 'q1', output: 'q' });
  assert.throws(() => topoSort(c.graph), /cycle/);
});

test('uniqueName avoids every name in use; clones edit independently', () => {
  const m = ifModel();
  assert.equal(uniqueName(m.graph, 'fresh'), 'fresh');
  assert.equal(uniqueName(m.graph, 'x_outer'), 'x_outer_1');
  assert.equal(uniqueName(m.graph, 'the_if'), 'the_if_1');
  const c = cloneModel(m);
  c.graph.nodes[0]!.inputs[0] = 'changed';
  c.graph.initializers.set('new', floatTensor([1]));
  c.metadata.set('k', 'v');
  assert.equal(m.graph.nodes[0]!.inputs[0], 'x');
  assert.ok(!m.graph.initializers.has('new'));
  assert.ok(!m.metadata.has('k'));
});
