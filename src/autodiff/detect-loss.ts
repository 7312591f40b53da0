/**
 * YOLOv8's detection loss (Ultralytics v8DetectionLoss) as standard ONNX ops on the pre-decode head
 * X [B, 4*R + nc, A] (train/yolo-head.ts), against targets T [B, 4 + nc, A] packed by train/tal.ts (the
 * task-aligned assignment, computed outside the graph: assignment is not differentiated in Ultralytics either):
 *
 *   tss  = max(sum of the target scores over the batch, 1)
 *   cls  = sum BCE-with-logits(class logits, target scores) / tss
 *   box  = sum over anchors of (1 - CIoU(predicted box, target box)) * w / tss
 *   dfl  = sum over anchors of mean over the 4 sides of CE(side's bins, the two bins around the target
 *          distance, weighted linearly) * w / tss
 *   loss = 7.5 box + 0.5 cls + 1.5 dfl
 *
 * with w = the anchor's summed target scores (0 on background), the predicted box the DFL expectation
 * (softmax over R bins times 0..R-1) from the anchor point, all in grid units (target distances clamped to
 * R - 1.01), and CIoU's aspect weight alpha detached as Ultralytics computes it under no_grad. Ultralytics
 * returns this times the batch size; here it stays a per-batch mean like the other losses.
 */
import type { ValueInfo } from '../ir/graph.js';
import { Emitter } from './emitter.js';

export interface DetectLossSpec {
  regMax: number;
  nc: number;
  /** Anchor points in grid units [A * 2] (x, y per anchor). */
  points: ArrayLike<number>;
  /** Gains (Ultralytics defaults box 7.5, cls 0.5, dfl 1.5). */
  box?: number;
  cls?: number;
  dfl?: number;
}

export const DETECT_GAINS = { box: 7.5, cls: 0.5, dfl: 1.5 } as const;
const EPS = 1e-7;

export interface DetectLossGraph {
  loss: string;
  inputs: ValueInfo[];
  /** Values the backward pass treats as constants (CIoU's alpha). */
  detached: string[];
}

/**
 * Emits the loss over head `x` (shape [B, 4R + nc, A]) reading targets from the graph input `target`; the last
 * node writes `lossName`.
 */
