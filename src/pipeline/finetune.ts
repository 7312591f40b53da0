/**
 * The finetune step: training inside onnxruntime (train/trainer.ts) on the training data, validated after every
 * epoch, with distillation from the dense model (`kd`) and BatchNorm re-inserted from its statistics (`bn`).
 */
import { formatFeedSpec } from '../data/feeds.js';
import { pinFeeds, unpinFeeds } from '../train/pin-feeds.js';
import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/graph.js';
import { finetune, type FinetuneOptions, type FinetuneResult } from '../train/trainer.js';
import { ShearsError } from '../errors.js';
import type { EpochStats } from '../train/epoch-stats.js';
import type { IterativeStage } from '../prune/iterative.js';
import type { RunContext } from './context.js';
import { formatStage, pruneIteratively } from './iterative.js';
import { withDefaults, type Resolved } from './options.js';
import { parseSchedule } from '../train/schedule.js';
import { parseAugment } from '../data/in-memory.js';
import type { OptimizerSpec } from '../train/optim.js';
import { detectFoldedBatchNorm, hasBatchNorm } from '../train/bn.js';
import { CNN_KD_LR, CNN_LR, FINETUNE_BATCH, FINETUNE_OPTIONS, isTransformer, TRANSFORMER_BATCH, TRANSFORMER_LR, TRANSFORMER_SGD_LR, type FinetuneStep } from './steps.js';
import { isTokenData, type TokenDataset } from '../data/tokens.js';
import { finetuneLM } from '../train/lm.js';
import type { PerplexityReport } from '../metrics/perplexity.js';
import { OptionError } from './options.js';
import { imageTruth, isDetectionSource } from '../data/yolo.js';
import type { DetectionData, GtBox } from '../train/tal.js';
import { DETECTOR_BATCH, DETECTOR_DISTILL_LOSS, DETECTOR_WARMUP, DETECTOR_HOLDOUT, DETECTOR_HOLDOUT_MAX, DETECTOR_LR, DISTILL_VALUE, detectorHead, formatDistillChoice, stripDistillTarget, withDistillTarget, type DetectorDistillLoss } from './detector.js';
import type { DetectHead } from '../analysis/detector.js';

/**
 * What the step ran with where its defaults depend on the run and the model: distillation (`kd`) and BatchNorm
 * (`bn`), and whether each was chosen by default. Recipes saved by `shears prune --save-recipe` record these.
 */
export interface FinetuneChoices {
  kd: boolean;
  bn: 'none' | 'reinsert' | 'fresh';
  /** The defaults decided (false: the step gave the option). */
  kdDefault: boolean;
  bnDefault: boolean;
  /** The line that reports the BatchNorm choice (`BatchNorm: re-inserted after 19 convs (the exporter folded it)`). */
  bnLine: string;
  /** Why distillation is on or off when by default ('' when the step gave it). */
  kdNote: string;
  /** The optimizer: the step's, else by the network (SGD for CNNs, AdamW for transformers and on token data). */
  optimizer: 'sgd' | 'adamw';
  /** The learning rate: the step's, else by the network and optimizer (CNN_LR, TRANSFORMER_LR, TRANSFORMER_SGD_LR; LM_LR on token data). */
  lr: number;
  /** The batch: the step's, else FINETUNE_BATCH (TRANSFORMER_BATCH for a transformer). */
  batch: number;
  /** Why that optimizer, learning rate and batch when they are network-dependent defaults ('' otherwise). */
  lrNote: string;
}

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
  /** Distillation and BatchNorm as run (see FinetuneChoices). */
  choices: FinetuneChoices;
  history: EpochStats[];
  /** With an iterative schedule: each pruning step, its fine-tuning and scores. */
  stages?: IterativeStage[];
  /** Token data: the language-model fine-tuning (steps, losses, validation bits per token). */
  lm?: LMFinetuneSummary;
  /**
   * A detector distilled by the defaults (pipeline/detector.ts): its pre-decode head, the value matched, the images
   * held out of the training data for validation (0 with --val), and whether the model before fine-tuning was kept
   * because fine-tuning made the validation worse.
   */
  detector?: { head: string; matched: string; loss: DetectorDistillLoss; heldOut: number; keptBefore: boolean };
  /** The detect objective: the mean detection loss of the first and the last epoch (no distillation term). */
  detectLoss?: { first: number; last: number };
}

