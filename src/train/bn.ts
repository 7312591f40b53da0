/**
 * BatchNorm for training. Exporters fold BN into Conv; fine-tuning (and training from scratch) is steadier with
 * BN back: insertBatchNorm puts a BatchNormalization after every Conv (initialised as the identity from data
 * statistics, or fresh), decomposeBatchNormForTraining rewrites BN into batch-statistics ops for the training
 * graph (with running-statistics outputs), and foldBatchNorm folds the inserted BNs back into the Convs.
 */
import { readKeptChannels } from '../ir/kept-channels.js';
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import { GraphIndex } from '../ir/edit.js';
import { attrFloat, opsetVersion, type Model, type Node } from '../ir/graph.js';
import { floatTensor, numel, type Tensor } from '../ir/tensor.js';
import { Emitter } from '../autodiff/emitter.js';
import { runOnce } from '../runtime/session.js';
import { opDef } from '../ops/registry.js';

export const BN_PREFIX = 'shears_bn/';

function isConvWithConstWeight(model: Model, n: Node): boolean {
  // Conv is the layer this transform is about (BN follows convolutions).
  return n.opType === 'Conv' && n.domain === '' && model.graph.initializers.has(n.inputs[1] ?? '');
}

type ChannelStats = Map<string, { mean: Float64Array; variance: Float64Array }>;

/** Per-channel mean and variance of the outputs of `convs` (by node name) on a calibration batch. */
async function convOutputStats(model: Model, convs: Node[], calib: Record<string, Tensor>): Promise<ChannelStats> {
  const g = model.graph;
  const stats: ChannelStats = new Map();
  const probe: Model = { ...model, graph: { ...g, outputs: [...g.outputs, ...convs.map((c) => ({ name: c.outputs[0]! }))] } };
  const res = await runOnce(probe, calib);
  for (const c of convs) {
    const t = res[c.outputs[0]!]!;
    const [n, ch] = t.dims as [number, number];
    const sp = numel(t.dims.slice(2));
    const d = t.data as Float32Array;
    const mean = new Float64Array(ch);
    const variance = new Float64Array(ch);
    for (let k = 0; k < ch; k++) {
      let s = 0;
      let s2 = 0;
      for (let b = 0; b < n; b++) {
        const o = (b * ch + k) * sp;
        for (let i = 0; i < sp; i++) {
          const v = d[o + i]!;
          s += v;
          s2 += v * v;
        }
      }
      const cnt = n * sp;
      mean[k] = s / cnt;
      variance[k] = Math.max(s2 / cnt - (s / cnt) ** 2, 0);
    }
    stats.set(c.name, { mean, variance });
  }
  return stats;
}

/**
 * Which reference channel each channel of a (structurally pruned) conv came from: identity when the counts
 * match, else the indices the pruning surgery recorded (ir/kept-channels.ts; a repair that re-fits the biases does
 * not change them), else by equal bias values (surgery copies biases), when every match is unique; undefined
 * otherwise.
 */
function channelMap(model: Model, conv: Node, reference: Model, refConv: Node): Int32Array | undefined {
  const w = model.graph.initializers.get(conv.inputs[1]!)!;
  const rw = reference.graph.initializers.get(refConv.inputs[1] ?? '');
  if (!rw) return undefined;
  const ch = w.dims[0]!;
  if (rw.dims[0] === ch) return Int32Array.from({ length: ch }, (_, i) => i);
  const recorded = readKeptChannels(model)[conv.name];
  if (Array.isArray(recorded) && recorded.length === ch && recorded.every((j) => Number.isInteger(j) && j >= 0 && j < rw.dims[0]!)) return Int32Array.from(recorded);
  const b = conv.inputs[2] ? model.graph.initializers.get(conv.inputs[2]) : undefined;
  const rb = refConv.inputs[2] ? reference.graph.initializers.get(refConv.inputs[2]) : undefined;
  if (!b || !rb) return undefined;
  const bd = b.data as Float32Array;
  const rbd = rb.data as Float32Array;
  const map = new Int32Array(ch);
  for (let k = 0; k < ch; k++) {
    let found = -1;
    for (let j = 0; j < rbd.length; j++) {
      if (rbd[j] !== bd[k]) continue;
      if (found >= 0) return undefined;
      found = j;
    }
    if (found < 0) return undefined;
    map[k] = found;
  }
  return map;
}

