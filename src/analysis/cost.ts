/**
 * Cost model: parameters, MACs, other FLOPs, weight and activation bytes and sparsity, per node and in total.
 * Per-op formulas live in the op modules (OpDef.cost); this pass only adds them up.
 */
import { DataType, dtypeBits } from '../ir/dtype.js';
import { subgraphs, type Dim, type Graph, type Model, type Node, type TensorType } from '../ir/graph.js';
import { numel, type Tensor } from '../ir/tensor.js';
import { isResident, releaseTensor } from '../ir/lazy.js';
import { isParameterInput, opDef, weightSpecs } from '../ops/registry.js';
import { nodeContext, type ShapeInfo } from './shapes.js';

export interface LayerCost {
  name: string;
  opType: string;
  /** Shape of the first output; symbolic dims stay names, unknown dims are null. */
  outputShape: Dim[] | null;
  params: number;
  /** Parameters of this node that are exactly zero. */
  zeroParams: number;
  /** Elements of the layer's weight tensor (biases excluded); 0 for ops without a weight. */
  weightParams: number;
  /** Zeros in the layer's weight tensor. */
  weightZeros: number;
  macs: number;
  flops: number;
  /** Bytes of the initializers this node reads. */
  weightBytes: number;
  /** Bytes of the node's outputs (0 when a shape is not static). */
  activationBytes: number;
}

export interface CostReport {
  params: number;
  zeroParams: number;
  /** zeroParams / params. */
  sparsity: number;
  /** Elements and zeros of layer weight tensors only (Conv/Gemm/MatMul weights; no biases or norms). */
  weightParams: number;
  weightZeros: number;
  /** weightZeros / weightParams: what unstructured pruning targets. */
  weightSparsity: number;
  macs: number;
  flops: number;
  /** Bytes of all initializers. */
  weightBytes: number;
  /** Bytes of all intermediate values and outputs. */
  activationBytes: number;
  /**
   * Per layer; nodes inside subgraphs are named by their path ('If_0/then_branch/Conv_3'). Their parameters
   * count in the totals; their MACs count once per run of the node holding them (the costlier If branch).
   */
  layers: LayerCost[];
  /** Per subgraph (If branch, Loop/Scan body): parameters first read there, MACs and FLOPs of one run. */
  subgraphs: SubgraphCost[];
}

function staticNumel(t: TensorType | undefined): number | undefined {
  if (!t?.shape) return undefined;
  let n = 1;
  for (const d of t.shape) {
    if (typeof d !== 'number') return undefined;
    n *= d;
  }
  return n;
}

function bytesOf(t: TensorType | undefined): number {
  const n = staticNumel(t);
  if (n === undefined || !t) return 0;
  return Math.ceil((n * dtypeBits(t.elemType)) / 8);
}

function countZeros(t: Tensor): number {
  // a lazy weight (external data) read only to be counted is released again: one tensor in memory at a time
  const passing = !isResident(t);
  const z = zerosIn(t.data);
  if (passing) releaseTensor(t);
  return z;
}

function zerosIn(d: Tensor['data']): number {
  if (Array.isArray(d)) return 0;
  let z = 0;
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) {
    for (let i = 0; i < d.length; i++) if (d[i] === 0n) z++;
  } else {
    // Float16/BFloat16 are stored as bit patterns: +0 and -0.
    const bits = d instanceof Uint16Array;
    for (let i = 0; i < d.length; i++) {
      const v = d[i] as number;
      if (v === 0 || (bits && v === 0x8000)) z++;
    }
  }
  return z;
}

interface StoredWeight {
  tensor: Tensor;
  source: string;
  /** Reached through a DequantizeLinear: the float type its consumers see. */
  dequantizedTo?: number;
}

/** A node of the main graph or of a subgraph, with the path of graph attributes leading to it ('' at top). */
export interface ScopedNode {
  node: Node;
  scope: string;
}

/** Every node of a graph and, recursively, of its subgraphs (If branches, Loop/Scan bodies), in order. */
export function allNodes(g: Graph, scope = ''): ScopedNode[] {
  const out: ScopedNode[] = [];
  for (const node of g.nodes) {
    out.push({ node, scope });
    for (const [attr, a] of node.attrs) {
      const gs = a.kind === 'graph' ? [a.value] : a.kind === 'graphs' ? a.value : [];
      gs.forEach((sg, k) => out.push(...allNodes(sg, `${scope}${node.name || node.opType}/${attr}${gs.length > 1 ? `[${k}]` : ''}/`)));
    }
  }
  return out;
}