/**
 * The boxes of every sample of a detection data set (yolo:/coco:), in the model's input pixels (after resize or
 * letterbox), for the detect objective: one pass over the images for their sizes.
 */
export async function detectionBoxes(ds: Dataset, key: string): Promise<DetectionData> {
  if (!isDetectionSource(ds.source)) throw new OptionError(key, `the detect objective needs boxes: give detection data (yolo:DIR/data.yaml@train or coco:ANN.json,images=DIR), not ${ds.description}`);
  const boxes: GtBox[][] = new Array<GtBox[]>(ds.size);
  for await (const b of ds.batches(64)) {
    b.indices.forEach((pos, k) => {
      const t = imageTruth(ds, pos, b.sizes?.[2 * k] ?? 0, b.sizes?.[2 * k + 1] ?? 0);
      boxes[pos] = Array.from(t.classes, (cls, m) => ({ cls, x1: t.inputBoxes[4 * m]!, y1: t.inputBoxes[4 * m + 1]!, x2: t.inputBoxes[4 * m + 2]!, y2: t.inputBoxes[4 * m + 3]! }));
    });
  }
  return { boxes: (i) => boxes[i] ?? [] };
}

/** The first `limit` samples of a data set (all without a limit). */
export function firstSamples(ds: Dataset, limit: number | undefined): Dataset {
  return limit === undefined || limit >= ds.size ? ds : ds.subset(Array.from({ length: limit }, (_, i) => i));
}

/** Language-model fine-tuning on token data (train/lm.ts): what ran and the validation bits per token. */
export interface LMFinetuneSummary {
  steps: number;
  batch: number;
  context: number;
  secondsPerStep: number;
  /** The loss of every step. */
  losses: number[];
  valBefore?: PerplexityReport;
  valAfter?: PerplexityReport;
}

/** Options of the finetune step that do not apply to token data (refused, not ignored). */
const NOT_FOR_TOKENS = ['labelSmoothing', 'objective', 'matchOutput', 'augment', 'limit', 'replicas', 'accumulate', 'reinit', 'checkpoint', 'resume', 'iterative'] as const;

