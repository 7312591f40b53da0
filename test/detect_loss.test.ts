/**
 * The detection loss (autodiff/detect-loss.ts), the task-aligned assignment (train/tal.ts) and the YOLO head
 * finder (train/yolo-head.ts): the ONNX loss against an independent float64 TypeScript reference of the same
 * formulas, its gradient w.r.t. the head by finite differences, TAL on hand-built cases, fine-tuning a tiny
 * fixture detector, and bad input.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appendEmitted, buildBackward } from '../src/autodiff/backward.js';
import { appendLoss, LOSS, TARGET } from '../src/autodiff/losses.js';
import { probeTypes } from '../src/autodiff/shapes.js';
import { ShearsError } from '../src/errors.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';
import { createSession } from '../src/runtime/session.js';
import { assignTal, detectionTargets, type GtBox } from '../src/train/tal.js';
import { finetune } from '../src/train/trainer.js';
import { findYoloHead, type YoloHead } from '../src/train/yolo-head.js';
import { rng } from './gradcheck.js';
import { A, C, IMG, NC, R, t32, tinyDetector } from './detloss-fixture.js';

// Fixture geometry: a 32x32 input, grids 4x4 (stride 8) and 2x2 (stride 16): 20 anchors; 4 bins, 3 classes.

function geometry(): YoloHead {
  const points = new Float64Array(A * 2), strides = new Float64Array(A);
  let a = 0;
  for (const [g, s] of [[4, 8], [2, 16]] as const)
    for (let y = 0; y < g; y++) for (let x = 0; x < g; x++, a++) {
      points[2 * a] = x + 0.5;
      points[2 * a + 1] = y + 0.5;
      strides[a] = s;
    }
  return { value: 'x', regMax: R, nc: NC, anchors: A, points, strides, scales: [{ h: 4, w: 4, stride: 8 }, { h: 2, w: 2, stride: 16 }], plainConvs: [] };
}

// ---- independent float64 reference of Ultralytics' formulas ----
/** CIoU; `fixedAlpha` replaces the aspect weight alpha (Ultralytics computes it under no_grad). */
function refCiou(b1: number[], b2: number[], fixedAlpha?: number): { ciou: number; alpha: number } {
  const eps = 1e-7;
  const w1 = b1[2]! - b1[0]!, h1 = b1[3]! - b1[1]! + eps, w2 = b2[2]! - b2[0]!, h2 = b2[3]! - b2[1]! + eps;
  const iw = Math.max(0, Math.min(b1[2]!, b2[2]!) - Math.max(b1[0]!, b2[0]!));
  const ih = Math.max(0, Math.min(b1[3]!, b2[3]!) - Math.max(b1[1]!, b2[1]!));
  const inter = iw * ih;
  const iou = inter / (w1 * h1 + w2 * h2 - inter + eps);
  const cw = Math.max(b1[2]!, b2[2]!) - Math.min(b1[0]!, b2[0]!);
  const ch = Math.max(b1[3]!, b2[3]!) - Math.min(b1[1]!, b2[1]!);
  const c2 = cw ** 2 + ch ** 2 + eps;
  const rho2 = ((b2[0]! + b2[2]! - b1[0]! - b1[2]!) ** 2 + (b2[1]! + b2[3]! - b1[1]! - b1[3]!) ** 2) / 4;
  const v = (4 / Math.PI ** 2) * (Math.atan(w2 / h2) - Math.atan(w1 / h1)) ** 2;
  const alpha = fixedAlpha ?? v / (v - iou + 1 + eps);
  return { ciou: iou - (rho2 / c2 + v * alpha), alpha };
}

/**
 * The loss of x [B, C, A] against packed targets t [B, 4 + NC, A]: 7.5 box + 0.5 cls + 1.5 dfl. With `alphas`
 * [B * A] given, CIoU's alpha is taken from it (detached); else it is computed and written there if given empty.
 */
