/** The `inspect` report: what a model is, what it costs, layer by layer. */
import { ShearsError } from '../errors.js';
import { dtypeName } from '../ir/dtype.js';
import type { Dim, Model } from '../ir/graph.js';
import { analyzeCost, type CostReport, type LayerCost } from './cost.js';
import type { FoldResult } from './fold.js';
import { inferShapes } from './shapes.js';

export interface IOInfo {
  name: string;
  dtype: string;
  shape: Dim[] | null;
}

export interface InspectReport extends Omit<CostReport, 'layers'> {
  producer: string;
  irVersion: number;
  opsets: Record<string, number>;
  inputs: IOInfo[];
  outputs: IOInfo[];
  /** Shapes the analysis used for the inputs (dynamic dims fixed). */
  analysedInputShapes: Record<string, Dim[]>;
  nodes: number;
  opCounts: Record<string, number>;
  /** Ops shears has no rules for: their costs count as zero and their outputs' shapes are unknown. */
  unknownOps: { node: string; opType: string }[];
  /** What folding did before the analysis (set by callers that fold, see analysis/fold.ts). */
  folding?: Omit<FoldResult, 'created'>;
  /** Per node; `sparsity` is the zero fraction of the layer's weight tensor (all parameters for ops without one). */
  layers: (LayerCost & { macsShare: number; sparsity: number })[];
}

/** `notParameters`: constants computed by folding (FoldResult.created), not counted as parameters. */
export function inspectModel(model: Model, inputShapes: Record<string, Dim[]>, notParameters?: ReadonlySet<string>): InspectReport {
  const shapes = inferShapes(model, { inputShapes });
  const cost = analyzeCost(model, shapes, notParameters);
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
    ...cost,
    unknownOps: shapes.unknownOps,
    layers: cost.layers.map((l) => ({
      ...l,
      macsShare: cost.macs ? l.macs / cost.macs : 0,
      // A layer's sparsity is that of its weight tensor (what pruning targets); biases excluded.
      sparsity: l.weightParams ? l.weightZeros / l.weightParams : l.params ? l.zeroParams / l.params : 0,
    })),
  };
}

/** Op domains onnxruntime implements; nodes of any other domain need a custom runtime. */
const KNOWN_DOMAINS = new Set(['', 'ai.onnx', 'ai.onnx.ml', 'com.microsoft', 'com.microsoft.nchwc', 'ai.onnx.preview.training']);

/**
 * Throws a ShearsError naming the first node whose op neither shears nor onnxruntime can run: an op of a
 * custom domain that the model does not define as a function.
 */
export function assertRunnableOps(model: Model): void {
  const functions = new Set(
    (model.functions as { domain?: string; name?: string }[]).map((f) => `${f.domain ?? ''}::${f.name ?? ''}`),
  );
  for (const n of model.graph.nodes) {
    if (KNOWN_DOMAINS.has(n.domain) || functions.has(`${n.domain}::${n.opType}`)) continue;
    throw new ShearsError(`unsupported op '${n.opType}' of domain '${n.domain}' (a custom op no standard runtime implements; pass --allow-unknown-ops to inspect the rest)`, { node: n.name || n.outputs[0] || n.opType });
  }
}