/** The finetune step on token data: next-token cross-entropy (and distillation from the dense model with kd). */
async function runLMFinetune(ctx: RunContext, model: Model, step: FinetuneStep, stop: StopOptions, train: TokenDataset): Promise<{ model: Model; report: FinetuneSummary }> {
  const s = withDefaults(FINETUNE_OPTIONS, step);
  for (const k of NOT_FOR_TOKENS) if (step[k] !== undefined) throw new OptionError(`finetune.${k}`, 'does not apply to token data (language-model fine-tuning)');
  if (step.bn !== undefined && step.bn !== 'none') throw new OptionError('finetune.bn', 'does not apply to token data (language-model fine-tuning)');
  const val = s.val !== undefined ? await ctx.data('finetune.val', s.val) : undefined;
  if (val && !isTokenData(val)) throw new OptionError('finetune.val', `must be token data like {finetune.train} (${val.description})`);
  const kd = step.kd ?? false;
  const optimizer: OptimizerSpec = (step.optimizer ?? 'adamw') === 'sgd'
    ? { kind: 'sgd', momentum: s.momentum, nesterov: s.nesterov, weightDecay: s.weightDecay ?? 5e-4 }
    : { kind: 'adamw', weightDecay: s.weightDecay ?? 0.01 };
  const lr = step.lr ?? (optimizer.kind === 'adamw' ? LM_LR : CNN_LR);
  const choices: FinetuneChoices = { kd, bn: 'none', kdDefault: step.kd === undefined, bnDefault: true, bnLine: 'BatchNorm: none (a language model)', kdNote: step.kd === undefined ? ' (token data: no distillation unless asked)' : '', optimizer: optimizer.kind, lr, batch: step.batch ?? 16, lrNote: '' };
  const steps = s.steps ?? 120;
  const batch = choices.batch;
  const pin = pinFeeds(model, ctx.feeds);
  if (pin.pinned.length) throw new OptionError('finetune.train', 'token data feeds the model\'s one input: --feed does not apply');
  ctx.emit({ type: 'info', message: `language-model fine-tuning: ${steps} steps of ${batch} windows at random offsets of ${train.description} (${optimizer.kind}, lr ${lr}${kd ? ', distilling from the dense model' : ''})${step.epochs !== undefined && step.epochs !== 1 ? '; epochs do not apply to a token stream' : ''}` });
  const progress = stop.progress;
  const r = await finetuneLM(model, {
    train, ...(val ? { val } : {}), steps, batch, optimizer, seed: s.seed,
    lr,
    ...(s.schedule !== undefined ? { schedule: parseSchedule(s.schedule) } : {}),
    ...(s.clipNorm !== undefined ? { clipNorm: s.clipNorm } : {}),
    ...(kd ? { teacher: ctx.dense, ...(s.kdWeight !== undefined ? { kdWeight: s.kdWeight } : {}), ...(s.kdTemperature !== undefined ? { kdTemperature: s.kdTemperature } : {}) } : {}),
    ...(s.threads !== undefined ? { threads: s.threads } : {}),
    ...(stop.signal ? { signal: stop.signal } : {}),
    progress: (p) => {
      if (typeof progress === 'function') progress({ epoch: 1, epochs: 1, step: p.step, steps: p.steps, loss: p.meanLoss, imagesPerSec: batch / p.secondsPerStep, etaSec: (p.steps - p.step) * p.secondsPerStep, lr: p.lr });
      else if (progress !== false) {
        const line = `step ${p.step}/${p.steps} loss ${p.loss.toFixed(4)} (mean ${p.meanLoss.toFixed(4)}) lr ${p.lr.toExponential(2)} ${p.secondsPerStep.toFixed(2)} s/step`;
        // a line every 20 steps (logs), a progress event every step (a terminal)
        ctx.emit(p.step % 20 === 0 || p.step === p.steps ? { type: 'info', message: line } : { type: 'progress', message: line, done: p.step, total: p.steps });
      }
    },
  });
  if (stop.signal?.aborted && r.steps < steps) ctx.emit({ type: 'warning', message: `stopped after ${r.steps} of ${steps} steps: the model as trained so far is written (token data keeps no checkpoint)` });
  const bpt = (p?: PerplexityReport) => (p ? p.bitsPerToken.toFixed(4) : '-');
  ctx.emit({ type: 'info', message: `fine-tuned ${r.steps} steps in ${r.seconds.toFixed(1)} s (${r.secondsPerStep.toFixed(2)} s/step)${r.valAfter ? `: val bits per ${r.valAfter.unit} ${bpt(r.valBefore)} -> ${bpt(r.valAfter)}` : ''}` });
  const lm: LMFinetuneSummary = { steps: r.steps, batch: r.batch, context: r.context, secondsPerStep: r.secondsPerStep, losses: r.losses, ...(r.valBefore ? { valBefore: r.valBefore } : {}), ...(r.valAfter ? { valAfter: r.valAfter } : {}) };
  return { model: r.model, report: { epochs: 0, seconds: r.seconds, trainSamples: train.size, ...(val ? { valSamples: val.size } : {}), choices, history: [], lm } };
}

/** The default peak learning rate of AdamW for language-model fine-tuning. */
export const LM_LR = 1e-3;

/** How a stop request reaches the trainer, where it checkpoints when stopped, and the caller's look before training. */
export interface StopOptions {
  signal?: AbortSignal;
  checkpointOnStop?: string;
  progress?: FinetuneOptions['progress'];
  /** The model whose statistics re-inserted BatchNorm restores (default: the teacher, else the run's dense model). */
  bnReference?: Model;
  /**
   * A prune step came before in this run, so the run's dense model is the original of the model fine-tuned:
   * BatchNorm is re-inserted by default where the exporter folded it, and distillation from the dense model is on
   * by default where the network has or gets BatchNorm (see finetuneChoices).
   */
  afterPrune?: boolean;
  /**
   * Called before training (not with `reinit`) with the model that should already work on the data (the teacher
   * with `kd`, else the model) and the validation data (else the training data), e.g. to warn when it scores
   * near chance: the inputs are then the likely problem.
   */
  beforeTraining?: (model: Model, data: Dataset, what: 'the teacher' | 'the model') => Promise<void>;
  /**
   * Called with the model to fine-tune before any data is read or any training starts (every kind of fine-tuning):
   * e.g. to refuse when the device that will hold the result has no room for it, before minutes of work.
   */
  beforeWork?: (model: Model) => void;
}

