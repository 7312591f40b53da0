/**
 * NCHWc lowering of training graphs (autodiff/nchwc.ts): the lowered graph computes the same loss, output and
 * gradients as the plain one; float32 2-D Convs of group 1 (channels padded to the block when cheap) and depthwise
 * Convs (channels a multiple of the block) are rewritten.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { existsSync, readFileSync } from 'node:fs';
import { lowerNchwc, lowerNchwcWith, nchwcBlock, NCHWC_DOMAIN } from '../src/autodiff/nchwc.js';
import { probeTypes } from '../src/autodiff/shapes.js';
import { buildTrainingGraph } from '../src/autodiff/training.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { numel, type Tensor } from '../src/ir/tensor.js';
import { runOnce } from '../src/runtime/session.js';
import { rng } from './gradcheck.js';
import { finetune } from '../src/train/trainer.js';
import { synth } from './train_fixtures.js';

function t(dtype: number, dims: number[], r: () => number, scale = 0.3): Tensor {
  const data = Array.from({ length: numel(dims) }, () => (r() * 2 - 1) * scale);
  return { dtype, dims, data: dtype === DataType.DOUBLE ? Float64Array.from(data) : Float32Array.from(data) };
}

/** x[N,16,9,8] -> Conv3x3(16->16) -> Relu -> Conv3x3 s2 asym pads (16->32) + Conv1x1 s2 (16->32) -> Relu -> grouped Conv -> GAP -> Gemm */
function net(dtype: number): Model {
  const r = rng(11);
  const b = new GraphBuilder('nchwc_net');
  b.input('x', [null, 16, 9, 8], dtype);
  const h = b.node('Relu', [b.node('Conv', ['x', b.init('w1', t(dtype, [16, 16, 3, 3], r)), b.init('b1', t(dtype, [16], r))], { pads: [1, 1, 1, 1] })]);
  const a = b.node('Conv', [h, b.init('w2', t(dtype, [32, 16, 3, 3], r))], { strides: [2, 2], pads: [1, 0, 1, 1] });
  const s = b.node('Conv', [h, b.init('w3', t(dtype, [32, 16, 1, 1], r)), b.init('b3', t(dtype, [32], r))], { strides: [2, 2] });
  const j = b.node('Relu', [b.node('Add', [a, s])]);
  const gc = b.node('Conv', [j, b.init('w4', t(dtype, [32, 16, 3, 3], r))], { group: 2, pads: [1, 1, 1, 1] });
  const p = b.node('Flatten', [b.node('GlobalAveragePool', [gc])]);
  b.node('Gemm', [p, b.init('wf', t(dtype, [5, 32], r)), b.init('bf', t(dtype, [5], r))], { transB: 1 }, { output: 'y' });
  b.output('y', undefined, dtype);
  return b.model(17);
}

const runGraph = (model: Model, feeds: Record<string, Tensor>) => runOnce(model, feeds, { threads: 1 });

/** Same outputs (names, shapes, values up to float rounding relative to each output's largest value). */
function sameResults(a: Record<string, Tensor>, b: Record<string, Tensor>): void {
  assert.deepEqual(Object.keys(b).sort(), Object.keys(a).sort());
  for (const k of Object.keys(a)) {
    const u = a[k]!.data as Float32Array;
    const v = b[k]!.data as Float32Array;
    assert.deepEqual(b[k]!.dims, a[k]!.dims, k);
    let scale = 0;
    for (const e of u) scale = Math.max(scale, Math.abs(e));
    for (let i = 0; i < u.length; i++) assert.ok(Math.abs(u[i]! - v[i]!) <= 1e-5 + 1e-4 * scale, `${k}[${i}]: ${u[i]} vs ${v[i]}`);
  }
}

