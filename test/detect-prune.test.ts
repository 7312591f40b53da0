/**
 * Pruning detectors (issue 18 item 4) on a YOLOv8-like fixture (test/detect-fixture.ts): the pre-decode head is
 * recognised by structure; structured pruning keeps the output, freezes the head's box and class output channels
 * with their reason, prunes the C2f Split/Concat and the Resize+Concat neck, and removal of zeroed channels is
 * exact; the NMS-free TopK head (bench/det-e2e.ts) gives the reference's detections, prunes and runs; the detector
 * defaults are chosen and reported by the CLI; and the default recovery keeps the model given when fine-tuning
 * makes the validation worse.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { zeroUnits } from '../src/depgraph/zero.js';
import { removeUnits } from '../src/prune/structured/surgery.js';
import { pruneStructured } from '../src/prune/structured/index.js';
import { runOnce } from '../src/runtime/session.js';
import { floatTensor, type Tensor } from '../src/ir/tensor.js';
import type { Model } from '../src/ir/graph.js';
import { findDetectHead } from '../src/analysis/detector.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { FIXTURE_MODEL, shears } from './cli-helpers.js';
import { pngBytes } from './data-helpers.js';
import { rng } from './gradcheck.js';
import { DET_BINS, DET_CLASSES, DET_RAW, DET_SIZE, fixtureImages, yoloFixture } from './detect-fixture.js';
import { appendEndToEndHead, endToEndReference } from '../bench/det-e2e.js';
import { DISTILL_VALUE, stripDistillTarget, withDistillTarget } from '../src/pipeline/detector.js';

const A = 16 * 16 + 8 * 8;
const feeds = (n = 1, seed = 9): Record<string, Tensor> => ({ images: floatTensor([n, 3, DET_SIZE, DET_SIZE], fixtureImages(n, seed)) });
const out = async (m: Model, f = feeds()): Promise<Tensor> => Object.values(await runOnce(m, f))[0]!;
const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let e = 0, s = 0;
  for (let i = 0; i < a.length; i++) {
    e = Math.max(e, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(a[i]!));
  }
  return { e, s };
};
const headConvs = ['head/box0', 'head/box1', 'head/cls0', 'head/cls1'];
const weightOf = (m: Model, node: string) => m.graph.initializers.get(m.graph.nodes.find((n) => n.name === node)!.inputs[1]!)!;

test('findDetectHead: the fixture\'s pre-decode head (bins, classes, anchors); a classifier and the fixture cut before its decoding are not detectors', () => {
  const h = findDetectHead(yoloFixture());
  assert.deepEqual(h && { raw: h.raw, output: h.output, bins: h.bins, boxChannels: h.boxChannels, classes: h.classes, anchors: h.anchors, via: h.via },
    { raw: DET_RAW, output: 'output0', bins: DET_BINS, boxChannels: 4 * DET_BINS, classes: DET_CLASSES, anchors: A, via: 'dfl/softmax' });
  assert.equal(findDetectHead(loadModel(FIXTURE_MODEL)), undefined);
  const cut = yoloFixture();
  cut.graph.outputs = [{ name: DET_RAW }];
  assert.equal(findDetectHead(cut), undefined, 'no distribution between the head and the output: no detector');
});

test('structured pruning of the YOLO-like fixture: output kept, head box/class channels frozen with the reason, C2f and neck pruned, onnxruntime runs it', async () => {
  const dense = yoloFixture();
  const r = pruneStructured(dense, { targetMacs: 0.5, roundTo: 1, importance: 'l2' });
  const y0 = await out(dense), y1 = await out(r.model);
  assert.deepEqual(y1.dims, y0.dims);
  assert.deepEqual(y1.dims, [1, 4 + DET_CLASSES, A]);
  assert.ok(Math.abs(r.report.macsRatio - 0.5) <= 0.02, `MACs ratio ${r.report.macsRatio}`);
  for (const c of headConvs) assert.equal(weightOf(r.model, c).dims[0], weightOf(dense, c).dims[0], `${c} keeps its output channels`);
  // The head's output channels are frozen, each with a reason naming what freezes it.
  for (const c of headConvs) {
    const v = dense.graph.nodes.find((n) => n.name === c)!.outputs[0]!;
    const f = r.report.frozen.find((x) => x.value === v || x.reason.includes(v));
    assert.ok(f && f.reason.length > 10, `${c}: frozen with a reason (${JSON.stringify(r.report.frozen.map((x) => x.reason))})`);
  }
  // The C2f's Split follows its pruned input; the towers and the neck lose channels.
  const widths = r.report.layers.filter((l) => l.after < l.before).map((l) => l.node);
  assert.ok(widths.length >= 5, `several layers pruned: ${widths.join(', ')}`);
  assert.ok(r.report.layers.some((l) => l.node === 'conv1' && l.after < l.before), 'the C2f cv1 (Split input) is pruned');
});

test('zero-then-remove on the YOLO-like fixture: removing zeroed channels of every prunable group is exact', async () => {
  const an = analyzeModel(yoloFixture());
  const chosen = new Set<number>();
  for (const g of an.dg.groups) g.units.forEach((u, i) => { if (i % 3 === 1 && g.units.length > 2) chosen.add(u.id); });
  assert.ok(chosen.size > 10, `${chosen.size} units chosen`);
  const zeroed = zeroUnits(an.dg, an.model, chosen);
  const an2 = analyzeModel(zeroed);
  const { model: pruned } = removeUnits(an2.dg, chosen);
  const f = feeds(1, 3);
  const ref = await out(zeroed, f), got = await out(pruned, f), orig = await out(an.model, f);
  assert.deepEqual(got.dims, ref.dims);
  const { e, s } = maxAbs(ref.data as Float32Array, got.data as Float32Array);
  assert.ok(e <= 1e-4 * Math.max(1, s), `max error ${e} (magnitude ${s})`);
  assert.ok(maxAbs(orig.data as Float32Array, ref.data as Float32Array).e > 1e-3, 'zeroing changed the output: the channels mattered');
});

test('NMS-free TopK head: the graph gives the reference detections; it prunes (TopK/GatherElements freeze with reasons) and runs with [1, K, 6]', async () => {
  const dense = yoloFixture();
  const e2e = appendEndToEndHead(dense, { maxDet: 50 });
  assert.ok(findDetectHead(e2e), 'still recognised as a detector');
  const f = feeds(1, 4);
  const o = await out(dense, f);
  const ref = endToEndReference(o.data as Float32Array, o.dims[1]!, o.dims[2]!, 50);
  const got = await out(e2e, f);
  assert.deepEqual(got.dims, [1, 50, 6]);
  ref.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs((got.data as Float32Array)[i * 6 + j]! - v) <= 1e-4 * Math.max(1, Math.abs(v)), `row ${i} col ${j}: ${(got.data as Float32Array)[i * 6 + j]} vs ${v}`)));
  const r = pruneStructured(e2e, { targetMacs: 0.5, roundTo: 1, importance: 'l2' });
  const y = await out(r.model, f);
  assert.deepEqual(y.dims, [1, 50, 6]);
  assert.ok([...(y.data as Float32Array)].every(Number.isFinite));
  assert.ok(Math.abs(r.report.macsRatio - 0.5) <= 0.02, `MACs ratio ${r.report.macsRatio}`);
  assert.ok(r.report.frozen.some((x) => /TopK selects among every entry/.test(x.reason)), 'TopK freezes its selected axis with the reason');
  assert.ok(r.report.frozen.some((x) => /GatherElements addresses this axis/.test(x.reason)), 'GatherElements freezes its gathered axis with the reason');
  // the pruned end-to-end graph is the pruned plain graph's detections passed through the same head
  const plain = await out(pruneStructured(dense, { targetMacs: 0.5, roundTo: 1, importance: 'l2' }).model, f);
  const ref2 = endToEndReference(plain.data as Float32Array, plain.dims[1]!, plain.dims[2]!, 50);
  assert.ok(Math.abs((y.data as Float32Array)[4]! - ref2[0]![4]!) < 1e-4, 'same top score as the pruned plain model through the reference head');
});

test('distillation target: added to both models, stripped without a trace', async () => {
  const m = yoloFixture({ batch: 'N' });
  const h = findDetectHead(m)!;
  const w = withDistillTarget(m, h);
  w.graph.outputs = [{ name: DISTILL_VALUE }];
  const t = await out(w, feeds(2));
  assert.deepEqual(t.dims, [2, 4 * DET_BINS + DET_CLASSES, A]);
  // per anchor and side the bins are a distribution; the class entries are the sigmoid of the class logits
  const d = t.data as Float32Array;
  w.graph.outputs = [{ name: DET_RAW }];
  const raw = (await out(w, feeds(2))).data as Float32Array;
  for (const a of [0, 7, A - 1]) for (let side = 0; side < 4; side++) {
    let s = 0;
    for (let k = 0; k < DET_BINS; k++) s += d[(side * DET_BINS + k) * A + a]!;
    assert.ok(Math.abs(s - 1) < 1e-5, `anchor ${a} side ${side}: ${s}`);
  }
  for (let c = 0; c < DET_CLASSES; c++) {
    const i = (4 * DET_BINS + c) * A + 7;
    assert.ok(Math.abs(d[i]! - 1 / (1 + Math.exp(-raw[i]!))) < 1e-6);
  }
  const back = stripDistillTarget(withDistillTarget(m, h));
  assert.equal(back.graph.nodes.length, m.graph.nodes.length);
  assert.equal(back.graph.initializers.size, m.graph.initializers.size);
});

/** A folder of n random RGB PNGs of the fixture's size. */
function imageFolder(n: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'shears-det-'));
  const imgs = join(dir, 'images');
  mkdirSync(imgs);
  const r = rng(11);
  for (let i = 0; i < n; i++) writeFileSync(join(imgs, `img${String(i).padStart(3, '0')}.png`), pngBytes(DET_SIZE, DET_SIZE, 3, Array.from({ length: DET_SIZE * DET_SIZE * 3 }, () => Math.floor(r() * 256))));
  return dir;
}