/** The trainer's options for a step (data opened through the run). */
async function trainerOptions(ctx: RunContext, s: Resolved<typeof FINETUNE_OPTIONS>, stop: StopOptions, choices: FinetuneChoices): Promise<FinetuneOptions> {
  const train = firstSamples(await ctx.data('finetune.train', s.train), s.limit);
  const val = s.val !== undefined ? await ctx.data('finetune.val', s.val) : undefined;
  const optimizer: OptimizerSpec = choices.optimizer === 'sgd'
    ? { kind: 'sgd', momentum: s.momentum, nesterov: s.nesterov, weightDecay: s.weightDecay ?? 5e-4 }
    : { kind: 'adamw', weightDecay: s.weightDecay ?? 0.01 };
  const opts: FinetuneOptions = { train, epochs: s.epochs, batchNorm: choices.bn, lr: choices.lr, batch: choices.batch, optimizer, seed: s.seed };
  if (val) opts.val = val;
  if (s.schedule !== undefined) opts.schedule = parseSchedule(s.schedule);
  if (s.augment !== undefined) opts.augment = parseAugment(s.augment);
  if (s.reinit) opts.reinit = true;
  if (choices.kd) opts.teacher = ctx.dense;
  if (choices.bn === 'reinsert') opts.bnReference = stop.bnReference ?? ctx.dense;
  const same = ['threads', 'replicas', 'accumulate', 'clipNorm', 'labelSmoothing', 'objective', 'matchOutput', 'kdTemperature', 'kdWeight', 'checkpoint', 'resume'] as const;
  Object.assign(opts, Object.fromEntries(same.filter((k) => s[k] !== undefined).map((k) => [k, s[k]])));
  if (s.objective === 'detect') opts.detection = { ...(await detectionBoxes(train, 'finetune.train')), ...(s.detAssign !== undefined ? { assign: s.detAssign } : {}) };
  if (stop.signal) opts.signal = stop.signal;
  if (stop.progress !== undefined) opts.progress = stop.progress;
  return opts;
}

/**
 * Distillation and BatchNorm for a finetune step. After a prune step (the dense model at hand) BatchNorm is
 * re-inserted where the exporter folded it (detectFoldedBatchNorm: no BatchNormalization, convs with a bias feeding
 * activations, the dense model's statistics recoverable), not when training from scratch, resuming (the
 * checkpoint keeps its BatchNorm) or pruning iteratively; and distillation is on where the network then has
 * BatchNorm. Options the step gives win.
 */
export function finetuneChoices(model: Model, step: FinetuneStep, dense: Model, stop: Pick<StopOptions, 'afterPrune' | 'bnReference'>): FinetuneChoices {
  const afterPrune = stop.afterPrune === true;
  const bn = batchNormChoice(model, step, dense, stop);
  // Distillation by default goes with BatchNorm (the model's own or re-inserted): on a BN-free network, pruned,
  // repaired and fine-tuned at the default learning rate, it was measured to diverge (91.6% -> 33.7% in 4 steps)
  // where the labels alone kept 92.2%.
  const withBn = bn.bn !== 'none' || hasBatchNorm(model);
  // A detector recovers by distillation on its pre-decode head (pipeline/detector.ts): on by default after pruning.
  const detector = detectorDistills(model, step);
  const kd = step.kd ?? (afterPrune && (withBn || detector));
  const kdNote = step.kd !== undefined ? '' : kd ? ' (the default after pruning; --no-kd turns it off)'
    : afterPrune ? ' (the default without BatchNorm, where distillation at the default learning rate can diverge; --finetune-kd turns it on)' : '';
  const transformer = isTransformer(model);
  // SGD's own options given without an optimizer ask for SGD.
  const adamw = (transformer || (detector && kd)) && step.momentum === undefined && step.nesterov === undefined;
  const optimizer = step.optimizer ?? (adamw ? 'adamw' : 'sgd');
  const cnnKd = !transformer && !detector && kd && withBn && optimizer === 'sgd';
  const lr = step.lr ?? (detector && kd && optimizer === 'adamw' ? DETECTOR_LR : cnnKd ? CNN_KD_LR : !transformer ? CNN_LR : optimizer === 'adamw' ? TRANSFORMER_LR : TRANSFORMER_SGD_LR);
  const batch = step.batch ?? (detector && kd ? DETECTOR_BATCH : transformer ? TRANSFORMER_BATCH : FINETUNE_BATCH);
  const what = [step.optimizer === undefined ? (optimizer === 'adamw' ? 'AdamW' : 'SGD') : '', step.lr === undefined ? `learning rate ${lr}` : '', step.batch === undefined ? `batch ${batch}` : ''].filter(Boolean).join(', ');
  const lrNote = detector && kd && what ? `${what} (the default for distilling a detector)` : transformer && what ? `${what} (the default for a transformer: LayerNorm/RMS-norm network)`
    : cnnKd && step.lr === undefined ? `learning rate ${lr} (the default when distilling with BatchNorm)` : '';
  return { kd, kdDefault: step.kd === undefined, ...bn, kdNote, optimizer, lr, batch, lrNote };
}