test('lowered float32 training graph: same loss, output and gradients as the plain graph', async () => {
  const N = 4;
  const tg = await buildTrainingGraph(net(DataType.FLOAT), { batch: N, loss: { ce: {} } });
  const r = rng(5);
  const feeds: Record<string, Tensor> = { x: t(DataType.FLOAT, [N, 16, 9, 8], r, 1) };
  const target = new Float32Array(N * 5);
  for (let i = 0; i < N; i++) target[i * 5 + (i % 5)] = 1;
  feeds['shears_target'] = { dtype: DataType.FLOAT, dims: [N, 5], data: target };
  for (const p of tg.params) feeds[p.name] = p.init;
  const block = await nchwcBlock();
  // onnxruntime's x86 builds have the NCHWc kernels: block 16 with AVX-512, 8 with AVX2 (a wrong layout shows here).
  const flags = process.platform === 'linux' && process.arch === 'x64' && existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  if (/\bavx512f\b/.test(flags)) assert.equal(block, 16);
  else if (/\bavx2\b/.test(flags)) assert.equal(block, 8);
  const low = await lowerNchwc(tg.model);
  if (block === undefined) {
    // No NCHWc kernels on this CPU/build: the model must come back untouched.
    assert.equal(low.lowered, 0);
    assert.equal(low.model, tg.model);
    return;
  }
  // Forward Convs w1 (16->16), w2, w3 and their input-gradient Convs (stride 1 ones run as Conv); never the grouped one.
  assert.ok(low.lowered >= 3, `lowered ${low.lowered}`);
  const nchwcConvs = low.model.graph.nodes.filter((n) => n.domain === NCHWC_DOMAIN && n.opType === 'Conv');
  assert.equal(nchwcConvs.length, low.lowered);
  assert.ok(tg.model.graph.nodes.every((n) => n.domain === ''), 'the input model is not modified');
  sameResults(await runGraph(tg.model, feeds), await runGraph(low.model, feeds));
});

test('only float32 group-1 Convs whose channels pad to the block at most 2.25x the work, and depthwise ones, are rewritten', async () => {
  const m = net(DataType.FLOAT);
  const types = await probeTypes(m, { x: [2, 16, 9, 8] });
  const lowered = lowerNchwcWith(m, 16, types);
  // w1, w2, w3; not the grouped Conv.
  assert.equal(lowered.lowered, 3);
  const rest = lowered.model.graph.nodes.filter((n) => n.opType === 'Conv' && n.domain === '');
  assert.deepEqual(rest.map((n) => n.inputs[1]), ['w4']);
  // Block 32: w2 and w3 (32 x 16 channels, padded to 32 x 32: twice the work) are; w1 (16 x 16, padded 4x the work)
  // folds the batch's two images into 32 channels instead.
  const at32 = lowerNchwcWith(m, 32, types);
  assert.equal(at32.lowered, 3);
  assert.deepEqual(at32.model.graph.nodes.filter((n) => n.opType === 'Conv' && n.domain === '').map((n) => n.inputs[1]), ['w4']);
  assert.ok(at32.model.graph.nodes.some((n) => n.opType === 'Concat' && n.outputs[0]!.startsWith('w1/block_diagonal')));
  // With an odd batch it cannot: w1 stays on the plain path.
  const odd = lowerNchwcWith(m, 32, await probeTypes(m, { x: [3, 16, 9, 8] }));
  assert.deepEqual(odd.model.graph.nodes.filter((n) => n.opType === 'Conv' && n.domain === '').map((n) => n.inputs[1]), ['w1', 'w4']);
  // A float64 graph (same shapes) is left alone: the NCHWc kernels are float32 only.
  const f64 = { shapes: types.shapes, elemTypes: new Map([...types.elemTypes].map(([k]) => [k, DataType.DOUBLE])) };
  const none = lowerNchwcWith(net(DataType.DOUBLE), 16, f64);
  assert.equal(none.lowered, 0);
});

test('channel counts off the block (pruned widths 11, 13): padded NCHWc Convs give the plain graph\'s loss and gradients', async () => {
  const block = await nchwcBlock();
  if (block === undefined) return; // no NCHWc kernels here: covered by the test above
  const r = rng(8);
  const b = new GraphBuilder('pruned');
  b.input('x', [null, 11, 9, 8]);
  const h = b.node('Relu', [b.node('Conv', ['x', b.init('w1', t(DataType.FLOAT, [13, 11, 3, 3], r)), b.init('b1', t(DataType.FLOAT, [13], r))], { pads: [1, 1, 1, 1] })]);
  const k = b.node('Relu', [b.node('Conv', [h, b.init('w2', t(DataType.FLOAT, [11, 13, 3, 3], r))], { strides: [2, 2], pads: [0, 1, 1, 1] })]);
  b.node('Gemm', [b.node('Flatten', [b.node('GlobalAveragePool', [k])]), b.init('wf', t(DataType.FLOAT, [4, 11], r)), b.init('bf', t(DataType.FLOAT, [4], r))], { transB: 1 }, { output: 'y' });
  b.output('y');
  const N = 3;
  const tg = await buildTrainingGraph(b.model(17), { batch: N, loss: { ce: {} } });
  const low = await lowerNchwc(tg.model);
  // Both forward Convs (13 x 11 and 11 x 13, padded to the block); the strided one's input gradient is a ConvTranspose.
  assert.equal(low.lowered, 2);
  assert.ok(low.model.graph.nodes.some((n) => n.opType === 'Pad' && n.inputs[0] === 'w1'), 'w1 is padded to the block');
  const feeds: Record<string, Tensor> = { x: t(DataType.FLOAT, [N, 11, 9, 8], r, 1) };
  const target = new Float32Array(N * 4);
  for (let i = 0; i < N; i++) target[i * 4 + i] = 1;
  feeds['shears_target'] = { dtype: DataType.FLOAT, dims: [N, 4], data: target };
  for (const p of tg.params) feeds[p.name] = p.init;
  sameResults(await runGraph(tg.model, feeds), await runGraph(low.model, feeds));
});