function refLoss(x: ArrayLike<number>, t: ArrayLike<number>, B: number, head: YoloHead, alphas?: { fixed: boolean; v: Float64Array }): number {
  const X = (b: number, c: number, a: number) => x[(b * C + c) * A + a]!;
  const T = (b: number, c: number, a: number) => t[(b * (4 + NC) + c) * A + a]!;
  let tss = 0;
  for (let b = 0; b < B; b++) for (let c = 0; c < NC; c++) for (let a = 0; a < A; a++) tss += T(b, 4 + c, a);
  tss = Math.max(tss, 1);
  let cls = 0, box = 0, dfl = 0;
  for (let b = 0; b < B; b++)
    for (let a = 0; a < A; a++) {
      let w = 0;
      for (let c = 0; c < NC; c++) {
        const s = X(b, 4 * R + c, a), y = T(b, 4 + c, a);
        cls += Math.max(s, 0) - s * y + Math.log1p(Math.exp(-Math.abs(s)));
        w += y;
      }
      const ax = head.points[2 * a]!, ay = head.points[2 * a + 1]!;
      const dist: number[] = [];
      const logp: number[][] = [];
      for (let side = 0; side < 4; side++) {
        const l = Array.from({ length: R }, (_, k) => X(b, side * R + k, a));
        const mx = Math.max(...l);
        const z = l.reduce((s, v) => s + Math.exp(v - mx), 0);
        logp.push(l.map((v) => v - mx - Math.log(z)));
        dist.push(l.reduce((s, v, k) => s + (Math.exp(v - mx) / z) * k, 0));
      }
      const pred = [ax - dist[0]!, ay - dist[1]!, ax + dist[2]!, ay + dist[3]!];
      const tgt = [T(b, 0, a), T(b, 1, a), T(b, 2, a), T(b, 3, a)];
      const ci = refCiou(pred, tgt, alphas?.fixed ? alphas.v[b * A + a] : undefined);
      if (alphas && !alphas.fixed) alphas.v[b * A + a] = ci.alpha;
      box += (1 - ci.ciou) * w;
      const td = [ax - tgt[0]!, ay - tgt[1]!, tgt[2]! - ax, tgt[3]! - ay];
      let ce = 0;
      td.forEach((d0, side) => {
        const d = Math.min(Math.max(d0, 0), R - 1 - 0.01);
        const tl = Math.floor(d), wl = tl + 1 - d, wr = 1 - wl;
        ce -= wl * logp[side]![tl]! + wr * logp[side]![tl + 1]!;
      });
      dfl += (ce / 4) * w;
    }
  return (7.5 * box + 0.5 * cls + 1.5 * dfl) / tss;
}

/** A random head, random boxes and the targets TAL gives on the head's own predictions. */
function randomCase(B: number, seed: number): { x: Float64Array; t: Float32Array; head: YoloHead; fg: number } {
  const r = rng(seed);
  const head = geometry();
  const x = Float64Array.from({ length: B * C * A }, (_, i) => (r() * 2 - 1) * 2 + (Math.floor(i / A) % C >= 4 * R ? 0.5 : 0));
  const t = new Float32Array(B * (4 + NC) * A);
  let fg = 0;
  for (let b = 0; b < B; b++) {
    const gts: GtBox[] = [];
    for (let m = 0; m < 2; m++) {
      const cx = 6 + r() * 20, cy = 6 + r() * 20, w = 6 + r() * 14, h = 6 + r() * 14;
      gts.push({ cls: Math.floor(r() * NC), x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2 });
    }
    const asg = detectionTargets(x.subarray(b * C * A, (b + 1) * C * A), gts, head, t, b * (4 + NC) * A, { topk: 3 });
    fg += asg.fg.reduce((s, v) => s + v, 0);
  }
  return { x, t, head, fg };
}

