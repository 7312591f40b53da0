/**
 * Defaults for detectors (a YOLOv8-style DFL head, recognised by analysis/detector.ts):
 * - structured pruning under a MAC/param target levels groups by the fraction they keep after their next step
 *   (PlanOptions.levelAfterStep): with steps of 8 channels a 16-wide group (the stem) is cut last instead of first
 *   (measured on fmnist_det, README "Pruning detectors");
 * - recovery distils on the pre-decode head, not on the decoded output (pixel box coordinates dominate a squared
 *   error there): the distillation target (withDistillTarget) is each side's box-bin distribution (softmax over
 *   the bins), then the class probabilities (sigmoid); the student's head logits are trained against the
 *   teacher's by cross-entropy of the bins weighted by the teacher's class confidence and BCE of the classes
 *   (autodiff/detect-distill.ts; `--det-distill mse`: the squared error of both models' probabilities, the
 *   default before), AdamW at 4e-3 after a 30-step warmup (measured: README "Pruning detectors");
 * - the recovered model is validated against the teacher on held-out images before and after, and the model as it
 *   was before fine-tuning is kept when fine-tuning made it worse.
 */
import { GraphBuilder } from '../ir/builder.js';
import type { Model } from '../ir/graph.js';
import { int64Tensor } from '../ir/tensor.js';
import { findDetectHead, type DetectHead } from '../analysis/detector.js';

/** Fine-tuning defaults for a detector: AdamW, lr (4 epochs of fmnist_det: 2e-3 0.5920, 3e-3 0.6013, 4e-3 0.6051 mAP50-95) and batch. */
export const DETECTOR_LR = 4e-3;
/**
 * Linear warmup steps of the cosine schedule when distilling a detector by default (no --schedule given): without
 * one, the squared-error distillation at 3e-3 once collapsed a pruned fmnist_det to 0.000 (README "Pruning
 * detectors"); with it, 3e-3 and 4e-3 trained well (the cross-entropy loss was not run without warmup).
 */
export const DETECTOR_WARMUP = 30;
export const DETECTOR_BATCH = 16;
/**
 * The loss of the default distillation (--det-distill): 'mse' on the probabilities, 'ce' (cross-entropy of the box
 * bins weighted by the teacher's class confidence, BCE of the classes: autodiff/detect-distill.ts) or 'ce-all'
 * (the bins of every anchor alike).
 */
export type DetectorDistillLoss = 'mse' | 'ce' | 'ce-all';
export const DETECTOR_DISTILL_LOSS: DetectorDistillLoss = 'ce';
/** Held-out images for the before/after validation when no validation data is given: this fraction, at most DETECTOR_HOLDOUT_MAX. */
export const DETECTOR_HOLDOUT = 0.1;
export const DETECTOR_HOLDOUT_MAX = 200;

/** The value distillation compares in both models. */
export const DISTILL_VALUE = 'shears_detect_distill';
const PREFIX = 'shears_detect_distill/';

const heads = new WeakMap<Model, DetectHead | null>();
/** The model's detector head (cached per model object), or undefined. */
export function detectorHead(model: Model): DetectHead | undefined {
  if (!heads.has(model)) heads.set(model, findDetectHead(model) ?? null);
  return heads.get(model) ?? undefined;
}

export function isDetector(model: Model): boolean {
  return detectorHead(model) !== undefined;
}

/**
 * A copy of `model` with DISTILL_VALUE [N, 4*bins + classes, A] computed from the head's pre-decode value: box-bin
 * probabilities, then class probabilities. Nodes and initializers are named with a prefix that stripDistillTarget
 * removes.
 */
export function withDistillTarget(model: Model, head: DetectHead): Model {
  const b = new GraphBuilder('distill');
  const R = head.bins, B = head.boxChannels, C = B + head.classes;
  const I = (name: string, v: number[]) => b.init(`${PREFIX}${name}`, int64Tensor([v.length], v));
  const n = (op: string, name: string, inputs: string[], attrs: Record<string, number | number[]> = {}) => b.node(op, inputs, attrs, { name: `${PREFIX}${name}` });
  const slice = (name: string, from: number, to: number) => n('Slice', name, [head.raw, I(`${name}_s`, [from]), I(`${name}_e`, [to]), I(`${name}_a`, [1])]);
  const box = slice('box', 0, B), cls = slice('cls', B, C);
  // [N, 4R, A] -> [N, 4, R, A] -> [N, 4, A, R]: softmax over the last axis (the same in every opset)
  const bins = n('Transpose', 'bins_t', [n('Reshape', 'bins', [box, I('bins_shape', [0, 4, R, -1])])], { perm: [0, 1, 3, 2] });
  const probs = n('Transpose', 'probs_t', [n('Softmax', 'probs', [bins], { axis: -1 })], { perm: [0, 1, 3, 2] });
  const boxP = n('Reshape', 'box_p', [probs, I('box_shape', [0, B, -1])]);
  const clsP = n('Sigmoid', 'cls_p', [cls]);
  b.node('Concat', [boxP, clsP], { axis: 1 }, { name: `${PREFIX}out`, output: DISTILL_VALUE });
  return {
    ...model,
    graph: { ...model.graph, nodes: [...model.graph.nodes, ...b.graph.nodes], initializers: new Map([...model.graph.initializers, ...b.graph.initializers]), outputs: [...model.graph.outputs] },
    metadata: new Map(model.metadata),
  };
}

/** Removes what withDistillTarget added (in place; returns the model). */
export function stripDistillTarget(model: Model): Model {
  model.graph.nodes = model.graph.nodes.filter((nd) => !nd.name.startsWith(PREFIX));
  for (const k of [...model.graph.initializers.keys()]) if (k.startsWith(PREFIX)) model.graph.initializers.delete(k);
  model.graph.outputs = model.graph.outputs.filter((o) => o.name !== DISTILL_VALUE);
  return model;
}

/** What the detector defaults chose for a fine-tuning run, for the report. */
export function formatDistillChoice(head: DetectHead, loss: DetectorDistillLoss = DETECTOR_DISTILL_LOSS): string {
  const how = loss === 'mse' ? 'box-bin probabilities and class probabilities, by mean squared error'
    : `cross-entropy of each side's box bins to the teacher's${loss === 'ce' ? ' (weighted by its class confidence at the anchor)' : ''} and BCE of the class logits to its class probabilities`;
  return `a detector: distilling on the pre-decode head '${head.raw}' (${head.bins} box bins per side, ${head.classes} classes): ${how} (not on the decoded '${head.output}', whose pixel coordinates dominate a squared error; --det-distill, --match-output or --objective overrides)`;
}
