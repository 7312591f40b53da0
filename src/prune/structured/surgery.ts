/**
 * Structured pruning surgery: removes units (coupled channel sets) from a model. Initializers are sliced into
 * new arrays (never written in place); op rules (OpDef.prune) fix attributes and shape constants; dead nodes
 * go; value infos get their new sizes; the result is checked with checkGraph.
 */
import { ShearsError } from '../../errors.js';
import { checkGraph, removeDeadNodes, uniqueName } from '../../ir/edit.js';
import type { Model, Node, ValueInfo } from '../../ir/graph.js';
import { opsetVersion } from '../../ir/graph.js';
import { typedArrayCtor, type NumericData, type Tensor } from '../../ir/tensor.js';
import { dtypeBits } from '../../ir/dtype.js';
import { opDef, weightSpec } from '../../ops/registry.js';
import type { PruneContext } from '../../ops/types.js';
import { keptIndices, spaceKey, type DepGraph } from '../../depgraph/depgraph.js';
import { cloneModel } from '../../ir/clone.js';
import { KEPT_CHANNELS_KEY, readKeptChannels } from '../../ir/kept-channels.js';


/** Keeps `kept` indices of `axis` (a new tensor with new data). */
export function sliceTensor(t: Tensor, axis: number, kept: Int32Array): Tensor {
  return sliceTensorAxes(t, new Map([[axis, kept]]));
}

/** Keeps the given indices on several axes at once (one pass, a new tensor with new data). */
export function sliceTensorAxes(t: Tensor, cuts: Map<number, Int32Array>): Tensor {
  if (Array.isArray(t.data)) throw new ShearsError('cannot slice a string tensor');
  if (dtypeBits(t.dtype) === 4) throw new ShearsError('cannot slice a packed 4-bit tensor');
  if (t.data.length >= 2 ** 31) throw new ShearsError('cannot slice a tensor of 2^31 or more elements');
  const dims = t.dims;
  const rank = dims.length;
  let last = -1;
  for (const a of cuts.keys()) last = Math.max(last, a);
  const per = t.data.length / Math.max(1, dims.reduce((x, y) => x * y, 1)); // 2 for complex
  let inner = per;
  for (let i = last + 1; i < rank; i++) inner *= dims[i]!;
  const nd = dims.map((d, a) => cuts.get(a)?.length ?? d);
  const idx: Int32Array[] = [];
  for (let a = 0; a <= last; a++) idx.push(cuts.get(a) ?? Int32Array.from({ length: dims[a]! }, (_, i) => i));
  const srcStride = new Array<number>(last + 1);
  let acc = inner;
  for (let a = last; a >= 0; a--) {
    srcStride[a] = acc;
    acc *= dims[a]!;
  }
  const Ctor = typedArrayCtor(t.dtype)!;
  const src = t.data as NumericData;
  let total = inner;
  for (let a = 0; a <= last; a++) total *= nd[a]!;
  const out = new Ctor(total) as NumericData;
  // Source offsets of every kept row of the leading axes, then block copies.
  let offs = new Int32Array([0]);
  for (let a = 0; a < last; a++) {
    const k = idx[a]!;
    const next = new Int32Array(offs.length * k.length);
    let n = 0;
    for (let i = 0; i < offs.length; i++) for (let j = 0; j < k.length; j++) next[n++] = offs[i]! + k[j]! * srcStride[a]!;
    offs = next;
  }
  const kl = idx[last]!;
  const sl = srcStride[last]!;
  let to = 0;
  if (inner >= 16) {
    for (let i = 0; i < offs.length; i++) {
      for (let j = 0; j < kl.length; j++) {
        const from = offs[i]! + kl[j]! * sl;
        (out as Float32Array).set((src as Float32Array).subarray(from, from + inner), to);
        to += inner;
      }
    }
  } else if (src instanceof BigInt64Array || src instanceof BigUint64Array) {
    const o = out as BigInt64Array, sv = src as BigInt64Array;
    for (let i = 0; i < offs.length; i++) for (let j = 0; j < kl.length; j++) {
      const from = offs[i]! + kl[j]! * sl;
      for (let q = 0; q < inner; q++) o[to++] = sv[from + q]!;
    }
  } else if (inner === 1) {
    const o = out as Float32Array, sv = src as Float32Array;
    for (let i = 0; i < offs.length; i++) {
      const base = offs[i]!;
      for (let j = 0; j < kl.length; j++) o[to++] = sv[base + kl[j]! * sl]!;
    }
  } else {
    const o = out as Float32Array, sv = src as Float32Array;
    for (let i = 0; i < offs.length; i++) for (let j = 0; j < kl.length; j++) {
      const from = offs[i]! + kl[j]! * sl;
      for (let q = 0; q < inner; q++) o[to++] = sv[from + q]!;
    }
  }
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
    g.initializers.set(v, sliceTensorAxes(g.initializers.get(v)!, new Map(cuts.map((c) => [c.axis, c.kept]))));
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

  // Old exports declare initializers as graph inputs too: their declared shapes follow the sliced tensors.
  g.inputs = g.inputs.map((vi) => {
    const t = byValue.has(vi.name) ? g.initializers.get(vi.name) : undefined;
    return t && vi.type ? { ...vi, type: { ...vi.type, shape: [...t.dims] } } : vi;
  });

  removeDeadNodes(g);
  const problems = checkGraph(g);
  if (problems.length) throw new Error(`structured pruning produced an invalid graph: ${problems.slice(0, 3).join('; ')}`);
  recordKeptChannels(dg, model, kept);
  return { model, changed };
}

/**
 * Model metadata (ir/kept-channels.ts): for each layer with a spatial kernel whose output channels were cut, the
 * original model's indices of the channels it kept (composed with what an earlier pruning recorded). BatchNorm
 * re-insertion for fine-tuning (train/bn.ts) takes each kept channel's statistics from the original through it,
 * also after a repair has re-fitted the biases by which it otherwise matches them.
 */
function recordKeptChannels(dg: DepGraph, model: Model, kept: Map<number, Int32Array>): void {
  const earlier = readKeptChannels(dg.model);
  const out: Record<string, number[]> = { ...earlier };
  for (const n of dg.model.graph.nodes) {
    // layers with spatial kernels (where a BatchNorm sat): their weight's output-channel axis, by the op registry
    const w0 = n.inputs[1] ? dg.model.graph.initializers.get(n.inputs[1]) : undefined;
    const spec = w0 && w0.dims.length >= 3 ? weightSpec(n, w0.dims) : undefined;
    if (!spec || spec.input !== 1) continue;
    const s = dg.spaceOf.get(spaceKey(n.inputs[1]!, spec.outAxis));
    const k = s ? kept.get(s.id) : undefined;
    if (!k) continue;
    const before = earlier[n.name];
    out[n.name] = before ? Array.from(k, (i) => before[i]!) : Array.from(k);
  }
  if (Object.keys(out).length) model.metadata.set(KEPT_CHANNELS_KEY, JSON.stringify(out));
}
