/**
 * Whole-model latency predicted from a measured table (latency-table.ts) of timing segments (segments.ts): each
 * segment is timed as a standalone graph at the widths asked for, and the prediction is
 *   overhead + sum over segments of c_s * (t_s - overhead)
 * where c_s is a calibration factor: onnxruntime runs 2-D convolutions whose channel counts fit its NCHWc block
 * (8 floats with AVX2) in the blocked layout, and a standalone segment then pays a reorder in and out that the
 * whole model pays only at layout changes (27-36% of the segment sum on resnet20 at batch 128). The factor of
 * such segments is the dense model's measured whole time over its segment sum (the other segments count as
 * measured), so the prediction is exact for the dense model and carries its layout overhead to pruned variants.
 *
 * Widths: a segment's standalone graph is rebuilt with any axis of its inputs and weights resized (by
 * dependency-graph space, for the planner), then its outputs re-inferred; its key hashes the signature of that
 * graph, so the same shapes reached through an actually pruned model hit the same entry.
 */
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import { opsetVersion, type Model, type Node, type TensorType, type ValueInfo } from '../ir/graph.js';
import { opDef } from '../ops/registry.js';
import type { PruneContext } from '../ops/types.js';
import { createTensor, type Tensor } from '../ir/tensor.js';
import { inferShapes, type ShapeInfo } from '../analysis/shapes.js';
import { fillTiled, rng } from '../random.js';
import type { DepGraph } from '../depgraph/depgraph.js';
import { spaceKey } from '../depgraph/depgraph.js';
import { nodeMacs, segmentGraph, segmentModel, segmentSignature, type Segment } from './segments.js';
import { hashKey, type LatencyTable, type MeasureOptions, type TimingGraph } from './latency-table.js';
import { groupStates } from './plan.js';
import { nchwcBlock, NCHWC_DOMAIN } from '../autodiff/nchwc.js';
import { GraphBuilder } from '../ir/builder.js';
import { optimizedModelBytes } from '../runtime/session.js';
import { parseModelBytes } from '../onnx/parse.js';

/** A segment as a graph of its own, at some widths. */
export interface Standalone {
  key: string;
  /** The graph, inputs and outputs with static types (no output Slices yet). */
  model: Model;
  info: ShapeInfo;
  seg: Segment;
  /** Whether onnxruntime runs its convolution in the NCHWc layout (block `nchwcBlock`). */
  nchwc: boolean;
  /** Whether that convolution reads a blocked input (false: a first layer of fewer than `block` channels reads NCHW). */
  blockedInput: boolean;
  /** Elements of the float inputs and of the outputs (what reorders copy). */
  inElems: number;
  outElems: number;
  /**
   * Per output (seg.outputs): whether it leaves the segment in the blocked layout in the whole model (the op
   * registry's nchwcKeeps along the segment from its NCHWc convolution; inputs from outside taken as blocked).
   */
  outBlocked: boolean[];
}

/** How an axis of a value is resized: the new size, or undefined to keep it. */
export type Resize = (value: string, axis: number) => number | undefined;

/**
 * A weight of other dims, its values (seeded random: what they are does not change the kernels) made when first
 * read, so that a plan whose lookups are all in the table builds no large tensors.
 */
function fill(t: Tensor, dims: number[], seed: number): Tensor {
  let data: Tensor['data'] | undefined;
  const out = { dtype: t.dtype, dims } as Tensor;
  Object.defineProperty(out, 'data', {
    enumerable: true,
    get() {
      if (!data) {
        const made = createTensor(t.dtype, dims);
        if (made.data instanceof Float32Array || made.data instanceof Float64Array) fillTiled(made.data, rng(seed), -0.1, 0.1);
        data = made.data;
      }
      return data;
    },
  });
  return out;
}

/**
 * onnxruntime's NCHWc layout on this machine: the channel block (8 with AVX2, 16 with AVX-512) and the channel
 * alignment its transformer pads up to a block. onnxruntime-node 1.30 on an AVX-512 Xeon takes a convolution
 * reading 20, 36 or 100 channels (a multiple of 4) into the blocked layout, padding to 32, 48, 112, where the
 * transformer's older source required a multiple of the block: probed (nchwcLayout), not assumed.
 */
export interface NchwcLayout {
  block: number;
  /** Input channels (and depthwise channels) a multiple of this, or under the block, run blocked (== block: the strict rule). */
  align: number;
}

const layoutOf = (l: number | NchwcLayout): NchwcLayout => (typeof l === 'number' ? { block: l, align: l } : l);

