/** Parameter and sparsity counts of a model, plain JSON. */
import { gzipSync } from 'fflate';
import { DataType } from '../ir/dtype.js';
import { subgraphs, type Graph, type Model } from '../ir/graph.js';
import { numel, type NumericData, type Tensor } from '../ir/tensor.js';
import { encodeModel } from '../onnx/codec.js';
import { getMasks } from './masks.js';
import { parameterTensors } from '../analysis/cost.js';
import { inferShapes } from '../analysis/shapes.js';
import { layerWeights } from './layers.js';

const FLOATS: ReadonlySet<number> = new Set([DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16]);

/** Nonzero elements of a float tensor (float16/bfloat16 negative zero counts as zero). */
export function countNonzero(t: Tensor): number {
  const d = t.data as NumericData;
  let nz = 0;
  if (t.dtype === DataType.FLOAT16 || t.dtype === DataType.BFLOAT16) {
    for (let i = 0; i < d.length; i++) if (((d[i] as number) & 0x7fff) !== 0) nz++;
  } else {
    for (let i = 0; i < d.length; i++) if (d[i] !== 0) nz++;
  }
  return nz;
}

/** Zeros of an integer tensor (quantized weights). */
function countIntZeros(t: Tensor): number {
  const d = t.data;
  if (Array.isArray(d)) return 0;
  let z = 0;
  for (let i = 0; i < d.length; i++) if (Number(d[i]) === 0) z++;
  return z;
}

export interface LayerSparsity {
  name: string;
  node: string;
  op: string;
  shape: number[];
  params: number;
  nonzero: number;
  /** 1 - nonzero/params. */
  sparsity: number;
  /** Weights marked pruned by the stored mask (0 without a mask). */
  masked: number;
}

export interface ModelSparsity {
  /** Parameters (analysis/cost.ts parameterTensors: weights, biases, norms; the count inspect prints). */
  params: number;
  nonzero: number;
  sparsity: number;
  /** The same over layer weights only (Conv/Gemm/MatMul/... weights as the op registry defines them). */
  layerParams: number;
  layerNonzero: number;
  layerSparsity: number;
  layers: LayerSparsity[];
}

export function modelSparsity(model: Model): ModelSparsity {
  // Parameters as every count defines them (analysis/cost.ts parameterTensors), subgraphs included.
  let params = 0;
  let nonzero = 0;
  for (const { tensor: t } of parameterTensors(model, inferShapes(model))) {
    params += numel(t.dims);
    nonzero += FLOATS.has(t.dtype) ? countNonzero(t) : numel(t.dims) - countIntZeros(t);
  }
  const masks = getMasks(model);
  const layers: LayerSparsity[] = [];
  let lp = 0;
  let lnz = 0;
  // Weights of every graph (If branches keep theirs until pruning lifts them to the main graph).
  const all = new Map<string, Tensor>();
  const collect = (g: Graph) => {
    for (const [k, t] of g.initializers) if (!all.has(k)) all.set(k, t);
    for (const n of g.nodes) for (const sg of subgraphs(n)) collect(sg);
  };
  collect(model.graph);
  for (const l of layerWeights(model, (name) => all.get(name))) {
    const t = all.get(l.name)!;
    const n = numel(t.dims);
    const nz = countNonzero(t);
    const m = masks.get(l.name);
    let masked = 0;
    if (m) for (let i = 0; i < m.length; i++) masked += m[i] ? 0 : 1;
    layers.push({ name: l.name, node: l.nodes[0] ?? '', op: l.opTypes[0] ?? '', shape: [...t.dims], params: n, nonzero: nz, sparsity: n ? 1 - nz / n : 0, masked });
    lp += n;
    lnz += nz;
  }
  return {
    params, nonzero, sparsity: params ? 1 - nonzero / params : 0,
    layerParams: lp, layerNonzero: lnz, layerSparsity: lp ? 1 - lnz / lp : 0,
    layers,
  };
}

/** Serialized size and gzip-compressed size (fflate's gzip at level 6, the gzip tool's default; the same in Node and in a browser) of a model or of bytes. */
export function modelSizes(model: Model | Uint8Array): { bytes: number; gzipBytes: number } {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  return { bytes: bytes.byteLength, gzipBytes: gzipSync(bytes, { level: 6 }).byteLength };
}