/** Whether the step distils a detector on its pre-decode head by default: a DFL head found, no objective or matched value given. */
function detectorDistills(model: Model, step: FinetuneStep): boolean {
  return step.objective === undefined && step.matchOutput === undefined && !step.iterative && !step.reinit && detectorHead(model) !== undefined;
}

/**
 * A detector distilled by default (detectorDistills, with a teacher): both models get the distillation target
 * (pipeline/detector.ts), the trainer matches it, and without validation data a held-out part of the training
 * images validates before and after. Undefined when the defaults do not apply.
 */
function detectorSetup(ctx: RunContext, model: Model, step: FinetuneStep, opts: FinetuneOptions): { head: DetectHead; model: Model; loss: DetectorDistillLoss; heldOut: number } | undefined {
  if (!opts.teacher || !detectorDistills(model, step)) return undefined;
  const head = detectorHead(model)!;
  const th = detectorHead(opts.teacher);
  if (!th || th.raw !== head.raw || th.boxChannels !== head.boxChannels || th.classes !== head.classes) {
    ctx.emit({ type: 'warning', message: `a detector, but the teacher's head differs (${th ? `'${th.raw}'` : 'none found'}): distilling on the output as it is` });
    return undefined;
  }
  const loss = step.detDistill ?? DETECTOR_DISTILL_LOSS;
  ctx.emit({ type: 'info', message: formatDistillChoice(head, loss) });
  opts.teacher = withDistillTarget(opts.teacher, head);
  opts.matchOutput = DISTILL_VALUE;
  opts.objective = 'match-teacher';
  if (loss !== 'mse') opts.detectDistill = { value: head.raw, regMax: head.bins, nc: head.classes, confidence: loss === 'ce' };
  if (step.schedule === undefined) {
    opts.schedule = { kind: 'cosine', warmupSteps: DETECTOR_WARMUP };
    ctx.emit({ type: 'info', message: `schedule: cosine after a linear warmup of ${DETECTOR_WARMUP} steps (the default for distilling a detector; --schedule overrides)` });
  }
  let heldOut = 0;
  if (!opts.val) {
    const train = opts.train as Dataset;
    heldOut = Math.min(DETECTOR_HOLDOUT_MAX, Math.floor(train.size * DETECTOR_HOLDOUT));
    if (heldOut > 0) {
      const cut = train.size - heldOut;
      opts.val = train.subset(Array.from({ length: heldOut }, (_, i) => cut + i));
      opts.train = train.subset(Array.from({ length: cut }, (_, i) => i));
      ctx.emit({ type: 'info', message: `validation: the last ${heldOut} of the ${train.size} training images held out (not trained on), to compare the model with the teacher before and after` });
    }
  }
  return { head, model: withDistillTarget(model, head), loss, heldOut };
}