/** What detectFoldedBatchNorm found: whether BatchNorm re-insertion restores what the exporter folded, and why. */
export type FoldedBatchNorm =
  | { folded: true; /** Convs that get a BatchNorm (constant weights). */ convs: number; /** Of them, those the reference's statistics reach. */ withStatistics: number }
  | { folded: false; reason: string };

/** Whether the model has BatchNormalization nodes (BN not folded into the convs). */
export function hasBatchNorm(model: Model): boolean {
  return model.graph.nodes.some((n) => n.opType === 'BatchNormalization');
}

/**
 * Whether the exporter folded BatchNorm into the Convs of `model`, so that re-inserting it (with `reference`'s
 * statistics, as insertBatchNorm does) gives back the network as it was trained: no BatchNormalization anywhere,
 * some Conv with a bias feeding an activation directly (the BN sat between them), and the statistics of at least
 * half of the Convs recoverable from `reference` (a Conv of the same name whose channels can be matched: see
 * channelMap).
 */
export function detectFoldedBatchNorm(model: Model, reference: Model): FoldedBatchNorm {
  const g = model.graph;
  if (hasBatchNorm(model)) return { folded: false, reason: 'the model has BatchNormalization nodes' };
  const convs = g.nodes.filter((n) => isConvWithConstWeight(model, n));
  if (!convs.length) return { folded: false, reason: 'the model has no Conv with constant weights' };
  const idx = new GraphIndex(g);
  const feedsActivation = (c: Node) => {
    const users = idx.consumersOf(c.outputs[0]!);
    return !!c.inputs[2] && g.initializers.has(c.inputs[2]) && users.length === 1 && opDef(users[0]!)?.activation === true;
  };
  if (!convs.some(feedsActivation)) return { folded: false, reason: 'no Conv with a bias feeds an activation directly' };
  const refConvs = new Map<string, Node>();
  for (const n of reference.graph.nodes) if (isConvWithConstWeight(reference, n)) refConvs.set(n.name, n);
  const withStatistics = convs.filter((c) => {
    const r = refConvs.get(c.name);
    return r !== undefined && channelMap(model, c, reference, r) !== undefined;
  }).length;
  if (withStatistics * 2 < convs.length) return { folded: false, reason: `the dense model's statistics match only ${withStatistics} of ${convs.length} convs` };
  return { folded: true, convs: convs.length, withStatistics };
}

export interface InsertBatchNormOptions {
  eps?: number;
  /**
   * Conv nodes (by name) left without BatchNorm: convs that had none in the network as trained (a detection
   * head's last convs).
   */
  skip?: ReadonlySet<string>;
  /**
   * The unpruned model (same node names): the new BNs take its conv outputs' statistics as scale and bias, so
   * the pruned convs' outputs are renormalised to the distribution the rest of the network was trained on (what
   * PyTorch's BN layers do when a pruned model is fine-tuned). Convs whose channels cannot be matched keep the
   * identity initialisation.
   */
  reference?: Model;
}

/**
 * Inserts BatchNormalization after every Conv with constant weights (in place). `calib` (a batch of inputs, feeds
 * by input name) sets the running statistics to the conv outputs' per-channel mean and variance, and scale =
 * sqrt(var + eps), bias = mean, so the model computes the same function as before (or, with a reference, the
 * reference's statistics); without calib BN starts fresh (scale 1, bias 0, mean 0, var 1), for training from
 * scratch. Returns the model and how many BNs took reference statistics.
 */
