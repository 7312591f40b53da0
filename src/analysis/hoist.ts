/**
 * Moves tensors held in input-less constant-producing nodes (ONNX `Constant`, as Paddle exports keep their
 * weights) into initializers under the same value name, so passes that look for weights in initializers
 * (pruning, quantization) see them. Mutates the model; the computation is unchanged. Graph outputs and
 * subgraphs are left alone.
 */
import type { Model } from '../ir/graph.js';
import { inferShapes } from './shapes.js';

/** Returns the number of values hoisted. */
export function hoistConstants(model: Model): number {
  const g = model.graph;
  const candidates = g.nodes.filter((n) => n.inputs.length === 0 && n.outputs.length > 0);
  if (candidates.length === 0) return 0;
  const outputs = new Set(g.outputs.map((o) => o.name));
  const { constants } = inferShapes(model);
  let hoisted = 0;
  const removed = new Set<(typeof g.nodes)[number]>();
  for (const n of candidates) {
    if (n.outputs.some((o) => !o || outputs.has(o) || !constants.has(o) || g.initializers.has(o))) continue;
    for (const o of n.outputs) g.initializers.set(o, constants.get(o)!);
    removed.add(n);
    hoisted += n.outputs.length;
  }
  if (removed.size) g.nodes = g.nodes.filter((n) => !removed.has(n));
  return hoisted;
}
