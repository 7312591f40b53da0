/** Prepares a model for structured pruning: static shapes, constants as initializers, the dependency graph. */
import { ShearsError } from '../errors.js';
import type { Dim, Model } from '../ir/graph.js';
import { opsetVersion } from '../ir/graph.js';
import { inferShapes, type ShapeInfo } from '../analysis/shapes.js';
import { simplify } from '../analysis/simplify.js';
import { parameterTensors } from '../analysis/cost.js';
import { opDef } from '../ops/registry.js';
import type { InferContext, SplitUnits } from '../ops/types.js';
import { cloneModel } from '../ir/clone.js';
import { buildDepGraph, type DepGraph } from './depgraph.js';

export interface AnalyzeOptions {
  /** Static shapes for graph inputs; other symbolic dims are taken as 1 (batch). */
  inputShapes?: Record<string, Dim[]>;
  ignore?: RegExp;
  /** Stored values that are not parameters (constants computed by analysis/fold.ts, FoldResult.created). */
  notParameters?: ReadonlySet<string>;
  /** Attention heads or head_dim positions first (depgraph BuildOptions.splitUnits). */
  splitUnits?: SplitUnits;
  /** Prune normalised axes too (the hidden size; depgraph BuildOptions.normalized). */
  normalized?: boolean;
}

export interface Analysis {
  /** The working model (a copy: constant nodes turned into initializers). */
  model: Model;
  shapes: ShapeInfo;
  dg: DepGraph;
  /** The input shapes used for analysis and cost. */
  inputShapes: Record<string, number[]>;
  /**
   * Names of the working model's parameters that are parameters of the given model (analysis/cost.ts
   * parameterTensors): values simplify folded into initializers (anchor grids computed in-graph) are not.
   */
  parameters: ReadonlySet<string>;
}

/** Concrete (all-number) input shapes: the given ones, else the declared shape with a symbolic batch dim as 1. */
export function concreteInputShapes(model: Model, given: Record<string, Dim[]> = {}): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  const inits = model.graph.initializers;
  for (const k of Object.keys(given)) {
    if (!model.graph.inputs.some((i) => i.name === k)) throw new ShearsError(`--input-shape names '${k}', which is not a model input (inputs: ${model.graph.inputs.map((i) => i.name).join(', ')})`);
  }
  for (const i of model.graph.inputs) {
    if (inits.has(i.name)) continue;
    const g = given[i.name];
    const shape = g ?? i.type?.shape;
    if (!shape) throw new ShearsError(`input '${i.name}' has no declared shape; give one with --input-shape ${i.name}=1x3x224x224`);
    out[i.name] = shape.map((d, k) => {
      if (typeof d === 'number' && d >= 0) return d;
      if (k === 0) return 1;
      throw new ShearsError(`input '${i.name}' has a dynamic dimension ${k} (${String(d)}); give a static shape with --input-shape ${i.name}=${shape.map((x, j) => (typeof x === 'number' && x >= 0 ? x : j === 0 ? 1 : 'D')).join('x')}`);
    });
  }
  return out;
}

/** Turns constant-producing nodes without inputs (Constant) into initializers, in place on a working copy. */
function constantsToInitializers(model: Model): void {
  const g = model.graph;
  const keep = [];
  for (const n of g.nodes) {
    const def = opDef(n);
    if (n.inputs.length === 0 && n.outputs.length === 1 && def?.fold && !g.outputs.some((o) => o.name === n.outputs[0])) {
      const ctx = { node: n, opset: opsetVersion(model, n.domain), inputCount: 0, input: () => undefined, constant: () => undefined, value: () => undefined } as InferContext;
      let t;
      try {
        t = def.fold(ctx, [])?.[0];
      } catch {
        t = undefined;
      }
      if (t && !Array.isArray(t.data)) {
        g.initializers.set(n.outputs[0]!, t);
        continue;
      }
    }
    // Identity of an initializer (PyTorch exports give shared weights their own copy this way): an
    // initializer of its own under the output name (same data, which is never written).
    const src = n.inputs.length === 1 && n.outputs.length === 1 ? g.initializers.get(n.inputs[0]!) : undefined;
    if (src && def?.passthrough && !g.outputs.some((o) => o.name === n.outputs[0])) {
      g.initializers.set(n.outputs[0]!, src);
      continue;
    }
    keep.push(n);
  }
  g.nodes = keep;
}

export function analyzeModel(model: Model, opts: AnalyzeOptions = {}): Analysis {
  const original = parameterTensors(model, inferShapes(model), opts.notParameters);
  const work = cloneModel(model);
  // Fold shape arithmetic into constants (Reshape targets, Split sizes), keeping symbolic input dims.
  simplify(work);
  constantsToInitializers(work);
  const inputShapes = concreteInputShapes(work, opts.inputShapes);
  const shapes = inferShapes(work, { inputShapes });
  const dg = buildDepGraph(work, shapes, { ...(opts.ignore ? { ignore: opts.ignore } : {}), ...(opts.splitUnits ? { splitUnits: opts.splitUnits } : {}), ...(opts.normalized ? { normalized: true } : {}) });
  const names = new Set(original.map((p) => p.name));
  const tensors = new Set(original.map((p) => p.tensor));
  const parameters = new Set(parameterTensors(work, shapes).filter((p) => names.has(p.name) || tensors.has(p.tensor)).map((p) => p.name));
  return { model: work, shapes, dg, inputShapes, parameters };
}
