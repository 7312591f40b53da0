/**
 * First-order Taylor importance: the loss change from removing a channel is estimated by |sum over its weights
 * of w * dL/dw|-style scores; here each parameter slice scores sum |w * g| with g the cross-entropy gradient
 * accumulated over a few labelled batches (computed by the autodiff training graph in onnxruntime).
 */
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { addGradients, buildTrainingGraph } from '../autodiff/training.js';
import { TARGET } from '../autodiff/losses.js';
import { createSession } from '../runtime/session.js';
import { fillTargets, type ArrayData } from '../data/in-memory.js';
import { inferShapes } from '../analysis/shapes.js';

export interface GradientOptions {
  batch?: number;
  batches?: number;
  threads?: number;
}

/** Cross-entropy gradients of every float weight, summed over `batches` batches of the data (in data order). */
export async function weightGradients(model: Model, data: ArrayData, opts: GradientOptions = {}): Promise<Map<string, Float32Array>> {
  const B = Math.min(opts.batch ?? 32, data.n);
  const nb = Math.max(1, Math.min(opts.batches ?? 4, Math.floor(data.n / B)));
  const input = model.graph.inputs.find((i) => !model.graph.initializers.has(i.name));
  if (!input) throw new ShearsError('the model has no data input');
  const inShape = [B, ...data.sampleDims];
  const out = inferShapes(model, { inputShapes: { [input.name]: inShape } }).types.get(model.graph.outputs[0]!.name)?.shape;
  if (!out || out.length !== 2 || typeof out[1] !== 'number') throw new ShearsError('Taylor importance needs a classifier output [N, classes]');
  const classes = out[1];
  const tg = await buildTrainingGraph(model, { batch: B, loss: { ce: {} }, inputShapes: { [input.name]: inShape } });
  const sess = await createSession(tg.model, opts.threads ? { threads: opts.threads } : {});
  const sums = new Map<string, Float32Array>();
  try {
    const per = inShape.slice(1).reduce((a, b) => a * b, 1);
    const t = new Float32Array(B * classes);
    for (let b = 0; b < nb; b++) {
      const idx = Int32Array.from({ length: B }, (_, i) => b * B + i);
      fillTargets(data.labels!, idx, t, classes); // loadArrays required labels
      const feeds: Record<string, Tensor> = {
        [input.name]: { dtype: 1, dims: inShape, data: data.x.subarray(b * B * per, (b + 1) * B * per) },
        [TARGET]: { dtype: 1, dims: [B, classes], data: t },
      };
      for (const p of tg.params) feeds[p.name] = p.init;
      const res = await sess.run(feeds, [...tg.gradOutputs.values()]);
      addGradients(sums, res, tg.gradOutputs);
    }
  } finally {
    await sess.release();
  }
  return sums;
}
