/**
 * What the steps of one run share: the dense model (kept in memory for repair, distillation, BatchNorm statistics
 * and scoring), the preprocessing (resolved once), the data sets (opened once per spec, through the caller's
 * `openData`), role bindings and the event sink.
 */
import type { Dataset } from '../data/dataset.js';
import { hasFeeds, modelInputs, type Feeds } from '../data/feeds.js';
import { bindTokens, isTokenData } from '../data/tokens.js';
import { ShearsError } from '../errors.js';
import { fitToInput, mergePreprocess, normalises, readPreprocess, writePreprocess, PREPROCESS_KEY, type PreprocessSpec } from '../data/preprocess.js';
import type { Model } from '../ir/graph.js';
import type { EvalReport } from '../metrics/evaluate.js';
import type { EventBody, PipelineEvent } from './events.js';
import type { RunCache } from './cache.js';
import { OptionError } from './options.js';
import type { StepKind } from './steps.js';

/**
 * Opens a data set spec with a preprocessing (the CLI passes one that reads files; a browser page its own).
 * `model`, when given, is the model the data feeds: the opener may fill defaults the model implies (a detector's
 * letterbox, 1/255 and rgb on image data: see detectorPreprocess).
 */
export type OpenData = (spec: string, preprocess: PreprocessSpec, model?: Model) => Promise<Dataset>;

export class RunContext {
  /** The preprocessing the recipe asks for over the dense model's stored one. */
  readonly preprocess: PreprocessSpec;
  private readonly fromRecipe: boolean;
  /** The preprocessing the data sets apply (an implied 1/255 made explicit), once one is open. */
  private effective: PreprocessSpec | undefined;
  private readonly open = new Map<string, Promise<Dataset>>();
  private warned = false;
  /** Scores of the dense model by data set, sample limit and settings, for the score steps (each scored once per run). */
  readonly denseScores = new Map<string, Promise<EvalReport>>();
  /**
   * The window length of token data that gives none, where the dense model's sequence dimension is symbolic: the
   * one a step's --input-shape gives (`input_ids=1x256`), see tokenContextHint.
   */
  tokenContext: number | undefined;
  /** The step running now (for events). */
  step: { kind: StepKind | 'pipeline'; index: number } = { kind: 'pipeline', index: -1 };
  /**
   * The caller's cache shared by several runs (RunOptions.cache), with the key naming this run's dense model in it
   * (its identity, and whether the run works in float32); undefined: everything is computed by this run.
   */
  cache: RunCache | undefined;
  denseKey = '';
  /**
   * The key of the model the step running now starts from, while it is still the run's input model as given
   * (no step before it changed it); undefined once one did (what a step computes on it then is not kept).
   */
  sourceKey: string | undefined;

  constructor(
    readonly dense: Model,
    recipePreprocess: PreprocessSpec | undefined,
    private readonly openData: OpenData,
    private readonly bindings: Readonly<Record<string, string>>,
    private readonly sink: (e: PipelineEvent) => void,
    /** Feeds of the model's other inputs (multi-input and stateful models), given to every data set opened. */
    readonly feeds?: Feeds,
  ) {
    this.fromRecipe = recipePreprocess !== undefined && Object.keys(recipePreprocess).length > 0;
    this.preprocess = mergePreprocess(readPreprocess(dense), recipePreprocess ?? {});
  }

  emit(e: EventBody): void {
    this.sink({ ...e, step: this.step.kind, index: this.step.index } as PipelineEvent);
  }

