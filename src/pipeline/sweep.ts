/**
 * The sweep: one structured-pruning variant per target (a fraction of the MACs, parameters or measured latency to
 * keep), each through the same pipeline steps as `shears prune` / `shears run` (prune, then repair and fine-tuning
 * when asked), then every variant and the dense model measured side by side (report/evidence.ts: accuracy, or mAP
 * for a detector, or fidelity without labels; latency interleaved at one batch and thread count; MACs, parameters,
 * sizes) and the Pareto front of accuracy against latency flagged (report/pareto.ts).
 *
 * Every target is planned first (the prune step alone, whose plan the variant then replays exactly): a target the
 * model cannot reach stops the sweep with one error naming the closest reachable figure, before any repair,
 * fine-tuning or measurement.
 */
import type { Dataset } from '../data/dataset.js';
import { mergePreprocess, readPreprocess, writePreprocess, type PreprocessSpec } from '../data/preprocess.js';
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import { gatherEvidence, type EvidenceEntry, type EvidenceReport, type ModelEvidence } from '../report/evidence.js';
import { evidencePareto, qualityOf, type ParetoLatency, type ParetoMetric } from '../report/pareto.js';
import type { StructuredPlan } from '../plan/plan.js';
import type { OpenData } from './context.js';
import { createRunCache, type RunCache } from './cache.js';
import type { PipelineEvent } from './events.js';
import type { StructuredSummary } from './prune.js';
import { validateRecipe, type Recipe } from './recipe.js';
import { PipelineStopped, runPipeline, type PipelineReport, type RunOptions } from './run.js';

export type SweepKind = 'macs' | 'params' | 'latency';

export interface SweepOptions {
  /** Fractions to keep, each in (0, 1]: one variant per target. */
  targets: readonly number[];
  /** What the targets are fractions of (default macs). */
  kind?: SweepKind;
  /** The structured prune step's options (as in a recipe: importance, roundTo, calib, ...), without target or mode. */
  prune?: Record<string, unknown>;
  /** A repair step after pruning (as in a recipe: { methods: ['lsq'], calib }); none when omitted. */
  repair?: Record<string, unknown>;
  /** A fine-tuning step after repair (as in a recipe: { epochs, train, ... }); none when omitted. */
  finetune?: Record<string, unknown>;
  /** Preprocessing over the model's stored one (as a recipe's). */
  preprocess?: PreprocessSpec;
  /** Role bindings for `$role` specs in the step options (as RunOptions.data). */
  data?: Readonly<Record<string, string>>;
  /** Evaluation data: top-1 (or mAP for task detect) with labels, fidelity to the dense model without. */
  val?: string;
  /** At most this many samples of `val`; evaluation batch (default 64). */
  dataLimit?: number;
  evalBatch?: number;
  /** 'detect': detectors scored by mAP50-95 (metrics/detection-eval.ts) on detection data. */
  task?: 'classify' | 'detect';
  /** Latency: batch for dynamic dimensions (default 1; also the batch of latency targets), threads, warm-up and timed runs (default 5 and 30). */
  batch?: number;
  threads?: number;
  warmup?: number;
  runs?: number;
  /** Which latency ranks the front and gives the ratios: the median wall time (default) or the median CPU time of a run. */
  latencyBy?: ParetoLatency;
  /** Opens data set specs (the CLI's reads files; a browser page its own). */
  openData: OpenData;
  onProgress?: (event: SweepEvent) => void;
  /** Stops the sweep between targets, and a fine-tuning step at its next training step: SweepStopped is thrown. */
  signal?: AbortSignal;
  /** Fine-tuning progress, as RunOptions.trainProgress. */
  trainProgress?: RunOptions['trainProgress'];
  /** The model file as read (the dense point's sizes; default: re-encoded). */
  inputBytes?: Uint8Array;
  /**
   * The cache every pipeline run of the sweep shares (RunOptions.cache): the dense model's statistics (data sets,
   * calibration activation statistics, dense scores) computed once per sweep. Default: a new one per sweep; false:
   * none (every run computes them itself, as separate `shears prune` runs would).
   */
  cache?: RunCache | false;
  /** Called with the model each variant's fine-tuning starts from, before it reads data (RunOptions.beforeFinetune). */
  beforeFinetune?: RunOptions['beforeFinetune'];
  /** Called with each variant once built (before the measurement); may return where it was written (reported). */
  onVariant?: (variant: SweepVariant) => string | void | Promise<string | void>;
}

