/**
 * What onnxruntime makes of a model: it writes its optimised graph (SessionConfig.optimizedModelPath), which
 * is read back to count op types. A QDQ model is deployed well when its quantized nodes became integer
 * kernels (QLinearConv, QLinearMatMul, QGemm, QLinearAdd, ...) and no float compute op is left for them.
 */
import type { Model } from '../ir/graph.js';
import { parseModelBytes } from '../onnx/parse.js';
import { optimizedModelBytes } from '../runtime/session.js';

export interface FusionReport {
  /** Op types of onnxruntime's optimised graph (domain-qualified for non-standard domains). */
  opTypes: Record<string, number>;
  /** Nodes running integer arithmetic (QLinear*, *Integer, QGemm, MatMulNBits, DynamicQuantize*). */
  integerNodes: number;
  /** Remaining QuantizeLinear/DequantizeLinear nodes (model boundary and float islands). */
  qdqNodes: number;
}

const INTEGER_OP = /^(QLinear|QGemm|MatMulNBits|DynamicQuantize|MatMulInteger|ConvInteger|MatMulIntegerToFloat|QAttention|QEmbed)/;

/**
 * onnxruntime's optimised form of `model` (CPU provider), as it writes it. The QDQ fusions run at level
 * 'extended' (the default here); 'all' adds hardware-specific layout changes (NCHWc, NHWC transposes) on top and
 * makes onnxruntime warn that the saved graph is machine-specific.
 */
export async function optimizedModel(model: Model | Uint8Array, threads = 1, level: 'basic' | 'extended' | 'all' = 'extended'): Promise<Model> {
  // onnxruntime-node writes it to a temporary file (runtime adapter); external data cannot come with it
  const bytes = await optimizedModelBytes(model, { threads, optimization: level });
  return parseModelBytes(bytes, { validate: false });
}

/** The op types of an (optimised) graph, and how many nodes run integer kernels or still (de)quantize. */
export function fusionReport(m: Model): FusionReport {
  const opTypes: Record<string, number> = {};
  let integerNodes = 0;
  let qdqNodes = 0;
  for (const n of m.graph.nodes) {
    const key = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.${n.opType}` : n.opType;
    opTypes[key] = (opTypes[key] ?? 0) + 1;
    if (INTEGER_OP.test(n.opType) || n.opType.endsWith('Integer')) integerNodes++;
    if (n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear') qdqNodes++;
  }
  return { opTypes, integerNodes, qdqNodes };
}

/** Counts the op types of onnxruntime's optimised form of `model` (optimizedModel, then fusionReport). */
export async function optimizedOpTypes(model: Model | Uint8Array, threads = 1, level: 'basic' | 'extended' | 'all' = 'extended'): Promise<FusionReport> {
  return fusionReport(await optimizedModel(model, threads, level));
}