/** The loss graph alone: x [B, C, A] (input) -> loss, with the gradient w.r.t. x as an output. */
async function lossGraph(B: number, head: YoloHead, dtype: number): Promise<{ model: Model; grad: string }> {
  const b = new GraphBuilder('detloss');
  b.input('x', [B, C, A], dtype);
  const taken = new Set(['x']);
  const lg = appendLoss(b.graph, 'x', [B, C, A], dtype, { detect: { regMax: R, nc: NC, points: head.points } }, taken);
  for (const i of lg.inputs) b.graph.inputs.push(i);
  b.output(LOSS, [], dtype);
  const model = b.model(17);
  const feeds = { x: { dtype, dims: [B, C, A], data: dtype === DataType.DOUBLE ? new Float64Array(B * C * A) : new Float32Array(B * C * A) } as Tensor };
  const types = await probeTypes(model, { [TARGET]: [B, 4 + NC, A] }, feeds);
  const back = buildBackward(model, { loss: LOSS, wrt: ['x'], types, elemType: dtype, detached: new Set(lg.detached ?? []) });
  appendEmitted(model.graph, back.emitter);
  const grad = back.grads.get('x')!;
  model.graph.outputs.push({ name: grad });
  return { model, grad };
}

const asType = (dtype: number, v: ArrayLike<number>, dims: number[]): Tensor => ({ dtype, dims, data: dtype === DataType.DOUBLE ? Float64Array.from(v) : Float32Array.from(v) });

test('detection loss graph equals the float64 reference on random heads and TAL targets; its gradient matches finite differences of the reference (CIoU alpha held constant: detached)', async () => {
  const B = 2;
  const { x, t, head, fg } = randomCase(B, 11);
  assert.ok(fg >= 4, `the case has foreground anchors (${fg})`);
  const alphas = { fixed: false, v: new Float64Array(B * A) };
  const ref = refLoss(x, t, B, head, alphas);
  alphas.fixed = true;
  // float32 (onnxruntime has no float64 Atan/Softplus kernels on every build): the loss to 1e-5 relative.
  const dtype = DataType.FLOAT;
  const { model, grad } = await lossGraph(B, head, dtype);
  const s = await createSession(model);
  try {
    const res = await s.run({ x: asType(dtype, x, [B, C, A]), [TARGET]: asType(dtype, t, [B, 4 + NC, A]) });
    const got = Number(res[LOSS]!.data[0]);
    assert.ok(Math.abs(got - ref) <= 1e-5 * Math.abs(ref), `graph ${got} vs reference ${ref}`);
    // The whole loss's gradient w.r.t. the head, against central differences of the float64 reference.
    const g = res[grad]!.data as Float32Array;
    const r = rng(5);
    const h = 1e-6;
    let worst = 0;
    const gmax = Math.max(...Array.from(g, Math.abs));
    const check = (i: number) => {
      const xp = Float64Array.from(x), xm = Float64Array.from(x);
      xp[i]! += h;
      xm[i]! -= h;
      const num = (refLoss(xp, t, B, head, alphas) - refLoss(xm, t, B, head, alphas)) / (2 * h);
      const err = Math.abs(num - g[i]!) / (1e-4 * gmax + 1e-3 * Math.abs(num));
      worst = Math.max(worst, err);
      assert.ok(err <= 1, `x[${i}] (channel ${Math.floor(i / A) % C}): analytic ${g[i]} vs numeric ${num}`);
    };
    // every element of a foreground anchor's column (box bins and classes), and random others
    const fgCols: number[] = [];
    for (let bb = 0; bb < B; bb++) for (let a = 0; a < A; a++) if (t[(bb * (4 + NC) + 4) * A + a]! + t[(bb * (4 + NC) + 5) * A + a]! + t[(bb * (4 + NC) + 6) * A + a]! > 0) fgCols.push(bb * C * A + a);
    assert.ok(fgCols.length > 0);
    for (const base of fgCols.slice(0, 3)) for (let c = 0; c < C; c++) check(base + c * A);
    for (let k = 0; k < 60; k++) check(Math.floor(r() * x.length));
    assert.ok(worst <= 1);
    // A random direction over the whole head.
    const dir = Float64Array.from({ length: x.length }, () => r() * 2 - 1);
    const at = (e: number) => refLoss(x.map((v, i) => v + e * dir[i]!), t, B, head, alphas);
    const numD = (at(h) - at(-h)) / (2 * h);
    const anaD = g.reduce((sum, v, i) => sum + v * dir[i]!, 0);
    assert.ok(Math.abs(numD - anaD) <= 1e-3 * Math.abs(numD) + 1e-4 * gmax, `direction: analytic ${anaD} vs numeric ${numD}`);
  } finally {
    await s.release();
  }
});

