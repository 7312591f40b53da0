/**
 * Which weights pruning touches: the weight initializers of layers (ops whose OpDef describes a weight, see
 * ops/registry.ts weightSpec), filtered by name patterns, with the first and last layer optionally kept dense.
 * Biases, norm scales and shape constants are never candidates.
 */
import { ShearsError } from '../errors.js';
import { topoSort } from '../ir/edit.js';
import { subgraphs, type Graph, type Model, type Node } from '../ir/graph.js';
import { numel, type Tensor } from '../ir/tensor.js';
import { weightSpecs } from '../ops/registry.js';
import type { WeightSpec } from '../ops/types.js';
import { isMaskableDtype } from './masks.js';

export interface PrunableLayer {
  /** The weight initializer's name (masks are keyed by it). */
  name: string;
  /** Names of the nodes that read it as their weight (usually one). */
  nodes: string[];
  opTypes: string[];
  dims: number[];
  spec: WeightSpec;
  /** Position among all layer weights in topological order (0 = first layer). */
  order: number;
}

export interface LayerFilter {
  /** Only weights whose initializer or node name matches (a RegExp or its source). */
  include?: RegExp | string | undefined;
  /** Skip weights whose initializer or node name matches. */
  exclude?: RegExp | string | undefined;
  /** Keep the first and the last layer (in topological order) dense. */
  keepFirstLast?: boolean | undefined;
}

export function toRegExp(r: RegExp | string, what: string): RegExp {
  if (r instanceof RegExp) return r;
  try {
    return new RegExp(r);
  } catch (e) {
    throw new ShearsError(`bad ${what} pattern '${r}': ${(e as Error).message}`);
  }
}

/** The nodes of a graph in topological order, each followed by those of its subgraphs (If branches, ...). */
function nodesWithSubgraphs(g: Graph): Node[] {
  const out: Node[] = [];
  for (const n of topoSort(g)) {
    out.push(n);
    for (const sg of subgraphs(n)) out.push(...nodesWithSubgraphs(sg));
  }
  return out;
}

/**
 * Every layer weight stored as an initializer of the main graph, in topological order (before any filtering),
 * read by layers of the main graph or of subgraphs (analysis/hoist.ts liftSubgraphInitializers moves subgraph
 * weights where this finds them). `lookup` finds weights elsewhere too (counts over all graphs).
 */
export function layerWeights(model: Model, lookup?: (name: string) => Tensor | undefined): PrunableLayer[] {
  const g = model.graph;
  const find = lookup ?? ((name: string) => g.initializers.get(name));
  const byName = new Map<string, PrunableLayer>();
  const out: PrunableLayer[] = [];
  for (const node of nodesWithSubgraphs(g)) {
    const specs = weightSpecs(node, (i) => (node.inputs[i] ? find(node.inputs[i]!)?.dims : undefined));
    for (const spec of specs) {
      const w = node.inputs[spec.input];
      if (!w) continue;
      const t = find(w);
      if (!t) continue;
      if (!isMaskableDtype(t.dtype) || numel(t.dims) === 0) continue;
      if (spec.outAxis >= t.dims.length || spec.inAxis >= t.dims.length) continue;
      const seen = byName.get(w);
      if (seen) {
        seen.nodes.push(node.name);
        seen.opTypes.push(node.opType);
        continue;
      }
      const layer: PrunableLayer = { name: w, nodes: [node.name], opTypes: [node.opType], dims: [...t.dims], spec, order: out.length };
      byName.set(w, layer);
      out.push(layer);
    }
  }
  return out;
}

function matches(re: RegExp, l: PrunableLayer): boolean {
  const test = (s: string) => {
    re.lastIndex = 0;
    return re.test(s);
  };
  return test(l.name) || l.nodes.some(test);
}

/** The layers a pruning call works on, and why the others were left out. */
export function selectLayers(model: Model, f: LayerFilter): { layers: PrunableLayer[]; left: { name: string; reason: string }[] } {
  const all = layerWeights(model);
  const inc = f.include !== undefined ? toRegExp(f.include, 'include') : undefined;
  const exc = f.exclude !== undefined ? toRegExp(f.exclude, 'exclude') : undefined;
  const layers: PrunableLayer[] = [];
  const left: { name: string; reason: string }[] = [];
  for (const l of all) {
    if (f.keepFirstLast && (l.order === 0 || l.order === all.length - 1)) left.push({ name: l.name, reason: l.order === 0 ? 'first layer kept dense' : 'last layer kept dense' });
    else if (inc && !matches(inc, l)) left.push({ name: l.name, reason: 'not matched by include' });
    else if (exc && matches(exc, l)) left.push({ name: l.name, reason: 'matched by exclude' });
    else layers.push(l);
  }
  return { layers, left };
}

/** The node reading a layer's weight (first one), for messages. */
export function layerLabel(l: PrunableLayer): string {
  return l.nodes[0] ? `${l.name} (${l.nodes[0]})` : l.name;
}