export async function insertBatchNorm(model: Model, calib?: Record<string, Tensor>, opts: InsertBatchNormOptions | number = {}): Promise<Model> {
  const o = typeof opts === 'number' ? { eps: opts } : opts;
  const eps = o.eps ?? 1e-5;
  const g = model.graph;
  const convs = g.nodes.filter((n) => isConvWithConstWeight(model, n) && !o.skip?.has(n.name));
  const stats = calib ? await convOutputStats(model, convs, calib) : undefined;
  let refStats: ChannelStats | undefined;
  const refConvs = new Map<string, Node>();
  if (calib && o.reference) {
    for (const n of o.reference.graph.nodes) if (isConvWithConstWeight(o.reference, n)) refConvs.set(n.name, n);
    refStats = await convOutputStats(o.reference, [...refConvs.values()], calib);
  }
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    nodes.push(n);
    if (!convs.includes(n)) continue;
    const w = g.initializers.get(n.inputs[1]!)!;
    const ch = w.dims[0]!;
    const y = n.outputs[0]!;
    const base = `${BN_PREFIX}${n.name}`;
    const pre = `${base}/conv_out`;
    n.outputs[0] = pre;
    const st = stats?.get(n.name);
    const mean = st ? Array.from(st.mean) : new Array<number>(ch).fill(0);
    const runMean = mean.slice();
    const variance = st ? Array.from(st.variance) : new Array<number>(ch).fill(1);
    let scale = st ? variance.map((v) => Math.sqrt(v + eps)) : new Array<number>(ch).fill(1);
    let bias = st ? mean : new Array<number>(ch).fill(0);
    const refNode = refConvs.get(n.name);
    const rs = refNode ? refStats?.get(n.name) : undefined;
    const map = refNode && rs && o.reference ? channelMap(model, n, o.reference, refNode) : undefined;
    if (rs && map) {
      scale = Array.from(map, (j) => Math.sqrt(rs.variance[j]! + eps));
      bias = Array.from(map, (j) => rs.mean[j]!);
    }
    // The conv bias is redundant before BN (batch statistics remove it): it moves into the running mean, so
    // training computes no gradient for it; foldBatchNorm recreates the bias. (After channelMap, which matches
    // channels by bias values.)
    const biasName = n.inputs[2];
    const convBias = biasName ? g.initializers.get(biasName) : undefined;
    if (biasName && convBias && convBias.dtype === DataType.FLOAT && g.nodes.every((o) => o === n || !o.inputs.includes(biasName))) {
      const bv = convBias.data as Float32Array;
      for (let k = 0; k < ch; k++) runMean[k]! -= bv[k]!;
      n.inputs.length = 2;
      g.initializers.delete(biasName);
    }
    g.initializers.set(`${base}/scale`, floatTensor([ch], scale));
    g.initializers.set(`${base}/bias`, floatTensor([ch], bias));
    g.initializers.set(`${base}/mean`, floatTensor([ch], runMean));
    g.initializers.set(`${base}/var`, floatTensor([ch], variance));
    nodes.push({
      name: base,
      opType: 'BatchNormalization',
      domain: '',
      inputs: [pre, `${base}/scale`, `${base}/bias`, `${base}/mean`, `${base}/var`],
      outputs: [y],
      attrs: new Map([['epsilon', { kind: 'float', value: eps }], ['momentum', { kind: 'float', value: 0.9 }]]),
    });
  }
  g.nodes = nodes;
  if (calib && o.reference) await recalibrateBatchNorm(model, calib);
  return model;
}

/**
 * Sets the running statistics of the inserted BNs to their batch statistics on `calib` with every earlier BN
 * already applied (layer by layer, as training-mode BN sees them): one run of the training-mode decomposition.
 */
