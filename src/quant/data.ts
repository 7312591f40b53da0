/** Calibration inputs from a data set (src/data) or from random numbers (structure/speed checks only). */
import type { Dataset } from '../data/dataset.js';
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { runBatchSize } from '../metrics/evaluate.js';
import { FeedState, planInputs, type Feeds, type InputPlan } from '../data/feeds.js';
import { createSession } from '../runtime/session.js';
import type { CalibrationData } from './calibrate.js';
import { inferShapes } from '../analysis/shapes.js';
import { DataType } from '../ir/dtype.js';

/**
 * A calibration batch size whose intermediate tensors (all fetched at once during calibration) fit in
 * `budget` bytes: at most `wanted`, at least 1. Per-sample sizes come from shape inference at batch 1.
 */
export function calibrationBatch(model: Model, wanted = 32, budget = 256 * 2 ** 20, feeds?: Feeds): number {
  const plan = planInputs(model, feeds);
  if (plan.carry.length) return 1;
  const input = plan.data;
  const shape = input.type?.shape;
  if (!shape || typeof shape[0] === 'number') return wanted;
  let perSample = 0;
  try {
    const info = inferShapes(model, { inputShapes: { [input.name]: [1, ...shape.slice(1)] } });
    for (const n of model.graph.nodes) {
      for (const o of n.outputs) {
        const t = info.types.get(o);
        if (t?.elemType !== DataType.FLOAT || !t.shape?.every((d) => typeof d === 'number')) continue;
        perSample += 4 * (t.shape as number[]).reduce((a, b) => a * b, 1);
      }
    }
  } catch {
    return wanted;
  }
  return perSample > 0 ? Math.max(1, Math.min(wanted, Math.floor(budget / perSample))) : wanted;
}

/**
 * `size` samples of a data set (seeded sample, in batches of `batchSize`), fed to the model's data input; the
 * model's other inputs get the data set's feeds (data/feeds.ts). With a carried state the samples are a sequence:
 * the first `size` in order, one per call, each call's state the float model's output after the one before.
 */
export function datasetCalibration(model: Model, dataset: Dataset, size = 256, batchSize?: number, seed = 0): CalibrationData {
  const plan = planInputs(model, dataset.feeds, undefined, dataset.inputType);
  const input = plan.data;
  const shape = input.type?.shape ?? [];
  const ds0 = dataset.sampleShape ? dataset : dataset.forInput(shape);
  const seq = plan.carry.length > 0;
  const ds = size >= ds0.size ? ds0 : seq ? ds0.subset(Array.from({ length: size }, (_, i) => i)) : ds0.sample(size, seed);
  const fixed = typeof shape[0] === 'number' && shape[0] > 0 ? shape[0] : undefined;
  const bs = seq ? runBatchSize(plan, 1) : fixed ?? batchSize ?? calibrationBatch(model, 32, undefined, dataset.feeds);
  return () => (async function* () {
    const state = new FeedState(plan);
    const runner = seq ? await createSession(model) : undefined;
    try {
      for await (const b of ds.batches(bs)) {
        if (fixed !== undefined && b.x.dims[0] !== fixed) continue;
        const feeds = state.feeds(b.x, b.feeds);
        yield feeds;
        if (runner) state.update(await runner.run(feeds, state.carriedOutputs));
      }
    } finally {
      await runner?.release();
    }
  })();
}

/** The feeds of a plan's other inputs for a batch of `batch` samples (no carried state: the initial one). */
function otherFeeds(plan: InputPlan, x: Tensor): Record<string, Tensor> {
  return new FeedState(plan).feeds(x);
}

/** Seeded standard-normal inputs of the model's (static) input shape: for random-weight models only. */
export function randomCalibration(model: Model, batches = 4, batchSize = 1, seed = 1, feeds?: Feeds): CalibrationData {
  const plan = planInputs(model, feeds);
  const input = plan.data;
  const shape = (input.type?.shape ?? []).map((d, i) => (typeof d === 'number' && d > 0 ? d : i === 0 ? batchSize : NaN));
  if (shape.length === 0 || shape.some((d) => Number.isNaN(d))) throw new ShearsError(`input '${input.name}' has no static shape for random calibration data`);
  const n = shape.reduce((a, b) => a * b, 1);
  return () => (function* () {
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    for (let b = 0; b < batches; b++) {
      const data = new Float32Array(n);
      for (let i = 0; i < n; i += 2) {
        const u = Math.max(next(), 1e-12), v = next();
        const r = Math.sqrt(-2 * Math.log(u));
        data[i] = r * Math.cos(2 * Math.PI * v);
        if (i + 1 < n) data[i + 1] = r * Math.sin(2 * Math.PI * v);
      }
      const x: Tensor = { dtype: 1, dims: shape, data };
      yield otherFeeds(plan, x);
    }
  })();
}
