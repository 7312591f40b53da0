/**
 * Calibration statistics of layers, computed in onnxruntime: a generated graph runs the pruned model and the dense
 * model side by side on the same batch and, for each layer asked, reduces the layer's input patches P (from the
 * pruned model) and outputs into per-batch sums: H = P P^T, C = P Yd^T, sums and sums of squares. JavaScript only
 * adds the per-batch results up (in float64).
 */
import { Emitter } from '../autodiff/emitter.js';
import type { Dataset } from '../data/dataset.js';
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import { removeDeadNodes } from '../ir/edit.js';
import type { Graph, Model, Node } from '../ir/graph.js';
import { opsetVersion } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import type { LinearContext, LinearForm, LinearRule } from '../ops/types.js';
import { createSession } from '../runtime/session.js';

export const DENSE_PREFIX = 'dense/';

/** A layer of the pruned model and its counterpart in the dense model. */
export interface LayerPair {
  node: Node;
  dense: Node;
  rule: LinearRule;
  form: LinearForm;
  denseForm: LinearForm;
  ctx: LinearContext;
  denseCtx: LinearContext;
}

/** What to collect for a layer. */
export interface StatsWanted {
  /** H = P P^T and the patch sums (needed by lsq, obs, wanda). */
  hessian?: boolean;
  /** C = P Yd^T and the dense output sums (lsq, obs). */
  cross?: boolean;
  /** Per-channel sums and sums of squares of the pruned and dense outputs (stats correction). */
  moments?: boolean;
}

/** Accumulated statistics of one layer (float64), per group g. */
export interface LayerStats {
  /** Number of patch columns M summed (batch x output positions). */
  count: number;
  /** [G, K, K] */
  h?: Float64Array;
  /** [G, K] sums of patches. */
  sp?: Float64Array;
  /** [G, K, Cd/G] */
  c?: Float64Array;
  /** [G, Cd/G] sums and sums of squares of the dense outputs. */
  syd?: Float64Array;
  qyd?: Float64Array;
  /** [G, Cp/G] of the pruned outputs. */
  syp?: Float64Array;
  qyp?: Float64Array;
}

export function linearContext(model: Model, node: Node): LinearContext {
  const g = model.graph;
  return {
    node,
    opset: opsetVersion(model, node.domain),
    inShape: () => undefined,
    outShape: () => undefined,
    constant: (i) => (node.inputs[i] ? g.initializers.get(node.inputs[i]!) : undefined),
  };
}

function renameDense(dense: Graph, inputMap: Map<string, string>): { nodes: Node[]; inits: Map<string, Tensor> } {
  const rn = (v: string) => (v === '' ? '' : (inputMap.get(v) ?? `${DENSE_PREFIX}${v}`));
  const nodes = dense.nodes.map((n) => {
    if (n.attrs.size && [...n.attrs.values()].some((a) => a.kind === 'graph' || a.kind === 'graphs')) {
      throw new ShearsError('repair does not support models with subgraphs (If/Loop/Scan) yet', { node: n.name });
    }
    return { ...n, name: `${DENSE_PREFIX}${n.name}`, inputs: n.inputs.map(rn), outputs: n.outputs.map(rn) };
  });
  const inits = new Map<string, Tensor>();
  for (const [k, t] of dense.initializers) inits.set(rn(k), t);
  return { nodes, inits };
}

interface Outputs {
  h?: string; sp?: string; c?: string; syd?: string; qyd?: string; syp?: string; qyp?: string; shape: string;
}

/**
 * Builds the statistics model for some layers of `pruned` (with `dense` alongside). The data input of both models
 * must be the same single input.
 */