export interface SweepVariant {
  label: string;
  target: number;
  model: Model;
  report: PipelineReport;
}

export type SweepPhase = 'plan' | 'build' | 'measure';

export type SweepEvent =
  /** A phase begins: planning every target, building the variants, measuring them with the dense model. */
  | { type: 'phase'; phase: SweepPhase; message: string }
  /** Work on one target begins (index of `total`). */
  | { type: 'target'; phase: 'plan' | 'build'; target: number; label: string; index: number; total: number }
  /** An event of a target's pipeline run. */
  | { type: 'step'; target: number; label: string; event: PipelineEvent }
  /** Evaluation progress of one model while measuring. */
  | { type: 'progress'; phase: 'measure'; label: string; done: number; total: number };

/** One model of the sweep, as plain JSON. */
export interface SweepPoint {
  label: string;
  /** The target (undefined: the dense model). */
  target?: number;
  /** Where the variant was written (SweepOptions.onVariant). */
  file?: string;
  macs: number;
  params: number;
  fileBytes: number;
  gzipBytes: number;
  /** To the dense model. */
  macsRatio: number;
  paramsRatio: number;
  /** Median wall time and median CPU time of a run, ms. */
  latencyMs: number;
  cpuMs: number;
  /** This model's latency (by `latencyBy`) over the dense model's, measured interleaved. */
  latencyRatio: number;
  /** The quality figure of the front (see SweepReport.metric); undefined without data. */
  quality?: number;
  top1?: number;
  map5095?: number;
  /** Top-1 agreement with the dense model (classifiers with data). */
  agreement?: number;
  /** On the Pareto front of quality against latency. */
  pareto: boolean;
  /** The planning figures: what the prune step reached (its measured latency for a latency target). */
  planned?: { macsRatio: number; paramsRatio: number; latencyRatio?: number };
  /** The variant's pipeline report (less the per-layer lists). */
  pipeline?: Omit<PipelineReport, 'layers' | 'frozen'>;
}

export interface SweepReport {
  format: 'shears.sweep';
  version: 1;
  kind: SweepKind;
  targets: number[];
  /** The quality figure of the front (undefined: no evaluation data, the front is by latency alone). */
  metric?: ParetoMetric;
  latencyBy: ParetoLatency;
  dense: SweepPoint;
  /** One per target, in the order given. */
  points: SweepPoint[];
  /** The labels on the front, fastest first. */
  front: string[];
  /** Everything measured (report/html.ts renders it; its `pareto` marks the front). */
  evidence: EvidenceReport;
  /** Wall time of the whole sweep and of its phases. */
  seconds: number;
  phaseSeconds: Record<SweepPhase, number>;
}

/** The sweep stopped by SweepOptions.signal: the variants built before it (each already given to onVariant). */
export class SweepStopped extends Error {
  constructor(readonly built: { label: string; target: number; file?: string }[], readonly phase: SweepPhase) {
    super(`sweep stopped while ${phase === 'plan' ? 'planning' : phase === 'build' ? 'building variants' : 'measuring'}: ${built.length} variant(s) built`);
    this.name = 'SweepStopped';
  }
}

/** The label of a target's variant: `macs0.5`. */
export function sweepLabel(kind: SweepKind, target: number): string {
  return `${kind}${target}`;
}

/** Checks the targets: a non-empty list of distinct numbers in (0, 1]. Throws a ShearsError naming the bad one. */
export function checkTargets(targets: readonly unknown[], what = 'targets'): number[] {
  if (!Array.isArray(targets) || targets.length === 0) throw new ShearsError(`${what}: give at least one target, a fraction in (0, 1]`);
  const out: number[] = [];
  for (const t of targets) {
    if (typeof t !== 'number' || !Number.isFinite(t)) throw new ShearsError(`${what}: '${String(t)}' is not a number; targets are fractions in (0, 1] such as 0.9,0.7,0.5`);
    if (!(t > 0 && t <= 1)) throw new ShearsError(`${what}: ${t} is outside (0, 1]: a target is the fraction to keep`);
    if (out.includes(t)) throw new ShearsError(`${what}: ${t} is given twice`);
    out.push(t);
  }
  return out;
}

