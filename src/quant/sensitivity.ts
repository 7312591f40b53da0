/**
 * Per-layer sensitivity to quantization: each weighted compute node of a QDQ plan is quantized alone (with its input
 * and output Q/DQ and its int8 weights) and the model's outputs on the first calibration batch are compared
 * with the float model's (relative MSE over all outputs). Nodes that hurt most are the ones to keep in float.
 */
import type { Model } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { weightSpec } from '../ops/registry.js';
import { createSession } from '../runtime/session.js';
import type { CalibrationData, TensorRange } from './calibrate.js';
import { applyQdq, cloneModel, planQdq, type QdqPlan, type StaticQuantOptions } from './qdq.js';

async function firstFeeds(data: CalibrationData): Promise<Record<string, Tensor>> {
  for await (const f of data()) return f;
  throw new Error('calibration data is empty');
}

function relMse(a: Record<string, Tensor>, ref: Record<string, Tensor>): number {
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
  return den > 0 ? num / den : num;
}

/**
 * The nodes measured: those with a quantized weight (Conv, Gemm, MatMul with a constant operand), one session
 * each; weightless nodes (Add, pools, Sigmoid, ...) are not candidates for automatic exclusion.
 */
export function sensitivityCandidates(plan: QdqPlan): string[] {
  const weighted = new Set(plan.weights.filter((w) => weightSpec(w.node, w.tensor.dims)?.input === w.input).map((w) => w.node.name));
  return plan.nodes.map((n) => n.name).filter((n) => weighted.has(n));
}

/** One plan per compute node of `plan`, quantizing that node alone (planned on a copy of the model). */
export function singleNodePlans(model: Model, plan: QdqPlan, opts: StaticQuantOptions): { node: string; model: Model; plan: QdqPlan }[] {
  const names = plan.nodes.map((n) => n.name);
  return sensitivityCandidates(plan).map((name) => {
    const m = cloneModel(model);
    return { node: name, model: m, plan: planQdq(m, { ...opts, excludeNodes: [...(opts.excludeNodes ?? []), ...names.filter((n) => n !== name)] }) };
  });
}

/** Sensitivity of every node of `plan`, most sensitive first (`ranges` must cover every single-node plan). */
export async function layerSensitivity(model: Model, plan: QdqPlan, ranges: Map<string, TensorRange>, data: CalibrationData, opts: StaticQuantOptions): Promise<{ node: string; relMse: number }[]> {
  const feeds = await firstFeeds(data);
  const cfg = opts.threads ? { threads: opts.threads } : {};
  const base = await createSession(model, cfg);
  const ref = await base.run(feeds);
  await base.release();
  const plans = singleNodePlans(model, plan, opts);
  const out: { node: string; relMse: number }[] = [];
  for (const { node: name, model: m, plan: one } of plans) {
    applyQdq(m, one, ranges, opts);
    const s = await createSession(m, cfg);
    const y = await s.run(feeds);
    await s.release();
    out.push({ node: name, relMse: relMse(y, ref) });
    opts.onProgress?.(`sensitivity ${out.length}/${plans.length}`);
  }
  return out.sort((a, b) => b.relMse - a.relMse);
}
