/**
 * Calibration statistics of layers (types): the pruned model and the dense model run side by side on the same
 * batch and, for each layer, the layer's input patches P (from the pruned model) and outputs are reduced in
 * onnxruntime into per-batch sums: H = P P^T, C = P Yd^T, sums and sums of squares (see stepper.ts). JavaScript
 * only adds the per-batch results up (in float64) and solves.
 */
import type { Model, Node } from '../ir/graph.js';
import { opsetVersion } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import type { LinearContext, LinearForm, LinearRule } from '../ops/types.js';

export const DENSE_PREFIX = 'dense/';

/** A layer of the pruned model and its counterpart in the dense model. */
export interface LayerPair {
  node: Node;
  dense: Node;
  rule: LinearRule;
  form: LinearForm;
  denseForm: LinearForm;
  ctx: LinearContext;
  denseCtx: LinearContext;
}

/** What to collect for a layer. */
export interface StatsWanted {
  /** H = P P^T and the patch sums (needed by lsq, obs, wanda). */
  hessian?: boolean;
  /** Only the diagonal of H, the sums of squares of each patch row (Wanda's input norms): O(K) not O(K^2). */
  norms?: boolean;
  /** C = P Yd^T and the dense output sums (lsq, obs). */
  cross?: boolean;
  /** Per-channel sums and sums of squares of the pruned and dense outputs (stats correction). */
  moments?: boolean;
}

/** Accumulated statistics of one layer (float64), per group g. */
export interface LayerStats {
  /** Number of patch columns M summed (batch x output positions). */
  count: number;
  /** [G, K, K] */
  h?: Float64Array;
  /** [G, K] sums of patches. */
  sp?: Float64Array;
  /** [G, K] sums of squares of patches (the diagonal of h). */
  hd?: Float64Array;
  /** [G, K, Cd/G] */
  c?: Float64Array;
  /** [G, Cd/G] sums and sums of squares of the dense outputs. */
  syd?: Float64Array;
  qyd?: Float64Array;
  /** [G, Cp/G] of the pruned outputs. */
  syp?: Float64Array;
  qyp?: Float64Array;
}

/**
 * The constant value of `name`: an initializer, or reached from one through Identity nodes (exporters share
 * equal tensors that way), or a Constant node's tensor.
 */
export function resolveConstant(model: Model, name: string | undefined): Tensor | undefined {
  const g = model.graph;
  for (let hops = 0; name && hops < 16; hops++) {
    const t = g.initializers.get(name);
    if (t) return t;
    const p = g.nodes.find((n) => n.outputs.includes(name!));
    if (!p || (p.domain !== '' && p.domain !== 'ai.onnx')) return undefined;
    if (p.opType === 'Constant') {
      const v = p.attrs.get('value');
      return v?.kind === 'tensor' ? v.value : undefined;
    }
    if (p.opType !== 'Identity') return undefined;
    name = p.inputs[0];
  }
  return undefined;
}

export function linearContext(model: Model, node: Node): LinearContext {
  return {
    node,
    opset: opsetVersion(model, node.domain),
    inShape: () => undefined,
    outShape: () => undefined,
    constant: (i) => resolveConstant(model, node.inputs[i]),
  };
}