/**
 * Whether onnxruntime's NCHWc transformer takes a Conv with weight dims `w` and `group` (nchwc_transformer.cc,
 * TransformConv): a plain convolution whatever its output count (padded up to the block: 22 outputs run as 32
 * with blocks of 16) when its input count is under the block (it reads NCHW) or a multiple of the alignment;
 * a depthwise one when its channels are a multiple of the alignment; another grouped one only at whole blocks.
 */
export function nchwcConv(w: readonly number[], group: number, layout: number | NchwcLayout): boolean {
  const { block, align } = layoutOf(layout);
  if (w.length !== 4) return false;
  const out = w[0]!, perGroup = w[1]!;
  if (group > 1) {
    if (perGroup === 1 && out === group) return out % align === 0;
    return out % block === 0 && perGroup % block === 0 && out % group === 0 && (out / group) % block === 0;
  }
  return perGroup < block || perGroup % align === 0;
}

let layoutPromise: Promise<NchwcLayout> | undefined;

/**
 * The NCHWc layout of the installed onnxruntime on this CPU, probed once: the block from autodiff/nchwc.ts, the
 * alignment by asking onnxruntime which of a few depthwise and plain convolutions (odd multiples of 1, 2, 4, 8
 * channels above the block) its optimiser rewrites (SessionConfig optimizedModelPath). Where it cannot be asked
 * (no NCHWc kernels, onnxruntime-web) the strict rule of the block (8 when none is found).
 */
export function nchwcLayout(): Promise<NchwcLayout> {
  layoutPromise ??= (async () => {
    const block = (await nchwcBlock()) ?? 8;
    const blocked = async (depthwise: boolean, c: number) => {
      const b = new GraphBuilder('nchwc_layout');
      const x = b.input('x', [1, c, 4, 4]);
      const w = b.init('w', createTensor(DataType.FLOAT, depthwise ? [c, 1, 3, 3] : [16, c, 1, 1]));
      b.output(b.node('Conv', [x, w], depthwise ? { group: c, kernel_shape: [3, 3], pads: [1, 1, 1, 1] } : {}));
      // level 'all' (the NCHWc transformer), its warning that such a graph is machine-specific not printed
      const m = parseModelBytes(await optimizedModelBytes(b.model(), { threads: 1, optimization: 'all', quiet: true }), { validate: false });
      return m.graph.nodes.some((n) => n.opType === 'Conv' && n.domain === NCHWC_DOMAIN);
    };
    try {
      for (const a of [1, 2, 4, 8].filter((a) => a < block)) {
        const c = a * (2 * (block / a) + 1);
        if ((await blocked(true, c)) && (await blocked(false, c))) return { block, align: a };
      }
    } catch {
      // not askable here
    }
    return { block, align: block };
  })();
  return layoutPromise;
}

function segmentIsNchwc(model: Model, info: ShapeInfo, seg: Segment, layout: NchwcLayout): { nchwc: boolean; blockedInput: boolean; outBlocked: boolean[] } {
  const conv = seg.nodes[0];
  const no = { nchwc: false, blockedInput: false, outBlocked: seg.outputs.map(() => false) };
  if (!conv || conv.opType !== 'Conv' || conv.domain !== '') return no;
  const w = model.graph.initializers.get(conv.inputs[1] ?? '');
  if (!w) return no;
  const a = conv.attrs.get('group');
  const group = a && a.kind === 'int' ? Number(a.value) : 1;
  if (!nchwcConv(w.dims, group, layout)) return no;
  // the layout along the segment: a node onnxruntime keeps blocked passes it on, any other reads NCHW
  const g = model.graph;
  const constant = (v: string) => g.initializers.has(v) || info.constants.has(v);
  const outside = new Set(seg.inputs);
  const blocked = new Set<string>([conv.outputs[0]!]);
  const ctx = (node: Node) => ({
    node, block: layout.block,
    channels: (v: string) => { const d = info.types.get(v)?.shape?.[1]; return typeof d === 'number' ? d : undefined; },
    fromConv: (v: string) => v === conv.outputs[0],
  });
  for (const n of seg.nodes.slice(1)) {
    const data = n.inputs.filter((v) => v && !constant(v));
    if (!data.some((v) => blocked.has(v)) || !data.every((v) => blocked.has(v) || outside.has(v))) continue;
    if (opDef(n)?.nchwcKeeps?.(ctx(n))) for (const o of n.outputs) if (o) blocked.add(o);
  }
  return { nchwc: true, blockedInput: !(group === 1 && w.dims[1]! < layout.block), outBlocked: seg.outputs.map((v) => blocked.has(v)) };
}

/**
 * Builds segment `seg` of `model` standalone, with the axes `resize` names resized. The op registry's surgery
 * rules (OpDef.prune) fix what a resized axis changes besides tensor dims, as removeUnits does on a pruned model:
 * a Reshape's target shape (a transformer's [batch, tokens, 3, heads, head_dim] after the QKV projection), a
 * depthwise convolution's group count. Kept indices are the first ones (the weights' values do not matter).
 */