/** Every graph of a model: the main graph and its subgraphs, recursively. */
function allGraphs(g: Graph): Graph[] {
  const out = [g];
  for (const n of g.nodes) for (const sg of subgraphs(n)) out.push(...allGraphs(sg));
  return out;
}

/**
 * Weights stored in the model, by every value name that carries one unchanged: initializers (of the main graph
 * and of subgraphs), outputs of Constant nodes (as Paddle exports keep their weights), and pass-through copies
 * of either (Identity). `source` names the stored tensor, so a weight read under several names counts once. A
 * quantized weight read through DequantizeLinear (QDQ models) counts for the layer that consumes the
 * dequantized value.
 */
function storedWeights(model: Model, shapes: ShapeInfo): Map<string, StoredWeight> {
  const out = new Map<string, StoredWeight>();
  for (const g of allGraphs(model.graph)) for (const [name, tensor] of g.initializers) out.set(name, { tensor, source: name });
  for (const { node } of allNodes(model.graph)) {
    const def = opDef(node);
    const first = node.inputs[0];
    if (def?.passthrough && first && out.has(first)) {
      const src = out.get(first)!;
      for (const o of node.outputs) if (o && shapes.constants.has(o)) out.set(o, src);
    } else if (def?.dequantizes && first && out.has(first) && node.outputs[0]) {
      out.set(node.outputs[0], { ...out.get(first)!, dequantizedTo: shapes.types.get(node.outputs[0])?.elemType ?? DataType.FLOAT });
    } else if (node.inputs.length === 0) {
      // Nodes without inputs that fold (Constant) hold their tensor in the model itself.
      for (const o of node.outputs) {
        const t = o ? shapes.constants.get(o) : undefined;
        if (t) out.set(o, { tensor: t, source: o });
      }
    }
  }
  return out;
}

/** A parameter tensor of the model (see parameterTensors). */
export interface ParameterTensor {
  /** The value name it is stored under (initializer or Constant output). */
  name: string;
  tensor: Tensor;
  /** '' in the main graph; the path of the subgraph of its first reader otherwise (e.g. 'If_0/then_branch/'). */
  scope: string;
}

/**
 * THE definition of "parameters" used by every count shears prints (inspect, prune of both kinds, report):
 * the elements of the tensors stored in the model (initializers of the main graph and of subgraphs, Constant
 * node values, pass-through copies of them, quantized weights read through DequantizeLinear) that some node
 * reads at a parameter position (ops/registry.ts isParameterInput: weights, biases including 1-element ones,
 * norm scales and shifts, PRelu slopes, non-scalar Add/Mul operands), each stored tensor counted once however
 * many names or readers it has. Shape constants, indices and rank-0 scalars of elementwise ops are not.
 */
export function parameterTensors(model: Model, shapes: ShapeInfo, notParameters?: ReadonlySet<string>): ParameterTensor[] {
  const stored = storedWeights(model, shapes);
  const seen = new Set<Tensor>();
  const out: ParameterTensor[] = [];
  for (const { node, scope } of allNodes(model.graph)) {
    node.inputs.forEach((input, i) => {
      const w = input ? stored.get(input) : undefined;
      if (!w || seen.has(w.tensor) || notParameters?.has(w.source)) return;
      if (!isParameterInput(node, i, w.dequantizedTo === undefined ? w.tensor : { ...w.tensor, dtype: w.dequantizedTo })) return;
      seen.add(w.tensor);
      out.push({ name: w.source, tensor: w.tensor, scope });
    });
  }
  return out;
}

/** Cost of one subgraph (an If branch, a Loop/Scan body run once), for the inspect report. */
export interface SubgraphCost {
  /** Path of the subgraph, e.g. 'If_0/then_branch'. */
  scope: string;
  params: number;
  macs: number;
  flops: number;
}

/**
 * Totals and per-layer costs. `notParameters`: stored values that are not parameters although read at a
 * parameter position (constants analysis/fold.ts computed, FoldResult.created).
 */
