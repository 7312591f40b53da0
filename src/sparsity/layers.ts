/**
 * Which weights pruning touches: the weight initializers of layers (ops whose OpDef describes a weight, see
 * ops/registry.ts weightSpec), filtered by name patterns, with the first and last layer optionally kept dense.
 * Biases, norm scales and shape constants are never candidates.
 */
import { ShearsError } from '../errors.js';
import { nodeReads, topoSort } from '../ir/edit.js';
import { subgraphs, type Graph, type Model, type Node } from '../ir/graph.js';
import { numel, toFloat32, type Tensor } from '../ir/tensor.js';
import { opDef, weightSpec, weightSpecs } from '../ops/registry.js';
import type { WeightSpec } from '../ops/types.js';
import { isMaskableDtype } from './masks.js';
import { dtypeName } from '../ir/dtype.js';

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

/**
 * Why a layer weight looks like a fixed constant rather than a trained parameter, or undefined: every value
 * equal (a box or averaging filter), or the rows of a windowed Fourier basis (an STFT as a Conv, as Silero VAD
 * does: row k is w[n] cos(2 pi k n / N), row F + k is -w[n] sin(2 pi k n / N)).
 */
export function fixedConstantReason(t: Tensor): string | undefined {
  const n = numel(t.dims);
  if (n < 2) return undefined;
  const x = toFloat32(t);
  if (x.every((v) => v === x[0])) return `every value is ${Number(x[0]!.toPrecision(4))} (a fixed averaging/box filter)`;
  const rows = t.dims[0]!;
  const k = n / rows;
  if (rows % 2 !== 0 || k < 8 || rows / 2 > k / 2 + 1 || rows / 2 < 2) return undefined;
  const f = rows / 2;
  let scale = 0;
  for (let i = 0; i < k; i++) scale = Math.max(scale, Math.abs(x[i]!));
  if (scale === 0) return undefined;
  const tol = 1e-3 * scale;
  for (let r = 0; r < f; r++) {
    for (let i = 0; i < k; i++) {
      const w = x[i]!;
      const a = (2 * Math.PI * r * i) / k;
      if (Math.abs(x[r * k + i]! - w * Math.cos(a)) > tol || Math.abs(x[(f + r) * k + i]! + w * Math.sin(a)) > tol) return undefined;
    }
  }
  return `a windowed Fourier basis (${f} frequencies over ${k} samples: an STFT)`;
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

/** A weight left out of pruning; `warn`: said on stderr too (it is not the user's own choice). */
export interface LeftOut {
  name: string;
  reason: string;
  warn?: boolean;
}

/**
 * Weights that layers read but pruning cannot mask, with the reason: computed in the graph (not a stored
 * weight: a DSP basis built from constants, weight normalisation, ...) or stored as integers (quantized ops).
 */
export function unmaskableWeights(model: Model): LeftOut[] {
  const g = model.graph;
  const seen = new Set<string>();
  const out: LeftOut[] = [];
  const inputs = new Set(g.inputs.map((v) => v.name));
  // a layer reading an activation as its "weight" (attention's Q K^T and A V) is no layer with a weight at all
  const fromInputs = activations(g);
  for (const node of topoSort(g)) {
    const def = opDef(node);
    const probe = weightSpec(node);
    const index = probe?.input ?? (def?.integerParams ? def.paramInputs?.[0] : undefined);
    const w = index !== undefined ? node.inputs[index] : undefined;
    if (!w || seen.has(w)) continue;
    seen.add(w);
    const t = g.initializers.get(w);
    if (t && !isMaskableDtype(t.dtype)) out.push({ name: w, reason: `${dtypeName(t.dtype)} weight of ${node.opType} ${node.name} (quantized: prune the float model, then quantize)`, warn: true });
    else if (!t && !inputs.has(w) && !fromInputs.has(w)) out.push({ name: w, reason: `weight of ${node.opType} ${node.name} is computed in the graph, not stored (a fixed constant such as a DSP basis, or derived from other weights)`, warn: true });
  }
  return out;
}

/** The values of a graph computed from its inputs (activations), as opposed to those computed from constants alone. */
export function activations(g: Graph): Set<string> {
  const out = new Set(g.inputs.map((v) => v.name).filter((v) => !g.initializers.has(v)));
  for (const node of topoSort(g)) if (nodeReads(node).some((v) => out.has(v))) for (const o of node.outputs) if (o) out.add(o);
  return out;
}

/**
 * The layers a pruning call works on, and why the others were left out. Weights that look like fixed constants
 * (fixedConstantReason) are left out unless --include names them.
 */
export function selectLayers(model: Model, f: LayerFilter): { layers: PrunableLayer[]; left: LeftOut[] } {
  const all = layerWeights(model);
  const inc = f.include !== undefined ? toRegExp(f.include, 'include') : undefined;
  const exc = f.exclude !== undefined ? toRegExp(f.exclude, 'exclude') : undefined;
  const layers: PrunableLayer[] = [];
  const left: LeftOut[] = unmaskableWeights(model);
  for (const l of all) {
    const fixed = inc ? undefined : fixedConstantReason(model.graph.initializers.get(l.name)!);
    if (f.keepFirstLast && (l.order === 0 || l.order === all.length - 1)) left.push({ name: l.name, reason: l.order === 0 ? 'first layer kept dense' : 'last layer kept dense' });
    else if (inc && !matches(inc, l)) left.push({ name: l.name, reason: 'not matched by include' });
    else if (exc && matches(exc, l)) left.push({ name: l.name, reason: 'matched by exclude' });
    else if (fixed) left.push({ name: l.name, reason: `looks like a fixed constant, not a trained weight: ${fixed}; left dense (name it in --include to prune it)`, warn: true });
    else layers.push(l);
  }
  return { layers, left };
}

/** The node reading a layer's weight (first one), for messages. */
export function layerLabel(l: PrunableLayer): string {
  return l.nodes[0] ? `${l.name} (${l.nodes[0]})` : l.name;
}