export function standaloneSegment(model: Model, info: ShapeInfo, seg: Segment, resize?: Resize, layout: number | NchwcLayout = 8): Standalone {
  const g = model.graph;
  const origDims = (v: string): readonly number[] | undefined => {
    const t = g.initializers.get(v) ?? info.constants.get(v);
    if (t) return t.dims;
    const s = info.types.get(v)?.shape;
    return s?.every((d) => typeof d === 'number') ? (s as number[]) : undefined;
  };
  const dimsOf = (v: string, dims: readonly number[]) => dims.map((d, a) => resize?.(v, a) ?? d);
  const keptOf = (v: string | undefined, a: number): Int32Array | undefined => {
    if (!v || !resize) return undefined;
    const n = resize(v, a);
    const d = origDims(v)?.[a];
    return n === undefined || d === undefined || n === d ? undefined : Int32Array.from({ length: n }, (_, i) => i);
  };
  const initializers = new Map<string, Tensor>();
  const made = new Map<string, Tensor>();
  const nodes: Node[] = seg.nodes.map((n) => {
    const touched = resize && [...n.inputs, ...n.outputs].some((v) => v && origDims(v)?.some((_, a) => keptOf(v, a) !== undefined));
    const def = touched ? opDef(n) : undefined;
    if (!def?.prune) return { ...n };
    const node: Node = { ...n, inputs: [...n.inputs], attrs: new Map(n.attrs) };
    const ctx: PruneContext = {
      node,
      opset: opsetVersion(model, n.domain),
      inShape: (i) => (n.inputs[i] ? origDims(n.inputs[i]!)?.slice() : undefined),
      outShape: (i) => (n.outputs[i] ? origDims(n.outputs[i]!)?.slice() : undefined),
      constant: (i) => (n.inputs[i] ? (g.initializers.get(n.inputs[i]!) ?? info.constants.get(n.inputs[i]!)) : undefined),
      kept: (io, i, axis) => keptOf(io === 'in' ? n.inputs[i] : n.outputs[i], axis),
      setConstant: (i, t) => {
        let name = `${n.name || n.opType}_in${i}_resized`;
        while (g.initializers.has(name) || made.has(name)) name += '_';
        made.set(name, t);
        while (node.inputs.length <= i) node.inputs.push('');
        node.inputs[i] = name;
      },
    };
    // A rule that cannot apply (its reason returned) leaves the node as it is: shape inference decides.
    try {
      if (typeof def.prune(ctx) === 'string') return { ...n };
    } catch {
      return { ...n };
    }
    return node;
  });
  // in the order the nodes read them, as segmentGraph lists them (the signature numbers values in that order)
  const weights: string[] = [];
  const isWeight = new Set([...seg.weights, ...made.keys()]);
  for (const n of nodes) for (const v of n.inputs) if (v && isWeight.has(v) && !weights.includes(v)) weights.push(v);
  weights.forEach((w, k) => {
    const t = made.get(w) ?? g.initializers.get(w) ?? info.constants.get(w)!;
    if (made.has(w)) return void initializers.set(w, t);
    const dims = dimsOf(w, t.dims);
    initializers.set(w, dims.every((d, a) => d === t.dims[a]) ? t : fill(t, dims, k + 1));
  });
  const inputs: ValueInfo[] = seg.inputs.map((v) => {
    const t = info.types.get(v);
    if (!t?.shape || t.shape.some((d) => typeof d !== 'number')) throw new ShearsError(`latency model: value '${v}' has no static shape`);
    if (t.elemType !== DataType.FLOAT) throw new ShearsError(`latency model: segment input '${v}' is not float and not constant`);
    return { name: v, type: { elemType: t.elemType, shape: dimsOf(v, t.shape as number[]) } };
  });
  // A depthwise convolution's group count is its channel count: resized with it (also when no rule ran).
  nodes.forEach((n, i) => {
    const grp = n.attrs.get('group');
    const w = n.opType === 'Conv' && grp?.kind === 'int' && Number(grp.value) > 1 ? n.inputs[1] : undefined;
    const before = w ? (g.initializers.get(w) ?? info.constants.get(w))?.dims[0] : undefined;
    const after = w ? initializers.get(w)?.dims[0] : undefined;
    if (before === undefined || after === undefined || before === after || Number(grp!.value) !== before) return;
    const attrs = new Map(n.attrs);
    attrs.set('group', { ...grp!, value: after } as typeof grp & object);
    nodes[i] = { ...n, attrs };
  });
  const draft: Model = {
    ...model,
    metadata: new Map(),
    functions: [],
    graph: { name: 'segment', nodes, inputs, outputs: seg.outputs.map((v) => ({ name: v })), initializers, valueInfo: new Map() },
  };
  const sinfo = inferShapes(draft);
  const outputs: ValueInfo[] = seg.outputs.map((v) => {
    const t = sinfo.types.get(v);
    if (!t?.shape || t.shape.some((d) => typeof d !== 'number')) throw new ShearsError(`latency model: segment output '${v}' has no static shape at these widths`);
    return { name: v, type: t as TensorType };
  });
  const m: Model = { ...draft, graph: { ...draft.graph, outputs } };
  const s: Segment = { nodes, inputs: seg.inputs, outputs: seg.outputs, weights, macs: nodes.reduce((a, n) => a + nodeMacs(m, sinfo, n), 0) };
  const key = hashKey(`${seg.nodes.length}|${segmentSignature(m, sinfo, s)}`);
  const elems = (vs: ValueInfo[]) => vs.reduce((n, v) => n + (v.type!.shape as number[]).reduce((a, b) => a * b, 1), 0);
  return { key, model: m, info: sinfo, seg: s, ...segmentIsNchwc(m, sinfo, s, layoutOf(layout)), inElems: elems(inputs), outElems: elems(outputs) };
}