export function buildStatsModel(pruned: Model, dense: Model, layers: LayerPair[], want: StatsWanted): { model: Model; outputs: Outputs[] } {
  const pg = pruned.graph;
  const inits = pg.initializers;
  const pin = pg.inputs.filter((i) => !inits.has(i.name));
  const din = dense.graph.inputs.filter((i) => !dense.graph.initializers.has(i.name));
  if (pin.length !== 1 || din.length !== 1) throw new ShearsError('repair needs models with exactly one data input');
  const d = renameDense(dense.graph, new Map([[din[0]!.name, pin[0]!.name]]));
  const taken = new Set<string>([...inits.keys(), ...d.inits.keys()]);
  for (const n of [...pg.nodes, ...d.nodes]) for (const o of n.outputs) taken.add(o);
  const e = new Emitter(DataType.FLOAT, taken, 'repair/');
  const opset = opsetVersion(pruned);
  const reduceSum = (x: string, axis: number) => (opset >= 13 ? e.op('ReduceSum', [x, e.constI([axis])], { keepdims: 0 }) : e.op('ReduceSum', [x], { axes: [axis], keepdims: 0 }));
  const outputs: Outputs[] = [];
  for (const L of layers) {
    const o: Outputs = { shape: '' };
    const p = L.rule.patches(L.ctx, L.form, e, L.node.inputs[0]!);
    o.shape = e.op('Shape', [p]);
    if (want.hessian || want.cross) {
      o.h = e.op('MatMul', [p, e.op('Transpose', [p], { perm: [0, 2, 1] })]);
      o.sp = reduceSum(p, 2);
    }
    if (want.cross || want.moments) {
      const yd = L.rule.outputs(L.denseCtx, L.denseForm, e, `${DENSE_PREFIX}${L.dense.outputs[0]}`);
      if (want.cross) o.c = e.op('MatMul', [p, e.op('Transpose', [yd], { perm: [0, 2, 1] })]);
      o.syd = reduceSum(yd, 2);
      if (want.moments) o.qyd = reduceSum(e.op('Mul', [yd, yd]), 2);
    }
    if (want.moments) {
      const yp = L.rule.outputs(L.ctx, L.form, e, L.node.outputs[0]!);
      o.syp = reduceSum(yp, 2);
      o.qyp = reduceSum(e.op('Mul', [yp, yp]), 2);
    }
    outputs.push(o);
  }
  const graph: Graph = {
    name: 'repair_stats',
    nodes: [...pg.nodes, ...d.nodes, ...e.nodes],
    inputs: pin.map((v) => ({ ...v })),
    outputs: outputs.flatMap((o) => Object.values(o).filter((v): v is string => typeof v === 'string')).map((name) => ({ name })),
    initializers: new Map([...inits, ...d.inits, ...e.initializers]),
    valueInfo: new Map(),
  };
  removeDeadNodes(graph);
  const model: Model = { ...pruned, graph, metadata: new Map(), functions: [...pruned.functions] };
  return { model, outputs };
}

function addInto(acc: Float64Array | undefined, t: Tensor | undefined): Float64Array | undefined {
  if (!t) return acc;
  const src = t.data as Float32Array;
  const out = acc ?? new Float64Array(src.length);
  for (let i = 0; i < src.length; i++) out[i]! += src[i]!;
  return out;
}

export interface CollectOptions {
  batchSize?: number;
  threads?: number;
}

/** Runs the calibration set through the statistics model and sums the statistics per layer. */
export async function collectStats(pruned: Model, dense: Model, layers: LayerPair[], want: StatsWanted, calib: Dataset, opts: CollectOptions = {}): Promise<LayerStats[]> {
  const { model, outputs } = buildStatsModel(pruned, dense, layers, want);
  const runner = await createSession(model, opts.threads ? { threads: opts.threads } : {});
  const inputName = model.graph.inputs[0]!.name;
  const stats: LayerStats[] = layers.map(() => ({ count: 0 }));
  try {
    for await (const batch of calib.batches(opts.batchSize ?? 64)) {
      const res = await runner.run({ [inputName]: batch.x });
      outputs.forEach((o, i) => {
        const s = stats[i]!;
        const shp = res[o.shape]!.data as BigInt64Array;
        s.count += Number(shp[2]);
        if (o.h) s.h = addInto(s.h, res[o.h]);
        if (o.sp) s.sp = addInto(s.sp, res[o.sp]);
        if (o.c) s.c = addInto(s.c, res[o.c]);
        if (o.syd) s.syd = addInto(s.syd, res[o.syd]);
        if (o.qyd) s.qyd = addInto(s.qyd, res[o.qyd]);
        if (o.syp) s.syp = addInto(s.syp, res[o.syp]);
        if (o.qyp) s.qyp = addInto(s.qyp, res[o.qyp]);
      });
    }
  } finally {
    await runner.release();
  }
  return stats;
}