/** `0.9,0.8,0.7` as targets (a ShearsError on empty or garbage text). */
export function parseTargets(text: string, what = '--targets'): number[] {
  const parts = text.split(',').map((s) => s.trim());
  if (text.trim() === '' || parts.some((p) => p === '')) throw new ShearsError(`${what} '${text}': expected a comma list of fractions in (0, 1], e.g. 0.9,0.7,0.5`);
  return checkTargets(parts.map((p) => (/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(p) ? Number(p) : p)), what);
}

function recipeOf(o: SweepOptions, target: StructuredTarget, withRest: boolean): Recipe {
  const { target: _t, mode: _m, kind: _k, ...prune } = o.prune ?? {};
  if (target.kind === 'plan') {
    // the plan replayed names its blocks and widths: the options that only choose them do not go with it
    for (const k of ['removeBlocks', 'latencyCache', 'landingCheck']) delete prune[k];
  }
  // the latency targets are planned at the sweep's thread count, unless the prune options give one
  if (o.threads !== undefined && prune['threads'] === undefined) prune['threads'] = o.threads;
  const steps: unknown[] = [{ kind: 'prune', mode: 'structured', ...prune, target }];
  if (withRest && o.repair) steps.push({ ...o.repair, kind: 'repair' });
  if (withRest && o.finetune) steps.push({ ...o.finetune, kind: 'finetune' });
  return validateRecipe({ format: 'shears.recipe', version: 1, ...(o.preprocess && Object.keys(o.preprocess).length ? { preprocess: o.preprocess } : {}), steps }, 'sweep');
}

type StructuredTarget = { kind: 'macs' | 'params'; value: number } | { kind: 'latency'; value: number; batch?: number } | { kind: 'plan'; plan: StructuredPlan };

/** Whether a planned target was reached, and what was (fraction of the MACs, parameters or measured latency). */
function reached(kind: SweepKind, target: number, s: StructuredSummary): { ok: boolean; got: number } {
  if (kind === 'latency') {
    // the measured latency of the trial loop; a planner that predicts latency refuses what it cannot reach itself
    if (s.latency === undefined) return { ok: true, got: Number.NaN };
    return { ok: s.latency.ratio <= target, got: s.latency.ratio };
  }
  const got = kind === 'macs' ? s.macsRatio : s.paramsRatio;
  // the planner's tolerance (see the MAC/param target flags: within 2%)
  return { ok: got <= target * 1.02, got };
}

function pointOf(m: ModelEvidence, dense: ModelEvidence, metric: ParetoMetric | undefined, by: ParetoLatency, isBase: boolean): SweepPoint {
  const f = m.fidelity ? Object.values(m.fidelity)[0] : undefined;
  const agreement = isBase ? undefined : m.agreement ?? f?.agreement;
  const q = metric ? qualityOf(m, metric, isBase) : undefined;
  return {
    label: m.label,
    ...(m.path !== undefined ? { file: m.path } : {}),
    macs: m.macs, params: m.params, fileBytes: m.fileBytes, gzipBytes: m.gzipBytes,
    macsRatio: m.vsBase.macs, paramsRatio: m.vsBase.params,
    latencyMs: m.latency.median, cpuMs: m.latency.cpuMedian,
    latencyRatio: m.latency[by] / dense.latency[by],
    ...(q !== undefined ? { quality: metric === 'relMse' ? -q : q } : {}),
    ...(m.accuracy ? { top1: m.accuracy.top1 } : {}),
    ...(m.detection?.map5095 !== undefined ? { map5095: m.detection.map5095 } : {}),
    ...(agreement !== undefined ? { agreement } : {}),
    pareto: false,
  };
}

/**
 * Runs the sweep over `model` (not modified): plans every target, builds each variant (prune, repair, fine-tune),
 * then measures them all with the dense model. Returns plain JSON (SweepReport); the variants go to onVariant.
 */