// ---- TAL on hand-built cases ----
/** A 4x4 grid of anchors at stride 8 (centres 4, 12, 20, 28 px). */
function grid(): Float64Array {
  const p = new Float64Array(32);
  for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) {
    p[2 * (y * 4 + x)] = 8 * x + 4;
    p[2 * (y * 4 + x) + 1] = 8 * y + 4;
  }
  return p;
}

test('TAL: a box takes the anchors inside it with the highest alignment, at most top-k, with normalised scores', () => {
  const pts = grid();
  const gt: GtBox = { cls: 1, x1: 0, y1: 0, x2: 24, y2: 24 }; // anchors with centre inside: x, y in {4, 12, 20}: 9
  const boxes = new Float64Array(16 * 4);
  for (let a = 0; a < 16; a++) boxes.set([gt.x1, gt.y1, gt.x2, gt.y2], 4 * a); // every prediction is the box: CIoU 1
  const scores = new Float64Array(16 * 2);
  for (let a = 0; a < 16; a++) scores[a * 2 + 1] = 0.05 + 0.05 * a; // class-1 score grows with the index
  scores[15 * 2 + 1] = 0.99; // an outside anchor with the highest score is never taken
  const asg = assignTal(scores, boxes, pts, [gt], 2, { topk: 4, alpha: 1, beta: 6 });
  const inside = [0, 1, 2, 4, 5, 6, 8, 9, 10];
  const fg = [...asg.fg.keys()].filter((a) => asg.fg[a]);
  assert.deepEqual(fg, [6, 8, 9, 10]); // the 4 inside anchors with the highest scores
  for (const a of fg) assert.ok(inside.includes(a));
  // normalised: align / max align * max overlap (1) = score / 0.55
  for (const a of fg) assert.ok(Math.abs(asg.scores[a * 2 + 1]! - (0.05 + 0.05 * a) / 0.55) < 1e-6, `anchor ${a}: ${asg.scores[a * 2 + 1]}`);
  for (const a of fg) assert.equal(asg.scores[a * 2], 0);
  assert.equal(asg.scores.reduce((s, v, i) => s + (asg.fg[Math.floor(i / 2)] ? 0 : v), 0), 0, 'background scores are 0');
  // alpha 0.5, beta 6 (the defaults): same ranking here (equal overlaps)
  const d = assignTal(scores, boxes, pts, [gt], 2, { topk: 4 });
  assert.deepEqual([...d.fg.keys()].filter((a) => d.fg[a]), [6, 8, 9, 10]);
});

test('TAL: an anchor contested by two boxes goes to the box its prediction overlaps most', () => {
  const pts = grid();
  const g0: GtBox = { cls: 0, x1: 0, y1: 0, x2: 17, y2: 17 };
  const g1: GtBox = { cls: 1, x1: 7, y1: 7, x2: 32, y2: 32 };
  // anchor 5 (12, 12) lies inside both; its prediction is close to g1.
  const boxes = new Float64Array(16 * 4);
  for (let a = 0; a < 16; a++) boxes.set([pts[2 * a]! - 4, pts[2 * a + 1]! - 4, pts[2 * a]! + 4, pts[2 * a + 1]! + 4], 4 * a);
  boxes.set([8, 8, 31, 31], 4 * 5);
  const scores = new Float64Array(16 * 2).fill(0.5);
  const asg = assignTal(scores, boxes, pts, [g0, g1], 2, { topk: 10 });
  assert.equal(asg.gtIndex[5], 1);
  assert.ok(asg.scores[5 * 2 + 1]! > 0 && asg.scores[5 * 2] === 0);
  // anchor 0 (4, 4) is inside g0 only
  assert.equal(asg.gtIndex[0], 0);
  // with the prediction moved onto g0, g0 wins
  boxes.set([0, 0, 17, 17], 4 * 5);
  assert.equal(assignTal(scores, boxes, pts, [g0, g1], 2, { topk: 10 }).gtIndex[5], 0);
});