test('narrow Convs (channels at most half the block): images folded into the channel axis give the plain graph\'s loss and gradients', async () => {
  const block = await nchwcBlock();
  if (block === undefined) return; // no NCHWc kernels here
  const h = block / 2; // 8 with AVX-512, 4 with AVX2: two images per block
  const q = h - 1; // odd: the folded output channels (2q) are padded up to the block
  const r = rng(9);
  const b = new GraphBuilder('narrow');
  b.input('x', [null, h, 9, 8]);
  const a0 = b.node('Relu', [b.node('Conv', ['x', b.init('w1', t(DataType.FLOAT, [h, h, 3, 3], r)), b.init('b1', t(DataType.FLOAT, [h], r))], { pads: [1, 1, 1, 1] })]);
  const a = b.node('Relu', [b.node('Conv', [a0, b.init('w1b', t(DataType.FLOAT, [h, h, 3, 3], r))], { pads: [1, 1, 1, 1] })]);
  const k = b.node('Relu', [b.node('Conv', [a, b.init('w2', t(DataType.FLOAT, [q, h, 3, 3], r)), b.init('b2', t(DataType.FLOAT, [q], r))], { strides: [2, 2], pads: [0, 1, 1, 1] })]);
  b.node('Gemm', [b.node('Flatten', [b.node('GlobalAveragePool', [k])]), b.init('wf', t(DataType.FLOAT, [4, q], r)), b.init('bf', t(DataType.FLOAT, [4], r))], { transB: 1 }, { output: 'y' });
  b.output('y');
  for (const N of [4, 3]) {
    const tg = await buildTrainingGraph(b.model(17), { batch: N, loss: { ce: {} } });
    const low = await lowerNchwc(tg.model);
    const folds = low.model.graph.nodes.filter((n) => n.opType === 'Reshape' && n.outputs[0]!.endsWith('/batch_folded')).length;
    if (N === 4) {
      // The three forward Convs and the input-gradient Conv of the second (stride 1, computed weight) fold pairs of
      // images; the strided one's input gradient is a ConvTranspose and x needs none.
      assert.equal(low.lowered, 4);
      assert.equal(folds, 4);
      assert.ok(low.model.graph.nodes.some((n) => n.opType === 'Concat' && n.outputs[0]!.startsWith('w1/block_diagonal')), 'w1 block-diagonal');
    } else {
      // An odd batch cannot be paired: the narrow Convs stay on the plain path (padding them would be 4x the work).
      assert.equal(folds, 0);
    }
    const feeds: Record<string, Tensor> = { x: t(DataType.FLOAT, [N, h, 9, 8], r, 1) };
    const target = new Float32Array(N * 4);
    for (let i = 0; i < N; i++) target[i * 4 + (i % 4)] = 1;
    feeds['shears_target'] = { dtype: DataType.FLOAT, dims: [N, 4], data: target };
    for (const p of tg.params) feeds[p.name] = p.init;
    sameResults(await runGraph(tg.model, feeds), await runGraph(low.model, feeds));
  }
});