export async function recalibrateBatchNorm(model: Model, calib: Record<string, Tensor>): Promise<void> {
  const probe = { ...model, graph: { ...model.graph, nodes: model.graph.nodes.map((n) => ({ ...n, attrs: new Map(n.attrs) })), initializers: new Map(model.graph.initializers) } };
  const bns = probe.graph.nodes.filter((n) => n.name.startsWith(BN_PREFIX) && n.opType === 'BatchNormalization');
  if (!bns.length) return;
  for (const n of bns) n.attrs.set('momentum', { kind: 'float', value: 0 });
  const { probeTypes } = await import('../autodiff/shapes.js');
  const shapes = (await probeTypes(probe, Object.fromEntries(Object.entries(calib).map(([k, t]) => [k, t.dims])))).shapes;
  const state = decomposeBatchNormForTraining(probe, shapes);
  probe.graph.outputs = state.map((st) => ({ name: st.output }));
  const res = await runOnce(probe, calib);
  for (const st of state) {
    const t = model.graph.initializers.get(st.input)!;
    model.graph.initializers.set(st.input, { ...t, data: Float32Array.from(res[st.output]!.data as Float32Array) });
  }
}

/**
 * Rewrites every inference BatchNormalization of `model` (in place) for training: normalisation with the batch
 * statistics, y = (x - mean_b) / sqrt(var_b + eps) * scale + bias, and new running statistics
 * running * momentum + batch * (1 - momentum) (unbiased variance, as PyTorch). Returns the state pairs for
 * buildTrainingGraph.
 *
 * From opset 14 the node becomes onnxruntime's own BatchNormalization(training_mode=1) with momentum 0, whose
 * second and third outputs are then the batch mean and (biased) variance; its gradient rule
 * (ops/grad/reduce.ts) reads them. That is one kernel forward and a closed-form backward, instead of about
 * twenty full-tensor ops for the decomposed form, which older opsets still get.
 */
export function decomposeBatchNormForTraining(model: Model, shapes: ReadonlyMap<string, number[]>): { input: string; output: string }[] {
  const g = model.graph;
  const native = opsetVersion(model) >= 14;
  const taken = new Set<string>([...g.initializers.keys(), ...g.inputs.map((i) => i.name)]);
  for (const n of g.nodes) {
    taken.add(n.name);
    for (const o of n.outputs) taken.add(o);
  }
  const state: { input: string; output: string }[] = [];
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    if (n.opType !== 'BatchNormalization' || n.domain !== '') {
      nodes.push(n);
      continue;
    }
    const [x, scale, bias, rm, rv] = n.inputs as [string, string, string, string, string];
    const s = g.initializers.get(scale);
    if (!s || !g.initializers.has(rm) || !g.initializers.has(rv)) throw new ShearsError('BatchNormalization without constant parameters', { node: n.name });
    const c = s.dims[0]!;
    const eps = attrFloat(n, 'epsilon', 1e-5);
    const mom = attrFloat(n, 'momentum', 0.9);
    const e = new Emitter(s.dtype, taken, `${n.name}/train/`);
    const xShape = shapes.get(x);
    if (!xShape) throw new ShearsError('BatchNormalization input has no known shape', { node: n.name });
    const count = numel(xShape) / c;
    let mean: string;
    let variance: string;
    if (native) {
      mean = e.name('batch_mean');
      variance = e.name('batch_var');
      e.nodes.push({
        name: n.name, opType: 'BatchNormalization', domain: '', inputs: [x, scale, bias, rm, rv], outputs: [n.outputs[0]!, mean, variance],
        attrs: new Map([['epsilon', { kind: 'float', value: eps }], ['momentum', { kind: 'float', value: 0 }], ['training_mode', { kind: 'int', value: 1 }]]),
      });
    } else {
      const axes = e.constI([0, ...xShape.slice(2).map((_, i) => i + 2)]);
      const bshape = e.constI([1, c, ...xShape.slice(2).map(() => 1)]);
      const meanB = e.op('Mul', [e.op('ReduceSum', [x, axes], { keepdims: 1 }), e.constF(1 / count)]);
      const xc = e.op('Sub', [x, meanB]);
      const varB = e.op('Mul', [e.op('ReduceSum', [e.op('Mul', [xc, xc]), axes], { keepdims: 1 }), e.constF(1 / count)]);
      const inv = e.op('Reciprocal', [e.op('Sqrt', [e.op('Add', [varB, e.constF(eps)])])]);
      const a = e.op('Mul', [inv, e.op('Reshape', [scale, bshape])]);
      const yb = e.op('Mul', [xc, a]);
      e.nodes.push({ name: `${n.name}/train/out`, opType: 'Add', domain: '', inputs: [yb, e.op('Reshape', [bias, bshape])], outputs: [n.outputs[0]!], attrs: new Map() });
      const cshape = e.constI([c]);
      mean = e.op('Reshape', [meanB, cshape]);
      variance = e.op('Reshape', [varB, cshape]);
    }
    // Running statistics (not differentiated: not on the loss path).
    const newMean = e.op('Add', [e.op('Mul', [rm, e.constF(mom)]), e.op('Mul', [mean, e.constF(1 - mom)])]);
    const unbiased = e.op('Mul', [variance, e.constF(count / Math.max(1, count - 1))]);
    const newVar = e.op('Add', [e.op('Mul', [rv, e.constF(mom)]), e.op('Mul', [unbiased, e.constF(1 - mom)])]);
    nodes.push(...e.nodes);
    for (const [k, v] of e.initializers) g.initializers.set(k, v);
    state.push({ input: rm, output: newMean }, { input: rv, output: newVar });
  }
  g.nodes = nodes;
  return state;
}

