/**
 * Int8 QDQ plans and their application: which tensors get QuantizeLinear/DequantizeLinear pairs, from the op rules
 * (OpDef.quant), and the rewrite of the graph with calibrated ranges (quantizeStatic, static.ts, runs both):
 * - activations: Q -> DQ with a per-tensor scale/zero point (uint8 asymmetric by default, the form onnxruntime's
 *   x86 CPU provider fuses into QLinearConv/QLinearMatMul/QGemm/QLinearAdd...);
 * - weights of layer ops: int8 initializers, symmetric, per output channel (axis from the op's weight spec),
 *   read through a DequantizeLinear;
 * - biases: int32 initializers with scale s_x * s_w and zero point 0, through a DequantizeLinear;
 * - 'clamp' ops (Relu, Clip) after a quantized op: the Q goes after the clamp, so onnxruntime folds the clamp
 *   into the integer kernel; 'move' ops (MaxPool, Reshape, ...) share their input's scale.
 * Nodes matched by `exclude`, or chosen by the per-layer sensitivity search, stay float.
 */
import { inferShapes } from '../analysis/shapes.js';
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import { GraphIndex, removeDeadNodes, sortGraph, uniqueName } from '../ir/edit.js';
import type { Model, Node } from '../ir/graph.js';
import { opsetVersion } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { opDef, weightSpec } from '../ops/registry.js';
import type { QuantRule } from '../ops/types.js';
import type { CalibrationOptions, TensorRange } from './calibrate.js';
import { activationParams, defaultReduceRange, minWeightScales, quantizeBias, quantizeWeight, qtypeDtype, scalarTensor, type QParams, type QType } from './math.js';

export interface StaticQuantOptions extends CalibrationOptions {
  /** Nodes whose name matches stay float. */
  exclude?: RegExp;
  /** Node names that stay float (in addition to `exclude`). */
  excludeNodes?: readonly string[];
  /** One weight scale per tensor instead of per output channel. */
  perTensor?: boolean;
  /** Activation type: 'uint8' (asymmetric; fused by onnxruntime on x86, default) or 'int8' (symmetric, TensorRT). */
  activations?: QType;
  /**
   * 7-bit weights. Default: true with uint8 activations, which onnxruntime's x86 U8S8 kernels get wrong with
   * 8-bit weights on CPUs without VNNI (see defaultReduceRange); false keeps 8 bits for VNNI x86 and ARM targets.
   */
  reduceRange?: boolean;
  /** Store biases as int32 (default true; TensorRT exports keep them float). */
  int32Bias?: boolean;
  /**
   * Keep this many of the most sensitive weighted nodes in float, measured leave-one-out (all but one node
   * quantized) against the float model's outputs on the first calibration batch.
   */
  autoExclude?: number;
  /**
   * How weights are stored: 'int8' (int8 initializer -> DequantizeLinear, default: 4x smaller) or 'float-qdq'
   * (the float weight -> QuantizeLinear -> DequantizeLinear, the explicit-quantization form TensorRT reads).
   */
  weightFormat?: 'int8' | 'float-qdq';
}

/** What one activation tensor is quantized with: the calibrated range of `rangeOf` (itself, or a shared input). */
interface ActPlan {
  rangeOf: string;
}

export interface QdqPlan {
  /** Compute nodes quantized (by name). */
  nodes: Node[];
  /** Activation tensors wrapped in Q/DQ. */
  tensors: Map<string, ActPlan>;
  /** Constant inputs quantized: node, input index, per-channel axis (undefined: per tensor), weight or constant operand. */
  weights: { node: Node; input: number; axis: number | undefined; tensor: Tensor }[];
  /** int32 biases: node, bias input, the activation input whose scale multiplies the weight's. */
  biases: { node: Node; input: number; act: string; weightInput: number; tensor: Tensor }[];
  /** Nodes that would be quantized but were kept float, with the reason. */
  skipped: { node: string; op: string; reason: string }[];
}