test('TAL: no boxes gives no foreground; a class outside the head is refused', () => {
  const pts = grid();
  const asg = assignTal(new Float64Array(32).fill(0.5), new Float64Array(64), pts, [], 2);
  assert.equal(asg.fg.reduce((s, v) => s + v, 0), 0);
  assert.equal(asg.scores.reduce((s, v) => s + v, 0), 0);
  assert.throws(() => assignTal(new Float64Array(32).fill(0.5), new Float64Array(64), pts, [{ cls: 2, x1: 0, y1: 0, x2: 10, y2: 10 }], 2), (e: unknown) => e instanceof ShearsError && /class 2/.test(e.message));
});

// ---- a tiny fixture detector ----

test('YOLO head finder: the fixture detector\'s head, anchors and strides; a classifier is refused clearly', async () => {
  const m = tinyDetector();
  const shape = [2, 3, IMG, IMG];
  const head = findYoloHead(m, (await probeTypes(m, { images: shape })).shapes, shape);
  assert.equal(head.value, 'head');
  assert.equal(head.regMax, R);
  assert.equal(head.nc, NC);
  assert.equal(head.anchors, A);
  assert.deepEqual(head.scales, geometry().scales);
  assert.deepEqual(Array.from(head.points), Array.from(geometry().points));
  assert.deepEqual(Array.from(head.strides), Array.from(geometry().strides));
  // the convs without BatchNorm in Ultralytics' Detect: the last box and class conv of each scale, the DFL conv
  const lastConvs = m.graph.nodes.filter((n) => n.opType === 'Concat' && n.inputs.length === 2 && n.outputs[0] !== 'output0' && n.outputs[0] !== 'head').flatMap((n) => n.inputs.map((i) => m.graph.nodes.find((p) => p.outputs.includes(i))!.name));
  assert.equal(lastConvs.length, 4);
  assert.deepEqual([...head.plainConvs].sort(), [...lastConvs, 'dfl_conv'].sort());
  const b = new GraphBuilder('cls');
  b.input('x', ['N', 4]);
  b.output(b.node('Softmax', [b.node('MatMul', ['x', b.init('w', t32([4, 3], rng(1), 1))])], { axis: 1 }));
  const cls = b.model(17);
  assert.throws(() => findYoloHead(cls, new Map([['x', [1, 4]]]), [1, 4]), (e: unknown) => e instanceof ShearsError && /no YOLO detection head/.test(e.message));
});

/** n images of one bright square (a class per brightness) on a dark background, with their boxes. */
function squares(n: number, seed: number): { x: Float32Array; boxes: GtBox[][] } {
  const r = rng(seed);
  const x = new Float32Array(n * 3 * IMG * IMG);
  const boxes: GtBox[][] = [];
  for (let i = 0; i < n; i++) {
    const cls = Math.floor(r() * NC);
    const w = 8 + Math.floor(r() * 10), h = 8 + Math.floor(r() * 10);
    const x1 = Math.floor(r() * (IMG - w)), y1 = Math.floor(r() * (IMG - h));
    for (let c = 0; c < 3; c++) for (let y = y1; y < y1 + h; y++) for (let xx = x1; xx < x1 + w; xx++) x[((i * 3 + c) * IMG + y) * IMG + xx] = 0.3 + 0.35 * cls;
    boxes.push([{ cls, x1, y1, x2: x1 + w, y2: y1 + h }]);
  }
  return { x, boxes };
}

