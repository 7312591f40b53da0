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
import { withDefaults, type Resolved } from './options.js';
import { parseSchedule } from '../train/schedule.js';
import { parseAugment } from '../data/in-memory.js';
import type { OptimizerSpec } from '../train/optim.js';
import { FINETUNE_OPTIONS, type FinetuneStep } from './steps.js';

export interface FinetuneSummary {
  epochs: number;
  seconds: number;
  /** Samples trained on and validated on. */
  trainSamples: number;
  valSamples?: number;
  valTop1Before?: number;
  valTop1?: number;
  /** match-teacher: the relative squared error to the teacher on the validation data, before and after. */
  valRelMseBefore?: number;
  valRelMse?: number;
  history: EpochStats[];
  /** With an iterative schedule: each pruning step, its fine-tuning and scores. */
  stages?: IterativeStage[];
}

/** The first `limit` samples of a data set (all without a limit). */
export function firstSamples(ds: Dataset, limit: number | undefined): Dataset {
  return limit === undefined || limit >= ds.size ? ds : ds.subset(Array.from({ length: limit }, (_, i) => i));
}

/** How a stop request reaches the trainer, where it checkpoints when stopped, and the caller's look before training. */
export interface StopOptions {
  signal?: AbortSignal;
  checkpointOnStop?: string;
  progress?: FinetuneOptions['progress'];
  /** The model whose statistics re-inserted BatchNorm restores (default: the teacher, else the run's dense model). */
  bnReference?: Model;
  /**
   * Called before training (not with `reinit`) with the model that should already work on the data (the teacher
   * with `kd`, else the model) and the validation data (else the training data), e.g. to warn when it scores
   * near chance: the inputs are then the likely problem.
   */
  beforeTraining?: (model: Model, data: Dataset, what: 'the teacher' | 'the model') => Promise<void>;
}

/** The trainer's options for a step (data opened through the run). */
async function trainerOptions(ctx: RunContext, s: Resolved<typeof FINETUNE_OPTIONS>, stop: StopOptions): Promise<FinetuneOptions> {
  const train = firstSamples(await ctx.data('finetune.train', s.train), s.limit);
  const val = s.val !== undefined ? await ctx.data('finetune.val', s.val) : undefined;
  const optimizer: OptimizerSpec = s.optimizer === 'sgd'
    ? { kind: 'sgd', momentum: s.momentum, nesterov: s.nesterov, weightDecay: s.weightDecay ?? 5e-4 }
    : { kind: 'adamw', weightDecay: s.weightDecay ?? 0.01 };
  const opts: FinetuneOptions = { train, epochs: s.epochs, batchNorm: s.bn, lr: s.lr, batch: s.batch, optimizer, seed: s.seed };
  if (val) opts.val = val;
  if (s.schedule !== undefined) opts.schedule = parseSchedule(s.schedule);
  if (s.augment !== undefined) opts.augment = parseAugment(s.augment);
  if (s.reinit) opts.reinit = true;
  if (s.kd) opts.teacher = ctx.dense;
  if (s.bn === 'reinsert') opts.bnReference = stop.bnReference ?? ctx.dense;
  const same = ['threads', 'replicas', 'accumulate', 'clipNorm', 'labelSmoothing', 'objective', 'matchOutput', 'kdTemperature', 'kdWeight', 'checkpoint', 'resume'] as const;
  Object.assign(opts, Object.fromEntries(same.filter((k) => s[k] !== undefined).map((k) => [k, s[k]])));
  if (stop.signal) opts.signal = stop.signal;
  if (stop.progress !== undefined) opts.progress = stop.progress;
  return opts;
}

export async function runFinetune(ctx: RunContext, model: Model, step: FinetuneStep, stop: StopOptions): Promise<{ model: Model; report: FinetuneSummary }> {
  const s = withDefaults(FINETUNE_OPTIONS, step);
  const opts = await trainerOptions(ctx, s, stop);
  const train = opts.train as Dataset;
  const val = opts.val as Dataset | undefined;
  const samples = { trainSamples: train.size, ...(val ? { valSamples: val.size } : {}) };
  if (!s.reinit && stop.beforeTraining) await stop.beforeTraining(opts.teacher ?? model, val ?? train, opts.teacher ? 'the teacher' : 'the model');
  if (s.iterative) {
    const { epochs, ...each } = opts;
    const r = await pruneIteratively(model, s.iterative, epochs, each, (st) => ctx.emit({ type: 'info', message: formatStage(st) }));
    ctx.storePreprocess(r.model);
    const acc = r.stages.at(-1)?.acc;
    return {
      model: r.model,
      report: { epochs: r.stages.reduce((n, st) => n + st.history.length, 0), seconds: r.seconds, ...samples, ...(acc !== undefined ? { valTop1: acc } : {}), history: r.stages.flatMap((st) => st.history), stages: r.stages },
    };
  }
  if (stop.checkpointOnStop !== undefined) opts.checkpointOnStop = stop.checkpointOnStop;
  const r = await finetune(model, opts);
  ctx.storePreprocess(r.model);
  const last = r.history.at(-1);
  const acc = last?.valAcc;
  const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
  ctx.emit({ type: 'info', message: `fine-tuned ${r.history.length} epoch(s) in ${r.seconds.toFixed(1)} s${r.initialValAcc !== undefined ? `: val top-1 ${pct(r.initialValAcc)}` : ''}${acc !== undefined ? ` -> ${pct(acc)}` : ''}` });
  return {
    model: r.model,
    report: {
      epochs: r.history.length,
      seconds: r.seconds,
      ...samples,
      ...(r.initialValAcc !== undefined ? { valTop1Before: r.initialValAcc } : {}),
      ...(acc !== undefined ? { valTop1: acc } : {}),
      ...(r.initialValRelMse !== undefined ? { valRelMseBefore: r.initialValRelMse, ...(last?.valRelMse !== undefined ? { valRelMse: last.valRelMse } : {}) } : {}),
      history: r.history,
    },
  };
}
