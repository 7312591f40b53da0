/**
 * TensorRT-ready export: explicit quantization (symmetric int8 activations and per-channel int8 weights as
 * float weight -> QuantizeLinear -> DequantizeLinear, biases float) on top of 2:4 sparse weights. TensorRT reads
 * the Q/DQ scales instead of calibrating, and with `--sparsity enable` (trtexec) picks sparse tensor-core
 * kernels for layers whose weights are 2:4 along the input channels. Zeros quantize to exactly 0 (zero point 0),
 * so the 2:4 pattern survives quantization; `sparsity24` checks it per layer.
 */
import type { Model } from '../ir/graph.js';
import { toFloat32 } from '../ir/tensor.js';
import { GraphIndex } from '../ir/edit.js';
import { weightSpec } from '../ops/registry.js';
import { nmViolations } from '../sparsity/nm.js';
import type { StaticQuantOptions } from './qdq.js';

/** Options that make quantizeStatic produce the TensorRT explicit-quantization form. */
export const TRT_OPTIONS: Readonly<StaticQuantOptions> = { activations: 'int8', int32Bias: false, weightFormat: 'float-qdq' };

export interface Sparsity24 {
  layer: string;
  weight: string;
  /** Groups of 4 along the input-channel axis with more than 2 nonzeros (0: the layer is 2:4). */
  violations: number;
  /** False when the input-channel count is not a multiple of 4. */
  fits: boolean;
}

/** 2:4 status of every layer weight (float initializers, also behind a QuantizeLinear/DequantizeLinear). */
export function sparsity24(model: Model): Sparsity24[] {
  const g = model.graph;
  const idx = new GraphIndex(g);
  const out: Sparsity24[] = [];
  for (const node of g.nodes) {
    const spec0 = weightSpec(node);
    if (!spec0) continue;
    // follow DequantizeLinear(QuantizeLinear(w)) or DequantizeLinear(w_int8) back to the stored weight
    let name = node.inputs[spec0.input] ?? '';
    for (let hops = 0; hops < 2 && !g.initializers.has(name); hops++) {
      const p = idx.producer.get(name);
      if (!p || p.inputs.length === 0) break;
      name = p.inputs[0]!;
    }
    const w = g.initializers.get(name);
    if (!w) continue;
    const spec = weightSpec(node, w.dims);
    if (!spec) continue;
    const fits = w.dims[spec.inAxis]! % 4 === 0;
    const violations = fits ? nmViolations(toFloat32(w), w.dims, spec.inAxis, { n: 2, m: 4 }) : -1;
    out.push({ layer: node.name, weight: name, violations, fits });
  }
  return out;
}