for (const assign of ['student', 'reference'] as const) {
  test(`fine-tuning a fixture detector with the detection loss (assignment on the ${assign}) lowers the loss`, async () => {
    const { x, boxes } = squares(64, 4);
    const r = await finetune(tinyDetector(2), {
      train: { x, n: 64, sampleDims: [3, IMG, IMG] }, epochs: 10, batch: 16, lr: 0.03, replicas: 1, threads: 1, progress: false,
      objective: 'detect', detection: { boxes: (i) => boxes[i]!, assign },
    });
    const first = r.history[0]!.trainLoss, last = r.history.at(-1)!.trainLoss;
    assert.ok(Number.isFinite(last));
    console.log(`${assign}: loss ${first} -> ${last}`);
    assert.ok(last < 0.8 * first, `loss ${first} -> ${last}`);
  });
}

test('detect objective: bad input is refused clearly', async () => {
  const { x, boxes } = squares(16, 4);
  const base = { train: { x, n: 16, sampleDims: [3, IMG, IMG] }, epochs: 1, batch: 16, replicas: 1, threads: 1, progress: false, objective: 'detect' as const };
  const bad = boxes.map((b, i) => (i === 3 ? [{ ...b[0]!, cls: NC }] : b));
  await assert.rejects(finetune(tinyDetector(), { ...base, detection: { boxes: (i) => bad[i]! } }), (e: unknown) => e instanceof ShearsError && /sample 3 has a box of class 3, outside the detector's 3 classes/.test(e.message));
  await assert.rejects(finetune(tinyDetector(), base), (e: unknown) => e instanceof ShearsError && /needs the boxes/.test(e.message));
  // a model without a YOLO head
  const b = new GraphBuilder('cnn');
  b.input('images', ['N', 3, IMG, IMG]);
  const y = b.node('GlobalAveragePool', [b.node('Conv', ['images', b.init('w', t32([4, 3, 3, 3], rng(1), 0.3))], { kernel_shape: [3, 3] })]);
  b.output(b.node('Flatten', [y]));
  await assert.rejects(finetune(b.model(17), { ...base, detection: { boxes: (i) => boxes[i]! } }), (e: unknown) => e instanceof ShearsError && /no YOLO detection head/.test(e.message));
});

test('detect objective on 2 data-parallel replicas (worker threads) trains too', async () => {
  const { x, boxes } = squares(64, 4);
  const r = await finetune(tinyDetector(2), {
    train: { x, n: 64, sampleDims: [3, IMG, IMG] }, epochs: 10, batch: 32, lr: 0.03, replicas: 2, threads: 2, progress: false,
    objective: 'detect', detection: { boxes: (i) => boxes[i]! },
  });
  const first = r.history[0]!.trainLoss, last = r.history.at(-1)!.trainLoss;
  assert.ok(Number.isFinite(last) && last < 0.85 * first, `loss ${first} -> ${last}`);
});

test('BatchNorm re-insertion skips the YOLO head\'s last convs and the DFL conv (they had none)', async () => {
  const { insertBatchNorm } = await import('../src/train/bn.js');
  const m = tinyDetector(3);
  const shape = [4, 3, IMG, IMG];
  const head = findYoloHead(m, (await probeTypes(m, { images: shape })).shapes, shape);
  const convs = m.graph.nodes.filter((n) => n.opType === 'Conv').map((n) => n.name);
  const r = rng(2);
  const x: Tensor = { dtype: DataType.FLOAT, dims: shape, data: Float32Array.from({ length: 4 * 3 * IMG * IMG }, () => r()) };
  const out = await insertBatchNorm(m, { images: x }, { skip: new Set(head.plainConvs) });
  const bnAfter = new Set(out.graph.nodes.filter((n) => n.opType === 'BatchNormalization').map((n) => out.graph.nodes.find((p) => p.outputs.includes(n.inputs[0]!))!.name));
  assert.equal(bnAfter.size, convs.length - 5);
  for (const c of head.plainConvs) assert.ok(!bnAfter.has(c), c);
});
