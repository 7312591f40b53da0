// Depth pruning of transformers: pre-norm blocks (x + attn(LN(x)), x + mlp(LN(x))) found as units, block
// influence against a hand computation, removal against hand-built references in onnxruntime, the automatic
// path's choice of the fewest units, and models without units.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GraphBuilder, F } from '../src/ir/builder.js';
import { floatTensor, type Tensor } from '../src/ir/tensor.js';
import type { Model } from '../src/ir/graph.js';
import { rng } from '../src/random.js';
import { runOnce } from '../src/runtime/session.js';
import { saveModel } from '../src/onnx/io.js';
import {
  blockInfluence, blockLossIncrease, chooseUnits, depthUnits, findResidualBlocks, magnitudeRanking, pruneStructured, removeBlocks,
} from '../src/index.js';
import { shears } from './cli-helpers.js';
import { npyBytes, tempDir } from './data-helpers.js';

const T = 5, D = 8, H = 16, C = 6;

interface Weights {
  ln: Float32Array[]; // gamma, beta per LN
  wq: Float32Array; wk: Float32Array; wv: Float32Array; wo: Float32Array;
  w1: Float32Array; b1: Float32Array; w2: Float32Array;
}

function weightsFor(blocks: number, scale: number[], seed = 3): Weights[] {
  const r = rng(seed);
  const rand = (n: number, s: number) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * s);
  return Array.from({ length: blocks }, (_, i) => ({
    ln: [rand(D, 0.2).map((v) => 1 + v), rand(D, 0.1), rand(D, 0.2).map((v) => 1 + v), rand(D, 0.1)],
    wq: rand(D * D, 0.5), wk: rand(D * D, 0.5), wv: rand(D * D, 0.5 * scale[i]!), wo: rand(D * D, 0.5 * scale[i]!),
    w1: rand(D * H, 0.5), b1: rand(H, 0.1), w2: rand(H * D, 0.5 * scale[i]!),
  }));
}

const HEAD = Float32Array.from({ length: D * C }, (_, k) => Math.sin(k * 0.7) * 0.5);

/**
 * The fixture transformer: input [N, T, D], `weights.length` pre-norm blocks, a head MatMul to [N, T, C].
 * `omit` leaves out branches (the hand-built reference of a removal): 'b.attention' / 'b.mlp'.
 */
function transformer(weights: Weights[], omit: string[] = []): Model {
  const b = new GraphBuilder('tiny-transformer');
  let x = b.input('x', ['N', T, D]);
  weights.forEach((w, i) => {
    const p = `/blocks.${i}`;
    const init = (n: string, dims: number[], v: Float32Array) => b.init(`${p}.${n}`, floatTensor(dims, v));
    const ln = (k: number, v: string, n: string) => b.node('LayerNormalization', [v, init(`${n}.g`, [D], w.ln[2 * k]!), init(`${n}.b`, [D], w.ln[2 * k + 1]!)], { axis: -1, epsilon: F(1e-5) }, { name: `${p}/${n}/LayerNormalization` });
    if (!omit.includes(`${i}.attention`)) {
      const h = ln(0, x, 'norm1');
      const q = b.node('MatMul', [h, init('wq', [D, D], w.wq)]);
      const k = b.node('MatMul', [h, init('wk', [D, D], w.wk)]);
      const v = b.node('MatMul', [h, init('wv', [D, D], w.wv)]);
      const s = b.node('Mul', [b.node('MatMul', [q, b.node('Transpose', [k], { perm: [0, 2, 1] })]), b.init(`${p}.scale`, floatTensor([], [1 / Math.sqrt(D)]))]);
      const a = b.node('MatMul', [b.node('Softmax', [s], { axis: -1 }), v]);
      // shape arithmetic on a branch value, as exporters write it (constant once the input shape is)
      const shaped = b.node('Reshape', [a, b.node('Shape', [h], {}, { name: `${p}/attn/Shape` })]);
      const o = b.node('MatMul', [shaped, init('wo', [D, D], w.wo)]);
      x = b.node('Add', [x, o], {}, { name: `${p}/Add` });
    }
    if (!omit.includes(`${i}.mlp`)) {
      const h = ln(1, x, 'norm2');
      const u = b.node('Relu', [b.node('Add', [b.node('MatMul', [h, init('w1', [D, H], w.w1)]), init('b1', [H], w.b1)])]);
      const o = b.node('MatMul', [u, init('w2', [H, D], w.w2)]);
      x = b.node('Add', [x, o], {}, { name: `${p}/Add_1` });
    }
  });
  b.node('MatMul', [x, b.init('head', floatTensor([D, C], HEAD))], {}, { output: 'logits' });
  b.output('logits', ['N', T, C]);
  return b.model();
}