/** The timing graph of a standalone segment (outputs read through one-element Slices). */
export function timingModel(st: Standalone): Model {
  return segmentModel(st.model, st.info, st.seg);
}

export interface Calibration {
  /** Factor of NCHWc segments' net time. */
  nchwc: number;
  /** Factor of the other segments' net time. */
  other: number;
  /** Constant added to a whole model (ms): what the affine fit over two calibration models leaves. */
  offset: number;
  /** The calibration models: raw segment sums (ms, net of overhead) and measured whole times (ms). */
  points: CalibrationPoint[];
}

export interface CalibrationPoint extends Sums {
  whole: number;
}

/**
 * Raw (net) segment sums, ms: of NCHWc segments, of the others, and the part of NCHWc segments' time that is
 * their reorders at layout boundaries (a blocked segment next to a plain one or the graph's ends), which the
 * whole model pays too: estimated as the segment's time times its element share of the side that reorders.
 */
export interface Sums {
  nchwc: number;
  other: number;
  boundary: number;
}

/**
 * The factors from measured models: one model scales the NCHWc segments (the others count as measured) so that
 * it is predicted exactly; two or more (the dense model and a narrower one) fit whole - other = offset + f * nchwc
 * by least squares, which carries what does not shrink with the widths (first and last layers, per-node work)
 * as the offset. A fit out of range falls back to the ratio of the first model.
 * When the dense model runs faster than its segments other than NCHWc ones (a transformer: MatMul segments, on
 * vit_fmnist at batch 64 the whole model is 0.84 of the sum), the difference is not layout reorders: then every
 * segment shares the factor, and two or more models fit whole = offset + f * sum. With one factor alone a pruned
 * transformer was under-predicted by 16% (per-run costs of the residual stream, which keeps its width, do not
 * shrink with the segment sum: they are the offset).
 */
export function fitCalibration(points: CalibrationPoint[], overhead: number): Calibration {
  const clamp = (x: number) => Math.min(2, Math.max(0.3, x));
  const p0 = points[0]!;
  const rest0 = p0.whole - overhead;
  let nchwc = 1, other = 1, offset = 0;
  const x0 = p0.nchwc - p0.boundary;
  // Whether the dense model's difference from its segment sum can be put on the NCHWc segments (their layout
  // reorders), or is spread over every segment (a transformer's MatMul segments, run faster inside the model).
  const blocked = x0 > 0 && rest0 - p0.other - p0.boundary > 0.3 * x0;
  if (blocked) nchwc = (rest0 - p0.other - p0.boundary) / x0;
  else if (p0.nchwc + p0.other > 0) nchwc = other = rest0 / (p0.nchwc + p0.other);
  if (points.length >= 2) {
    // blocked: whole - other - boundary = offset + f * (NCHWc - boundary); else whole - boundary = offset + f * (sum - boundary)
    const xs = points.map((p) => p.nchwc - p.boundary + (blocked ? 0 : p.other));
    const ys = points.map((p) => p.whole - overhead - p.boundary - (blocked ? p.other : 0));
    const mx = xs.reduce((a, b) => a + b, 0) / xs.length, my = ys.reduce((a, b) => a + b, 0) / ys.length;
    let sxy = 0, sxx = 0;
    xs.forEach((x, i) => { sxy += (x - mx) * (ys[i]! - my); sxx += (x - mx) ** 2; });
    const f = sxx > 0 ? sxy / sxx : NaN;
    if (f >= 0.3 && f <= 1.5 && sxx > 0.01 * mx * mx) {
      nchwc = f;
      if (!blocked) other = f;
      offset = my - f * mx;
    }
  }
  return { nchwc: clamp(nchwc), other: clamp(other), offset, points };
}