export function analyzeCost(model: Model, shapes: ShapeInfo, notParameters?: ReadonlySet<string>): CostReport {
  const g = model.graph;
  const zeroCache = new Map<Tensor, number>();
  const layers: LayerCost[] = [];
  let params = 0, zeroParams = 0, activationBytes = 0, weightParams = 0, weightZeros = 0;
  const countedWeights = new Set<Tensor>();
  const stored = storedWeights(model, shapes);
  const paramSet = new Set(parameterTensors(model, shapes, notParameters).map((p) => p.tensor));
  const counted = new Set<Tensor>();
  const zerosOf = (t: Tensor) => {
    let zeros = zeroCache.get(t);
    if (zeros === undefined) zeroCache.set(t, (zeros = countZeros(t)));
    return zeros;
  };
  const subCosts = new Map<string, SubgraphCost>();
  const nodeCosts = new Map<Node, { macs: number; flops: number }>();
  for (const { node, scope } of allNodes(g)) {
    const def = opDef(node);
    const typeOf = (name: string | undefined) => (name ? shapes.types.get(name) : undefined);
    let p = 0, z = 0, wb = 0, lw = 0, lz = 0;
    // The layer weights (W and R of a recurrent layer): the tensors unstructured pruning sparsifies.
    const weightInputs = new Set(weightSpecs(node, (i) => (node.inputs[i] ? stored.get(node.inputs[i]!)?.tensor.dims : undefined)).map((w) => w.input));
    node.inputs.forEach((input, i) => {
      const w = input ? stored.get(input) : undefined;
      if (!w) return;
      const t = w.tensor;
      wb += Math.ceil((numel(t.dims) * dtypeBits(t.dtype)) / 8);
      if (!paramSet.has(t) || !isParameterInput(node, i, w.dequantizedTo === undefined ? t : { ...t, dtype: w.dequantizedTo })) return;
      const zeros = zerosOf(t);
      const n = numel(t.dims);
      p += n;
      z += zeros;
      if (weightInputs.has(i)) {
        lw += n;
        lz += zeros;
        if (!countedWeights.has(t)) {
          countedWeights.add(t);
          weightParams += n;
          weightZeros += zeros;
        }
      }
      if (!counted.has(t)) {
        counted.add(t);
        params += n;
        zeroParams += zeros;
        if (scope) {
          const sc = subCost(subCosts, scope);
          sc.params += n;
        }
      }
    });
    let c = { macs: 0, flops: 0 };
    if (def?.cost) {
      try {
        c = def.cost(nodeContext(model, shapes, node));
      } catch {
        // A cost rule that cannot work with what is known (unknown shapes) counts as zero.
        c = { macs: 0, flops: 0 };
      }
    }
    nodeCosts.set(node, c);
    let ab = 0;
    for (const o of node.outputs) ab += bytesOf(typeOf(o));
    const out0 = typeOf(node.outputs[0]);
    activationBytes += ab;
    layers.push({
      name: scope + (node.name || node.outputs[0] || node.opType),
      opType: node.opType,
      outputShape: out0?.shape ?? null,
      params: p,
      zeroParams: z,
      weightParams: lw,
      weightZeros: lz,
      macs: c.macs,
      flops: c.flops,
      weightBytes: wb,
      activationBytes: ab,
    });
  }
  // A node holding subgraphs runs one of them once per execution (If: the costlier branch counts; Loop/Scan:
  // one iteration of the body).
  const graphCost = (gr: Graph, scope: string): { macs: number; flops: number } => {
    let macs = 0, flops = 0;
    for (const node of gr.nodes) {
      const c = nodeCosts.get(node) ?? { macs: 0, flops: 0 };
      macs += c.macs;
      flops += c.flops;
      let best = { macs: 0, flops: 0 };
      for (const [attr, a] of node.attrs) {
        if (a.kind !== 'graph') continue;
        const sc = `${scope}${node.name || node.opType}/${attr}/`;
        const sub = graphCost(a.value, sc);
        const rec = subCost(subCosts, sc);
        rec.macs = sub.macs;
        rec.flops = sub.flops;
        if (sub.macs > best.macs || (sub.macs === best.macs && sub.flops > best.flops)) best = sub;
      }
      macs += best.macs;
      flops += best.flops;
    }
    return { macs, flops };
  };
  const { macs, flops } = graphCost(g, '');
  let weightBytes = 0;
  for (const [name, w] of stored) if (w.source === name) weightBytes += Math.ceil((numel(w.tensor.dims) * dtypeBits(w.tensor.dtype)) / 8);
  return {
    params, zeroParams, sparsity: params ? zeroParams / params : 0,
    weightParams, weightZeros, weightSparsity: weightParams ? weightZeros / weightParams : 0,
    macs, flops, weightBytes, activationBytes, layers,
    subgraphs: [...subCosts.values()].map((c) => ({ ...c, scope: c.scope.replace(/\/$/, '') })),
  };
}

function subCost(m: Map<string, SubgraphCost>, scope: string): SubgraphCost {
  let c = m.get(scope);
  if (!c) m.set(scope, (c = { scope, params: 0, macs: 0, flops: 0 }));
  return c;
}
