/**
 * The op table. Each op family lives in its own module under ops/; this file only lists them. A missing entry
 * means shears does not know the op: analysis reports it (by node) instead of guessing.
 */
import type { Node } from '../ir/graph.js';
import { ACTIVATION_OPS } from './activation.js';
import { withChannelRules } from './channels.js';
import { CONSTANT_OPS } from './constant.js';
import { CONTROL_OPS } from './control.js';
import { CONV_OPS } from './conv.js';
import { BINARY_OPS, UNARY_OPS } from './elementwise.js';
import { GEMM_OPS } from './gemm.js';
import { withGradRules } from './grad/index.js';
import { withLinearRules } from './linear.js';
import { NORM_OPS } from './norm.js';
import { POOL_OPS } from './pool.js';
import { QUANT_OPS } from './quant.js';
import { REDUCE_OPS } from './reduce.js';
import { SHAPE_OPS } from './shape.js';
import type { LayerOpDef, OpDef, WeightSpec } from './types.js';

const FAMILIES = [
  ACTIVATION_OPS, BINARY_OPS, CONSTANT_OPS, CONTROL_OPS, CONV_OPS, GEMM_OPS, NORM_OPS, POOL_OPS, QUANT_OPS,
  REDUCE_OPS, SHAPE_OPS, UNARY_OPS,
] as const;

type Union<T extends readonly object[]> = T[number] extends infer U ? (U extends object ? U : never) : never;
type Merge<T extends readonly object[]> = { [K in keyof Union<T> as K]: OpDef };

function mergeFamilies(families: readonly Record<string, OpDef>[]): Record<string, OpDef> {
  const out: Record<string, OpDef> = {};
  for (const f of families) {
    for (const [k, v] of Object.entries(f)) {
      if (Object.prototype.hasOwnProperty.call(out, k)) throw new Error(`op ${k} is defined by two op families`);
      out[k] = v;
    }
  }
  return out;
}

/** Every op shears knows, by op type (default ONNX domain). Duplicates across families fail at load. */
export const OPS = mergeFamilies(FAMILIES) as Merge<typeof FAMILIES> satisfies Record<string, OpDef>;

// Channel couplings and pruning surgery (structured pruning) are attached from ops/channels.ts, linear forms
// (repair) from ops/linear.ts, gradients (autodiff) from ops/grad/.
const table: Record<string, OpDef> = withGradRules(withLinearRules(withChannelRules(OPS)));

/** The definition of a node's op, or undefined for unknown ops and non-standard domains. */
export function opDef(node: Node): OpDef | undefined {
  if (node.domain !== '' && node.domain !== 'ai.onnx') return undefined;
  return Object.prototype.hasOwnProperty.call(table, node.opType) ? table[node.opType] : undefined;
}

export function isLayerOp(def: OpDef | undefined): def is LayerOpDef {
  return def !== undefined && typeof (def as Partial<LayerOpDef>).weight === 'function';
}

/**
 * Where a node's weight sits (input index, output/input axes, bias), or undefined when the op has no weight.
 * Pass the weight's dims to rule out layouts of the wrong rank (e.g. MatMul with a 3-D second input).
 */
export function weightSpec(node: Node, weightDims?: readonly number[]): WeightSpec | undefined {
  const def = opDef(node);
  return isLayerOp(def) ? def.weight(node, weightDims) : undefined;
}
