/**
 * The conductor: runs a recipe's steps over one in-memory model. The dense model stays in memory for repair,
 * distillation, BatchNorm statistics and scoring; data sets are opened once (through the caller's `openData`, so
 * this module reads no files); progress arrives as typed events. The CLI (`shears prune`, `shears run`), user code
 * and a browser page all run pipelines through here.
 */
import type { Model } from '../ir/graph.js';
import { float16Tensors, upcastFp16 } from '../quant/index.js';
import { modelSizes } from '../sparsity/stats.js';
import { feedsFromRecipe, planInputs } from '../data/feeds.js';
import { refuseMultiInput } from '../train/trainer.js';
import { pinnableFeeds } from '../train/pin-feeds.js';
import { opDef } from '../ops/registry.js';
import { cloneModel } from '../ir/clone.js';
import { ShearsError } from '../errors.js';
import type { StructuredPlan } from '../plan/plan.js';
import { TrainingStopped } from '../train/stopped.js';
import type { FinetuneOptions } from '../train/trainer.js';
import { RunContext, tokenContextHint, type OpenData } from './context.js';
import type { RunCache } from './cache.js';
import type { PipelineEvent } from './events.js';
import { runFinetune, type FinetuneSummary, type StopOptions } from './finetune.js';
import { runPrune, type Pruned, type StructuredSummary, type UnstructuredSummary } from './prune.js';
import { runQuantize, type QuantizeSummary } from './quantize.js';
import { StepError, validateRecipe, type Recipe } from './recipe.js';
import { OptionError } from './options.js';
import type { Step } from './steps.js';
import { runRepair, type RepairStageReport } from './repair.js';
import { runScore, type ScoreReport } from './score.js';
import { runReport } from './report.js';
import type { EvidenceReport } from '../report/evidence.js';
import { castBack, checkInputPrecision, describeCheck, upcastForRun, type Float32Report } from './float32.js';

export interface RunOptions {
  /** Opens a data set spec (e.g. the CLI's, which reads files and announces the preprocessing). */
  openData: OpenData;
  onProgress?: (event: PipelineEvent) => void;
  /** Stops fine-tuning at the next training step (it then writes its checkpoint): see PipelineStopped. */
  signal?: AbortSignal;
  /** Data sets for the recipe's roles: `{ calib: 'idx:DIR@train' }` binds `$calib`. */
  data?: Readonly<Record<string, string>>;
  /** The dense model that repair, distillation and scores compare with (default: the input model). */
  reference?: Model;
  /** Where a fine-tuning stopped by `signal` writes its checkpoint. */
  checkpointOnStop?: string;
  /** Fine-tuning progress (train/trainer.ts: true prints epoch progress on stderr, the default). */
  trainProgress?: FinetuneOptions['progress'];
  /** The model whose statistics re-inserted BatchNorm restores (default: the reference). */
  bnReference?: Model;
  /** Called before a finetune step trains (see StopOptions.beforeTraining): e.g. a near-chance check. */
  beforeTraining?: StopOptions['beforeTraining'];
  /** Called with the model a finetune step starts from, before it reads data (see StopOptions.beforeWork). */
  beforeFinetune?: StopOptions['beforeWork'];
  /** The input model's file as read: the prune report's `before` sizes are of these bytes (default: re-encoded). */
  inputBytes?: Uint8Array;
  /**
   * A cache shared by several runs over the same dense model (createRunCache(); a sweep gives one to every run):
   * data sets opened, the dense model's activation statistics and its scores are computed once for all of them
   * (pipeline/cache.ts). The models given must not be modified while it is in use. Default: none.
   */
  cache?: RunCache;
}

/** The report of a run: plain JSON, the object `shears prune --json` prints (less the file names). */
export type PipelineReport = (UnstructuredSummary | StructuredSummary | Record<never, never>) & {
  repair?: RepairStageReport;
  scores?: ScoreReport[];
  finetune?: FinetuneSummary;
  quantize?: QuantizeSummary;
  /** The report step's evidence: the dense model and the final one measured side by side. */
  evidence?: EvidenceReport;
  /** A float16 model worked on in float32 (recipe.float32): the upcast and the cast back, checked. */
  float32?: Float32Report;
};

export interface PipelineResult {
  model: Model;
  report: PipelineReport;
  /** The plan of a structured prune step (replays it exactly: a `plan` target). */
  plan?: StructuredPlan;
}

