/**
 * The depth bits of the structured prune step: ranking the depth units (prune/structured/influence.ts) on the
 * step's calibration data, or by parameter RMS without data, and saying which ranking was used.
 */
import { FeedState, hasFeeds, modelInputs, planInputs, type Feeds, type InputPlan } from '../data/feeds.js';
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import type { Dim, Model } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { batchSizeFor } from '../metrics/evaluate.js';
import { blockInfluence, blockLossIncrease, magnitudeRanking, type DepthRanking } from '../prune/structured/influence.js';
import { chooseUnits } from '../prune/structured/depth.js';
import { concreteInputShapes } from '../depgraph/analyze.js';
import type { RunContext } from './context.js';
import { OptionError, withDefaults } from './options.js';
import { STRUCTURED_OPTIONS, type StructuredStep } from './steps.js';

const RANK_NAMES = { influence: 'block influence', loss: 'loss increase (output KL from the dense model)', magnitude: 'parameter RMS' } as const;

/** A data batch's float values as the input's integer type (token ids read from an array), checked to be whole. */
function asInputType(x: Tensor, elemType: number | undefined, name: string): Tensor {
  if (elemType !== DataType.INT64 && elemType !== DataType.INT32) return x;
  if (x.dtype === elemType) return x;
  const src = x.data as Float32Array;
  const out = elemType === DataType.INT64 ? new BigInt64Array(src.length) : new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (!Number.isInteger(v)) throw new ShearsError(`input '${name}' takes integers (token ids), the calibration data holds ${v}`);
    if (out instanceof BigInt64Array) out[i] = BigInt(v);
    else out[i] = v;
  }
  return { dtype: elemType, dims: x.dims, data: out };
}

/** The step's calibration data spec; 'random' (int8 calibration on random inputs, a shared --calib) is none. */
export function calibSpec(step: StructuredStep): string | undefined {
  const c = (step as { calib?: string }).calib;
  return c === 'random' ? undefined : c;
}

/**
 * A model whose one input takes integers (token ids) and no feeds: the data set feeds it (its float values cast
 * back to integers, checked whole), which planInputs refuses for evaluation (data sets feed float32).
 */
function integerInputPlan(model: Model, feeds: Feeds | undefined): InputPlan | undefined {
  const ins = modelInputs(model);
  const t = ins[0]?.type?.elemType;
  if (ins.length !== 1 || (t !== DataType.INT64 && t !== DataType.INT32) || hasFeeds(feeds)) return undefined;
  return { data: ins[0]!, fixed: [], carry: [] };
}

/**
 * The ranking of the step's depth units: block influence or loss increase on {prune.calib} (a seeded sample of
 * {prune.calibSize}), or parameter RMS. Emits which one and the scores.
 */
export async function depthRanking(ctx: RunContext, model: Model, step: StructuredStep, inputShapes: Record<string, Dim[]>): Promise<DepthRanking> {
  const s = withDefaults(STRUCTURED_OPTIONS, step);
  const calib = calibSpec(step);
  if (s.removeBlocks) {
    // a count beyond the model's units is refused before any data is read (chooseUnits' message)
    const n = magnitudeRanking(model, inputShapes, s.blockUnit).units.length;
    if (s.removeBlocks > n) chooseUnits(model, s.removeBlocks, concreteInputShapes(model, inputShapes), { unit: s.blockUnit });
  }
  // auto: influence with data, except under a latency target: loss (fmnist_resnet20, 3 blocks + widths for
  // 0.62 of the latency, lsq: influence took the last stage's two blocks, 88.78%; loss kept them, 91.85%)
  const method = s.blockRank === 'auto' ? (calib === undefined ? 'magnitude' : s.target?.kind === 'latency' ? 'loss' : 'influence') : s.blockRank;
  let ranking: DepthRanking;
  let samples = 0;
  if (method === 'magnitude') {
    ranking = magnitudeRanking(model, inputShapes, s.blockUnit);
  } else {
    if (calib === undefined) throw new OptionError('prune.blockRank', `${method} needs calibration data: {prune.calib}`);
    const ds = (await ctx.data('prune.calib', calib)).sample(s.calibSize, s.calibSeed);
    const plan = integerInputPlan(model, ds.feeds) ?? planInputs(model, ds.feeds);
    const input = plan.data;
    const data = ds.sampleShape ? ds : ds.forInput(input.type?.shape ?? []);
    const fixed = batchSizeFor(input, 0);
    const state = new FeedState(plan);
    const batches: Record<string, Tensor>[] = [];
    for await (const b of data.batches(fixed || 32)) {
      if (fixed && b.x.dims[0] !== fixed) continue;
      const feeds = state.feeds(b.x, b.feeds);
      feeds[input.name] = asInputType(feeds[input.name]!, input.type?.elemType, input.name);
      batches.push(feeds);
    }
    if (batches.length === 0) throw new ShearsError(`the model takes batches of ${fixed} samples: give at least ${fixed} calibration samples`);
    samples = batches.reduce((a, f) => a + f[input.name]!.dims[0]!, 0);
    const opts = { unit: s.blockUnit, inputShapes, ...(s.threads !== undefined ? { threads: s.threads } : {}) };
    ranking = method === 'influence' ? await blockInfluence(model, batches, opts) : await blockLossIncrease(model, batches, opts);
  }
  const on = method === 'magnitude' ? (s.blockRank === 'auto' ? ' (no calibration data: give {prune.calib} to rank by block influence)' : '') : ` on ${samples} samples of ${ctx.specOf(calib!)}`;
  ctx.emit({
    type: 'info',
    message: `depth units (${s.blockUnit}) ranked by ${RANK_NAMES[method]}${on}, least important first: ` +
      [...ranking.units].sort((a, b) => a.rank - b.rank).map((u) => `${u.name} ${u.score.toPrecision(3)}`).join(', '),
  });
  return ranking;
}

export { RANK_NAMES };