/** Whether weights get 7 bits: as asked, else the default for the activation type. */
export function reduceRangeOf(opts: StaticQuantOptions): boolean {
  return opts.reduceRange ?? defaultReduceRange(opts.activations ?? 'uint8');
}

function isExcluded(node: Node, opts: StaticQuantOptions): boolean {
  return (opts.exclude?.test(node.name) ?? false) || (opts.excludeNodes?.includes(node.name) ?? false);
}

function ruleInputs(rule: QuantRule, node: Node): number[] {
  const ins = rule.inputs === 'all' ? node.inputs.map((_, i) => i) : [...(rule.inputs ?? [0])];
  return ins.filter((i) => (node.inputs[i] ?? '') !== '');
}

/** Builds the QDQ plan for a model (no calibration, no edits). */
export function planQdq(model: Model, opts: StaticQuantOptions = {}): QdqPlan {
  const g = model.graph;
  sortGraph(g);
  const info = inferShapes(model);
  const idx = new GraphIndex(g);
  const isFloat = (name: string) => info.types.get(name)?.elemType === DataType.FLOAT;
  const constant = (name: string) => info.constants.get(name);
  const plan: QdqPlan = { nodes: [], tensors: new Map(), weights: [], biases: [], skipped: [] };
  const addAct = (name: string) => {
    if (!plan.tensors.has(name)) plan.tensors.set(name, { rangeOf: name });
  };
  const graphOutputs = new Set(g.outputs.map((o) => o.name));
  for (const node of g.nodes) {
    const def = opDef(node);
    const rule = def?.quant;
    if (!rule || rule.kind === 'clamp') continue;
    if (rule.kind === 'move') {
      // every float output (Split has several) shares the quantized input's scale and zero point
      const src = plan.tensors.get(node.inputs[0] ?? '');
      if (!src || isExcluded(node, opts)) continue;
      for (const y of node.outputs) if (y && isFloat(y)) plan.tensors.set(y, { rangeOf: src.rangeOf });
      continue;
    }
    if (isExcluded(node, opts)) {
      plan.skipped.push({ node: node.name, op: node.opType, reason: 'excluded' });
      continue;
    }
    const ins = ruleInputs(rule, node);
    const y = node.outputs[0] ?? '';
    if (!y || !isFloat(y) || ins.some((i) => !isFloat(node.inputs[i]!))) {
      plan.skipped.push({ node: node.name, op: node.opType, reason: 'inputs or output are not float32' });
      continue;
    }
    const wDims = constant(node.inputs[weightSpec(node)?.input ?? -1] ?? '')?.dims;
    const spec = weightSpec(node, wDims);
    const acts: string[] = [];
    const consts: { input: number; axis: number | undefined; tensor: Tensor }[] = [];
    for (const i of ins) {
      const name = node.inputs[i]!;
      const c = constant(name);
      if (c) consts.push({ input: i, axis: spec && spec.input === i && !opts.perTensor ? spec.outAxis : undefined, tensor: c });
      else acts.push(name);
    }
    if (acts.length === 0) {
      plan.skipped.push({ node: node.name, op: node.opType, reason: 'no activation input (constant subgraph)' });
      continue;
    }
    plan.nodes.push(node);
    for (const a of acts) addAct(a);
    plan.weights.push(...consts.map((c) => ({ node, ...c })));
    // bias: int32 when the weight is a quantized constant and the bias a 1-D constant of the output channels
    const b = rule.bias;
    const bName = b !== undefined ? node.inputs[b] ?? '' : '';
    const bT = bName ? constant(bName) : undefined;
    const wq = consts.find((c) => c.input === spec?.input);
    if (bT && wq && spec && b !== undefined && opts.int32Bias !== false && bT.dims.length === 1 && bT.dims[0] === wq.tensor.dims[spec.outAxis]) {
      plan.biases.push({ node, input: b, act: node.inputs[0]!, weightInput: wq.input, tensor: bT });
    }
    // output: through a single clamp consumer when there is one
    const cons = idx.consumersOf(y);
    const c0 = cons[0];
    const clampRule = c0 ? opDef(c0)?.quant : undefined;
    if (cons.length === 1 && c0 && clampRule?.kind === 'clamp' && !graphOutputs.has(y) && !isExcluded(c0, opts) && isFloat(c0.outputs[0] ?? '')) {
      addAct(c0.outputs[0]!);
    } else addAct(y);
  }
  return plan;
}