test('depthwise Convs (group = channels, a multiple of the block) run on the NCHWc depthwise kernel: same loss and gradients', async () => {
  const block = await nchwcBlock();
  if (block === undefined) return;
  const r = rng(12);
  const C = block * 2;
  const b = new GraphBuilder('dw');
  b.input('x', [null, C, 9, 8]);
  let h = b.node('Relu', [b.node('Conv', ['x', b.init('pw', t(DataType.FLOAT, [C, C, 1, 1], r))], {})]);
  h = b.node('Relu', [b.node('Conv', [h, b.init('dw1', t(DataType.FLOAT, [C, 1, 3, 3], r)), b.init('db1', t(DataType.FLOAT, [C], r))], { group: C, pads: [1, 1, 1, 1] })]);
  h = b.node('Conv', [h, b.init('dw2', t(DataType.FLOAT, [C, 1, 3, 3], r))], { group: C, pads: [1, 0, 1, 1], strides: [2, 2] });
  b.node('Gemm', [b.node('Flatten', [b.node('GlobalAveragePool', [h])]), b.init('wf', t(DataType.FLOAT, [4, C], r)), b.init('bf', t(DataType.FLOAT, [4], r))], { transB: 1 }, { output: 'y' });
  b.output('y');
  const N = 3;
  const tg = await buildTrainingGraph(b.model(17), { batch: N, loss: { ce: {} } });
  const low = await lowerNchwc(tg.model);
  const lowered = low.model.graph.nodes.filter((n) => n.domain === NCHWC_DOMAIN && n.opType === 'Conv');
  const depthwise = lowered.filter((n) => n.attrs.get('group')?.kind === 'int' && (n.attrs.get('group') as { value: number }).value === C);
  // Both forward depthwise Convs and the stride-1 one's input gradient (a depthwise Conv with flipped weights).
  assert.ok(depthwise.length >= 3, `depthwise lowered ${depthwise.length}`);
  const feeds: Record<string, Tensor> = { x: t(DataType.FLOAT, [N, C, 9, 8], r, 1) };
  const target = new Float32Array(N * 4);
  for (let i = 0; i < N; i++) target[i * 4 + i] = 1;
  feeds['shears_target'] = { dtype: DataType.FLOAT, dims: [N, 4], data: target };
  for (const p of tg.params) feeds[p.name] = p.init;
  sameResults(await runGraph(tg.model, feeds), await runGraph(low.model, feeds));
});

/** input[1,8,8] -> Conv 1->16 -> Relu -> Conv 16->16 -> Relu -> Conv 16->32 s2 -> Relu -> GAP -> Gemm(32->3) */
function cnn16(): Model {
  const r = rng(21);
  const b = new GraphBuilder('cnn16');
  b.input('input', [null, 1, 8, 8]);
  let h = b.node('Relu', [b.node('Conv', ['input', b.init('c1', t(DataType.FLOAT, [16, 1, 3, 3], r, 0.5))], { pads: [1, 1, 1, 1] })]);
  h = b.node('Relu', [b.node('Conv', [h, b.init('c2', t(DataType.FLOAT, [16, 16, 3, 3], r, 0.15)), b.init('cb2', t(DataType.FLOAT, [16], r, 0.05))], { pads: [1, 1, 1, 1] })]);
  h = b.node('Relu', [b.node('Conv', [h, b.init('c3', t(DataType.FLOAT, [32, 16, 3, 3], r, 0.15))], { pads: [1, 1, 1, 1], strides: [2, 2] })]);
  h = b.node('Flatten', [b.node('GlobalAveragePool', [h])]);
  b.node('Gemm', [h, b.init('fw', t(DataType.FLOAT, [3, 32], r, 0.3)), b.init('fb', t(DataType.FLOAT, [3], r, 0.05))], { transB: 1 }, { output: 'logits' });
  b.output('logits');
  return b.model(17);
}

test('fine-tuning with NCHWc Convs: deterministic, and the same run as without up to float rounding', async () => {
  const base = { train: synth(192, 1), val: synth(60, 2), batch: 32, lr: 0.05, threads: 1, progress: false as const, seed: 3, epochs: 2 };
  if (await nchwcBlock()) {
    // c2 forward and input gradient, c3 forward (c1 has one input channel).
    const low = await lowerNchwc((await buildTrainingGraph(cnn16(), { batch: 32, loss: { ce: {} } })).model);
    assert.equal(low.lowered, 3);
  }
  const a = await finetune(cnn16(), base);
  const b = await finetune(cnn16(), base);
  const plain = await finetune(cnn16(), { ...base, nchwc: false });
  for (const k of ['c1', 'c2', 'c3', 'fw']) {
    const u = a.model.graph.initializers.get(k)!.data as Float32Array;
    assert.deepEqual(b.model.graph.initializers.get(k)!.data, u, `${k}: same seed, same weights`);
    const v = plain.model.graph.initializers.get(k)!.data as Float32Array;
    let d = 0;
    let s = 0;
    for (let i = 0; i < u.length; i++) {
      d = Math.max(d, Math.abs(u[i]! - v[i]!));
      s = Math.max(s, Math.abs(v[i]!));
    }
    assert.ok(d <= 1e-3 * s, `${k}: max diff ${d} (scale ${s})`);
  }
  assert.ok(Math.abs(a.history[1]!.trainLoss - plain.history[1]!.trainLoss) < 1e-3 * Math.abs(plain.history[1]!.trainLoss));
});
