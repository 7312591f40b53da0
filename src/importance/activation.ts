/**
 * Calibration statistics for activation-aware importance (Wanda-style, per unit): for every layer with a linear
 * rule (Conv, Gemm, MatMul with a constant weight; ops/linear.ts), the mean square of each row of its input
 * patches, i.e. of each input feature (x kernel position) over every calibration sample and position. The
 * reductions run in onnxruntime (ReduceSumSquare nodes added to the model), so only [groups, K] vectors per
 * layer and batch come back to JavaScript, whatever the activations' size ([N, T, C] token streams included).
 */
import { ShearsError } from '../errors.js';
import { Emitter } from '../autodiff/emitter.js';
import type { Dataset } from '../data/dataset.js';
import { FeedState, planInputs } from '../data/feeds.js';
import { DataType } from '../ir/dtype.js';
import type { Model, Node } from '../ir/graph.js';
import { opsetVersion } from '../ir/graph.js';
import { batchSizeFor, runBatchSize } from '../metrics/evaluate.js';
import { opDef, weightSpec } from '../ops/registry.js';
import type { LinearContext, LinearForm } from '../ops/types.js';
import { createSession } from '../runtime/session.js';

/** One layer's input statistics. */
export interface LayerActivation {
  node: string;
  /** The weight's reduction axis (its input channels: Conv W axis 1, MatMul B axis 0, Gemm B axis 1 with transB). */
  inAxis: number;
  form: Pick<LinearForm, 'groups' | 'k' | 'outPerGroup' | 'kernel' | 'weightIndex'>;
  /** [groups * k]: mean over calibration columns (samples x positions) of the squared patch entries. */
  meanSquare: Float64Array;
}

/** Activation statistics by weight (initializer) name; a weight used by several layers has one entry per layer. */
export interface ActivationStats {
  layers: Map<string, LayerActivation[]>;
  /** Calibration samples used. */
  samples: number;
}

export interface ActivationOptions {
  /** Batch size for the calibration runs (default 32). */
  batchSize?: number;
  threads?: number;
  /** Only layers whose weight is in this set (default: every layer with a linear rule and a float weight). */
  weights?: ReadonlySet<string>;
}

/**
 * Mean squares of every selected layer's input features over the calibration data (`data`: a data set for the
 * model's data input, with feeds for its other inputs where it has any). Throws when no layer is selected.
 */
export async function activationStats(model: Model, data: Dataset, opts: ActivationOptions = {}): Promise<ActivationStats> {
  const g = model.graph;
  const e = new Emitter(DataType.FLOAT, new Set([...g.nodes.flatMap((n) => n.outputs), ...g.initializers.keys(), ...g.inputs.map((i) => i.name)]), 'shears_act/');
  const opset = opsetVersion(model);
  const wanted: { weight: string; node: Node; inAxis: number; form: LinearForm; out: string }[] = [];
  for (const node of g.nodes) {
    const rule = opDef(node)?.linear;
    const wname = node.inputs[1];
    if (!rule || !wname || (opts.weights && !opts.weights.has(wname))) continue;
    const w = g.initializers.get(wname);
    if (!w || w.dtype !== DataType.FLOAT) continue;
    const ws = weightSpec(node, w.dims);
    if (!ws) continue;
    const ctx: LinearContext = { node, opset: opsetVersion(model, node.domain), inShape: () => undefined, outShape: () => undefined, constant: (i) => (node.inputs[i] ? g.initializers.get(node.inputs[i]!) : undefined) };
    const form = rule.form(ctx);
    if (typeof form === 'string') continue;
    const p = rule.patches(ctx, form, e, node.inputs[0]!);
    // [G, K, M] -> per-row mean square [G, K] (ReduceMean of the square: M differs between layers)
    const sq = e.op('Mul', [p, p]);
    const out = opset >= 18 ? e.op('ReduceMean', [sq, e.constI([2])], { keepdims: 0 }) : e.op('ReduceMean', [sq], { axes: [2], keepdims: 0 });
    wanted.push({ weight: wname, node, inAxis: ws.inAxis, form, out });
  }
  if (wanted.length === 0) throw new ShearsError('activation importance: no layer with a constant float weight (Conv, Gemm, MatMul) reads a prunable channel');
  const plan = planInputs(model, data.feeds);
  const input = plan.data;
  const ds = data.sampleShape ? data : data.forInput(input.type?.shape ?? []);
  const stat: Model = {
    ...model,
    graph: {
      ...g,
      nodes: [...g.nodes, ...e.nodes],
      initializers: new Map([...g.initializers, ...e.initializers]),
      outputs: [...wanted.map((w) => ({ name: w.out })), ...plan.carry.map(([o]) => ({ name: o }))],
    },
  };
  const runner = await createSession(stat, opts.threads ? { threads: opts.threads } : {});
  const sums = wanted.map((w) => new Float64Array(w.form.groups * w.form.k));
  let samples = 0;
  try {
    const fixed = plan.carry.length ? runBatchSize(plan, 1) : batchSizeFor(input, 0);
    const state = new FeedState(plan);
    for await (const b of ds.batches(fixed || (opts.batchSize ?? 32))) {
      if (fixed && b.x.dims[0] !== fixed) continue;
      const n = b.x.dims[0]!;
      const res = await runner.run(state.feeds(b.x, b.feeds), [...wanted.map((w) => w.out), ...state.carriedOutputs]);
      state.update(res);
      wanted.forEach((w, i) => {
        const src = res[w.out]!.data as Float32Array;
        const acc = sums[i]!;
        // batches weigh by their sample count (every sample has the same number of positions)
        for (let j = 0; j < acc.length; j++) acc[j]! += src[j]! * n;
      });
      samples += n;
    }
  } finally {
    await runner.release();
  }
  if (samples === 0) throw new ShearsError('activation importance: the calibration data gave no batch the model takes');
  const layers = new Map<string, LayerActivation[]>();
  wanted.forEach((w, i) => {
    const meanSquare = sums[i]!.map((v) => v / samples);
    const list = layers.get(w.weight) ?? [];
    list.push({ node: w.node.name, inAxis: w.inAxis, form: w.form, meanSquare });
    layers.set(w.weight, list);
  });
  return { layers, samples };
}

/**
 * Wanda-style scores of the input channels of one layer's weight: for input channel c (index along the weight's
 * reduction axis, within a group), sum over groups g, outputs o and kernel positions s of
 * |W[g, o, c * kernel + s]| * sqrt(meanSquare[g, c * kernel + s]).
 */
export function readScores(w: Float32Array, layer: LayerActivation): Float64Array {
  const { groups, k, outPerGroup, kernel, weightIndex } = layer.form;
  const channels = k / kernel;
  const out = new Float64Array(channels);
  const rms = layer.meanSquare.map((v) => Math.sqrt(Math.max(0, v)));
  for (let g = 0; g < groups; g++) {
    for (let c = 0; c < channels; c++) {
      let s = 0;
      for (let q = 0; q < kernel; q++) {
        const kk = c * kernel + q;
        const r = rms[g * k + kk]!;
        if (r === 0) continue;
        let a = 0;
        for (let o = 0; o < outPerGroup; o++) a += Math.abs(w[weightIndex(g, o, kk)]!);
        s += a * r;
      }
      out[c]! += s;
    }
  }
  return out;
}
