/**
 * Structured pruning surgery: removes units (coupled channel sets) from a model. Initializers are sliced into
 * new arrays (never written in place); op rules (OpDef.prune) fix attributes and shape constants; dead nodes
 * go; value infos get their new sizes; the result is checked with checkGraph.
 */
import { ShearsError } from '../../errors.js';
import { checkGraph, removeDeadNodes, uniqueName } from '../../ir/edit.js';
import type { Graph, Model, Node, ValueInfo } from '../../ir/graph.js';
import { opsetVersion } from '../../ir/graph.js';
import { typedArrayCtor, type NumericData, type Tensor } from '../../ir/tensor.js';
import { dtypeBits } from '../../ir/dtype.js';
import { opDef } from '../../ops/registry.js';
import type { PruneContext } from '../../ops/types.js';
import { keptIndices, spaceKey, type DepGraph } from '../../depgraph/depgraph.js';

/** A copy of the model whose graph lists, node objects and maps can be edited without touching the original. */
export function cloneModel(model: Model): Model {
  const g = model.graph;
  const graph: Graph = {
    ...g,
    nodes: g.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attrs: new Map(n.attrs) })),
    inputs: g.inputs.map((v) => ({ ...v })),
    outputs: g.outputs.map((v) => ({ ...v })),
    initializers: new Map(g.initializers),
    valueInfo: new Map(g.valueInfo),
  };
  return { ...model, graph, metadata: new Map(model.metadata), opsetImports: [...model.opsetImports] };
}

/** Keeps `kept` indices of `axis` (a new tensor with new data). */
export function sliceTensor(t: Tensor, axis: number, kept: Int32Array): Tensor {
  if (Array.isArray(t.data)) throw new ShearsError('cannot slice a string tensor');
  if (dtypeBits(t.dtype) === 4) throw new ShearsError('cannot slice a packed 4-bit tensor');
  const dims = t.dims;
  let outer = 1, inner = 1;
  for (let i = 0; i < axis; i++) outer *= dims[i]!;
  for (let i = axis + 1; i < dims.length; i++) inner *= dims[i]!;
  const d = dims[axis]!;
  const k = kept.length;
  const Ctor = typedArrayCtor(t.dtype) ?? (t.data.constructor as unknown as ReturnType<typeof typedArrayCtor>)!;
  const per = t.data.length / (outer * d * inner); // 2 for complex
  const src = t.data as NumericData;
  const out = new Ctor(outer * k * inner * per) as NumericData;
  const blk = inner * per;
  for (let o = 0; o < outer; o++) {
    for (let t2 = 0; t2 < k; t2++) {
      const from = (o * d + kept[t2]!) * blk;
      const to = (o * k + t2) * blk;
      if (blk === 1) (out as unknown as number[])[to] = (src as unknown as number[])[from]!;
      else (out as Float32Array).set((src as Float32Array).subarray(from, from + blk), to);
    }
  }
  const nd = [...dims];
  nd[axis] = k;
  return { dtype: t.dtype, dims: nd, data: out };
}

export interface SurgeryResult {
  model: Model;
  /** Kept sizes of every changed space, by `value@axis`. */
  changed: Map<string, { before: number; after: number }>;
}

/** Removes the given units from a copy of the model. */
export function removeUnits(dg: DepGraph, removed: Set<number>): SurgeryResult {
  const model = cloneModel(dg.model);
  const g = model.graph;
  const kept = keptIndices(dg, removed);
  const changed = new Map<string, { before: number; after: number }>();
  const keptOf = (value: string | undefined, axis: number): Int32Array | undefined => {
    if (!value) return undefined;
    const s = dg.spaceOf.get(spaceKey(value, axis));
    return s ? kept.get(s.id) : undefined;
  };

  // 1. initializers
  const byValue = new Map<string, { axis: number; kept: Int32Array }[]>();
  for (const [sid, k] of kept) {
    const s = dg.spaces[sid]!;
    changed.set(spaceKey(s.value, s.axis), { before: s.size, after: k.length });
    if (!g.initializers.has(s.value)) continue;
    let l = byValue.get(s.value);
    if (!l) byValue.set(s.value, (l = []));
    l.push({ axis: s.axis, kept: k });
  }
  for (const [v, cuts] of byValue) {
    let t = g.initializers.get(v)!;
    for (const c of cuts) t = sliceTensor(t, c.axis, c.kept);
    g.initializers.set(v, t);
  }

  // 2. op surgery rules (attributes, shape constants), judged against the original shapes
  const orig = dg.model.graph;
  const shapeOf = (v: string): number[] | undefined => {
    const t = orig.initializers.get(v) ?? dg.shapes.constants.get(v);
    if (t) return t.dims;
    const tt = dg.shapes.types.get(v);
    return tt?.shape?.map((d) => (typeof d === 'number' ? d : -1));
  };
  g.nodes.forEach((n: Node, idx) => {
    const def = opDef(n);
    if (!def?.prune) return;
    const on = orig.nodes[idx]!;
    const touched = [...on.inputs.map((v) => [v] as const), ...on.outputs.map((v) => [v] as const)].some(([v]) => {
      const dims = v ? shapeOf(v) : undefined;
      return dims?.some((_, a) => keptOf(v, a) !== undefined);
    });
    if (!touched) return;
    const ctx: PruneContext = {
      node: n,
      opset: opsetVersion(model, n.domain),
      inShape: (i) => (on.inputs[i] ? shapeOf(on.inputs[i]!) : undefined),
      outShape: (i) => (on.outputs[i] ? shapeOf(on.outputs[i]!) : undefined),
      constant: (i) => (on.inputs[i] ? (orig.initializers.get(on.inputs[i]!) ?? dg.shapes.constants.get(on.inputs[i]!)) : undefined),
      kept: (io, i, axis) => keptOf(io === 'in' ? on.inputs[i] : on.outputs[i], axis),
      setConstant: (i, t) => {
        const name = uniqueName(g, `${n.name || n.opType}_in${i}_pruned`);
        g.initializers.set(name, t);
        while (n.inputs.length <= i) n.inputs.push('');
        n.inputs[i] = name;
      },
    };
    const err = def.prune(ctx);
    if (typeof err === 'string') throw new Error(`pruning surgery failed at ${n.opType} '${n.name}': ${err}`);
  });

  // 3. value infos with the new sizes
  for (const [name, vi] of g.valueInfo) {
    const shape = vi.type?.shape;
    if (!shape) continue;
    let ns: typeof shape | undefined;
    shape.forEach((_, a) => {
      const k = keptOf(name, a);
      if (k) (ns ??= [...shape])[a] = k.length;
    });
    if (ns) g.valueInfo.set(name, { ...vi, type: { ...vi.type!, shape: ns } } as ValueInfo);
  }

  removeDeadNodes(g);
  const problems = checkGraph(g);
  if (problems.length) throw new Error(`structured pruning produced an invalid graph: ${problems.slice(0, 3).join('; ')}`);
  return { model, changed };
}