test('CLI: the detector defaults are chosen and reported (round-to, distillation on the pre-decode head, held-out validation); never worse than the model given', () => {
  const dir = imageFolder(40);
  const dense = join(dir, 'det.onnx');
  saveModel(yoloFixture({ batch: 'N' }), dense);
  const pruned = join(dir, 'pruned.onnx');
  const p = shears(['prune', dense, '--structured', '--target-macs', '0.6', '--importance', 'l2', '-o', pruned, '--scale', '--color', 'rgb',
    '--finetune-epochs', '1', '--train', `folder:${join(dir, 'images')}`, '--finetune-batch', '8', '--finetune-replicas', '1'], { timeoutMs: 300_000 });
  assert.equal(p.code, 0, p.stderr);
  const all = p.stdout + p.stderr;
  assert.match(all, /a detector \(detector head 'head\/raw'.*levelled by the fraction they keep after their next step of 8 channels/);
  assert.match(all, /distilling on the pre-decode head 'head\/raw'.*cross-entropy of each side's box bins to the teacher's \(weighted by its class confidence at the anchor\) and BCE/);
  assert.match(all, /AdamW, learning rate 0\.004/);
  assert.match(all, /schedule: cosine after a linear warmup of 30 steps/);
  assert.match(all, /validation: the last 4 of the 40 training images held out/);
  assert.match(all, /fine-tuning (improved|made) the detector/);
  const pm = loadModel(pruned);
  for (const c of headConvs) assert.equal(weightOf(pm, c).dims[0], c.includes('box') ? 4 * DET_BINS : DET_CLASSES);
  assert.ok(pm.graph.nodes.every((n) => !n.name.startsWith('shears_detect_distill')), 'no distillation nodes left');

  // --det-distill chooses the default distillation's loss: refused beside an objective, before any data is read.
  const bad = shears(['finetune', pruned, '--teacher', dense, '--train', `folder:${join(dir, 'nowhere')}`, '--det-distill', 'mse', '--objective', 'match-teacher', '-o', join(dir, 'x.onnx')]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /det-distill.*not with --objective/);

  // A learning rate that wrecks the model: the model given is kept, and the run says so.
  const after = join(dir, 'after.onnx');
  const f = shears(['finetune', pruned, '--teacher', dense, '--train', `folder:${join(dir, 'images')}`, '--scale', '--color', 'rgb', '--lr', '50', '--batch', '8', '--replicas', '1', '-o', after], { timeoutMs: 300_000 });
  assert.equal(f.code, 0, f.stderr);
  assert.match(f.stdout + f.stderr, /distilling on the pre-decode head/);
  assert.match(f.stdout + f.stderr, /kept the model as it was before fine-tuning/);
  const a = loadModel(after), b = loadModel(pruned);
  for (const [k, t] of b.graph.initializers) {
    const u = a.graph.initializers.get(k);
    assert.ok(u, `${k} kept`);
    assert.deepEqual(Array.from(u!.data as Float32Array), Array.from(t.data as Float32Array), `${k} unchanged`);
  }
});

test('levelAfterStep: narrow groups lose their coarse step last (8-wide groups stay while 16-wide ones lose 4)', () => {
  const plan = (levelAfterStep: boolean) => pruneStructured(yoloFixture(), { targetMacs: 0.8, roundTo: 4, importance: 'l2', levelAfterStep }).plan;
  const before = plan(false), after = plan(true);
  assert.ok(before.groups.some((g) => g.channels === 8 && g.kept === 4), 'levelled before the step: an 8-wide group is halved');
  assert.ok(after.groups.length > 0 && after.groups.every((g) => g.channels === 16 && g.kept === 12), JSON.stringify(after.groups.map((g) => [g.channels, g.kept])));
  assert.equal(after.options['levelAfterStep'], true);
  assert.ok(Math.abs(after.estimate.macs / after.estimate.baseMacs - 0.8) <= 0.02);
});