export function emitDetectLoss(e: Emitter, x: string, shape: number[], target: string, lossName: string, spec: DetectLossSpec): DetectLossGraph {
  const [B, C, A] = shape as [number, number, number];
  const R = spec.regMax;
  const nc = spec.nc;
  const slice1 = (v: string, s: number, t: number) => e.op('Slice', [v, e.constI([s]), e.constI([t]), e.constI([1])]);
  const sum = (v: string) => e.op('ReduceSum', [v], { keepdims: 0 });
  const add = (a: string, b: string) => e.op('Add', [a, b]);
  const sub = (a: string, b: string) => e.op('Sub', [a, b]);
  const mul = (a: string, b: string) => e.op('Mul', [a, b]);
  const div = (a: string, b: string) => e.op('Div', [a, b]);
  const min = (a: string, b: string) => e.op('Min', [a, b]);
  const max = (a: string, b: string) => e.op('Max', [a, b]);
  const sq = (a: string) => mul(a, a);
  const k = (v: number) => e.constF(v);

  // Targets: box (grid units) and scores.
  const tb = [0, 1, 2, 3].map((i) => slice1(target, i, i + 1)); // [B, 1, A] each
  const ts = slice1(target, 4, 4 + nc); // [B, nc, A]
  const tss = max(sum(ts), k(1));
  const w = e.op('ReduceSum', [ts, e.constI([1])], { keepdims: 1 }); // [B, 1, A]

  // Classes: BCE with logits = softplus(s) - s * t.
  const s = slice1(x, 4 * R, C);
  const bce = sub(e.op('Softplus', [s]), mul(s, ts));
  const cls = div(sum(bce), tss);

  // Box distributions [B, 4, A, R].
  const d = e.op('Transpose', [e.op('Reshape', [slice1(x, 0, 4 * R), e.constI([B, 4, R, A])])], { perm: [0, 1, 3, 2] });
  const p = e.op('Softmax', [d], { axis: -1 });
  const lp = e.op('LogSoftmax', [d], { axis: -1 });
  const dist = e.op('Reshape', [e.op('MatMul', [p, e.constF(Array.from({ length: R }, (_, i) => i), [R, 1])]), e.constI([B, 4, A])]);
  const side = [0, 1, 2, 3].map((i) => slice1(dist, i, i + 1)); // l, t, r, b [B, 1, A]
  const ax = e.constF(Array.from({ length: A }, (_, a) => spec.points[2 * a]!), [1, 1, A]);
  const ay = e.constF(Array.from({ length: A }, (_, a) => spec.points[2 * a + 1]!), [1, 1, A]);
  const [px1, py1, px2, py2] = [sub(ax, side[0]!), sub(ay, side[1]!), add(ax, side[2]!), add(ay, side[3]!)];
  const [tx1, ty1, tx2, ty2] = tb as [string, string, string, string];

  // CIoU(pred, target).
  const w1 = sub(px2, px1), h1 = add(sub(py2, py1), k(EPS));
  const w2 = sub(tx2, tx1), h2 = add(sub(ty2, ty1), k(EPS));
  const iw = e.op('Relu', [sub(min(px2, tx2), max(px1, tx1))]);
  const ih = e.op('Relu', [sub(min(py2, ty2), max(py1, ty1))]);
  const inter = mul(iw, ih);
  const union = add(sub(add(mul(w1, h1), mul(w2, h2)), inter), k(EPS));
  const iou = div(inter, union);
  const cw = sub(max(px2, tx2), min(px1, tx1));
  const ch = sub(max(py2, ty2), min(py1, ty1));
  const c2 = add(add(sq(cw), sq(ch)), k(EPS));
  const rho2 = mul(add(sq(sub(add(tx1, tx2), add(px1, px2))), sq(sub(add(ty1, ty2), add(py1, py2)))), k(0.25));
  const v = mul(sq(sub(e.op('Atan', [div(w2, h2)]), e.op('Atan', [div(w1, h1)]))), k(4 / Math.PI ** 2));
  const alpha = div(v, add(sub(v, iou), k(1 + EPS)));
  const ciou = sub(iou, add(div(rho2, c2), mul(v, alpha)));
  const box = div(sum(mul(sub(k(1), ciou), w)), tss);

  // DFL: the target distances (clamped to R - 1.01), their two-bin weights max(0, 1 - |bin - d|).
  const td = e.op('Concat', [sub(ax, tx1), sub(ay, ty1), sub(tx2, ax), sub(ty2, ay)], { axis: 1 }); // [B, 4, A]
  const tdc = e.op('Clip', [td, k(0), k(R - 1 - 0.01)]);
  const bins = e.op('Relu', [sub(k(1), e.op('Abs', [sub(e.op('Unsqueeze', [tdc, e.constI([3])]), e.constF(Array.from({ length: R }, (_, i) => i), [1, 1, 1, R]))]))]);
  const ce = e.op('Neg', [mul(bins, lp)]); // [B, 4, A, R]
  const perSide = e.op('Reshape', [e.op('MatMul', [ce, e.constF(new Array<number>(R).fill(0.25), [R, 1])]), e.constI([B, 4, A])]);
  const dfl = div(sum(mul(perSide, w)), tss);

  const gains = { box: spec.box ?? DETECT_GAINS.box, cls: spec.cls ?? DETECT_GAINS.cls, dfl: spec.dfl ?? DETECT_GAINS.dfl };
  const total = add(add(mul(box, k(gains.box)), mul(cls, k(gains.cls))), mul(dfl, k(gains.dfl)));
  e.nodes.push({ name: e.name('loss_out'), opType: 'Identity', domain: '', inputs: [total], outputs: [lossName], attrs: new Map() });
  return { loss: lossName, inputs: [{ name: target, type: { elemType: e.elemType, shape: [B, 4 + nc, A] } }], detached: [alpha] };
}
