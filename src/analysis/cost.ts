/**
 * Cost model: parameters, MACs, other FLOPs, weight and activation bytes and sparsity, per node and in total.
 * Per-op formulas live in the op modules (OpDef.cost); this pass only adds them up.
 */
import { DataType, dtypeBits } from '../ir/dtype.js';
import type { Dim, Model, TensorType } from '../ir/graph.js';
import { numel, type Tensor } from '../ir/tensor.js';
import { isParameterInput, opDef, weightSpecs } from '../ops/registry.js';
import { nodeContext, type ShapeInfo } from './shapes.js';

export interface LayerCost {
  name: string;
  opType: string;
  /** Shape of the first output; symbolic dims stay names, unknown dims are null. */
  outputShape: Dim[] | null;
  params: number;
  /** Parameters of this node that are exactly zero. */
  zeroParams: number;
  /** Elements of the layer's weight tensor (biases excluded); 0 for ops without a weight. */
  weightParams: number;
  /** Zeros in the layer's weight tensor. */
  weightZeros: number;
  macs: number;
  flops: number;
  /** Bytes of the initializers this node reads. */
  weightBytes: number;
  /** Bytes of the node's outputs (0 when a shape is not static). */
  activationBytes: number;
}

export interface CostReport {
  params: number;
  zeroParams: number;
  /** zeroParams / params. */
  sparsity: number;
  /** Elements and zeros of layer weight tensors only (Conv/Gemm/MatMul weights; no biases or norms). */
  weightParams: number;
  weightZeros: number;
  /** weightZeros / weightParams: what unstructured pruning targets. */
  weightSparsity: number;
  macs: number;
  flops: number;
  /** Bytes of all initializers. */
  weightBytes: number;
  /** Bytes of all intermediate values and outputs. */
  activationBytes: number;
  layers: LayerCost[];
}

function staticNumel(t: TensorType | undefined): number | undefined {
  if (!t?.shape) return undefined;
  let n = 1;
  for (const d of t.shape) {
    if (typeof d !== 'number') return undefined;
    n *= d;
  }
  return n;
}

function bytesOf(t: TensorType | undefined): number {
  const n = staticNumel(t);
  if (n === undefined || !t) return 0;
  return Math.ceil((n * dtypeBits(t.elemType)) / 8);
}

function countZeros(t: Tensor): number {
  const d = t.data;
  if (Array.isArray(d)) return 0;
  let z = 0;
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) {
    for (let i = 0; i < d.length; i++) if (d[i] === 0n) z++;
  } else {
    // Float16/BFloat16 are stored as bit patterns: +0 and -0.
    const bits = d instanceof Uint16Array;
    for (let i = 0; i < d.length; i++) {
      const v = d[i] as number;
      if (v === 0 || (bits && v === 0x8000)) z++;
    }
  }
  return z;
}

interface StoredWeight {
  tensor: Tensor;
  source: string;
  /** Reached through a DequantizeLinear: the float type its consumers see. */
  dequantizedTo?: number;
}

/**
 * Weights stored in the model, by every value name that carries one unchanged: initializers, outputs of
 * Constant nodes (as Paddle exports keep their weights), and pass-through copies of either (Identity).
 * `source` names the stored tensor, so a weight read under several names counts once. A quantized weight read
 * through DequantizeLinear (QDQ models) counts for the layer that consumes the dequantized value.
 */
function storedWeights(model: Model, shapes: ShapeInfo): Map<string, StoredWeight> {
  const g = model.graph;
  const out = new Map<string, StoredWeight>();
  for (const [name, tensor] of g.initializers) out.set(name, { tensor, source: name });
  for (const node of g.nodes) {
    const def = opDef(node);
    const first = node.inputs[0];
    if (def?.passthrough && first && out.has(first)) {
      const src = out.get(first)!;
      for (const o of node.outputs) if (o && shapes.constants.has(o)) out.set(o, src);
    } else if (def?.dequantizes && first && out.has(first) && node.outputs[0]) {
      out.set(node.outputs[0], { ...out.get(first)!, dequantizedTo: shapes.types.get(node.outputs[0])?.elemType ?? DataType.FLOAT });
    } else if (node.inputs.length === 0) {
      // Nodes without inputs that fold (Constant) hold their tensor in the model itself.
      for (const o of node.outputs) {
        const t = o ? shapes.constants.get(o) : undefined;
        if (t) out.set(o, { tensor: t, source: o });
      }
    }
  }
  return out;
}

export function analyzeCost(model: Model, shapes: ShapeInfo): CostReport {
  const g = model.graph;
  const counted = new Set<string>();
  const zeroCache = new Map<string, number>();
  const layers: LayerCost[] = [];
  let params = 0, zeroParams = 0, macs = 0, flops = 0, activationBytes = 0, weightParams = 0, weightZeros = 0;
  const countedWeights = new Set<string>();
  const stored = storedWeights(model, shapes);
  for (const node of g.nodes) {
    const def = opDef(node);
    const typeOf = (name: string | undefined) => (name ? shapes.types.get(name) : undefined);
    let p = 0, z = 0, wb = 0, lw = 0, lz = 0;
    // The layer weights (W and R of a recurrent layer): the tensors unstructured pruning sparsifies.
    const weightInputs = new Set(weightSpecs(node, (i) => (node.inputs[i] ? stored.get(node.inputs[i]!)?.tensor.dims : undefined)).map((w) => w.input));
    node.inputs.forEach((input, i) => {
      const w = input ? stored.get(input) : undefined;
      if (!w) return;
      const { tensor: t, source: name } = w;
      wb += Math.ceil((numel(t.dims) * dtypeBits(t.dtype)) / 8);
      if (!isParameterInput(node, i, w.dequantizedTo === undefined ? t : { ...t, dtype: w.dequantizedTo })) return;
      let zeros = zeroCache.get(name);
      if (zeros === undefined) zeroCache.set(name, (zeros = countZeros(t)));
      const n = numel(t.dims);
      p += n;
      z += zeros;
      if (weightInputs.has(i)) {
        lw += n;
        lz += zeros;
        if (!countedWeights.has(name)) {
          countedWeights.add(name);
          weightParams += n;
          weightZeros += zeros;
        }
      }
      if (!counted.has(name)) {
        counted.add(name);
        params += n;
        zeroParams += zeros;
      }
    });
    let c = { macs: 0, flops: 0 };
    if (def?.cost) {
      try {
        c = def.cost(nodeContext(model, shapes, node));
      } catch {
        // A cost rule that cannot work with what is known (unknown shapes) counts as zero.
        c = { macs: 0, flops: 0 };
      }
    }
    let ab = 0;
    for (const o of node.outputs) ab += bytesOf(typeOf(o));
    const out0 = typeOf(node.outputs[0]);
    macs += c.macs;
    flops += c.flops;
    activationBytes += ab;
    layers.push({
      name: node.name || node.outputs[0] || node.opType,
      opType: node.opType,
      outputShape: out0?.shape ?? null,
      params: p,
      zeroParams: z,
      weightParams: lw,
      weightZeros: lz,
      macs: c.macs,
      flops: c.flops,
      weightBytes: wb,
      activationBytes: ab,
    });
  }
  let weightBytes = 0;
  for (const [name, w] of stored) if (w.source === name) weightBytes += Math.ceil((numel(w.tensor.dims) * dtypeBits(w.tensor.dtype)) / 8);
  return {
    params, zeroParams, sparsity: params ? zeroParams / params : 0,
    weightParams, weightZeros, weightSparsity: weightParams ? weightZeros / weightParams : 0,
    macs, flops, weightBytes, activationBytes, layers,
  };
}