function input(n: number, seed = 7): Tensor {
  const r = rng(seed);
  return floatTensor([n, T, D], Float32Array.from({ length: n * T * D }, () => r() * 2 - 1));
}

// ---- the hand computation (float64, row by row)
const mm = (a: number[][], w: Float32Array, cols: number) => a.map((row) => Array.from({ length: cols }, (_, j) => row.reduce((s, v, k) => s + v * w[k * cols + j]!, 0)));
const lnorm = (a: number[][], g: Float32Array, bt: Float32Array) => a.map((row) => {
  const m = row.reduce((s, v) => s + v, 0) / row.length;
  const va = row.reduce((s, v) => s + (v - m) ** 2, 0) / row.length;
  return row.map((v, j) => ((v - m) / Math.sqrt(va + 1e-5)) * g[j]! + bt[j]!);
});
const add = (a: number[][], b: number[][]) => a.map((row, i) => row.map((v, j) => v + b[i]![j]!));

/** The residual stream of one sample after each branch: [x0, after attn 0, after mlp 0, ...]. */
function streams(weights: Weights[], x0: number[][]): number[][][] {
  const out = [x0];
  let x = x0;
  for (const w of weights) {
    const h = lnorm(x, w.ln[0]!, w.ln[1]!);
    const q = mm(h, w.wq, D), k = mm(h, w.wk, D), v = mm(h, w.wv, D);
    const att = q.map((qi) => {
      const s = k.map((kj) => qi.reduce((acc, val, d) => acc + val * kj[d]!, 0) / Math.sqrt(D));
      const m = Math.max(...s);
      const e = s.map((z) => Math.exp(z - m));
      const z = e.reduce((a, c) => a + c, 0);
      return Array.from({ length: D }, (_, d) => e.reduce((acc, p, j) => acc + (p / z) * v[j]![d]!, 0));
    });
    x = add(x, mm(att, w.wo, D));
    out.push(x);
    const u = mm(lnorm(x, w.ln[2]!, w.ln[3]!), w.w1, H).map((row) => row.map((val, j) => Math.max(0, val + w.b1[j]!)));
    x = add(x, mm(u, w.w2, D));
    out.push(x);
  }
  return out;
}

function handInfluence(a: number[][][], b: number[][][]): number {
  let s = 0, n = 0;
  a.forEach((sa, i) => sa.forEach((ra, t) => {
    const rb = b[i]![t]!;
    const dot = ra.reduce((acc, v, d) => acc + v * rb[d]!, 0);
    const na = Math.hypot(...ra), nb = Math.hypot(...rb);
    s += 1 - dot / (na * nb);
    n++;
  }));
  return s / n;
}

function samples(t: Tensor): number[][][] {
  const d = t.data as Float32Array;
  return Array.from({ length: t.dims[0]! }, (_, i) => Array.from({ length: T }, (_, j) => Array.from(d.subarray((i * T + j) * D, (i * T + j + 1) * D))));
}

const SHAPES = { x: [1, T, D] };

test('pre-norm transformer: attention and MLP branches found (LayerNormalization and shape arithmetic inside); units by block, attention, mlp', () => {
  const m = transformer(weightsFor(3, [1, 1, 1]));
  const blocks = findResidualBlocks(m, SHAPES);
  assert.deepEqual(blocks.map((b) => `${b.join}:${b.kind}`), ['/blocks.0/Add:attention', '/blocks.0/Add_1:mlp', '/blocks.1/Add:attention', '/blocks.1/Add_1:mlp', '/blocks.2/Add:attention', '/blocks.2/Add_1:mlp']);
  const attn0 = blocks[0]!;
  assert.ok(attn0.branch.includes('/blocks.0/norm1/LayerNormalization') && attn0.branch.includes('/blocks.0/attn/Shape'), attn0.branch.join(', '));
  const units = depthUnits(m, SHAPES, 'block');
  assert.deepEqual(units.map((u) => [u.name, u.kind, u.joins]), [0, 1, 2].map((i) => [`/blocks.${i}`, 'block', [`/blocks.${i}/Add`, `/blocks.${i}/Add_1`]]));
  assert.equal(units[1]!.input, blocks[1]!.output);
  assert.deepEqual(depthUnits(m, SHAPES, 'attention').map((u) => u.name), ['/blocks.0/Add', '/blocks.1/Add', '/blocks.2/Add']);
  assert.deepEqual(depthUnits(m, SHAPES, 'mlp').map((u) => u.kind), ['mlp', 'mlp', 'mlp']);
});

