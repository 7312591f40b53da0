/**
 * Evaluation of a model on a data set: accuracy (when the data has labels and the model outputs class scores)
 * and fidelity against a reference model. Models run through the runtime module only.
 */
import { ShearsError } from '../errors.js';
import type { Dataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import type { Batch } from '../data/types.js';
import { FeedState, feedsToRecipe, hasFeeds, planInputs, type Feeds, type InputPlan } from '../data/feeds.js';
import type { Dim, Model, ValueInfo } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { createSession, type Runner } from '../runtime/session.js';
import { AccuracyMeter, isClassScores, type AccuracyReport } from './accuracy.js';
import { FidelityMeter, type OutputFidelity } from './fidelity.js';
import { evaluatePerplexity, type PerplexityReport } from './perplexity.js';
import { isTokenData } from '../data/tokens.js';

export interface EvalProgress {
  done: number;
  total: number;
  seconds: number;
}

export interface EvalOptions {
  reference?: Model;
  /** At most this many samples (default: all). */
  limit?: number;
  /** Samples per run (default 64; a model with a fixed batch dimension uses that). */
  batchSize?: number;
  /** onnxruntime intra-op threads. */
  threads?: number;
  /** Output scored for accuracy (default: the first output that holds class scores). */
  output?: string;
  onProgress?: (p: EvalProgress) => void;
}

export interface EvalReport {
  dataset: string;
  samples: number;
  batchSize: number;
  input: { name: string; shape: Dim[] };
  /** The other inputs' feeds and the carried states (multi-input and stateful models). */
  feeds?: { feeds?: Record<string, string>; carry?: Record<string, string> };
  /** The preprocessing applied (after filling layout/color from the model input). */
  preprocess: PreprocessSpec;
  /** Present when the data has labels and an output holds class scores [N, K]. */
  accuracy?: AccuracyReport & { output: string };
  /** Present with a reference model: per output name. */
  fidelity?: Record<string, OutputFidelity>;
  /** Token data (language models): next-token NLL, perplexity, bits per token (metrics/perplexity.ts). */
  perplexity?: PerplexityReport;
  /** Token data with a reference model: the reference's perplexity on the same windows. */
  referencePerplexity?: PerplexityReport;
  /** Token data with a reference model: fraction of positions where both predict the same next token. */
  agreement?: number;
  seconds: number;
  samplesPerSecond: number;
}

/**
 * The input of a model a data set feeds: its only input, or with `feeds` (a multi-input or stateful model) the
 * one input without a feed; a model whose inputs are not all accounted for is refused with a message listing
 * them and how to feed them (data/feeds.ts).
 */
export function dataInput(model: Model, feeds?: Feeds, what?: string): ValueInfo {
  return planInputs(model, feeds, what).data;
}

/** The batch size a model accepts: its fixed batch dimension, or `wanted` when the dimension is free. */
export function batchSizeFor(input: ValueInfo, wanted: number): number {
  const d0 = input.type?.shape?.[0];
  return typeof d0 === 'number' && d0 > 0 ? d0 : wanted;
}

/** First `b` rows (along axis 0) of a tensor. */
function headRows(t: Tensor, b: number): Tensor {
  if (t.dims.length === 0 || t.dims[0] === b) return t;
  const per = t.dims.slice(1).reduce((x, y) => x * y, 1);
  if (Array.isArray(t.data)) throw new ShearsError('string outputs are not supported');
  return { dtype: t.dtype, dims: [b, ...t.dims.slice(1)], data: t.data.subarray(0, b * per) as typeof t.data };
}

/** Zero-pads a batch along axis 0 to `size` rows (for models with a fixed batch dimension). */
function padRows(x: Tensor, size: number): Tensor {
  const b = x.dims[0]!;
  if (b === size) return x;
  const per = x.dims.slice(1).reduce((p, q) => p * q, 1);
  const data = new Float32Array(size * per);
  data.set(x.data as Float32Array);
  return { dtype: x.dtype, dims: [size, ...x.dims.slice(1)], data };
}

/**
 * Runs batches of a data set through a model (and a reference), calling `visit` with each batch and the outputs.
 * Reading the next batch overlaps with the model run.
 */
export async function forEachBatch(
  runners: Runner[],
  plans: InputPlan[],
  fixedBatch: number | undefined,
  batches: AsyncIterator<Batch>,
  visit: (batch: Batch, outputs: Record<string, Tensor>[]) => void,
): Promise<void> {
  // each model carries its own state (its outputs fed back as its inputs)
  const states = plans.map((p) => new FeedState(p));
  // The next batch is read while the models run. Its failure (a corrupt image) is awaited with the next round,
  // but it is marked handled now: Node would otherwise end the process on an unhandled rejection before that.
  const prefetch = () => {
    const p = batches.next();
    p.catch(() => undefined);
    return p;
  };
  let next = prefetch();
  for (;;) {
    const r = await next;
    if (r.done) break;
    const batch = r.value;
    const b = batch.x.dims[0]!;
    const feed = fixedBatch !== undefined ? padRows(batch.x, fixedBatch) : batch.x;
    const perSample = Object.fromEntries(Object.entries(batch.feeds ?? {}).map(([k, t]) => [k, fixedBatch !== undefined ? padRows(t, fixedBatch) : t]));
    const runs = runners.map((run, k) => run.run(states[k]!.feeds(feed, perSample)));
    next = prefetch();
    const outs = await Promise.all(runs);
    outs.forEach((o, k) => states[k]!.update(o));
    visit(batch, outs.map((o) => Object.fromEntries(Object.entries(o).map(([k, t]) => [k, headRows(t, b)]))));
  }
}

/**
 * The batch size for a run over a data set: 1 when a state is carried from call to call (the samples are a
 * sequence), else the model's fixed batch dimension, else `wanted`.
 */
export function runBatchSize(plan: InputPlan, wanted: number): number {
  if (!plan.carry.length) return batchSizeFor(plan.data, wanted);
  const fixed = batchSizeFor(plan.data, 1);
  if (fixed !== 1) throw new ShearsError(`--carry feeds one sample per call, but input '${plan.data.name}' takes batches of ${fixed}`);
  return 1;
}

export async function evaluate(model: Model, dataset: Dataset, opts: EvalOptions = {}): Promise<EvalReport> {
  if (isTokenData(dataset)) {
    // language models on token data: perplexity (and the reference's, with top-1 agreement)
    const { reference, limit, batchSize, threads, output, onProgress } = opts;
    return evaluatePerplexity(model, dataset, {
      ...(reference ? { reference } : {}), ...(limit !== undefined ? { limit } : {}), ...(batchSize !== undefined ? { batchSize } : {}),
      ...(threads !== undefined ? { threads } : {}), ...(output !== undefined ? { output } : {}), ...(onProgress ? { onProgress } : {}),
    });
  }
  const plan = planInputs(model, dataset.feeds, undefined, dataset.inputType);
  const refPlan = opts.reference ? planInputs(opts.reference, dataset.feeds, 'the reference', dataset.inputType) : undefined;
  const input = plan.data;
  const shape = input.type?.shape ?? [];
  if (refPlan) {
    const ri = refPlan.data;
    const rs = ri.type?.shape;
    if (rs && shape.length && (rs.length !== shape.length || rs.some((d, i) => typeof d === 'number' && typeof shape[i] === 'number' && d !== shape[i]))) {
      throw new ShearsError(`the reference input '${ri.name}' [${rs.join(', ')}] does not match the model input '${input.name}' [${shape.join(', ')}]`);
    }
  }
  const ds = dataset.sampleShape ? dataset : dataset.forInput(shape);
  const fixed = typeof shape[0] === 'number' && shape[0] > 0 ? shape[0] : undefined;
  const batchSize = runBatchSize(plan, opts.batchSize ?? 64);
  const total = Math.min(ds.size, opts.limit ?? Infinity);
  const sessionCfg = opts.threads ? { threads: opts.threads } : {};
  const runners: Runner[] = [await createSession(model, sessionCfg)];
  if (opts.reference) runners.push(await createSession(opts.reference, sessionCfg));
  const refInputName = refPlan?.data.name;
  if (refInputName !== undefined && refInputName !== input.name) {
    throw new ShearsError(`the reference's input is '${refInputName}', the model's '${input.name}': they must have the same name`);
  }
  const acc = new AccuracyMeter();
  let accOutput: string | undefined = opts.output;
  const fid = new Map<string, FidelityMeter>();
  let done = 0;
  const t0 = performance.now();
  try {
    await forEachBatch(runners, refPlan ? [plan, refPlan] : [plan], fixed, ds.batches(batchSize, { limit: total })[Symbol.asyncIterator](), (batch, outs) => {
      const y = outs[0]!;
      if (accOutput === undefined) accOutput = Object.keys(y).find((k) => isClassScores(y[k]!.dims)) ?? '';
      if (opts.output !== undefined && !(opts.output in y)) throw new ShearsError(`the model has no output '${opts.output}' (outputs: ${Object.keys(y).join(', ')})`);
      if (batch.labels && accOutput) acc.add(y[accOutput]!, batch.labels);
      if (outs[1]) {
        const ref = outs[1];
        for (const [name, t] of Object.entries(y)) {
          const r = ref[name];
          if (!r) continue;
          let m = fid.get(name);
          if (!m) fid.set(name, (m = new FidelityMeter(name)));
          m.add(t, r);
        }
        if (fid.size === 0) throw new ShearsError(`the model and the reference share no output name (model: ${Object.keys(y).join(', ')}; reference: ${Object.keys(ref).join(', ')})`);
      }
      done += batch.x.dims[0]!;
      opts.onProgress?.({ done, total, seconds: (performance.now() - t0) / 1000 });
    });
  } finally {
    for (const r of runners) await r.release();
  }
  const seconds = (performance.now() - t0) / 1000;
  const report: EvalReport = {
    dataset: ds.description,
    samples: done,
    batchSize,
    input: { name: input.name, shape },
    ...(hasFeeds(dataset.feeds) ? { feeds: feedsToRecipe(dataset.feeds) } : {}),
    preprocess: ds.preprocess,
    seconds,
    samplesPerSecond: seconds > 0 ? done / seconds : 0,
  };
  if (acc.samples > 0 && accOutput) report.accuracy = { output: accOutput, ...acc.report() };
  if (fid.size) report.fidelity = Object.fromEntries([...fid].map(([k, m]) => [k, m.report()]));
  return report;
}
