/**
 * The op table. Each op family lives in its own module under ops/; this file only lists them. A missing entry
 * means shears does not know the op: analysis reports it (by node) instead of guessing.
 */
import { isFloatType } from '../ir/dtype.js';
import type { Node } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { ACTIVATION_OPS } from './activation.js';
import { ATTENTION_OPS, CONTRIB_ATTENTION_OPS } from './attention.js';
import { CHANNEL_RULES } from './channels.js';
import { CONSTANT_OPS } from './constant.js';
import { CONTRIB_TRANSFORMER_OPS } from './contrib-transformer.js';
import { CONTROL_OPS } from './control.js';
import { CONV_OPS } from './conv.js';
import { DETECT_OPS } from './detect.js';
import { BINARY_OPS, UNARY_OPS } from './elementwise.js';
import { GEMM_OPS } from './gemm.js';
import { GRAD_RULES } from './grad/index.js';
import { LINEAR_RULES } from './linear.js';
import { NCHWC_LAYOUT } from './layout.js';
import { LOSS_OPS } from './loss.js';
import { NORM_OPS } from './norm.js';
import { POOL_OPS } from './pool.js';
import { CONTRIB_QUANTIZED_OPS, QUANT_OPS } from './quant.js';
import { RECURRENT_OPS } from './recurrent.js';
import { REDUCE_OPS } from './reduce.js';
import { SHAPE_OPS } from './shape.js';
import type { LayerOpDef, OpDef, WeightSpec } from './types.js';

const FAMILIES = [
  ACTIVATION_OPS, BINARY_OPS, CONSTANT_OPS, CONTROL_OPS, CONV_OPS, GEMM_OPS, NORM_OPS, POOL_OPS, QUANT_OPS,
  REDUCE_OPS, SHAPE_OPS, UNARY_OPS,
  RECURRENT_OPS, DETECT_OPS, LOSS_OPS, ATTENTION_OPS,
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


/**
 * Merges one aspect table (rules keyed by op type) into the op definitions. An entry for an op the families do
 * not define is a programming error, reported when the module loads.
 */
function attachAspect(ops: Record<string, OpDef>, aspect: Record<string, object>, what: string): void {
  for (const [k, rule] of Object.entries(aspect)) {
    const def = ops[k];
    if (!def) throw new Error(`${what} for op ${k}, which no op family defines`);
    ops[k] = { ...def, ...rule };
  }
}

// Aspects written by later stages, one typed table each: channel couplings and pruning surgery (structured
// pruning, ops/channels.ts), linear forms (repair, ops/linear.ts), gradients (autodiff, ops/grad/).
const table: Record<string, OpDef> = mergeFamilies(FAMILIES);
attachAspect(table, CHANNEL_RULES, 'a channel rule');
attachAspect(table, NCHWC_LAYOUT, 'an NCHWc layout rule');
attachAspect(table, Object.fromEntries(Object.entries(LINEAR_RULES).map(([k, linear]) => [k, { linear }])), 'a linear rule');
attachAspect(table, Object.fromEntries(Object.entries(GRAD_RULES).map(([k, grad]) => [k, { grad }])), 'a gradient rule');

/** Every op shears knows, by op type (default ONNX domain), with all aspects. Duplicates fail at load. */
export const OPS = table as Merge<typeof FAMILIES> satisfies Record<string, OpDef>;

/**
 * onnxruntime contrib ops (domain com.microsoft) shears knows, by op type: their own table, since the names
 * overlap the default domain's (com.microsoft.Attention is not ONNX Attention).
 */
export const CONTRIB_OPS: Readonly<Record<string, OpDef>> = mergeFamilies([CONTRIB_ATTENTION_OPS, CONTRIB_TRANSFORMER_OPS]);

/** The definition of a node's op, or undefined for unknown ops and other domains. */
export function opDef(node: Node): OpDef | undefined {
  const ops = node.domain === '' || node.domain === 'ai.onnx' ? table : node.domain === 'com.microsoft' ? CONTRIB_OPS : undefined;
  return ops && Object.prototype.hasOwnProperty.call(ops, node.opType) ? ops[node.opType] : undefined;
}

/**
 * Whether a node computes on quantized values (QuantizeLinear/DequantizeLinear, QLinearConv, ConvInteger,
 * MatMulInteger, and onnxruntime's contrib ops such as MatMulNBits): a model with one is already quantized.
 */
export function isQuantizedNode(node: Node): boolean {
  if (node.domain === 'com.microsoft') return CONTRIB_QUANTIZED_OPS.has(node.opType);
  const def = opDef(node);
  return def !== undefined && (def.integerParams === true || def.dequantizes === true || def.quantized === true);
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

/**
 * Every weight of a node that unstructured pruning may sparsify (the layer weight, and R of a recurrent layer),
 * each checked against its tensor's dims; empty when the op has none.
 */
export function weightSpecs(node: Node, dimsOf: (input: number) => readonly number[] | undefined): WeightSpec[] {
  const def = opDef(node);
  if (!isLayerOp(def)) return [];
  const all = def.weights ? def.weights(node) : [def.weight(node)].filter((w): w is WeightSpec => w !== undefined);
  return all.flatMap((w) => {
    const dims = dimsOf(w.input);
    if (!dims) return [w];
    const checked = def.weights ? (dims.length > Math.max(w.outAxis, w.inAxis) ? w : undefined) : def.weight(node, dims);
    return checked ? [checked] : [];
  });
}

/**
 * Whether input `i` of `node`, holding tensor `t`, is a learnable parameter: a float tensor at one of the op's
 * parameter positions (its weight and bias, OpDef.paramInputs), or an integer one of a quantized compute op
 * (OpDef.integerParams). A rank-0 scalar feeding an op without a weight (x * 0.5, x + 1e-5) is a constant, not
 * a parameter; a 1-element tensor of rank >= 1 is one (the [1] bias of a one-output linear layer). This is
 * the one definition every parameter count uses (analysis/cost.ts parameterTensors).
 */
export function isParameterInput(node: Node, i: number, t: Tensor): boolean {
  if (!isFloatType(t.dtype)) return opDef(node)?.integerParams === true && (opDef(node)?.paramInputs ?? []).includes(i) && t.dims.length > 0;
  const w = weightSpec(node, t.dims);
  if (w && (w.input === i || w.bias === i)) return true;
  return (opDef(node)?.paramInputs ?? []).includes(i) && (w !== undefined || t.dims.length > 0);
}