/** A model (static shapes) cut into segments, predicting its latency, at any widths, from a table. */
export class SegmentLatency {
  readonly segments: Segment[];
  calibration: Calibration = { nchwc: 1, other: 1, offset: 0, points: [] };
  /** Standalone graphs by segment and width signature (the resized axes' sizes). */
  private built = new Map<string, Standalone | null>();

  /**
   * How this model's timing graphs are measured (MeasureOptions.rewarm): interleaved 12 at a time either way
   * (a burst of another process spread over the graphs instead of spoiling every run of one), each timed run
   * right after an untimed one of the same graph where the model's largest activation holds under 32 MiB. A
   * whole model runs each layer on the activations its producer just wrote, in cache; interleaved without it a
   * small segment ran cold: on mobilenet_v2 at batch 1 its segments summed 10.1 ms interleaved and 8.8 ms back
   * to back, for 8.8 ms of the whole model, and exact-width variants (mostly plain convolutions, counted as
   * measured) were predicted 35% slow. Activations of 25-100 MB (resnet18 at batch 32) are not in cache either
   * way. One mode per model: fmnist_resnet20 at batch 128 timed partly one way and partly the other (by each
   * graph's input size) was predicted 16-25% fast.
   */
  readonly rewarm: boolean;

  /** onnxruntime's NCHWc layout (nchwcLayout; a number: that block, strict). */
  readonly layout: NchwcLayout;
  readonly block: number;

  constructor(readonly model: Model, readonly info: ShapeInfo, readonly table: LatencyTable, layout: number | NchwcLayout = 8, readonly dg?: DepGraph) {
    this.layout = layoutOf(layout);
    this.block = this.layout.block;
    let largest = 0;
    for (const t of info.types.values()) {
      if (t.shape?.every((d) => typeof d === 'number')) largest = Math.max(largest, 4 * (t.shape as number[]).reduce((a, b) => a * b, 1));
    }
    this.rewarm = largest < 32 * 2 ** 20;
    this.segments = segmentGraph(model, info);
    this.segments.forEach((s, k) => {
      for (const v of s.outputs) this.producer.set(v, k);
      for (const v of s.inputs) (this.consumers.get(v) ?? this.consumers.set(v, []).get(v)!).push(k);
    });
    this.graphOutputs = new Set(model.graph.outputs.map((o) => o.name));
  }

  /**
   * Segments that could not be built at some planned widths (index: why): they count at their dense time there,
   * which over-predicts what pruning them saves (a ViT's QKV segment did until surgery rules resized its Reshape).
   */
  readonly unbuildable = new Map<number, string>();
  /** Why a segment cannot be built standalone even at its dense widths (then no latency target can be planned). */
  private readonly denseUnbuildable = new Map<number, string>();

  private producer = new Map<string, number>();
  private consumers = new Map<string, number[]>();
  private graphOutputs: Set<string>;

  /** The resize rule of space sizes `size` on the dependency graph (undefined: dense). */
  private resizer(size: Int32Array | undefined): Resize | undefined {
    const dg = this.dg;
    if (!size || !dg) return undefined;
    return (v, a) => {
      const s = dg.spaceOf.get(spaceKey(v, a));
      return s && size[s.id] !== s.size ? size[s.id] : undefined;
    };
  }

  /** Per segment, the dependency-graph space of each axis of its inputs and weights, in order (-1: none). */
  private axisSpaces: (Int32Array | undefined)[] = [];

  /** Per segment, the distinct dependency-graph spaces its axes lie in (what its standalone graph depends on). */
  private spaceIds: (Int32Array | undefined)[] = [];

  private spacesOf(k: number): Int32Array {
    let a = this.spaceIds[k];
    if (!a) this.spaceIds[k] = a = Int32Array.from(new Set(Array.from(this.axisSpacesOf(k)).filter((id) => id >= 0))).sort();
    return a;
  }

  private axisSpacesOf(k: number): Int32Array {
    let a = this.axisSpaces[k];
    if (!a) {
      const seg = this.segments[k]!;
      const ids: number[] = [];
      for (const v of [...seg.inputs, ...seg.weights]) {
        const dims = this.info.types.get(v)?.shape ?? this.model.graph.initializers.get(v)?.dims ?? [];
        dims.forEach((_, ax) => ids.push(this.dg?.spaceOf.get(spaceKey(v, ax))?.id ?? -1));
      }
      this.axisSpaces[k] = a = Int32Array.from(ids);
    }
    return a;
  }