  /** The data set `spec` names (a spec, or a `$role` bound by the caller), opened once per run. */
  data(key: string, spec: string): Promise<Dataset> {
    let resolved = spec;
    if (spec.startsWith('$')) {
      const bound = this.bindings[spec.slice(1)];
      if (bound === undefined) throw new OptionError(key, `is the role ${spec}, which no data set is bound to`);
      resolved = bound;
    }
    let ds = this.open.get(resolved);
    if (!ds) {
      const opened = this.cache ? this.cache.get('data', [this.denseKey, resolved, this.preprocess], () => this.openData(resolved, this.preprocess, this.dense)) : this.openData(resolved, this.preprocess, this.dense);
      ds = opened.then(async (d) => {
        // token data (language models): windows of the dense model's context length, ids within its vocabulary
        if (isTokenData(d)) return bindTokens(d.context === undefined && this.tokenContext !== undefined ? d.withContext(this.tokenContext) : d, this.dense);
        // Once a data set is open (a spec that fails is the error to report, alone).
        if (!this.warned && !normalises(d.preprocess) && !normalises(this.preprocess)) {
          this.warned = true;
          this.emit({ type: 'warning', message: `no normalisation given (no {preprocess.scale}/{preprocess.mean}/{preprocess.std}${readPreprocess(this.dense) ? '' : `, no '${PREPROCESS_KEY}' metadata in the model`}): feeding raw pixel values` });
        }
        checkInputChannels(d, this.dense);
        this.effective ??= d.preprocess;
        if (!hasFeeds(this.feeds)) return d;
        // per-sample feeds of other inputs: their data sets, read as they are (no preprocessing)
        const opened = new Map<string, Dataset>();
        for (const f of Object.values(this.feeds.feeds)) if (f.kind === 'data' && !opened.has(f.spec)) opened.set(f.spec, await this.openData(f.spec, {}));
        return d.withFeeds(this.feeds, { open: (s) => opened.get(s)!, inputs: modelInputs(this.dense) });
      });
      this.open.set(resolved, ds);
    }
    return ds;
  }

  /**
   * What a data set `spec` opened by this run depends on besides the dense model (for cache keys): the spec it
   * stands for, the preprocessing, the feeds of other inputs and the token window length.
   */
  dataKey(spec: string): unknown {
    return [this.specOf(spec), this.preprocess, this.feeds ?? null, this.tokenContext ?? null];
  }

  /**
   * The dense model's score on `ds` (at most `limit` samples): computed once per run for `key` (what the data set
   * and settings depend on, see dataKey), and once per cache where the caller gives one. `fresh`: it was computed
   * now or taken from the caller's cache (not already scored by this run).
   */
  denseScore(key: unknown, score: () => Promise<EvalReport>): { report: Promise<EvalReport>; fresh: boolean } {
    const k = JSON.stringify(key);
    let report = this.denseScores.get(k);
    if (report) return { report, fresh: false };
    report = this.cache ? this.cache.get('denseScore', [this.denseKey, key], score) : score();
    this.denseScores.set(k, report);
    return { report, fresh: true };
  }

  /** The spec a bound role or spec string stands for (for reports). */
  specOf(spec: string): string {
    return spec.startsWith('$') ? this.bindings[spec.slice(1)] ?? spec : spec;
  }

  /**
   * Keeps the preprocessing with a model the run made, so later commands reuse it: the effective spec (what the
   * data sets applied) when the recipe gave preprocessing or the model stores none.
   */
  storePreprocess(model: Model): void {
    const spec = this.effective ?? this.preprocess;
    if (!Object.keys(spec).length) return;
    if (this.fromRecipe || !readPreprocess(model)) writePreprocess(model, spec);
  }
}

/**
 * Refuses image data whose preprocessing gives another channel count than the model's one 4-D input takes (an
 * explicit --color gray for a 3-channel model, say), before onnxruntime does with a raw message.
 */
function checkInputChannels(d: Dataset, model: Model): void {
  const ins = modelInputs(model);
  const shape = ins.length === 1 ? ins[0]!.type?.shape : undefined;
  if (!shape || shape.length !== 4 || d.preprocess.color === undefined) return;
  const fit = fitToInput({ ...d.preprocess, color: undefined as never }, shape).spec;
  const c = fit.layout === 'nhwc' ? shape[3] : shape[1];
  if (typeof c !== 'number' || (c !== 1 && c !== 3)) return;
  const produced = d.preprocess.color === 'gray' ? 1 : 3;
  if (produced !== c) {
    throw new ShearsError(`input '${ins[0]!.name}' takes ${c} channels but the preprocessing gives ${produced} (color ${d.preprocess.color}): give --color ${c === 1 ? 'gray' : 'rgb'}`);
  }
}

/**
 * The sequence length `--input-shape` values give a model's one input where its declared sequence dimension is
 * symbolic (`input_ids=1x256` for [N, T] -> 256): the window length of token data that gives none.
 */
export function tokenContextHint(model: Model, inputShapes: readonly string[]): number | undefined {
  const ins = modelInputs(model);
  const shape = ins.length === 1 ? ins[0]!.type?.shape : undefined;
  if (!shape || shape.length !== 2 || typeof shape[1] === 'number') return undefined;
  for (const spec of inputShapes) {
    const m = /^([^=]+)=(\d+)[x,](\d+)$/.exec(spec.trim());
    if (m && m[1] === ins[0]!.name) return Number(m[3]);
  }
  return undefined;
}
