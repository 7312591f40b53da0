/**
 * Fast MACs/params of a model under candidate channel counts, without rebuilding it: each node's cost comes
 * from its op's cost rule (OpDef.cost) evaluated on the analysed types with the pruned axes resized.
 * Parameters are those of analysis/cost.ts parameterTensors (the one definition every count uses).
 */
import type { Node, TensorType } from '../ir/graph.js';
import { numel } from '../ir/tensor.js';
import { nodeContext, type ShapeInfo } from '../analysis/shapes.js';
import { parameterTensors } from '../analysis/cost.js';
import { opDef } from '../ops/registry.js';
import type { DepGraph } from '../depgraph/depgraph.js';
import { spaceKey } from '../depgraph/depgraph.js';

interface NodeCost {
  node: Node;
  /** (value, axis, space id) of the node's inputs/outputs that may shrink. */
  axes: { value: string; axis: number; space: number }[];
  base: number;
}

interface ParamTensor {
  name: string;
  dims: number[];
  /** Space ids per axis (-1: never pruned). */
  spaces: number[];
}

export class CostModel {
  readonly nodes: NodeCost[] = [];
  readonly params: ParamTensor[] = [];
  /** Indices of the MAC-bearing nodes touching each space. */
  readonly nodesOfSpace: number[][];
  readonly paramsOfSpace: number[][];
  readonly baseMacs: number;
  readonly baseParams: number;
  /** Per parameter tensor, the spaces on its axes. */
  readonly paramNeighbours: number[][];

  /** `parameters`: the names to count (analysis.parameters: those of the model before simplify); default all. */
  constructor(readonly dg: DepGraph, readonly shapes: ShapeInfo, parameters?: ReadonlySet<string>) {
    const model = dg.model;
    const g = model.graph;
    this.nodesOfSpace = dg.spaces.map(() => []);
    this.paramsOfSpace = dg.spaces.map(() => []);
    // The parameters are those every count uses (analysis/cost.ts parameterTensors); those of subgraphs and
    // any not stored as a main-graph initializer keep their size (no space on their axes).
    for (const { name, tensor: t, scope } of parameterTensors(model, shapes)) {
      if (parameters && !parameters.has(name)) continue;
      const top = scope === '' && g.initializers.get(name) === t;
      const spaces = t.dims.map((_, a) => (top ? dg.spaceOf.get(spaceKey(name, a))?.id ?? -1 : -1));
      const idx = this.params.length;
      this.params.push({ name, dims: t.dims, spaces });
      for (const s of spaces) if (s >= 0) this.paramsOfSpace[s]!.push(idx);
    }
    for (const node of g.nodes) {
      const def = opDef(node);
      if (!def?.cost) continue;
      const axes: NodeCost['axes'] = [];
      for (const v of [...node.inputs, ...node.outputs]) {
        if (!v) continue;
        const t = shapes.types.get(v);
        const r = t?.shape?.length ?? g.initializers.get(v)?.dims.length ?? 0;
        for (let a = 0; a < r; a++) {
          const s = dg.spaceOf.get(spaceKey(v, a));
          if (s) axes.push({ value: v, axis: a, space: s.id });
        }
      }
      const nc: NodeCost = { node, axes, base: 0 };
      const idx = this.nodes.length;
      this.nodes.push(nc);
      nc.base = this.nodeMacs(nc, undefined);
      // Only nodes that do multiply-accumulates matter for MAC deltas.
      if (nc.base > 0) for (const a of axes) if (!this.nodesOfSpace[a.space]!.includes(idx)) this.nodesOfSpace[a.space]!.push(idx);
    }
    this.baseMacs = this.nodes.reduce((s, n) => s + n.base, 0);
    this.paramNeighbours = this.params.map((p) => p.spaces.filter((x) => x >= 0));
    this.baseParams = this.params.reduce((s, p) => s + numel(p.dims), 0);
  }

  /** MACs of one node with space sizes `size` (undefined: original sizes). */
  nodeMacs(nc: NodeCost, size: Int32Array | undefined): number {
    const def = opDef(nc.node)!;
    let info: ShapeInfo = this.shapes;
    const changed = size !== undefined && nc.axes.some((a) => size[a.space] !== this.dg.spaces[a.space]!.size);
    if (size && !changed) return nc.base;
    if (changed) {
      const types = new Map<string, TensorType>();
      for (const v of [...nc.node.inputs, ...nc.node.outputs]) {
        if (!v) continue;
        const t = this.shapes.types.get(v);
        if (t) types.set(v, t);
      }
      for (const a of nc.axes) {
        const t = types.get(a.value);
        if (!t?.shape) continue;
        const shape = [...t.shape];
        shape[a.axis] = size![a.space]!;
        types.set(a.value, { elemType: t.elemType, shape });
      }
      info = { ...this.shapes, types };
    }
    try {
      return def.cost!(nodeContext(this.dg.model, info, nc.node)).macs;
    } catch {
      return 0;
    }
  }

  macs(size: Int32Array): number {
    let m = 0;
    for (const nc of this.nodes) m += nc.base > 0 ? this.nodeMacs(nc, size) : 0;
    return m;
  }

  paramCount(size: Int32Array): number {
    let n = 0;
    for (const p of this.params) n += this.paramSize(p, size);
    return n;
  }

  private paramSize(p: ParamTensor, size: Int32Array): number {
    let k = 1;
    p.dims.forEach((d, a) => (k *= p.spaces[a]! >= 0 ? size[p.spaces[a]!]! : d));
    return k;
  }

  /** Change in MACs and params when space sizes go from `before` to `after` on the given spaces. */
  delta(spaces: Iterable<number>, before: Int32Array, after: Int32Array): { macs: number; params: number } {
    const nodes = new Set<number>(), params = new Set<number>();
    for (const s of spaces) {
      for (const i of this.nodesOfSpace[s]!) nodes.add(i);
      for (const i of this.paramsOfSpace[s]!) params.add(i);
    }
    let macs = 0, prm = 0;
    for (const i of nodes) macs += this.nodeMacs(this.nodes[i]!, after) - this.nodeMacs(this.nodes[i]!, before);
    for (const i of params) prm += this.paramSize(this.params[i]!, after) - this.paramSize(this.params[i]!, before);
    return { macs, params: prm };
  }

  initialSizes(): Int32Array {
    return Int32Array.from(this.dg.spaces, (s) => s.size);
  }
}