/** Folds the BatchNormalizations insertBatchNorm added back into their Convs (in place). Returns the count. */
export function foldBatchNorm(model: Model): number {
  const g = model.graph;
  const idx = new GraphIndex(g);
  let folded = 0;
  const drop = new Set<Node>();
  for (const bn of g.nodes) {
    if (!bn.name.startsWith(BN_PREFIX) || bn.opType !== 'BatchNormalization') continue;
    const conv = idx.producer.get(bn.inputs[0]!);
    if (!conv || idx.consumersOf(bn.inputs[0]!).length !== 1) continue;
    const [, scale, bias, rm, rv] = bn.inputs as [string, string, string, string, string];
    const get = (k: string) => g.initializers.get(k)!.data as Float32Array;
    const eps = attrFloat(bn, 'epsilon', 1e-5);
    const w = g.initializers.get(conv.inputs[1]!)!;
    const ch = w.dims[0]!;
    const per = numel(w.dims) / ch;
    const f = new Float64Array(ch);
    for (let k = 0; k < ch; k++) f[k] = get(scale)[k]! / Math.sqrt(get(rv)[k]! + eps);
    const wd = new Float32Array(numel(w.dims));
    const w0 = w.data as Float32Array;
    for (let k = 0; k < ch; k++) for (let i = 0; i < per; i++) wd[k * per + i] = w0[k * per + i]! * f[k]!;
    const b0 = conv.inputs[2] ? (g.initializers.get(conv.inputs[2])!.data as Float32Array) : new Float32Array(ch);
    const bd = new Float32Array(ch);
    for (let k = 0; k < ch; k++) bd[k] = (b0[k]! - get(rm)[k]!) * f[k]! + get(bias)[k]!;
    g.initializers.set(conv.inputs[1]!, { ...w, data: wd });
    const bName = conv.inputs[2] || `${conv.name}_bias`;
    g.initializers.set(bName, { dtype: DataType.FLOAT, dims: [ch], data: bd });
    conv.inputs[2] = bName;
    conv.outputs[0] = bn.outputs[0]!;
    for (const k of [scale, bias, rm, rv]) g.initializers.delete(k);
    drop.add(bn);
    folded++;
  }
  g.nodes = g.nodes.filter((n) => !drop.has(n));
  return folded;
}
