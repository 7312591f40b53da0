/**
 * Static shapes and element types of every value of a graph at fixed input shapes, read from onnxruntime:
 * every node output becomes an extra (typeless) graph output for one run, as DESIGN.md notes.
 */
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/graph.js';
import { createTensor, type Tensor } from '../ir/tensor.js';
import { runOnce } from '../runtime/session.js';
import type { ValueTypes } from './backward.js';

/** Runs the model once on zero inputs of `inputShapes` (graph inputs not listed: their declared static shape). */
export async function probeTypes(model: Model, inputShapes: Record<string, number[]>, feeds: Record<string, Tensor> = {}): Promise<ValueTypes> {
  const g = model.graph;
  const outNames = new Set(g.outputs.map((o) => o.name));
  const extra = [];
  for (const n of g.nodes) for (const o of n.outputs) if (o && !outNames.has(o)) {
    outNames.add(o);
    extra.push({ name: o });
  }
  const probe: Model = { ...model, graph: { ...g, outputs: [...g.outputs, ...extra] } };
  const allFeeds: Record<string, Tensor> = { ...feeds };
  for (const inp of g.inputs) {
    if (allFeeds[inp.name]) continue;
    const dims = inputShapes[inp.name] ?? (inp.type?.shape ?? []).map((d) => (typeof d === 'number' ? d : 1));
    const t = createTensor(inp.type?.elemType ?? DataType.FLOAT, dims);
    allFeeds[inp.name] = t;
  }
  const shapes = new Map<string, number[]>();
  const elemTypes = new Map<string, number>();
  for (const [k, t] of Object.entries(allFeeds)) {
    shapes.set(k, t.dims);
    elemTypes.set(k, t.dtype);
  }
  for (const [k, t] of g.initializers) {
    shapes.set(k, t.dims);
    elemTypes.set(k, t.dtype);
  }
  for (const [k, t] of Object.entries(await runOnce(probe, allFeeds, { optimization: 'disabled' }))) {
    shapes.set(k, t.dims);
    elemTypes.set(k, t.dtype);
  }
  return { shapes, elemTypes };
}
