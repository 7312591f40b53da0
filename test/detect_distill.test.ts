/**
 * The detector distillation loss (autodiff/detect-distill.ts): the ONNX graph against an independent float64
 * TypeScript reference (cross-entropy of each side's bins to the teacher's distribution, weighted by the teacher's
 * class confidence; BCE of the classes), its gradient w.r.t. the head by central differences of that reference,
 * and the closed form of the gradient at the teacher's own logits (zero); the trainer option on the fixture
 * detector and bad input.
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
import { floatTensor } from '../src/ir/tensor.js';
import { createSession, runOnce } from '../src/runtime/session.js';
import { finetune } from '../src/train/trainer.js';
import { findDetectHead } from '../src/analysis/detector.js';
import { DISTILL_VALUE, withDistillTarget } from '../src/pipeline/detector.js';
import { relMse } from '../src/metrics/relative-mse.js';
import { rng } from './gradcheck.js';
import { A, C, IMG, NC, R, tinyDetector } from './detloss-fixture.js';

/** Teacher probabilities [B, C, A] from logits: softmax over each side's bins, sigmoid of the classes. */
function probsOf(z: ArrayLike<number>, B: number): Float64Array {
  const t = new Float64Array(B * C * A);
  for (let b = 0; b < B; b++)
    for (let a = 0; a < A; a++) {
      for (let side = 0; side < 4; side++) {
        const l = Array.from({ length: R }, (_, k) => z[(b * C + side * R + k) * A + a]!);
        const mx = Math.max(...l);
        const s = l.reduce((acc, v) => acc + Math.exp(v - mx), 0);
        l.forEach((v, k) => (t[(b * C + side * R + k) * A + a] = Math.exp(v - mx) / s));
      }
      for (let c = 0; c < NC; c++) t[(b * C + 4 * R + c) * A + a] = 1 / (1 + Math.exp(-z[(b * C + 4 * R + c) * A + a]!));
    }
  return t;
}

/** The float64 reference of the loss of head x against teacher probabilities t. */
function refLoss(x: ArrayLike<number>, t: ArrayLike<number>, B: number, confidence: boolean): number {
  let box = 0, cls = 0;
  for (let b = 0; b < B; b++)
    for (let a = 0; a < A; a++) {
      let w = 0;
      for (let c = 0; c < NC; c++) {
        const s = x[(b * C + 4 * R + c) * A + a]!, y = t[(b * C + 4 * R + c) * A + a]!;
        cls += Math.max(s, 0) - s * y + Math.log1p(Math.exp(-Math.abs(s)));
        w += y;
      }
      for (let side = 0; side < 4; side++) {
        const l = Array.from({ length: R }, (_, k) => x[(b * C + side * R + k) * A + a]!);
        const mx = Math.max(...l);
        const lz = mx + Math.log(l.reduce((acc, v) => acc + Math.exp(v - mx), 0));
        let ce = 0;
        l.forEach((v, k) => (ce -= t[(b * C + side * R + k) * A + a]! * (v - lz)));
        box += (confidence ? w : 1) * ce;
      }
    }
  return (box + cls) / B;
}

async function lossGraph(B: number, confidence: boolean): Promise<{ model: Model; grad: string }> {
  const b = new GraphBuilder('distill');
  b.input('x', [B, C, A]);
  const lg = appendLoss(b.graph, 'x', [B, C, A], DataType.FLOAT, { detectDistill: { regMax: R, nc: NC, confidence } }, new Set(['x']));
  for (const i of lg.inputs) b.graph.inputs.push(i);
  b.output(LOSS, [], DataType.FLOAT);
  const model = b.model(17);
  const types = await probeTypes(model, { [TARGET]: [B, C, A] }, { x: floatTensor([B, C, A], new Float32Array(B * C * A)) });
  const back = buildBackward(model, { loss: LOSS, wrt: ['x'], types, elemType: DataType.FLOAT });
  appendEmitted(model.graph, back.emitter);
  const grad = back.grads.get('x')!;
  model.graph.outputs.push({ name: grad });
  return { model, grad };
}