  /** Segment k standalone at `size` (null when it cannot be built at those widths: then its time scales by MACs). */
  standalone(k: number, size?: Int32Array): Standalone | null {
    const seg = this.segments[k]!;
    const dg = this.dg;
    let sig = `${k}`;
    if (size && dg) {
      // each axis's size where it differs from the dense one (-1 where not): the resize rule's values, read from
      // the axes' spaces found once per segment (the planner asks this for every step it ranks)
      // (the distinct spaces alone: a convolution segment's ten-odd axes are two or three spaces)
      const ids = this.spacesOf(k);
      let parts = '';
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i]!;
        parts += `${i ? ',' : ''}${size[id] !== dg.spaces[id]!.size ? size[id] : -1}`;
      }
      sig += `:${parts}`;
    }
    let st = this.built.get(sig);
    if (st === undefined) {
      const rs = this.resizer(size);
      try {
        st = standaloneSegment(this.model, this.info, seg, rs, this.layout);
      } catch (e) {
        if (!(e instanceof ShearsError)) throw e;
        st = null;
        if (rs) this.unbuildable.set(k, e.message);
        else this.denseUnbuildable.set(k, e.message.replace(/^latency model: /, ''));
      }
      this.built.set(sig, st);
    }
    return st;
  }

  /** The timing graphs the table lacks for segments `ks` at `size`. */
  missing(size: Int32Array | undefined, ks: Iterable<number>): TimingGraph[] {
    const out: TimingGraph[] = [];
    for (const k of ks) {
      const st = this.standalone(k, size);
      if (st && this.table.get(st.key) === undefined) out.push(this.timingGraph(k, st, size));
    }
    return out;
  }

  /**
   * Segment k's timing graph at `size`; resized, with a bound: a reading over 1.5x the dense segment's time is
   * timed again (LatencyTable.measure), as a narrower width seldom runs that much slower.
   */
  private timingGraph(k: number, st: Standalone, size: Int32Array | undefined): TimingGraph {
    const g: TimingGraph = { key: st.key, model: () => timingModel(st) };
    if (size) {
      g.bound = () => {
        const d = this.standalone(k);
        const t = d && d.key !== st.key ? this.table.get(d.key) : undefined;
        return t === undefined ? undefined : 1.5 * t;
      };
    }
    return g;
  }

  /**
   * The segments whose time (or layout boundary) depends on the size of dependency-graph space `s`: those
   * reading or writing an axis of it, and their neighbours (a layout change there moves reorders next door).
   */
  segmentsOfSpace(s: number): number[] {
    if (!this.bySpace) {
      const dg = this.dg;
      if (!dg) throw new ShearsError('latency model: no dependency graph');
      const by: Set<number>[] = dg.spaces.map(() => new Set());
      this.segments.forEach((seg, k) => {
        const vals = [...seg.inputs, ...seg.weights, ...seg.nodes.flatMap((n) => n.outputs.filter(Boolean))];
        for (const v of vals) {
          const r = this.info.types.get(v)?.shape?.length ?? this.model.graph.initializers.get(v)?.dims.length ?? 0;
          for (let a = 0; a < r; a++) {
            const sp = dg.spaceOf.get(spaceKey(v, a));
            if (!sp) continue;
            by[sp.id]!.add(k);
            for (const x of seg.inputs) { const p = this.producer.get(x); if (p !== undefined) by[sp.id]!.add(p); }
            for (const x of seg.outputs) for (const c of this.consumers.get(x) ?? []) by[sp.id]!.add(c);
          }
        }
      });
      this.bySpace = by.map((x) => [...x].sort((a, b) => a - b));
    }
    return this.bySpace[s]!;
  }

  private bySpace: number[][] | undefined;

  /** Measures what the table lacks for segments `ks` (default all) at each of `sizes` (default dense). */
  async ensure(sizes: (Int32Array | undefined)[] = [undefined], ks?: number[], opts: MeasureOptions = {}): Promise<void> {
    const want: TimingGraph[] = [];
    for (const size of sizes) {
      for (const k of ks ?? this.segments.keys()) {
        const st = this.standalone(k, size);
        if (st && this.table.get(st.key) === undefined) want.push(this.timingGraph(k, st, size));
      }
      if (!ks) {
        // the dense segments must exist even when a resized one cannot be built
        for (const k of this.segments.keys()) {
          const st = this.standalone(k);
          if (!st) {
            const n = this.segments[k]!.nodes[0]!;
            throw new ShearsError(`a latency target cannot be planned on this model: its segment ${k} (from ${n.opType} '${n.name || n.outputs[0]}') cannot be timed as a standalone graph (${this.denseUnbuildable.get(k) ?? 'it cannot be built'}); give a MAC or parameter target (--target-macs, --target-params) instead`);
          }
          if (this.table.get(st.key) === undefined) want.push(this.timingGraph(k, st, undefined));
        }
      }
    }
    await this.table.measure(want, { rewarm: this.rewarm, ...opts });
  }

  /** Net time (ms, overhead removed) of segment k at `size`, and its layout facts; requires ensure(). */
  segmentTime(k: number, size?: Int32Array): { ms: number; st: Standalone | null } {
    const oh = this.table.overhead();
    const st = this.standalone(k, size);
    if (st) {
      const t = this.table.get(st.key);
      if (t !== undefined) return { ms: Math.max(0, t - oh), st };
      if (!size) throw new ShearsError('latency model: segment not measured (call ensure first)');
    }
    // Not buildable (or not measured) at these widths: the dense time scaled by MACs (not buildable: the dense time).
    const dense = this.segmentTime(k);
    const seg = this.segments[k]!;
    const m = st?.seg.macs;
    return { ms: dense.ms * (m !== undefined && seg.macs > 0 ? m / seg.macs : 1), st: st ?? dense.st };
  }

  /** Whether value v (a segment's output) is in the blocked layout in the whole model at `size`. */
  private leavesBlocked(v: string, size: Int32Array | undefined): boolean {
    const p = this.producer.get(v);
    if (p === undefined) return false;
    const st = this.standalone(p, size) ?? this.standalone(p);
    const i = this.segments[p]!.outputs.indexOf(v);
    return !!st?.nchwc && i >= 0 && st.outBlocked[i] === true;
  }

  /**
   * Whether segment k reads a blocked input at `size`: an NCHWc convolution of at least `block` input channels
   * (one of fewer reads NCHW: a blocked producer then reorders its output back for it, as for a plain reader).
   */
  private readsBlocked(k: number, size: Int32Array | undefined): boolean {
    const st = this.standalone(k, size) ?? this.standalone(k);
    return !!st?.nchwc && st.blockedInput;
  }

  /** The uncalibrated sums (ms) at `size`, for segments `ks` (default all). */
  sums(size?: Int32Array, ks?: Iterable<number>): Sums {
    let n = 0, o = 0, b = 0;
    for (const k of ks ?? this.segments.keys()) {
      const t = this.segmentTime(k, size);
      const st = t.st;
      if (!st?.nchwc) {
        o += t.ms;
        continue;
      }
      n += t.ms;
      const seg = this.segments[k]!;
      // reorders the whole model pays too: a blocked input its producer leaves in NCHW, an output that leaves
      // the segment in NCHW (a pool or Concat off whole blocks) or that a reader takes in NCHW
      const inB = st.blockedInput && seg.inputs.some((v) => !this.leavesBlocked(v, size));
      const outB = seg.outputs.some((v, i) => this.graphOutputs.has(v) || !st.outBlocked[i] || (this.consumers.get(v) ?? []).some((c) => !this.readsBlocked(c, size)));
      const tot = (st.blockedInput ? st.inElems : 0) + st.outElems;
      if (tot > 0) b += (t.ms * ((inB ? st.inElems : 0) + (outB ? st.outElems : 0))) / tot;
    }
    return { nchwc: n, other: o, boundary: b };
  }

  /** Calibrates with the measured whole time (ms) of the dense model, and optional further points. */
  calibrate(whole: number, more: CalibrationPoint[] = []): Calibration {
    this.calibration = fitCalibration([{ ...this.sums(), whole }, ...more], this.table.overhead());
    return this.calibration;
  }

  /**
   * An estimate (ms) of segments `ks` at `size` that reads no lookup but the dense segments': each one's dense
   * time scaled by its MACs at those widths, calibrated as predict() does (no boundaries). The planner ranks the
   * steps it has not timed by it, so that a plan takes the same steps from a cold table as from a warm one (a
   * second plan of the same model measures nothing).
   */
  estimate(size: Int32Array | undefined, ks: Iterable<number>): number {
    const c = this.calibration;
    let t = 0;
    for (const k of ks) {
      const dense = this.segmentTime(k);
      const st = this.standalone(k, size) ?? dense.st;
      const m = this.segments[k]!.macs;
      t += dense.ms * (st && m > 0 ? st.seg.macs / m : 1) * (st?.nchwc ? c.nchwc : c.other);
    }
    return t;
  }

  /** Calibrated time (ms) of segments `ks` (default all, plus the overhead) at `size`. */
  predict(size?: Int32Array, ks?: Iterable<number>): number {
    const s = this.sums(size, ks);
    const c = this.calibration;
    return (ks ? 0 : this.table.overhead() + c.offset) + (s.nchwc - s.boundary) * c.nchwc + s.boundary + s.other * c.other;
  }

  /** The model with its inputs declared at the analysed static shapes (what a whole-model measurement runs). */
  staticModel(): Model {
    const g = this.model.graph;
    const inputs = g.inputs.map((vi) => {
      const t = this.info.types.get(vi.name);
      return g.initializers.has(vi.name) || !t?.shape ? vi : { ...vi, type: { elemType: t.elemType, shape: [...t.shape] } };
    });
    return { ...this.model, graph: { ...g, inputs } };
  }

  /**
   * How whole models (the calibration's anchors, the landing check's pair) are timed: at least ten runs, and
   * where the model is fast (its segments sum under 100 ms) fifteen after three warm-ups with no early stop:
   * mobilenet_v2 at batch 1 (6 ms) settled early on three runs that agreed within 3% at 5.46 ms in one process
   * and 6.15 ms in the next, both measuring 6.1 ms over 15 runs (every variant's prediction moved 12% with it).
   */
  anchorRuns(opts: MeasureOptions = {}): MeasureOptions {
    const s = this.sums();
    if (s.nchwc + s.other < 100) return { runs: Math.max(opts.runs ?? 15, 15), warmup: Math.max(opts.warmup ?? 3, 3), settle: 0 };
    return { runs: Math.max(opts.runs ?? 10, 10), minRuns: Math.max(opts.minRuns ?? 3, 3) };
  }

  /** Key of the dense whole model's measurement in the table (its static input shapes are in the segments' keys). */
  wholeKey(): string {
    const keys: string[] = [];
    for (const k of this.segments.keys()) keys.push(this.standalone(k)?.key ?? '?');
    return hashKey(`whole-static|${keys.join(',')}`);
  }

  /**
   * Measures (or reads from the table) the dense whole model and calibrates on it; with `narrower` (the model
   * at other widths, as space sizes on the dependency graph and as a model built at them) fits on both.
   */
  async calibrateDense(opts: MeasureOptions = {}, narrower?: { size: Int32Array; model: () => Model }): Promise<Calibration> {
    await this.ensure(narrower ? [undefined, narrower.size] : [undefined], undefined, opts);
    const key = this.wholeKey();
    const graphs = [{ key, model: () => this.staticModel() }];
    const nkey = narrower ? hashKey(`${key}|${Array.from(narrower.size).join(',')}`) : '';
    if (narrower) graphs.push({ key: nkey, model: narrower.model });
    // The calibration's anchors: at least three runs each, up to ten where they disagree, the two models
    // interleaved as shears measures latency everywhere (bench, report, sweep): each run then starts with the
    // other model's data in cache, which costs the whole model more than its segments timed back to back
    // (mobilenet_v2 at batch 1: 7.3 ms interleaved with resnet18, 6.0-6.3 ms back to back); the fit's offset
    // carries that to every width, where back-to-back anchors had left pruned variants predicted 5-14% fast.
    await this.table.measure(graphs, { ...opts, ...this.anchorRuns(opts), chunk: graphs.length, rewarm: false });
    const whole = this.table.get(key);
    if (whole === undefined) throw new ShearsError(`latency model: onnxruntime cannot run the model at these shapes (${this.table.failed.get(key) ?? 'not measured'})`);
    const nw = narrower ? this.table.get(nkey) : undefined;
    return this.calibrate(whole, nw !== undefined ? [{ ...this.sums(narrower!.size), whole: nw }] : []);
  }
}

/**
 * Space sizes and units of a narrower copy of a model, for the second calibration point: every planning group
 * (each producer of a Concat apart, as the planner sees them) keeps about half of its prunable units, a multiple
 * of `block` where its width is one, never fewer than one.
 */
export function halfWidths(dg: DepGraph, block = 8): { removed: Set<number>; size: Int32Array } {
  const removed = new Set<number>();
  const size = Int32Array.from(dg.spaces, (s) => s.size);
  for (const st of groupStates(dg, new Float64Array(dg.units.length), 0.9, block, false)) {
    let keep = Math.ceil(st.width / 2);
    if (st.step > 1 && st.width % st.step === 0) keep = Math.max(st.step, Math.round(keep / st.step) * st.step);
    keep = Math.max(keep, st.minKeep, st.width - st.order.length, 1);
    for (const u of st.order.slice(0, Math.max(0, st.width - keep))) {
      removed.add(u);
      for (const e of dg.units[u]!.elements) size[dg.elementSpace[e]!]!--;
    }
  }
  return { removed, size };
}
