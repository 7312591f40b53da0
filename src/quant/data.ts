/** Calibration inputs from a data set (src/data) or from random numbers (structure/speed checks only). */
import type { Dataset } from '../data/dataset.js';
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { dataInput } from '../metrics/evaluate.js';
import type { CalibrationData } from './calibrate.js';
import { inferShapes } from '../analysis/shapes.js';
import { DataType } from '../ir/dtype.js';

/**
 * A calibration batch size whose intermediate tensors (all fetched at once during calibration) fit in
 * `budget` bytes: at most `wanted`, at least 1. Per-sample sizes come from shape inference at batch 1.
 */
export function calibrationBatch(model: Model, wanted = 32, budget = 256 * 2 ** 20): number {
  const input = dataInput(model);
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

/** `size` samples of a data set (seeded sample, in batches of `batchSize`), fed to the model's data input. */
export function datasetCalibration(model: Model, dataset: Dataset, size = 256, batchSize = calibrationBatch(model), seed = 0): CalibrationData {
  const input = dataInput(model);
  const shape = input.type?.shape ?? [];
  const ds0 = dataset.sampleShape ? dataset : dataset.forInput(shape);
  const ds = size < ds0.size ? ds0.sample(size, seed) : ds0;
  const fixed = typeof shape[0] === 'number' && shape[0] > 0 ? shape[0] : undefined;
  const bs = fixed ?? batchSize;
  return () => (async function* () {
    for await (const b of ds.batches(bs)) {
      if (fixed !== undefined && b.x.dims[0] !== fixed) continue;
      yield { [input.name]: b.x };
    }
  })();
}

/** Seeded standard-normal inputs of the model's (static) input shape: for random-weight models only. */
export function randomCalibration(model: Model, batches = 4, batchSize = 1, seed = 1): CalibrationData {
  const input = dataInput(model);
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
      yield { [input.name]: x };
    }
  })();
}
