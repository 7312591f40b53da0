/**
 * The finetune step: training inside onnxruntime (train/trainer.ts) on the training data, validated after every
 * epoch, with distillation from the dense model (`kd`) and BatchNorm re-inserted from its statistics (`bn`).
 */
import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/graph.js';
import { finetune, type FinetuneOptions } from '../train/trainer.js';
import type { EpochStats } from '../train/epoch-stats.js';
import type { IterativeStage } from '../prune/iterative.js';
import type { RunContext } from './context.js';
import { formatStage, pruneIteratively } from './iterative.js';
import { withDefaults } from './options.js';
import { FINETUNE_OPTIONS, type FinetuneStep } from './steps.js';

export interface FinetuneSummary {
  epochs: number;
  seconds: number;
  valTop1Before?: number;
  valTop1?: number;
  history: EpochStats[];
  /** With an iterative schedule: each pruning step, its fine-tuning and scores. */
  stages?: IterativeStage[];
}

/** The first `limit` samples of a data set (all without a limit). */
export function firstSamples(ds: Dataset, limit: number | undefined): Dataset {
  return limit === undefined || limit >= ds.size ? ds : ds.subset(Array.from({ length: limit }, (_, i) => i));
}

/** How a stop request reaches the trainer, and where it checkpoints when stopped. */
export interface StopOptions {
  signal?: AbortSignal;
  checkpointOnStop?: string;
  progress?: FinetuneOptions['progress'];
}

export async function runFinetune(ctx: RunContext, model: Model, step: FinetuneStep, stop: StopOptions): Promise<{ model: Model; report: FinetuneSummary }> {
  const s = withDefaults(FINETUNE_OPTIONS, step);
  const train = firstSamples(await ctx.data('finetune.train', s.train), s.limit);
  const val = s.val !== undefined ? await ctx.data('finetune.val', s.val) : undefined;
  const opts: FinetuneOptions = { train, epochs: s.epochs, batchNorm: s.bn, lr: s.lr, batch: s.batch };
  if (val) opts.val = val;
  if (s.threads !== undefined) opts.threads = s.threads;
  if (s.replicas !== undefined) opts.replicas = s.replicas;
  if (s.kd) opts.teacher = ctx.dense;
  if (s.bn === 'reinsert') opts.bnReference = ctx.dense;
  if (stop.signal) opts.signal = stop.signal;
  if (stop.progress !== undefined) opts.progress = stop.progress;
  if (s.iterative) {
    const { epochs, ...each } = opts;
    const r = await pruneIteratively(model, s.iterative, epochs, each, (st) => ctx.emit({ type: 'info', message: formatStage(st) }));
    ctx.storePreprocess(r.model);
    const acc = r.stages.at(-1)?.acc;
    return {
      model: r.model,
      report: { epochs: r.stages.reduce((n, st) => n + st.history.length, 0), seconds: r.seconds, ...(acc !== undefined ? { valTop1: acc } : {}), history: r.stages.flatMap((st) => st.history), stages: r.stages },
    };
  }
  if (stop.checkpointOnStop !== undefined) opts.checkpointOnStop = stop.checkpointOnStop;
  const r = await finetune(model, opts);
  ctx.storePreprocess(r.model);
  const acc = r.history.at(-1)?.valAcc;
  const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
  ctx.emit({ type: 'info', message: `fine-tuned ${r.history.length} epoch(s) in ${r.seconds.toFixed(1)} s${r.initialValAcc !== undefined ? `: val top-1 ${pct(r.initialValAcc)}` : ''}${acc !== undefined ? ` -> ${pct(acc)}` : ''}` });
  return {
    model: r.model,
    report: {
      epochs: r.history.length,
      seconds: r.seconds,
      ...(r.initialValAcc !== undefined ? { valTop1Before: r.initialValAcc } : {}),
      ...(acc !== undefined ? { valTop1: acc } : {}),
      history: r.history,
    },
  };
}