/** The BatchNorm choice of finetuneChoices. */
function batchNormChoice(model: Model, step: FinetuneStep, dense: Model, stop: Pick<StopOptions, 'afterPrune' | 'bnReference'>): Pick<FinetuneChoices, 'bn' | 'bnDefault' | 'bnLine'> {
  if (step.bn !== undefined) {
    const bnLine = step.bn === 'none' ? 'BatchNorm: none re-inserted (--finetune-bn none)' : `BatchNorm: ${step.bn === 'reinsert' ? 're-inserted' : 'inserted fresh'} after the convs (as asked)`;
    return { bn: step.bn, bnDefault: false, bnLine };
  }
  const none = (why: string) => ({ bn: 'none' as const, bnDefault: true, bnLine: `BatchNorm: none re-inserted (${why})` });
  // The original's statistics are at hand after a prune step, or given (shears finetune --teacher / --bn-reference).
  if (stop.afterPrune !== true && dense === model && !stop.bnReference) return none('no prune step before and no original model given (--teacher or --bn-reference)');
  // Measured on fmnist_det (50% MACs, one epoch of head distillation): re-inserted BatchNorm 0.428 mAP50-95, none 0.540.
  if (detectorDistills(model, step)) return none('a detector distilled on its head: re-inserted BatchNorm measured worse there');
  if (step.reinit || step.resume !== undefined || step.iterative) return none(step.reinit ? 'training from scratch' : step.resume !== undefined ? 'resuming: the checkpoint keeps its own' : 'iterative pruning');
  const found = detectFoldedBatchNorm(model, stop.bnReference ?? dense);
  if (!found.folded) return none(found.reason);
  const partial = found.withStatistics < found.convs ? `; ${found.convs - found.withStatistics} without the dense model's statistics start as the identity` : '';
  return { bn: 'reinsert', bnDefault: true, bnLine: `BatchNorm: re-inserted after ${found.convs} convs (the exporter folded it${partial})` };
}

