/**
 * Moves tensors held in input-less constant-producing nodes (ONNX `Constant`, as Paddle exports keep their
 * weights) into initializers under the same value name, so passes that look for weights in initializers
 * (pruning, quantization) see them. Mutates the model; the computation is unchanged. Graph outputs and
 * subgraphs are left alone.
 */
import { cloneGraph } from '../ir/clone.js';
import { subgraphs, type Graph, type Model } from '../ir/graph.js';
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

/**
 * Moves the initializers of subgraphs (If branches, Loop/Scan bodies) into the main graph, where the subgraphs
 * read them from the outer scope (ONNX lets any subgraph read enclosing values), so passes that look for
 * weights in the main graph's initializers (unstructured pruning, masks) see them. The subgraphs are copied,
 * never edited in place (model copies share them). A name defined twice anywhere in the model stays where it
 * is. Mutates the model; the computation is unchanged. Returns the number of initializers moved.
 */
export function liftSubgraphInitializers(model: Model): number {
  const g = model.graph;
  const count = new Map<string, number>();
  const note = (n: string) => count.set(n, (count.get(n) ?? 0) + 1);
  const collect = (gr: Graph) => {
    for (const i of gr.inputs) if (!gr.initializers.has(i.name)) note(i.name);
    for (const k of gr.initializers.keys()) note(k);
    for (const n of gr.nodes) {
      for (const o of n.outputs) if (o) note(o);
      for (const sg of subgraphs(n)) collect(sg);
    }
  };
  collect(g);
  let moved = 0;
  const lift = (gr: Graph) => {
    for (const n of gr.nodes) {
      for (const [attr, a] of n.attrs) {
        if (a.kind !== 'graph') continue;
        const sg = a.value;
        const movable = [...sg.initializers.keys()].filter((k) => count.get(k) === 1 && !sg.inputs.some((i) => i.name === k));
        let copy = sg;
        if (movable.length || sg.nodes.some((m) => subgraphs(m).length)) {
          copy = cloneGraph(sg);
          for (const k of movable) {
            g.initializers.set(k, copy.initializers.get(k)!);
            copy.initializers.delete(k);
            moved++;
          }
          n.attrs.set(attr, { kind: 'graph', value: copy });
        }
        lift(copy);
      }
    }
  };
  lift(g);
  return moved;
}
