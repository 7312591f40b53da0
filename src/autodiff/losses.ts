/**
 * Loss graphs appended to a model's output: soft-target cross-entropy (hard labels and label smoothing are
 * soft targets built on the data side), knowledge distillation at a temperature against teacher
 * probabilities, mean squared error, and weighted sums of them. All standard ONNX ops, differentiated by
 * autodiff/backward.ts like the model itself.
 */
import { ShearsError } from '../errors.js';
import type { Graph, ValueInfo } from '../ir/graph.js';
import { Emitter } from './emitter.js';
import { emitDetectLoss, type DetectLossSpec } from './detect-loss.js';
import { emitDetectDistill, type DetectDistillSpec } from './detect-distill.js';

export interface LossSpec {
  /** Cross-entropy against the `target` input (probabilities, e.g. one-hot or label-smoothed). */
  ce?: { weight?: number };
  /** Distillation: T^2 * KL(teacher || student) at temperature T, against the `teacher_probs` input (softmax(t/T)). */
  kd?: { weight?: number; temperature?: number };
  /** Mean squared error against the `target` input (regression, or logit matching). */
  mse?: { weight?: number };
  /**
   * YOLOv8's detection loss (autodiff/detect-loss.ts) on a pre-decode head [B, 4 x regMax + nc, A], against the
   * task-aligned targets [B, 4 + nc, A] fed as `target`. Alone: no other term.
   */
  detect?: DetectLossSpec;
  /**
   * Distillation of a YOLO head (autodiff/detect-distill.ts): the pre-decode head [B, 4 x regMax + nc, A] against
   * the teacher's box-bin and class probabilities of the same shape, fed as `target` (cross-entropy of the bins,
   * BCE of the classes). Alone: no other term.
   */
  detectDistill?: DetectDistillSpec;
}

export interface LossGraph {
  loss: string;
  /** The extra graph inputs the loss reads (target, teacher_probs). */
  inputs: ValueInfo[];
  /** Values the backward pass treats as constants. */
  detached?: string[];
}

export const TARGET = 'shears_target';
export const TEACHER = 'shears_teacher_probs';
export const LOSS = 'shears_loss';

/**
 * Appends the loss over `output` to the graph: classes on the last axis, one distribution per row of the other
 * axes ([B, K] classifiers; [B, T, V] language-model logits, a next-token distribution per position). The
 * returned loss value is a scalar: cross-entropy and distillation averaged over the rows (B, or B x T), MSE over
 * all elements.
 */
export function appendLoss(graph: Graph, output: string, outShape: number[], elemType: number, spec: LossSpec, taken: Set<string>): LossGraph {
  const e = new Emitter(elemType, taken, 'loss/');
  if (spec.detect) {
    if (spec.ce || spec.mse || spec.kd) throw new ShearsError('the detection loss takes no other term');
    const d = emitDetectLoss(e, output, outShape, TARGET, LOSS, spec.detect);
    graph.nodes.push(...e.nodes);
    for (const [k, v] of e.initializers) graph.initializers.set(k, v);
    return d;
  }
  if (spec.detectDistill) {
    if (spec.ce || spec.mse || spec.kd) throw new ShearsError('the detector distillation loss takes no other term');
    const d = emitDetectDistill(e, output, outShape, TARGET, LOSS, spec.detectDistill);
    graph.nodes.push(...e.nodes);
    for (const [k, v] of e.initializers) graph.initializers.set(k, v);
    return d;
  }
  const classAxis = outShape.length - 1;
  const batch = outShape.slice(0, classAxis).reduce((a, b) => a * b, 1);
  const inputs: ValueInfo[] = [];
  const terms: string[] = [];
  if (spec.ce && spec.mse) throw new ShearsError('cross-entropy and MSE both read the target; use one of them');
  if (spec.ce) {
    inputs.push({ name: TARGET, type: { elemType, shape: outShape } });
    const lp = e.op('LogSoftmax', [output], { axis: classAxis });
    const s = e.op('ReduceSum', [e.op('Mul', [lp, TARGET])], { keepdims: 0 });
    terms.push(e.op('Mul', [s, e.constF(-(spec.ce.weight ?? 1) / batch)]));
  }
  if (spec.mse) {
    inputs.push({ name: TARGET, type: { elemType, shape: outShape } });
    const d = e.op('Sub', [output, TARGET]);
    const s = e.op('ReduceSum', [e.op('Mul', [d, d])], { keepdims: 0 });
    const n = outShape.reduce((a, b) => a * b, 1);
    terms.push(e.op('Mul', [s, e.constF((spec.mse.weight ?? 1) / n)]));
  }
  if (spec.kd) {
    const t = spec.kd.temperature ?? 1;
    inputs.push({ name: TEACHER, type: { elemType, shape: outShape } });
    const lp = e.op('LogSoftmax', [t === 1 ? output : e.op('Mul', [output, e.constF(1 / t)])], { axis: classAxis });
    const s = e.op('ReduceSum', [e.op('Mul', [lp, TEACHER])], { keepdims: 0 });
    terms.push(e.op('Mul', [s, e.constF((-(spec.kd.weight ?? 1) * t * t) / batch)]));
  }
  if (terms.length === 0) throw new ShearsError('the loss has no terms');
  let loss = terms[0]!;
  for (let i = 1; i < terms.length; i++) loss = e.op('Add', [loss, terms[i]!]);
  const last = e.nodes[e.nodes.length - 1]!;
  if (terms.length === 1 && last.outputs[0] === loss) last.outputs[0] = LOSS;
  else e.nodes.push({ name: 'loss/identity', opType: 'Identity', domain: '', inputs: [loss], outputs: [LOSS], attrs: new Map() });
  graph.nodes.push(...e.nodes);
  for (const [k, v] of e.initializers) graph.initializers.set(k, v);
  return { loss: LOSS, inputs };
}