for (const confidence of [true, false]) {
  test(`detector distillation loss (${confidence ? 'box bins weighted by the teacher\'s class confidence' : 'every anchor alike'}): graph equals the float64 reference; gradient matches central differences; zero gradient at the teacher's logits`, async () => {
    const B = 2;
    const r = rng(confidence ? 3 : 4);
    const x = Float64Array.from({ length: B * C * A }, () => (r() * 2 - 1) * 3);
    const z = Float64Array.from({ length: B * C * A }, () => (r() * 2 - 1) * 3);
    const t = probsOf(z, B);
    const { model, grad } = await lossGraph(B, confidence);
    const s = await createSession(model);
    try {
      const run = async (v: ArrayLike<number>) => {
        const res = await s.run({ x: floatTensor([B, C, A], Float32Array.from(v)), [TARGET]: floatTensor([B, C, A], Float32Array.from(t)) });
        return { loss: Number(res[LOSS]!.data[0]), g: res[grad]!.data as Float32Array };
      };
      const { loss, g } = await run(x);
      const ref = refLoss(x, t, B, confidence);
      assert.ok(Math.abs(loss - ref) <= 1e-5 * Math.abs(ref), `graph ${loss} vs reference ${ref}`);
      const gmax = Math.max(...Array.from(g, Math.abs));
      const h = 1e-6;
      const pr = rng(8);
      for (let k = 0; k < 80; k++) {
        const i = k < C ? k * A + 5 : Math.floor(pr() * x.length); // every channel of one anchor, then random entries
        const xp = Float64Array.from(x), xm = Float64Array.from(x);
        xp[i]! += h;
        xm[i]! -= h;
        const num = (refLoss(xp, t, B, confidence) - refLoss(xm, t, B, confidence)) / (2 * h);
        assert.ok(Math.abs(num - g[i]!) <= 1e-4 * gmax + 1e-3 * Math.abs(num), `x[${i}] (channel ${Math.floor(i / A) % C}): analytic ${g[i]} vs numeric ${num}`);
      }
      // At the teacher's own logits every gradient is zero (softmax - t on the bins, sigmoid - t on the classes).
      const at = await run(z);
      assert.ok(Math.max(...Array.from(at.g, Math.abs)) < 1e-6, 'zero gradient at the teacher');
      assert.ok(at.loss < loss, 'the teacher\'s logits give the smallest loss');
    } finally {
      await s.release();
    }
  });
}

test('finetune with detectDistill on the fixture detector: trains the pre-decode head, moves the student towards the teacher; bad input refused', async () => {
  const teacher = withDistillTarget(tinyDetector(1), findDetectHead(tinyDetector(1))!);
  const student0 = tinyDetector(2);
  const head = findDetectHead(student0)!;
  const student = withDistillTarget(student0, head);
  const r = rng(5);
  const n = 32;
  const x = Float32Array.from({ length: n * 3 * IMG * IMG }, () => r());
  const data = { x, sampleDims: [3, IMG, IMG], n };
  const gap = async (m: Model) => {
    const feeds = { images: floatTensor([n, 3, IMG, IMG], x) };
    const get = async (mm: Model) => (await runOnce({ ...mm, graph: { ...mm.graph, outputs: [{ name: DISTILL_VALUE }] } }, feeds))[DISTILL_VALUE]!.data as Float32Array;
    const [a, b] = [await get(m), await get(teacher)];
    let sq = 0, ref = 0;
    for (let i = 0; i < a.length; i++) {
      sq += (a[i]! - b[i]!) ** 2;
      ref += b[i]! ** 2;
    }
    return relMse(sq, ref);
  };
  const opts = {
    train: data, val: data, epochs: 6, batch: 8, lr: 3e-3, optimizer: { kind: 'adamw' as const, weightDecay: 0 }, replicas: 1, progress: false,
    teacher, objective: 'match-teacher' as const, matchOutput: DISTILL_VALUE,
  };
  const res = await finetune(student, { ...opts, detectDistill: { value: head.raw, regMax: head.bins, nc: head.classes } });
  const before = await gap(student), after = await gap(res.model);
  assert.ok(after < 0.7 * before, `relMSE to the teacher ${before} -> ${after}`);
  // The validation (relative squared error of the probabilities) is the one the squared-error loss reports.
  assert.ok(Math.abs(res.initialValRelMse! - before) <= 1e-4 * before, `initial ${res.initialValRelMse} vs ${before}`);
  assert.ok(Math.abs(res.history.at(-1)!.valRelMse! - after) <= 1e-3 * after + 1e-7, `final ${res.history.at(-1)!.valRelMse} vs ${after}`);
  await assert.rejects(finetune(student, { ...opts, matchOutput: undefined, detectDistill: { value: head.raw, regMax: head.bins, nc: head.classes } } as never), (e: unknown) => e instanceof ShearsError && /give matchOutput/.test(e.message));
  await assert.rejects(finetune(student, { ...opts, detectDistill: { value: 'nope', regMax: head.bins, nc: head.classes } }), (e: unknown) => e instanceof ShearsError && /'nope' is not a value/.test(e.message));
  await assert.rejects(finetune(student, { ...opts, detectDistill: { value: head.raw, regMax: head.bins + 1, nc: head.classes } }), (e: unknown) => e instanceof ShearsError && /not \[N, \d+, anchors\]/.test(e.message));
});