export async function runFinetune(ctx: RunContext, model: Model, step: FinetuneStep, stop: StopOptions): Promise<{ model: Model; report: FinetuneSummary }> {
  const s = withDefaults(FINETUNE_OPTIONS, step);
  stop.beforeWork?.(model);
  // Options that go together are checked before any data is opened or any choice printed.
  if (s.detAssign !== undefined && s.objective !== 'detect') throw new OptionError('finetune.detAssign', 'goes with the detect objective ({finetune.objective} detect)');
  if (s.detDistill !== undefined && (s.objective !== undefined || s.matchOutput !== undefined)) throw new OptionError('finetune.detDistill', 'chooses the loss of a detector\'s default distillation: not with {finetune.objective} or {finetune.matchOutput}');
  const trainData = await ctx.data('finetune.train', s.train);
  if (isTokenData(trainData)) return runLMFinetune(ctx, model, step, stop, trainData);
  if (step.steps !== undefined) throw new OptionError('finetune.steps', 'applies to token data (language models); other data trains for {finetune.epochs}');
  const choices = finetuneChoices(model, step, ctx.dense, stop);
  // The detect objective has no distillation term: the dense model (kd) is the assignment's reference with
  // --finetune-det-assign reference, and BatchNorm's.
  const kdWhat = step.objective === 'detect'
    ? `detection loss, no distillation${choices.kd && step.detAssign === 'reference' ? ' (the assignment aligns on the dense model)' : ''}`
    : `${choices.kd ? 'distilling from the dense model' : 'no distillation'}${choices.kdDefault ? choices.kdNote : ' (as asked)'}`;
  if (stop.afterPrune) ctx.emit({ type: 'info', message: `${kdWhat}; ${choices.bnLine}${choices.lrNote ? `; ${choices.lrNote}` : ''}` });
  else if (choices.bnDefault && choices.bn !== 'none') ctx.emit({ type: 'info', message: `${choices.bnLine}, statistics from the original model` });
  else if (choices.lrNote) ctx.emit({ type: 'info', message: choices.lrNote });
  // A multi-input model trains with its other inputs pinned to their constant feeds (train/pin-feeds.ts); the
  // result gets its inputs back. The teacher and the BatchNorm reference take the same feeds.
  const pin = pinFeeds(model, ctx.feeds);
  const opts = await trainerOptions(ctx, s, stop, choices);
  if (pin.pinned.length) {
    model = pin.model;
    opts.frozen = pin.pinned;
    if (opts.teacher) opts.teacher = pinFeeds(opts.teacher, ctx.feeds, 'the teacher').model;
    if (opts.bnReference) opts.bnReference = pinFeeds(opts.bnReference, ctx.feeds, 'the BatchNorm reference').model;
    ctx.emit({ type: 'info', message: `fine-tuning with ${pin.pinned.map((n) => `'${n}'`).join(', ')} pinned to ${pin.pinned.length > 1 ? 'their feeds' : 'its feed'} (${pin.pinned.map((n) => `${n}=${formatFeedSpec(ctx.feeds!.feeds[n]!)}`).join(', ')}); the written model keeps ${pin.pinned.length > 1 ? 'them as inputs' : 'it as an input'}` });
  }
  const train = opts.train as Dataset;
  const val = opts.val as Dataset | undefined;
  const samples = { trainSamples: train.size, ...(val ? { valSamples: val.size } : {}) };
  if (!s.reinit && stop.beforeTraining) await stop.beforeTraining(opts.teacher ?? model, val ?? train, opts.teacher ? 'the teacher' : 'the model');
  if (s.iterative) {
    const { epochs, ...each } = opts;
    const r = await pruneIteratively(model, s.iterative, epochs, each, (st) => ctx.emit({ type: 'info', message: formatStage(st) }));
    unpinFeeds(r.model, pin.pinned);
    ctx.storePreprocess(r.model);
    const acc = r.stages.at(-1)?.acc;
    return {
      model: r.model,
      report: { epochs: r.stages.reduce((n, st) => n + st.history.length, 0), seconds: r.seconds, ...samples, ...(acc !== undefined ? { valTop1: acc } : {}), choices, history: r.stages.flatMap((st) => st.history), stages: r.stages },
    };
  }
  if (stop.checkpointOnStop !== undefined) opts.checkpointOnStop = stop.checkpointOnStop;
  const det = detectorSetup(ctx, model, step, opts);
  const t0 = performance.now();
  let kept = false;
  const r = await finetune(det ? det.model : model, opts).catch((e: unknown): FinetuneResult => {
    // A detector's default recovery never leaves it worse: a diverged run keeps the model given.
    if (!det || !(e instanceof ShearsError) || !e.message.startsWith('training diverged')) throw e;
    ctx.emit({ type: 'warning', message: `${e.message.split(':')[0]}: kept the model as it was before fine-tuning` });
    kept = true;
    return { model: det.model, history: [], seconds: (performance.now() - t0) / 1000 };
  });
  if (r.rebatched !== undefined) ctx.emit({ type: 'info', message: `the model's input has a static batch of ${r.rebatched}: trained on a rebatched copy (batched runs checked equal to per-sample runs; \`shears rebatch\`), the written model keeps the batch of ${r.rebatched}` });
  if (det) {
    stripDistillTarget(r.model);
    // Never worse than the model given: validated against the teacher before and after.
    const before = r.initialValRelMse, after = r.history.at(-1)?.valRelMse;
    if (before !== undefined && after !== undefined) {
      const fid = `validation relMSE vs the teacher's head ${before.toExponential(3)} -> ${after.toExponential(3)}`;
      if (!(after < before)) {
        ctx.emit({ type: 'warning', message: `fine-tuning made the detector worse (${fid}): kept the model as it was before fine-tuning` });
        r.model = model;
        kept = true;
      } else ctx.emit({ type: 'info', message: `fine-tuning improved the detector (${fid}): kept the fine-tuned weights` });
    }
  }
  unpinFeeds(r.model, pin.pinned);
  ctx.storePreprocess(r.model);
  const last = r.history.at(-1);
  const acc = last?.valAcc;
  const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
  ctx.emit({ type: 'info', message: `fine-tuned ${r.history.length} epoch(s) in ${r.seconds.toFixed(1)} s${r.initialValAcc !== undefined ? `: val top-1 ${pct(r.initialValAcc)}` : ''}${acc !== undefined ? ` -> ${pct(acc)}` : ''}` });
  if (s.objective === 'detect') ctx.emit({ type: 'info', message: `detection loss ${r.history[0]?.trainLoss.toFixed(4) ?? '-'} (epoch 1) -> ${last?.trainLoss.toFixed(4) ?? '-'} (last epoch); validation data is not scored while training with the detect objective: measure mAP with \`shears eval --task detect\`` });
  return {
    model: r.model,
    report: {
      epochs: r.history.length,
      seconds: r.seconds,
      ...samples,
      ...(r.initialValAcc !== undefined ? { valTop1Before: r.initialValAcc } : {}),
      ...(acc !== undefined ? { valTop1: acc } : {}),
      ...(r.initialValRelMse !== undefined ? { valRelMseBefore: r.initialValRelMse, ...(last?.valRelMse !== undefined ? { valRelMse: last.valRelMse } : {}) } : {}),
      ...(s.objective === 'detect' && last ? { detectLoss: { first: r.history[0]!.trainLoss, last: last.trainLoss } } : {}),
      ...(det ? { detector: { head: det.head.raw, matched: DISTILL_VALUE, loss: det.loss, heldOut: det.heldOut, keptBefore: kept } } : {}),
      choices,
      history: r.history,
    },
  };
}