export async function sweep(model: Model, options: SweepOptions): Promise<SweepReport> {
  const t0 = performance.now();
  const kind = options.kind ?? 'macs';
  if (!['macs', 'params', 'latency'].includes(kind)) throw new ShearsError(`sweep: the target kind must be macs, params or latency, not '${String(kind)}'`);
  const targets = checkTargets(options.targets);

  const by = options.latencyBy ?? 'median';
  const sink = options.onProgress ?? (() => {});
  const signal = options.signal;
  const built: { label: string; target: number; file?: string }[] = [];
  const stopIfAsked = (phase: SweepPhase) => {
    if (signal?.aborted) throw new SweepStopped(built, phase);
  };
  const targetOf = (value: number): StructuredTarget => (kind === 'latency' ? { kind, value, batch: options.batch ?? 1 } : { kind, value });
  // Checked once before any work (options, order, data roles): the recipe of the first target with every step.
  recipeOf(options, targetOf(targets[0]!), true);
  // One cache for every run (planning and building): the dense model's statistics are computed once per sweep.
  const cache = options.cache === false ? undefined : options.cache ?? createRunCache();
  const runOpts = (target: number, label: string): RunOptions => ({
    openData: options.openData,
    ...(cache ? { cache } : {}),
    ...(options.data ? { data: options.data } : {}),
    ...(options.inputBytes ? { inputBytes: options.inputBytes } : {}),
    ...(signal ? { signal } : {}),
    ...(options.trainProgress !== undefined ? { trainProgress: options.trainProgress } : {}),
    ...(options.beforeFinetune ? { beforeFinetune: options.beforeFinetune } : {}),
    onProgress: (event) => sink({ type: 'step', target, label, event }),
  });

  const phaseSeconds: Record<SweepPhase, number> = { plan: 0, build: 0, measure: 0 };
  let mark = performance.now();
  const lap = (phase: SweepPhase) => {
    const now = performance.now();
    phaseSeconds[phase] = (now - mark) / 1000;
    mark = now;
  };
  // 1. Plan every target (the prune step alone): the unreachable ones stop the sweep before any other work.
  sink({ type: 'phase', phase: 'plan', message: `planning ${targets.length} ${kind} target(s): ${targets.join(', ')}` });
  const plans: { target: number; label: string; plan: StructuredPlan; summary: StructuredSummary }[] = [];
  const unreachable: string[] = [];
  for (const [index, target] of targets.entries()) {
    stopIfAsked('plan');
    const label = sweepLabel(kind, target);
    sink({ type: 'target', phase: 'plan', target, label, index, total: targets.length });
    // The planner's warnings wait for the verdict: an unreachable target's ("kept 1.5% of the MACs") is its error.
    const warnings: SweepEvent[] = [];
    const opts = runOpts(target, label);
    opts.onProgress = (event) => (event.type === 'warning' ? warnings.push({ type: 'step', target, label, event }) : sink({ type: 'step', target, label, event }));
    try {
      const r = await runPipeline(model, recipeOf(options, targetOf(target), false), opts);
      const summary = r.report as StructuredSummary;
      const { ok, got } = reached(kind, target, summary);
      if (!ok) unreachable.push(`${target} (closest reachable: ${got.toFixed(3)})`);
      else if (r.plan) plans.push({ target, label, plan: r.plan, summary });
      else throw new Error(`sweep: the prune step of target ${target} returned no plan`);
      if (ok) warnings.forEach(sink);
    } catch (e) {
      // (a planner that refuses a target it cannot reach; other errors, such as unreadable data, are themselves)
      if (!(e instanceof ShearsError) || !/nothing was pruned|reach/i.test(e.message)) throw e;
      unreachable.push(`${target} (${e.message.replace(/; no file written$/, '')})`);
    }
  }
  if (unreachable.length) {
    throw new ShearsError(`the model cannot reach ${unreachable.length === 1 ? 'the' : 'these'} ${kind} target${unreachable.length === 1 ? '' : 's'}: ${unreachable.join('; ')}; nothing was built or written`);
  }

  lap('plan');
  // 2. Build each variant: its plan replayed, then repair and fine-tuning as asked.
  sink({ type: 'phase', phase: 'build', message: `building ${plans.length} variant(s)${options.repair ? ' with repair' : ''}${options.finetune ? ' and fine-tuning' : ''}` });
  const preprocess = mergePreprocess(readPreprocess(model), options.preprocess ?? {});
  const variants: (EvidenceEntry & { target: number; report: PipelineReport; planned: StructuredSummary })[] = [];
  for (const [index, p] of plans.entries()) {
    stopIfAsked('build');
    sink({ type: 'target', phase: 'build', target: p.target, label: p.label, index, total: plans.length });
    let r;
    try {
      r = await runPipeline(model, recipeOf(options, { kind: 'plan', plan: p.plan }, true), runOpts(p.target, p.label));
    } catch (e) {
      if (e instanceof PipelineStopped) throw new SweepStopped(built, 'build');
      throw e;
    }
    // The variant keeps the preprocessing it was built and scored with (repair and fine-tuning store it already).
    if (!readPreprocess(r.model) && Object.keys(preprocess).length) writePreprocess(r.model, preprocess);
    const file = await options.onVariant?.({ label: p.label, target: p.target, model: r.model, report: r.report });
    built.push({ label: p.label, target: p.target, ...(typeof file === 'string' ? { file } : {}) });
    variants.push({ label: p.label, model: r.model, target: p.target, report: r.report, planned: p.summary, ...(typeof file === 'string' ? { path: file } : {}) });
  }

  lap('build');
  // 3. Measure every variant with the dense model: one data set, latency interleaved.
  stopIfAsked('measure');
  let data: Dataset | undefined;
  if (options.val !== undefined) {
    const spec = options.val.startsWith('$') ? options.data?.[options.val.slice(1)] : options.val;
    if (spec === undefined) throw new ShearsError(`sweep: the evaluation data ${options.val} is a role no data set is bound to`);
    data = await options.openData(spec, preprocess, model);
  }
  sink({ type: 'phase', phase: 'measure', message: `measuring the dense model and ${variants.length} variant(s) (latency: batch ${options.batch ?? 1}, ${options.threads ?? 'default'} thread(s), ${options.runs ?? 30} interleaved runs${data ? `; data ${data.description}` : ''}) ...` });
  const evidence = await gatherEvidence([{ label: 'dense', model, ...(options.inputBytes ? { bytes: options.inputBytes } : {}) }, ...variants], {
    ...(data ? { data } : {}),
    ...(options.dataLimit !== undefined ? { dataLimit: options.dataLimit } : {}),
    ...(options.evalBatch !== undefined ? { evalBatch: options.evalBatch } : {}),
    batch: options.batch ?? 1,
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
    ...(options.warmup !== undefined ? { warmup: options.warmup } : {}),
    ...(options.runs !== undefined ? { runs: options.runs } : {}),
    ...(options.task === 'detect' ? { task: 'detect' as const } : {}),
    onProgress: (label, p) => sink({ type: 'progress', phase: 'measure', label, done: p.done, total: p.total }),
  });
  lap('measure');
  const pareto = evidencePareto(evidence, by);
  const metric = pareto?.metric;
  // No quality figure (no data): the front is by latency alone (the fastest model).
  const front = pareto?.front ?? [evidence.models.reduce((a, b) => (b.latency[by] < a.latency[by] ? b : a)).label];
  evidence.pareto = { ...(metric ? { metric } : {}), latency: by, front };
  const dense = evidence.models[0]!;
  const points = evidence.models.map((m, k) => ({ ...pointOf(m, dense, metric, by, k === 0), pareto: front.includes(m.label) }));
  for (const [k, v] of variants.entries()) {
    const { layers: _l, frozen: _f, ...pipeline } = v.report as PipelineReport & Partial<StructuredSummary>;
    const s = v.planned;
    points[k + 1] = {
      ...points[k + 1]!, target: v.target,
      planned: { macsRatio: s.macsRatio, paramsRatio: s.paramsRatio, ...(s.latency ? { latencyRatio: s.latency.ratio } : {}) },
      pipeline,
    };
  }
  return {
    format: 'shears.sweep',
    version: 1,
    kind,
    targets,
    ...(metric ? { metric } : {}),
    latencyBy: by,
    dense: points[0]!,
    points: points.slice(1),
    front,
    evidence,
    seconds: (performance.now() - t0) / 1000,
    phaseSeconds,
  };
}
