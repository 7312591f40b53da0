/**
 * Copies of models whose structure (node lists, nodes, attribute maps, value infos, initializer and metadata
 * maps) can be edited without touching the original. Tensor data is shared: passes replace tensors, they never
 * write into them. Subgraphs (If/Loop/Scan bodies) are shared too: passes keep them intact.
 */
import type { Graph, Model, Node } from './graph.js';

export function cloneNode(n: Node): Node {
  return { ...n, inputs: [...n.inputs], outputs: [...n.outputs], attrs: new Map(n.attrs) };
}

export function cloneGraph(g: Graph): Graph {
  return {
    ...g,
    nodes: g.nodes.map(cloneNode),
    inputs: g.inputs.map((v) => ({ ...v })),
    outputs: g.outputs.map((v) => ({ ...v })),
    initializers: new Map(g.initializers),
    valueInfo: new Map(g.valueInfo),
  };
}

export function cloneModel(m: Model): Model {
  return { ...m, opsetImports: m.opsetImports.map((o) => ({ ...o })), metadata: new Map(m.metadata), graph: cloneGraph(m.graph) };
}
