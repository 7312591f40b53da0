/**
 * Per-layer sensitivity to quantization, leave-one-out: the model is quantized with all planned nodes but one
 * (kept float), and the outputs on the first calibration batch are compared with the float model's (relative
 * MSE over all outputs). The node whose float form lowers the error most is the most sensitive. Leave-one-out
 * sees interactions a node-alone probe misses (e.g. a detector's DFL conv whose quantized input lets onnxruntime
 * also quantize the Softmax before it). One onnxruntime session per candidate node.
 */
import type { Model } from '../ir/graph.js';
import { relMse } from '../metrics/relative-mse.js';
import type { Tensor } from '../ir/tensor.js';
import { weightSpec } from '../ops/registry.js';
import { runOnce } from '../runtime/session.js';
import type { CalibrationData, TensorRange } from './calibrate.js';
import { cloneModel } from '../ir/clone.js';
import { applyQdq, planQdq, type QdqPlan, type StaticQuantOptions } from './qdq.js';

async function firstFeeds(data: CalibrationData): Promise<Record<string, Tensor>> {
  for await (const f of data()) return f;
  throw new Error('calibration data is empty');
}

/** Relative MSE over every output of the reference. */
function outputsRelMse(a: Record<string, Tensor>, ref: Record<string, Tensor>): number {
  let num = 0, den = 0;
  for (const [k, r] of Object.entries(ref)) {
    const x = a[k]?.data as Float32Array | undefined;
    const y = r.data as Float32Array;
    if (!x) continue;
    for (let i = 0; i < y.length; i++) {
      const d = x[i]! - y[i]!;
      num += d * d;
      den += y[i]! * y[i]!;
    }
  }
  return relMse(num, den);
}

/**
 * The nodes measured: those with a quantized weight (Conv, Gemm, MatMul with a constant operand); weightless
 * nodes (Add, pools, Sigmoid, ...) are not candidates for automatic exclusion.
 */
export function sensitivityCandidates(plan: QdqPlan): string[] {
  const weighted = new Set(plan.weights.filter((w) => weightSpec(w.node, w.tensor.dims)?.input === w.input).map((w) => w.node.name));
  return plan.nodes.map((n) => n.name).filter((n) => weighted.has(n));
}

/** One plan per candidate node: the full plan with that node kept float (planned on a copy of the model). */
export function probePlans(model: Model, plan: QdqPlan, opts: StaticQuantOptions): { node: string; model: Model; plan: QdqPlan }[] {
  return sensitivityCandidates(plan).map((name) => {
    const m = cloneModel(model);
    return { node: name, model: m, plan: planQdq(m, { ...opts, excludeNodes: [...(opts.excludeNodes ?? []), name] }) };
  });
}

export interface Sensitivity {
  node: string;
  /** Relative MSE of the outputs with every planned node quantized except this one. */
  relMse: number;
  /** Error with all planned nodes quantized minus relMse (how much keeping the node float helps). */
  gain: number;
}

/** Leave-one-out sensitivity of the candidate nodes of `plan`, most sensitive first (`ranges` must cover every probe). */
export async function layerSensitivity(model: Model, plan: QdqPlan, ranges: Map<string, TensorRange>, data: CalibrationData, opts: StaticQuantOptions): Promise<Sensitivity[]> {
  const feeds = await firstFeeds(data);
  const cfg = opts.threads ? { threads: opts.threads } : {};
  const errorOf = async (m: Model, ref?: Record<string, Tensor>) => {
    const y = await runOnce(m, feeds, cfg);
    return ref ? { y, err: outputsRelMse(y, ref) } : { y, err: 0 };
  };
  const ref = (await errorOf(model)).y;
  const full = cloneModel(model);
  applyQdq(full, planQdq(full, opts), ranges, opts);
  const fullErr = (await errorOf(full, ref)).err;
  const probes = probePlans(model, plan, opts);
  const out: Sensitivity[] = [];
  for (const { node, model: m, plan: p } of probes) {
    applyQdq(m, p, ranges, opts);
    const err = (await errorOf(m, ref)).err;
    out.push({ node, relMse: err, gain: fullErr - err });
    opts.onProgress?.(`sensitivity ${out.length}/${probes.length}`);
  }
  return out.sort((a, b) => b.gain - a.gain);
}
