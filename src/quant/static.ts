/**
 * Static int8 quantization (QDQ), the whole run: hoist constants, plan (qdq.ts), calibrate the ranges, optionally
 * keep the most sensitive weighted nodes float (sensitivity.ts), apply the plan, report.
 */
import { hoistConstants } from '../analysis/hoist.js';
import { ShearsError } from '../errors.js';
import { cloneModel } from '../ir/clone.js';
import type { Model, Node } from '../ir/graph.js';
import { calibrate, type CalibrationData } from './calibrate.js';
import type { QType } from './math.js';
import { applyQdq, planQdq, reduceRangeOf, type QdqPlan, type StaticQuantOptions } from './qdq.js';
import { layerSensitivity, probePlans, type Sensitivity } from './sensitivity.js';

export interface QuantReport {
  mode: 'int8';
  activations: QType;
  calibrator: string;
  perChannel: boolean;
  /** Bits of the stored weights: 7 with reduce-range, else 8. */
  weightBits: 7 | 8;
  /** Quantized compute nodes by op type. */
  quantized: Record<string, number>;
  quantizedNodes: string[];
  excluded: { node: string; op: string; reason: string }[];
  /** Leave-one-out sensitivity of the weighted nodes (most sensitive first), when measured. */
  sensitivity?: Sensitivity[];
  qdqTensors: number;
}

function countByOp(nodes: Node[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of nodes) out[n.opType] = (out[n.opType] ?? 0) + 1;
  return out;
}

/** Refuses a plan that keeps every weighted layer float (all excluded): only weightless ops would change. */
function noWeightLeft(plan: QdqPlan): void {
  if (plan.weights.length > 0 || plan.skipped.length === 0) return;
  const sk = plan.skipped;
  throw new ShearsError(`nothing to quantize: every layer with weights is kept float (${sk.slice(0, 3).map((s) => `${s.node}: ${s.reason}`).join('; ')}${sk.length > 3 ? `; ${sk.length - 3} more` : ''}); only ${plan.nodes.map((n) => n.opType).join(', ')} would be quantized`);
}

/**
 * Static int8 quantization (QDQ): calibrates activation ranges on `data`, quantizes weights per channel, and
 * returns a new model (the input model is not changed) with a report. `data` yields feeds (input name -> float32
 * tensor); it is iterated once (minmax) or twice (percentile, entropy).
 */
export async function quantizeStatic(model: Model, data: CalibrationData, opts: StaticQuantOptions = {}): Promise<{ model: Model; report: QuantReport }> {
  const work = cloneModel(model);
  // Weights kept in Constant nodes (Paddle exports) become initializers, so they quantize as weights.
  hoistConstants(work);
  let plan = planQdq(work, opts);
  if (plan.nodes.length === 0) throw new ShearsError('nothing to quantize: no node of a quantizable op with float activations (or all excluded)');
  noWeightLeft(plan);
  const needed = new Set([...plan.tensors.values()].map((t) => t.rangeOf));
  // the leave-one-out probes may need ranges the full plan shares from another tensor
  if (opts.autoExclude && opts.autoExclude > 0) for (const p of probePlans(work, plan, opts)) for (const t of p.plan.tensors.values()) needed.add(t.rangeOf);
  const fullRange = new Set([...(opts.fullRange ?? []), ...work.graph.inputs.map((i) => i.name), ...work.graph.outputs.map((o) => o.name)]);
  const ranges = await calibrate(work, [...needed], data, { ...opts, fullRange });
  let sensitivity: Sensitivity[] | undefined;
  let chosen: string[] = [];
  if (opts.autoExclude && opts.autoExclude > 0) {
    opts.onProgress?.('measuring per-layer sensitivity');
    sensitivity = await layerSensitivity(work, plan, ranges, data, opts);
    chosen = sensitivity.slice(0, opts.autoExclude).map((s) => s.node);
    plan = planQdq(work, { ...opts, excludeNodes: [...(opts.excludeNodes ?? []), ...chosen] });
  }
  noWeightLeft(plan);
  applyQdq(work, plan, ranges, opts);
  const report: QuantReport = {
    mode: 'int8',
    activations: opts.activations ?? 'uint8',
    calibrator: opts.calibrator ?? 'minmax',
    perChannel: !opts.perTensor,
    weightBits: reduceRangeOf(opts) ? 7 : 8,
    quantized: countByOp(plan.nodes),
    quantizedNodes: plan.nodes.map((n) => n.name),
    excluded: plan.skipped.map((s) => (chosen.includes(s.node) ? { ...s, reason: 'most sensitive (auto-exclude)' } : s)),
    qdqTensors: plan.tensors.size,
  };
  if (sensitivity) report.sensitivity = sensitivity;
  work.metadata.set('shears.quantization', JSON.stringify({ mode: 'int8-qdq', activations: report.activations, calibrator: report.calibrator, perChannel: report.perChannel, weightBits: report.weightBits }));
  return { model: work, report };
}

