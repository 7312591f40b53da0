/** The `inspect` report: what a model is, what it costs, layer by layer. */
import { dtypeName } from '../ir/dtype.js';
import type { Dim, Model } from '../ir/graph.js';
import { analyzeCost, type LayerCost } from './cost.js';
import { inferShapes } from './shapes.js';

export interface IOInfo {
  name: string;
  dtype: string;
  shape: Dim[] | null;
}

export interface InspectReport {
  producer: string;
  irVersion: number;
  opsets: Record<string, number>;
  inputs: IOInfo[];
  outputs: IOInfo[];
  /** Shapes the analysis used for the inputs (dynamic dims fixed). */
  analysedInputShapes: Record<string, Dim[]>;
  nodes: number;
  opCounts: Record<string, number>;
  params: number;
  zeroParams: number;
  sparsity: number;
  macs: number;
  flops: number;
  weightBytes: number;
  activationBytes: number;
  /** Ops shears has no rules for: their costs count as zero and their outputs' shapes are unknown. */
  unknownOps: { node: string; opType: string }[];
  layers: (LayerCost & { macsShare: number; sparsity: number })[];
}

export function inspectModel(model: Model, inputShapes: Record<string, Dim[]>): InspectReport {
  const shapes = inferShapes(model, { inputShapes });
  const cost = analyzeCost(model, shapes);
  const io = (v: { name: string; type?: { elemType: number; shape?: Dim[] } }): IOInfo => ({
    name: v.name,
    dtype: v.type ? dtypeName(v.type.elemType) : 'unknown',
    shape: v.type?.shape ?? null,
  });
  const opCounts: Record<string, number> = {};
  for (const n of model.graph.nodes) {
    const key = n.domain ? `${n.domain}.${n.opType}` : n.opType;
    opCounts[key] = (opCounts[key] ?? 0) + 1;
  }
  return {
    producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
    irVersion: model.irVersion,
    opsets: Object.fromEntries(model.opsetImports.map((o) => [o.domain || 'ai.onnx', o.version])),
    inputs: model.graph.inputs.filter((i) => !model.graph.initializers.has(i.name)).map(io),
    outputs: model.graph.outputs.map(io),
    analysedInputShapes: inputShapes,
    nodes: model.graph.nodes.length,
    opCounts,
    params: cost.params,
    zeroParams: cost.zeroParams,
    sparsity: cost.sparsity,
    macs: cost.macs,
    flops: cost.flops,
    weightBytes: cost.weightBytes,
    activationBytes: cost.activationBytes,
    unknownOps: shapes.unknownOps,
    layers: cost.layers.map((l) => ({
      ...l,
      macsShare: cost.macs ? l.macs / cost.macs : 0,
      sparsity: l.params ? l.zeroParams / l.params : 0,
    })),
  };
}
