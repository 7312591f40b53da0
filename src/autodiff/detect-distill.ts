/**
 * Distillation of a YOLOv8-style detector on its pre-decode head, as a distribution loss (standard ONNX ops):
 * the student's head X [B, 4*R + nc, A] (box-bin logits, then class logits) against the teacher's probabilities
 * T [B, 4*R + nc, A] (each side's softmax over the R bins, then the class sigmoids: pipeline/detector.ts
 * withDistillTarget), fed as the target:
 *
 *   box = sum over images, sides and anchors of w(a) * CE(T's bins, log_softmax(X's bins))   (localization
 *         distillation: cross-entropy to the teacher's box-bin distribution, as DFL does to the label's)
 *   cls = sum over images, classes and anchors of BCE-with-logits(X's class logit, T's class probability)
 *         (= softplus(s) - s t)
 *   loss = (box_gain * box + cls_gain * cls) / B
 *
 * w(a) is the teacher's summed class probabilities at the anchor (`confidence`, the default: the box bins of
 * anchors the teacher scores as background decide no detection), else 1. The gradient w.r.t. X is
 * w (softmax(X) - T) on the bins and sigmoid(X) - T on the classes: unlike a squared error on probabilities it
 * does not vanish where a probability saturates. Both terms are cross-entropies: their minimum is the teacher's
 * entropy, not 0.
 */
import type { ValueInfo } from '../ir/graph.js';
import { Emitter } from './emitter.js';

export interface DetectDistillSpec {
  /** Box bins per side (R) and classes. */
  regMax: number;
  nc: number;
  /** Weight each anchor's box term by the teacher's summed class probabilities there (default true). */
  confidence?: boolean;
  /** Gains of the two terms (default 1 and 1). */
  box?: number;
  cls?: number;
}

/**
 * Emits the loss over head `x` ([B, 4R + nc, A]) against the graph input `target` (the same shape, the teacher's
 * probabilities); the last node writes `lossName`.
 */
export function emitDetectDistill(e: Emitter, x: string, shape: number[], target: string, lossName: string, spec: DetectDistillSpec): { loss: string; inputs: ValueInfo[] } {
  const [B, C, A] = shape as [number, number, number];
  const R = spec.regMax;
  const slice1 = (v: string, s: number, t: number) => e.op('Slice', [v, e.constI([s]), e.constI([t]), e.constI([1])]);
  const sum = (v: string) => e.op('ReduceSum', [v], { keepdims: 0 });
  const mul = (a: string, b: string) => e.op('Mul', [a, b]);
  const k = (v: number) => e.constF(v);
  // [B, 4R, A] -> [B, 4, A, R]: a distribution on the last axis (the same in every opset).
  const bins = (v: string) => e.op('Transpose', [e.op('Reshape', [slice1(v, 0, 4 * R), e.constI([B, 4, R, A])])], { perm: [0, 1, 3, 2] });
  const lp = e.op('LogSoftmax', [bins(x)], { axis: -1 });
  // CE per side and anchor: -sum over bins of t * log p, as a MatMul with ones ([B, 4, A, 1]).
  const ce = e.op('Neg', [e.op('MatMul', [mul(bins(target), lp), e.constF(new Array<number>(R).fill(1), [R, 1])])]);
  const ts = slice1(target, 4 * R, C);
  // The anchor's weight [B, 1, A, 1]: the teacher's summed class probabilities (a constant: read from the target).
  const w = spec.confidence ?? true ? e.op('Unsqueeze', [e.op('ReduceSum', [ts, e.constI([1])], { keepdims: 1 }), e.constI([3])]) : undefined;
  const box = sum(w ? mul(ce, w) : ce);
  const s = slice1(x, 4 * R, C);
  const cls = sum(e.op('Sub', [e.op('Softplus', [s]), mul(s, ts)]));
  const total = e.op('Add', [mul(box, k((spec.box ?? 1) / B)), mul(cls, k((spec.cls ?? 1) / B))]);
  e.nodes.push({ name: e.name('loss_out'), opType: 'Identity', domain: '', inputs: [total], outputs: [lossName], attrs: new Map() });
  return { loss: lossName, inputs: [{ name: target, type: { elemType: e.elemType, shape: [B, C, A] } }] };
}