interface Applied {
  params: Map<string, QParams>;
}

/** Rewrites the graph per the plan with the calibrated ranges. */
export function applyQdq(model: Model, plan: QdqPlan, ranges: Map<string, TensorRange>, opts: StaticQuantOptions = {}): Applied {
  const g = model.graph;
  const actType = opts.activations ?? 'uint8';
  const reduceRange = reduceRangeOf(opts);
  const perChannel = !opts.perTensor;
  if (opsetVersion(model) < (perChannel ? 13 : 10)) {
    throw new ShearsError(`int8 QDQ needs opset >= ${perChannel ? 13 : 10} (the model has opset ${opsetVersion(model)})${perChannel ? '; use --per-tensor or re-export with a newer opset' : ''}`);
  }
  const params = new Map<string, QParams>();
  const paramsOf = (t: string): QParams => {
    const p = params.get(t);
    if (p) return p;
    const src = plan.tensors.get(t)?.rangeOf ?? t;
    const r = ranges.get(src);
    if (!r) throw new Error(`no calibrated range for '${src}'`);
    const q = activationParams(r.lo, r.hi, actType);
    params.set(t, q);
    return q;
  };
  const newNodes: Node[] = [];
  const mk = (opType: string, inputs: string[], outputs: string[], base: string, attrs: Node['attrs'] = new Map()): Node => {
    const n: Node = { name: uniqueName(g, base), opType, domain: '', inputs, outputs, attrs };
    g.nodes.push(n);
    newNodes.push(n);
    return n;
  };
  const init = (base: string, t: Tensor): string => {
    const name = uniqueName(g, base);
    g.initializers.set(name, t);
    return name;
  };
  // weights and constant operands
  const weightScales = new Map<string, Float32Array>();
  for (const w of plan.weights) {
    const wname = w.node.inputs[w.input]!;
    const key = `${w.node.name}\u0000${w.input}`;
    const spec = weightSpec(w.node, w.tensor.dims);
    const isWeight = spec?.input === w.input;
    let dq: string;
    if (isWeight) {
      const bias = plan.biases.find((b) => b.node === w.node && b.weightInput === w.input);
      let minScales = bias ? minWeightScales(bias.tensor, paramsOf(bias.act).scale) : undefined;
      if (minScales && w.axis === undefined) minScales = Float32Array.of(Math.max(0, ...minScales));
      const wq = quantizeWeight(w.tensor, w.axis, reduceRange, minScales);
      weightScales.set(key, wq.scales);
      const per = wq.axis !== undefined;
      const sn = init(`${wname}_scale`, per ? { dtype: DataType.FLOAT, dims: [wq.scales.length], data: wq.scales } : scalarTensor(DataType.FLOAT, wq.scales[0]!));
      const zn = init(`${wname}_zero_point`, per ? { dtype: DataType.INT8, dims: [wq.scales.length], data: new Int8Array(wq.scales.length) } : scalarTensor(DataType.INT8, 0));
      const axisAttr = (): Node['attrs'] => (per ? new Map([['axis', { kind: 'int', value: wq.axis! }]]) : new Map());
      let qn: string;
      if (opts.weightFormat === 'float-qdq') {
        const fw = init(`${wname}_float`, w.tensor);
        qn = uniqueName(g, `${wname}_QuantizeLinear_Output`);
        mk('QuantizeLinear', [fw, sn, zn], [qn], `${wname}_QuantizeLinear`, axisAttr());
      } else qn = init(`${wname}_quantized`, wq.q);
      dq = uniqueName(g, `${wname}_DequantizeLinear_Output`);
      mk('DequantizeLinear', [qn, sn, zn], [dq], `${wname}_DequantizeLinear`, axisAttr());
    } else {
      // a constant operand (Add/Mul with a constant): per tensor, with the activation type
      const x = w.tensor.data as Float32Array;
      let lo = 0, hi = 0;
      for (const v of x) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const p = activationParams(lo, hi, actType);
      const q = actType === 'uint8' ? new Uint8Array(x.length) : new Int8Array(x.length);
      for (let i = 0; i < x.length; i++) q[i] = Math.min(actType === 'uint8' ? 255 : 127, Math.max(actType === 'uint8' ? 0 : -128, Math.round(x[i]! / p.scale) + p.zeroPoint));
      const qn = init(`${wname}_quantized`, { dtype: qtypeDtype(actType), dims: [...w.tensor.dims], data: q });
      const sn = init(`${wname}_scale`, scalarTensor(DataType.FLOAT, p.scale));
      const zn = init(`${wname}_zero_point`, scalarTensor(qtypeDtype(actType), p.zeroPoint));
      dq = uniqueName(g, `${wname}_DequantizeLinear_Output`);
      mk('DequantizeLinear', [qn, sn, zn], [dq], `${wname}_DequantizeLinear`);
    }
    w.node.inputs[w.input] = dq;
  }
  // biases
  for (const b of plan.biases) {
    const ws = weightScales.get(`${b.node.name}\u0000${b.weightInput}`);
    if (!ws) continue;
    const bname = b.node.inputs[b.input]!;
    const sx = paramsOf(b.act).scale;
    const bq = quantizeBias(b.tensor, sx, ws);
    const n = bq.scales.length;
    const qn = init(`${bname}_quantized`, bq.q);
    const sn = init(`${bname}_scale`, { dtype: DataType.FLOAT, dims: [n], data: bq.scales });
    const zn = init(`${bname}_zero_point`, { dtype: DataType.INT32, dims: [n], data: new Int32Array(n) });
    const dq = uniqueName(g, `${bname}_DequantizeLinear_Output`);
    mk('DequantizeLinear', [qn, sn, zn], [dq], `${bname}_DequantizeLinear`, new Map([['axis', { kind: 'int', value: 0 }]]));
    b.node.inputs[b.input] = dq;
  }
  // activations
  const idx = new GraphIndex(g);
  const graphOutputs = new Set(g.outputs.map((o) => o.name));
  for (const t of plan.tensors.keys()) {
    const p = paramsOf(t);
    const qt = qtypeDtype(p.type);
    const sn = init(`${t}_scale`, scalarTensor(DataType.FLOAT, p.scale));
    const zn = init(`${t}_zero_point`, scalarTensor(qt, p.zeroPoint));
    const qOut = uniqueName(g, `${t}_QuantizeLinear_Output`);
    if (graphOutputs.has(t)) {
      // keep the graph output's name on the DequantizeLinear; the producer writes a renamed float tensor
      const producer = idx.producer.get(t);
      if (!producer) continue;
      const f = uniqueName(g, `${t}_float`);
      producer.outputs[producer.outputs.indexOf(t)] = f;
      mk('QuantizeLinear', [f, sn, zn], [qOut], `${t}_QuantizeLinear`);
      // other readers of t now read the dequantized tensor, which keeps the name
      mk('DequantizeLinear', [qOut, sn, zn], [t], `${t}_DequantizeLinear`);
      continue;
    }
    const dq = uniqueName(g, `${t}_DequantizeLinear_Output`);
    const consumers = idx.consumersOf(t);
    mk('QuantizeLinear', [t, sn, zn], [qOut], `${t}_QuantizeLinear`);
    mk('DequantizeLinear', [qOut, sn, zn], [dq], `${t}_DequantizeLinear`);
    for (const c of consumers) for (let i = 0; i < c.inputs.length; i++) if (c.inputs[i] === t) c.inputs[i] = dq;
  }
  sortGraph(g);
  removeDeadNodes(g);
  return { params };
}