test('block influence equals the hand computation of 1 - cos between the streams before and after each unit', async () => {
  const w = weightsFor(3, [1, 0.2, 1]);
  const m = transformer(w);
  const xs = [input(4, 1), input(3, 2)];
  const hand = xs.flatMap((x) => samples(x).map((s) => streams(w, s)));
  for (const unit of ['block', 'attention', 'mlp'] as const) {
    const r = await blockInfluence(m, xs.map((x) => ({ x })), { unit });
    assert.equal(r.method, 'influence');
    assert.equal(r.samples, 7 * T);
    r.units.forEach((u, i) => {
      const [from, to] = unit === 'block' ? [2 * i, 2 * i + 2] : unit === 'attention' ? [2 * i, 2 * i + 1] : [2 * i + 1, 2 * i + 2];
      const want = handInfluence(hand.map((s) => s[from]!), hand.map((s) => s[to]!));
      assert.ok(Math.abs(u.score - want) < 1e-5 * Math.max(1, want), `${unit} ${u.name}: ${u.score} vs hand ${want}`);
    });
    if (unit === 'block') {
      // the block with the small output weights changes the stream least: it is ranked first and chosen
      assert.equal(r.units.find((u) => u.rank === 1)!.name, '/blocks.1');
      assert.deepEqual(chooseUnits(m, 1, SHAPES, { scores: r.scores }).map((u) => u.name), ['/blocks.1']);
    }
  }
});

test('removing a block, an attention or an MLP sub-block gives exactly the model without that branch (onnxruntime)', async () => {
  const w = weightsFor(3, [1, 1, 1]);
  const x = input(3);
  const cases: [string[], string[]][] = [
    [['/blocks.1/Add', '/blocks.1/Add_1'], ['1.attention', '1.mlp']],
    [['/blocks.0/Add'], ['0.attention']],
    [['/blocks.2/Add_1'], ['2.mlp']],
    [['/blocks.2/Add', '/blocks.0/Add_1'], ['2.attention', '0.mlp']],
  ];
  const dense = (await runOnce(transformer(w), { x })).logits!.data as Float32Array;
  for (const [joins, omit] of cases) {
    const m = transformer(w);
    removeBlocks(m, joins, SHAPES);
    const ref = transformer(w, omit);
    assert.equal(m.graph.nodes.length, ref.graph.nodes.length, joins.join(','));
    assert.deepEqual(m.graph.nodes.map((n) => n.opType).sort(), ref.graph.nodes.map((n) => n.opType).sort());
    const got = (await runOnce(m, { x })).logits!.data as Float32Array;
    const want = (await runOnce(ref, { x })).logits!.data as Float32Array;
    assert.deepEqual(Array.from(got), Array.from(want), joins.join(','));
    assert.ok(got.some((v, i) => Math.abs(v - dense[i]!) > 1e-3), 'the removal changed the output');
  }
});

test('loss ranking: KL of the outputs from the dense model, zero for a unit that does nothing', async () => {
  const w = weightsFor(2, [1, 0]);
  // block 1's output weights are zero: removing it changes nothing
  const m = transformer(w);
  const r = await blockLossIncrease(m, [{ x: input(4) }], { unit: 'mlp' });
  assert.equal(r.method, 'loss');
  assert.ok(r.units[1]!.score < 1e-9 && r.units[0]!.score > 1e-4, r.units.map((u) => u.score).join(', '));
  const mag = magnitudeRanking(m, SHAPES, 'block');
  assert.equal(mag.method, 'magnitude');
  assert.ok(mag.units.every((u) => u.score > 0));
});

test('automatic depth: the fewest units that reach the MAC target, and none when units cannot reach it', () => {
  const m = transformer(weightsFor(4, [1, 1, 1, 1]));
  const messages: string[] = [];
  const target = 0.3;
  // attention weights kept whole (as attention heads often are): channels alone stop short of the target
  const base = { inputShapes: { x: [1, T, D] }, ignore: /\.w[qkvo]$/ };
  const r = pruneStructured(m, { targetMacs: target, ...base, progress: (s) => messages.push(s) });
  const k = r.report.removedUnits.length;
  assert.ok(k >= 1, messages.join('\n'));
  assert.ok(r.report.macsRatio <= target * 1.02, String(r.report.macsRatio));
  assert.equal(r.report.removedBlocks.length, 2 * k);
  // one unit fewer does not reach it
  if (k > 1) {
    const fewer = pruneStructured(m, { targetMacs: target, ...base, removeBlocks: k - 1 });
    assert.ok(fewer.report.macsRatio > target * 1.02, `${k - 1} units reach ${fewer.report.macsRatio}`);
  }
  const channelsOnly = pruneStructured(m, { targetMacs: target, ...base, autoDepth: false });
  assert.ok(channelsOnly.report.macsRatio > target * 1.02, 'the fixture needs depth pruning for this target');
  assert.ok(messages.some((s) => s.startsWith(`removed ${k} residual block`)), messages.join('\n'));

  // MLP sub-blocks hold only what the channel planner removes anyway: removing them cannot reach 20%
  const said: string[] = [];
  const mlp = pruneStructured(m, { targetMacs: 0.2, blockUnit: 'mlp', ...base, progress: (s) => said.push(s) });
  assert.deepEqual(mlp.report.removedBlocks, []);
  assert.ok(said.some((s) => /even removing 3 MLP sub-blocks of 4 reaches only/.test(s)), said.join('\n'));
});