/**
 * Fine-tuning stopped by RunOptions.signal: `model` is the model before the fine-tuning step (pruned and
 * repaired), `report` the report of the steps done.
 */
export class PipelineStopped extends TrainingStopped {
  constructor(stopped: TrainingStopped, readonly model: Model, readonly stepIndex: number, readonly report: PipelineReport) {
    super(stopped.epoch, stopped.step, stopped.checkpoint);
    this.name = 'PipelineStopped';
  }
}

/** A float16 model upcast to float32 (for a reference model of a --float32 run); others as they are. */
function upcastIfHalf(m: Model): Model {
  return float16Tensors(m) > 0 ? upcastFp16(m).model : m;
}

/**
 * Refuses, before any work, to fine-tune a model with an op that declares it cannot be trained through
 * (OpDef.noGrad: recurrent layers), instead of failing when the training graph is built after the first steps.
 */
function refuseUntrainable(model: Model): void {
  const node = model.graph.nodes.find((n) => opDef(n)?.noGrad !== undefined);
  if (node) throw new ShearsError(`${node.opType} (node '${node.name}'): shears has no gradient rule for this op; ${opDef(node)!.noGrad}`);
}

/** Runs `recipe` on `model` (which is not modified); returns the final model and the report. */
export async function runPipeline(model: Model, recipe: Recipe, options: RunOptions): Promise<PipelineResult> {
  const valid = validateRecipe(recipe);
  const { steps, preprocess, float32 } = valid;
  checkInputPrecision(model, steps, float32 === true);
  const sink = options.onProgress ?? (() => {});
  const feeds = feedsFromRecipe(valid.feeds, valid.carry, 'recipe');
  // The cache keys of the input model and of the dense one, by identity (taken before --float32 upcasts copies).
  const cache = options.cache;
  const f32 = float32 ? ':f32' : '';
  const inputKey = cache ? `m${cache.idOf(model)}${f32}` : '';
  const denseKey = cache && options.reference ? `m${cache.idOf(options.reference)}${f32}` : inputKey;
  // A step that reads data feeds the model's inputs: a multi-input model without feeds for all but one of them
  // (or feeds naming no input) is refused here, before any work.
  // (Taylor scores feed one input: they refuse a multi-input model first; fine-tuning pins the other inputs)
  if (steps.some((s) => s.kind === 'prune' && s.mode === 'structured' && s.importance === 'taylor')) refuseMultiInput(model);
  if (steps.some((s) => s.kind === 'finetune')) {
    pinnableFeeds(model, feeds);
    refuseUntrainable(model);
  }
  let up: Awaited<ReturnType<typeof upcastForRun>> | undefined;
  if (float32) {
    up = await upcastForRun(model);
    for (const c of up.report.checks) {
      const d = describeCheck(c);
      sink({ type: d.ok ? 'info' : 'warning', message: `--float32: ${up.report.tensors} float16 tensors made float32; ${d.message}`, step: 'pipeline', index: -1 } as PipelineEvent);
    }
    if (options.reference) options = { ...options, reference: upcastIfHalf(options.reference) };
    if (options.bnReference) options = { ...options, bnReference: upcastIfHalf(options.bnReference) };
  }
  // (after the --float32 upcast: a float16 input takes the float32 data sets once upcast)
  if (steps.some(readsData)) {
    planInputs(up?.model ?? model, feeds);
    if (options.reference && options.reference !== model) planInputs(options.reference, feeds, 'the dense model');
  }
  const dense = options.reference ?? up?.model ?? model;
  const ctx = new RunContext(dense, preprocess, options.openData, options.data ?? {}, sink, feeds);
  if (cache) {
    ctx.cache = cache;
    ctx.denseKey = denseKey;
  }
  // whether `current` is still the input model as given (what is computed on it may then be kept in the cache)
  let pristine = true;
  ctx.tokenContext = tokenContextHint(dense, steps.flatMap((st) => ('inputShape' in st && Array.isArray(st.inputShape) ? (st.inputShape as string[]) : [])));
  let current = cloneModel(up?.model ?? model);
  let pruning: Pruned | undefined;
  let summary: UnstructuredSummary | StructuredSummary | undefined;
  let plan: StructuredPlan | undefined;
  const parts: Omit<PipelineReport, keyof UnstructuredSummary | keyof StructuredSummary> = {};
  // A prune step's report describes the model once the repairs after it are done (its masks dropped if asked).
  const finishPruning = () => {
    if (pruning) summary = pruning.finish(current);
    pruning = undefined;
  };
  const report = (): PipelineReport => ({ ...(summary ?? {}), ...parts });
  let previous = 'input';
  for (const [index, step] of steps.entries()) {
    if (step.kind !== 'repair' && step.kind !== 'score') finishPruning();
    ctx.step = { kind: step.kind, index };
    ctx.sourceKey = cache && pristine ? inputKey : undefined;
    ctx.emit({ type: 'start' });
    try {
      current = await runStep(step, index);
    } catch (e) {
      // Options found wrong while running (an input name, an unbound role) are reported at their step.
      if (e instanceof OptionError && !(e instanceof StepError)) throw new StepError(index, step.kind, e);
      throw e;
    }
    if (step.kind !== 'score' && step.kind !== 'report') {
      previous = step.kind;
      pristine = false;
    }
  }
  ctx.sourceKey = undefined;
  finishPruning();
  if (up) {
    // Back to float16, unless the result is quantized (int8/dynamic/int4: its float parts stay float32).
    const lastQuantize = steps.filter((s) => s.kind === 'quantize').pop();
    const quantized = lastQuantize?.kind === 'quantize' && lastQuantize.mode !== 'fp16';
    ctx.step = { kind: 'pipeline', index: -1 };
    if (quantized) {
      ctx.emit({ type: 'info', message: '--float32: the quantized result keeps float32 scales and activations (not cast back to float16)' });
    } else if (lastQuantize === undefined) {
      const back = await castBack(current, up.ioFp16);
      const d = describeCheck(back.check);
      ctx.emit({ type: d.ok ? 'info' : 'warning', message: `--float32: result cast back to float16; ${d.message}` });
      up.report.checks.push(back.check);
      up.report.castBack = true;
      current = back.model;
      // The prune report's file sizes are those of the file written: the float16 one.
      if (summary && 'masksStored' in summary) {
        const b = modelSizes(current);
        summary = { ...summary, after: { ...summary.after, fileBytes: b.bytes, gzipBytes: b.gzipBytes } };
      }
    } else up.report.castBack = true;
    parts.float32 = up.report;
  }
  return { model: current, report: report(), ...(plan ? { plan } : {}) };

  async function runStep(step: Step, index: number): Promise<Model> {
    switch (step.kind) {
      case 'prune':
        pruning = await runPrune(ctx, current, step, options.inputBytes);
        plan = pruning.plan;
        return pruning.model;
      case 'repair': {
        if (!options.reference && !steps.slice(0, index).some((s) => s.kind === 'prune')) {
          throw new ShearsError(`step ${index + 1} (repair) needs the dense model to compare with: a prune step before it, or the original model as the run's reference (shears run --dense)`);
        }
        const r = await runRepair(ctx, current, step, pruning?.pattern, pruning?.weights);
        parts.repair = r.report;
        return r.model;
      }
      case 'score':
        (parts.scores ??= []).push(await runScore(ctx, current, step, index, previous, previous !== 'input' || options.reference !== undefined));
        return current;
      case 'finetune':
        try {
          const r = await runFinetune(ctx, current, step, {
            ...(options.signal ? { signal: options.signal } : {}),
            ...(options.checkpointOnStop !== undefined ? { checkpointOnStop: options.checkpointOnStop } : {}),
            ...(options.trainProgress !== undefined ? { progress: options.trainProgress } : {}),
            ...(options.bnReference ? { bnReference: options.bnReference } : {}),
            ...(options.beforeTraining ? { beforeTraining: options.beforeTraining } : {}),
            ...(options.beforeFinetune ? { beforeWork: options.beforeFinetune } : {}),
            afterPrune: steps.slice(0, index).some((s) => s.kind === 'prune'),
          });
          parts.finetune = r.report;
          return r.model;
        } catch (e) {
          if (e instanceof TrainingStopped) throw new PipelineStopped(e, current, index, report());
          throw e;
        }
      case 'quantize': {
        const r = await runQuantize(ctx, current, step);
        parts.quantize = r.report;
        return r.model;
      }
      case 'report':
        parts.evidence = await runReport(ctx, current, step, previous, options.reference ? undefined : options.inputBytes);
        return current;
    }
  }
}

/** Whether a step reads a data set (so it feeds the model's inputs). */
function readsData(step: Step): boolean {
  const o = step as unknown as Record<string, unknown>;
  return ['data', 'train', 'val', 'taylorData'].some((k) => o[k] !== undefined) || (o['calib'] !== undefined && o['calib'] !== 'random');
}
