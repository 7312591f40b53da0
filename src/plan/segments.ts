/**
 * A model cut into timing segments: each node that does multiply-accumulates (a Conv, a Gemm, a MatMul) starts a
 * segment and takes the cheap nodes after it in topological order (the activation, the residual Add, a pool),
 * which is what onnxruntime fuses into it or runs in its shadow. A segment is a standalone graph: the values it
 * reads from outside are its inputs, the values read after it are its outputs, its weights are its own
 * initializers. Its signature (op types, attributes, shapes, wiring; never the weight values) keys a latency
 * table: two segments with one signature run the same kernels.
 */
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import type { Attr, Model, Node, TensorType, ValueInfo } from '../ir/graph.js';
import { topoSort } from '../ir/edit.js';
import { numel, type Tensor } from '../ir/tensor.js';
import { nodeContext, type ShapeInfo } from '../analysis/shapes.js';
import { opDef } from '../ops/registry.js';

export interface Segment {
  nodes: Node[];
  /** Values read from outside the segment (graph inputs or earlier segments' outputs), not initializers. */
  inputs: string[];
  /** Values produced here and read after the segment (or graph outputs). */
  outputs: string[];
  /** Initializers the segment reads. */
  weights: string[];
  /** Multiply-accumulates of the segment's nodes. */
  macs: number;
}

export function nodeMacs(model: Model, info: ShapeInfo, node: Node): number {
  const def = opDef(node);
  if (!def?.cost) return 0;
  try {
    return def.cost(nodeContext(model, info, node)).macs;
  } catch {
    return 0;
  }
}

/** Cuts a model with static shapes (every value typed) into segments, in topological order. */
export function segmentGraph(model: Model, info: ShapeInfo): Segment[] {
  const g = model.graph;
  const order = topoSort(g);
  const groups: { nodes: Node[]; macs: number }[] = [];
  for (const node of order) {
    const m = nodeMacs(model, info, node);
    if (m > 0 || groups.length === 0) groups.push({ nodes: [node], macs: m });
    else groups[groups.length - 1]!.nodes.push(node);
  }
  const readers = new Map<string, number[]>();
  groups.forEach((grp, k) => {
    for (const n of grp.nodes) for (const v of n.inputs) if (v) (readers.get(v) ?? readers.set(v, []).get(v)!).push(k);
  });
  const graphOut = new Set(g.outputs.map((o) => o.name));
  return groups.map((grp, k) => {
    const produced = new Set(grp.nodes.flatMap((n) => n.outputs.filter(Boolean)));
    const inputs: string[] = [], weights: string[] = [];
    for (const n of grp.nodes) for (const v of n.inputs) {
      if (!v || produced.has(v)) continue;
      // Constants (initializers, and values that fold to one, as an exporter's Identity of a weight) are
      // weights: onnxruntime prepacks them.
      const list = g.initializers.has(v) || info.constants.has(v) ? weights : inputs;
      if (!list.includes(v)) list.push(v);
    }
    const outputs = [...produced].filter((v) => graphOut.has(v) || (readers.get(v) ?? []).some((r) => r !== k));
    return { nodes: grp.nodes, inputs, outputs, weights, macs: grp.macs };
  });
}

function typeOf(info: ShapeInfo, v: string): TensorType {
  const t = info.types.get(v);
  if (!t?.shape || t.shape.some((d) => typeof d !== 'number')) throw new ShearsError(`latency model: value '${v}' has no static shape`);
  return t;
}

function attrKey(a: Attr): unknown {
  const small = (t: Tensor) => ({ dims: t.dims, dtype: t.dtype, data: numel(t.dims) <= 64 ? Array.from(t.data as ArrayLike<number | bigint>, Number) : `#${numel(t.dims)}` });
  switch (a.kind) {
    case 'tensor': return [a.kind, small(a.value)];
    case 'tensors': return [a.kind, a.value.map(small)];
    case 'graph': case 'graphs': case 'opaque': return [a.kind, '#'];
    default: return [a.kind, a.value];
  }
}

/**
 * What decides a segment's run time: its ops, attributes, the shapes and types of everything it reads and
 * writes, the wiring, and the values of small non-float constants (Reshape targets, axes); not float weights.
 */
export function segmentSignature(model: Model, info: ShapeInfo, seg: Segment): string {
  const g = model.graph;
  const ids = new Map<string, number>();
  const id = (v: string) => (v ? (ids.get(v) ?? ids.set(v, ids.size).get(v)!) : -1);
  const inputs = seg.inputs.map((v) => { const t = typeOf(info, v); return [id(v), t.elemType, t.shape]; });
  const weights = seg.weights.map((v) => {
    const t = g.initializers.get(v) ?? info.constants.get(v)!;
    const small = t.dtype !== DataType.FLOAT && t.dtype !== DataType.FLOAT16 && t.dtype !== DataType.DOUBLE && numel(t.dims) <= 64;
    return [id(v), t.dtype, t.dims, small ? Array.from(t.data as ArrayLike<number | bigint>, Number) : null];
  });
  const nodes = seg.nodes.map((n) => [n.domain, n.opType, n.inputs.map(id), n.outputs.map(id),
    [...n.attrs.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, a]) => [k, attrKey(a)])]);
  const outputs = seg.outputs.map((v) => [id(v), typeOf(info, v).shape]);
  return JSON.stringify({ inputs, weights, nodes, outputs });
}

/** A segment as a model of its own (same opsets), inputs and outputs with their static types. */
export function segmentModel(model: Model, info: ShapeInfo, seg: Segment): Model {
  const g = model.graph;
  const vi = (v: string): ValueInfo => ({ name: v, type: typeOf(info, v) });
  for (const v of seg.inputs) {
    if (typeOf(info, v).elemType !== DataType.FLOAT) throw new ShearsError(`latency model: segment input '${v}' is not float and not constant`);
  }
  const initializers = new Map<string, Tensor>();
  for (const w of seg.weights) initializers.set(w, g.initializers.get(w) ?? info.constants.get(w)!);
  const inputs = seg.inputs.map(vi);
  // Each output is read through a one-element Slice: the kernels still compute it whole, but onnxruntime-node
  // does not copy megabytes of activations into JavaScript on every run (which would dominate the timing).
  const nodes = [...seg.nodes];
  const outputs: ValueInfo[] = [];
  seg.outputs.forEach((v, k) => {
    const t = typeOf(info, v);
    const r = t.shape!.length;
    const ints = (name: string, vals: number[]) => initializers.set(name, { dtype: DataType.INT64, dims: [vals.length], data: BigInt64Array.from(vals.map(BigInt)) });
    const starts = `segment_starts_${k}`, ends = `segment_ends_${k}`, out = `segment_out_${k}`;
    ints(starts, new Array(r).fill(0));
    ints(ends, new Array(r).fill(1));
    nodes.push({ name: `segment_slice_${k}`, opType: 'Slice', domain: '', inputs: [v, starts, ends], outputs: [out], attrs: new Map() });
    outputs.push({ name: out, type: { elemType: t.elemType, shape: new Array(r).fill(1) } });
  });
  return {
    ...model,
    metadata: new Map(),
    functions: [],
    graph: { name: 'segment', nodes, inputs, outputs, initializers, valueInfo: new Map() },
  };
}