test('a model without residual blocks says so: explicit removal fails, automatic depth reports it', () => {
  const b = new GraphBuilder('mlp');
  const x = b.input('x', ['N', D]);
  const h = b.node('Relu', [b.node('MatMul', [x, b.init('w1', floatTensor([D, H], Float32Array.from({ length: D * H }, (_, k) => Math.cos(k))))])]);
  b.node('MatMul', [h, b.init('w2', floatTensor([H, C], Float32Array.from({ length: H * C }, (_, k) => Math.sin(k))))], {}, { output: 'y' });
  b.output('y', ['N', C]);
  const m = b.model();
  assert.throws(() => depthUnits(m, { x: [1, D] }), /no removable residual blocks/);
  assert.throws(() => pruneStructured(m, { removeBlocks: 1 }), /no removable residual blocks/);
  const said: string[] = [];
  const r = pruneStructured(m, { targetMacs: 0.01, progress: (s) => said.push(s) });
  assert.deepEqual(r.report.removedBlocks, []);
  assert.ok(said.some((s) => /target not reached with channels alone .* no removable residual blocks/.test(s)), said.join('\n'));
  // a transformer asked for a unit a ResNet-like model lacks
  const t = transformer(weightsFor(2, [1, 1]), ['0.attention', '1.attention']);
  assert.throws(() => depthUnits(t, SHAPES, 'attention'), /no attention sub-blocks to remove \(0 attention, 0 MLP, 2 other residual branches\)/);
});

test('shears prune --remove-blocks with --calib ranks by block influence and removes the least influential block', () => {
  const dir = tempDir('shears-depth-');
  const w = weightsFor(3, [1, 1, 0.1]);
  const model = join(dir, 'tiny.onnx');
  saveModel(transformer(w), model);
  const x = input(16);
  const npy = join(dir, 'calib.npy');
  writeFileSync(npy, npyBytes('<f4', [16, T, D], x.data as Float32Array));
  const out = join(dir, 'out.onnx');
  const r = shears(['prune', model, '-o', out, '--structured', '--remove-blocks', '1', '--calib', `npy:${npy}`, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /depth units \(block\) ranked by block influence on 16 samples .*least important first: \/blocks\.2 /);
  const rep = JSON.parse(r.stdout) as { removedBlocks: string[]; depth: { ranking: string; units: { name: string; removed: boolean }[] } };
  assert.deepEqual(rep.removedBlocks, ['/blocks.2/Add', '/blocks.2/Add_1']);
  assert.equal(rep.depth.ranking, 'influence');
  assert.deepEqual(rep.depth.units.filter((u) => u.removed).map((u) => u.name), ['/blocks.2']);
  // automatic: channels alone (attention weights kept whole) stop short of 30% of the MACs; the fewest blocks are
  // added, the least influential first
  const auto = shears(['prune', model, '-o', out, '--structured', '--target-macs', '0.3', '--round-to', '1', '--ignore', '\\.w[qkvo]$', '--calib', `npy:${npy}`, '--json']);
  assert.equal(auto.code, 0, auto.stderr);
  assert.match(auto.stderr, /target not reached with channels alone \(\d+\.\d% of the MACs\): looking for the fewest residual blocks to remove, of 3/);
  const removed = (JSON.parse(auto.stdout) as { depth: { units: { name: string; removed: boolean }[] } }).depth.units.filter((u) => u.removed).map((u) => u.name);
  assert.ok(removed.length >= 1 && removed.includes('/blocks.2'), auto.stderr);
  assert.match(auto.stderr, new RegExp(`removed ${removed.length} residual blocks? \\(ranked by block influence\\): /blocks\\.2`));
  // without data: parameter RMS, said
  const r2 = shears(['prune', model, '-o', out, '--structured', '--remove-blocks', '1', '--block-unit', 'attention']);
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stderr + r2.stdout, /depth units \(attention\) ranked by parameter RMS \(no calibration data/);
  const r3 = shears(['prune', model, '-o', out, '--structured', '--remove-blocks', '1', '--block-rank', 'influence']);
  assert.equal(r3.code, 2);
  assert.match(r3.stderr, /--block-rank influence needs calibration data: --calib/);
});
