/**
 * Structured pruning, end to end: (depth pruning) -> dependency graph -> importance -> plan -> surgery.
 * Returns the smaller model, the replayable plan and a report (MACs/params before and after, per-layer widths,
 * frozen channels with reasons).
 */
import { ShearsError } from '../../errors.js';
import type { Dim, Model } from '../../ir/graph.js';
import { weightSpec } from '../../ops/registry.js';
import { analyzeModel, concreteInputShapes } from '../../depgraph/analyze.js';
import type { DepGraph, Frozen } from '../../depgraph/depgraph.js';
import { unitImportance, type Aggregation, type ImportanceKind } from '../../importance/importance.js';
import { CostModel } from '../../plan/cost.js';
import { planStructured, unitsOfPlan, type PlanOptions, type StructuredPlan } from '../../plan/plan.js';
import { planBudgetSync } from '../../plan/budget.js';
import { chooseUnits, depthUnits, removeBlocks, type BlockUnit } from './depth.js';
import { TokenDataset } from '../../data/tokens.js';
import { lmWeightGradients } from '../../train/lm.js';
import { weightGradients, type GradientOptions } from '../../importance/taylor.js';
import { activationStats, type ActivationOptions, type ActivationStats } from '../../importance/activation.js';
import type { Dataset } from '../../data/dataset.js';
import type { ArrayData } from '../../data/in-memory.js';
import { removeUnits } from './surgery.js';
import { cloneModel } from '../../ir/clone.js';
import type { SplitUnits } from '../../ops/types.js';

export interface StructuredOptions extends PlanOptions {
  importance?: ImportanceKind;
  aggregate?: Aggregation;
  seed?: number;
  /** Weight gradients for Taylor importance, by initializer name of the analysed model (see taylorGradients). */
  gradients?: Map<string, Float32Array>;
  /** Layer input statistics for activation importance, on the analysed model (see activationStatistics). */
  activations?: ActivationStats;
  ignore?: RegExp;
  /** Stored values that are not parameters: constants folded before pruning (analysis/fold.ts, FoldResult.created). */
  notParameters?: ReadonlySet<string>;
  /**
   * Where an axis is split into blocks x positions (attention heads x head_dim): prune whole blocks ('blocks',
   * default) or the same positions in every block ('positions'; rotary pairs stay together).
   */
  splitUnits?: SplitUnits;
  /**
   * Also prune axes that a normalisation averages over: the hidden size of a transformer's residual stream
   * (LayerNormalization, decomposed RMSNorm). Not exact (the statistics change): repair or fine-tune after.
   */
  normalized?: boolean;
  inputShapes?: Record<string, Dim[]>;
  /** Remove this many depth units (least important first) before channel pruning. */
  removeBlocks?: number;
  /** What a depth unit is: a whole block (default; a transformer's attention + MLP), or only attention / MLP sub-blocks. */
  blockUnit?: BlockUnit;
  /** Scores of the depth units by name (smaller: removed first; see influence.ts), and how they were computed. Default: parameter RMS. */
  depthRanking?: { method: string; scores: ReadonlyMap<string, number> };
  /** Remove residual blocks when channel pruning alone cannot reach a MAC/param target (default true). */
  autoDepth?: boolean;
  /** Replay a saved plan instead of planning. */
  plan?: StructuredPlan;
  progress?: (message: string) => void;
}

export interface LayerWidth {
  node: string;
  opType: string;
  weight: string;
  before: number;
  after: number;
}

export interface StructuredReport {
  before: { macs: number; params: number };
  after: { macs: number; params: number };
  macsRatio: number;
  paramsRatio: number;
  layers: LayerWidth[];
  removedBlocks: string[];
  /** The depth units removed (DepthUnit.name), when this run chose them (not replayed from a plan). */
  removedUnits: string[];
  frozen: Frozen[];
  groups: number;
  prunableChannels: number;
  removedChannels: number;
  timings: Record<string, number>;
}

export interface StructuredResult {
  model: Model;
  plan: StructuredPlan;
  report: StructuredReport;
}

function hasTarget(o: StructuredOptions): boolean {
  return o.ratio !== undefined || o.targetMacs !== undefined || o.targetParams !== undefined;
}

export function pruneStructured(model: Model, options: StructuredOptions): StructuredResult {
  return deepenToTarget(model, options, pruneOnce(model, options));
}

function unitNoun(unit: BlockUnit | undefined, plural: boolean): string {
  const w = unit === 'attention' ? 'attention sub-block' : unit === 'mlp' ? 'MLP sub-block' : 'residual block';
  return plural ? `${w}s` : w;
}

function unitWord(unit: BlockUnit | undefined, k: number): string {
  return `${k} ${unitNoun(unit, k !== 1)}`;
}

/**
 * Depth on demand: when channels alone (`first`, pruned with `options`) cannot reach a MAC/param target, removes
 * depth units too, least important first (options.depthRanking, else parameter RMS): the fewest that reach it,
 * found by bisection over the count (each try plans the channels again). At least one unit is kept. When even
 * removing all but one unit cannot reach the target (the units hold what the channel planner can already
 * remove, e.g. MLP sub-blocks whose neurons are pruned anyway), no unit is removed and `first` is returned, with
 * the reason said through `progress`; likewise when the model has no units.
 */
export function deepenToTarget(model: Model, options: StructuredOptions, first: StructuredResult): StructuredResult {
  const want = options.targetMacs ?? options.targetParams;
  if (want === undefined || options.plan || options.removeBlocks !== undefined || options.autoDepth === false) return first;
  const say = options.progress ?? (() => {});
  const what = options.targetMacs !== undefined ? 'MACs' : 'params';
  const ratioOf = (r: StructuredResult) => (options.targetMacs !== undefined ? r.report.macsRatio : r.report.paramsRatio);
  const tol = options.tolerance ?? 0.02;
  const reached = (r: StructuredResult) => ratioOf(r) <= want * (1 + tol);
  if (reached(first)) return first;
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const unit = options.blockUnit;
  const inputShapes = concreteInputShapes(model, options.inputShapes);
  const head = `target not reached with channels alone (${pct(ratioOf(first))} of the ${what})`;
  let available: number;
  try {
    available = depthUnits(model, inputShapes, unit ?? 'block', options.ignore).length;
  } catch (e) {
    if (!(e instanceof ShearsError)) throw e;
    say(`${head}, and ${e.message}`);
    return first;
  }
  const most = available - 1;
  if (most < 1) {
    say(`${head}; the model has ${unitWord(unit, available)}, which is kept`);
    return first;
  }
  const ranking = options.depthRanking ? `ranked by ${options.depthRanking.method}` : 'ranked by parameter RMS';
  const tries = new Map<number, StructuredResult>();
  const tryK = (k: number) => {
    let r = tries.get(k);
    if (!r) {
      const { progress: _p, ...quiet } = options;
      r = pruneOnce(model, { ...quiet, removeBlocks: k });
      tries.set(k, r);
      say(`  removing ${unitWord(unit, k)} (${ranking}): ${pct(ratioOf(r))} of the ${what}`);
    }
    return r;
  };
  say(`${head}: looking for the fewest ${unitNoun(unit, true)} to remove, of ${available}`);
  if (!reached(tryK(most))) {
    say(`even removing ${unitWord(unit, most)} of ${available} reaches only ${pct(ratioOf(tryK(most)))}: no unit removed (give --remove-blocks to remove some anyway)`);
    return first;
  }
  let lo = 1, hi = most;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (reached(tryK(mid))) hi = mid;
    else lo = mid + 1;
  }
  const r = tryK(lo);
  say(`removed ${unitWord(unit, lo)} (${ranking}): ${r.report.removedUnits.join(', ')}`);
  return r;
}

/** The analysis options a structured run passes on (besides input shapes and --ignore). */
export function analysisOptions(opts: StructuredOptions): { notParameters?: ReadonlySet<string>; splitUnits?: SplitUnits; normalized?: boolean } {
  // A replayed plan names its units as they were when it was made.
  const splitUnits = opts.plan ? ((opts.plan.options['splitUnits'] as SplitUnits | undefined) ?? 'blocks') : opts.splitUnits;
  const normalized = opts.plan ? opts.plan.options['normalized'] === true : opts.normalized === true;
  return { ...(opts.notParameters ? { notParameters: opts.notParameters } : {}), ...(splitUnits ? { splitUnits } : {}), ...(normalized ? { normalized } : {}) };
}

/** Refuses a data-driven importance without its data (activation: calibration statistics; taylor: gradients). */
export function requireImportanceData(opts: StructuredOptions): void {
  if (opts.importance === 'activation' && !opts.activations) throw new ShearsError('activation importance needs calibration statistics (activationStatistics; --calib on the command line)');
  if (opts.importance === 'taylor' && !opts.gradients) throw new ShearsError('Taylor importance needs gradients (taylorGradients; --taylor-data on the command line)');
}

/** The per-unit importance a structured run plans with (its kind, aggregate, seed and data). */
export function importanceScores(dg: DepGraph, opts: StructuredOptions): Float64Array {
  return unitImportance(dg, { kind: opts.importance ?? 'l2', aggregate: opts.aggregate ?? 'mean', seed: opts.seed ?? 0, ...(opts.gradients ? { gradients: opts.gradients } : {}), ...(opts.activations ? { activations: opts.activations } : {}) });
}

function pruneOnce(model: Model, opts: StructuredOptions): StructuredResult {
  const t: Record<string, number> = {};
  let clock = performance.now();
  const lap = (k: string) => {
    const now = performance.now();
    t[k] = Math.round((now - clock) * 10) / 10;
    clock = now;
  };
  const say = opts.progress ?? (() => {});
  if (!opts.plan && !hasTarget(opts) && !opts.removeBlocks) throw new ShearsError('give one of ratio, targetMacs, targetParams, removeBlocks or plan');
  if (!opts.plan && hasTarget(opts)) requireImportanceData(opts);
  const inputShapes = concreteInputShapes(model, opts.inputShapes);
  let work = model;
  let blocks: string[] = opts.plan?.removedBlocks ?? [];
  let unitNames: string[] = [];
  if (!opts.plan && opts.removeBlocks) {
    const units = chooseUnits(model, opts.removeBlocks, inputShapes, { ...(opts.blockUnit ? { unit: opts.blockUnit } : {}), ...(opts.depthRanking ? { scores: opts.depthRanking.scores } : {}), ...(opts.ignore ? { ignore: opts.ignore } : {}) });
    blocks = units.flatMap((u) => u.joins);
    unitNames = units.map((u) => u.name);
    const score = (name: string, own: number) => (opts.depthRanking?.scores.get(name) ?? own).toPrecision(3);
    say(`removing ${unitWord(opts.blockUnit, units.length)} (${opts.depthRanking ? `ranked by ${opts.depthRanking.method}` : 'ranked by parameter RMS'}): ${units.map((u) => `${u.name} (${score(u.name, u.score)})`).join(', ')}`);
  }
  if (blocks.length) {
    work = cloneModel(model);
    removeBlocks(work, blocks, inputShapes);
  }
  lap('depth');
  const an = analyzeModel(work, { inputShapes, ...(opts.ignore ? { ignore: opts.ignore } : {}), ...analysisOptions(opts) });
  lap('analyze');
  say(`dependency graph: ${an.dg.groups.filter((g) => g.units.length).length} groups, ${an.dg.units.length} prunable channels, ${an.dg.frozen.length} frozen axes`);
  const cost = new CostModel(an.dg, an.shapes, an.parameters);
  let removed: Set<number>;
  let plan: StructuredPlan;
  if (opts.plan) {
    removed = unitsOfPlan(an.dg, opts.plan);
    plan = { ...opts.plan };
  } else if (hasTarget(opts)) {
    if (blocks.length && (opts.targetMacs !== undefined || opts.targetParams !== undefined)) {
      // Targets are fractions of the original model: rescale them to the depth-pruned one.
      const oa = analyzeModel(model, { inputShapes, ...analysisOptions(opts) });
      const orig = new CostModel(oa.dg, oa.shapes, oa.parameters);
      const scaled = { ...opts };
      if (opts.targetMacs !== undefined) scaled.targetMacs = Math.min(1, (opts.targetMacs * orig.baseMacs) / Math.max(1, cost.baseMacs));
      if (opts.targetParams !== undefined) scaled.targetParams = Math.min(1, (opts.targetParams * orig.baseParams) / Math.max(1, cost.baseParams));
      opts = scaled;
    }
    const score = importanceScores(an.dg, opts);
    lap('importance');
    const budget = opts.allocation === 'budget' && !opts.global && opts.ratio === undefined;
    const res = budget
      ? planBudgetSync(an.dg, cost, score, { kind: opts.targetMacs !== undefined ? 'macs' : 'params', target: (opts.targetMacs ?? opts.targetParams)!, ...(opts.roundTo ? { roundTo: opts.roundTo } : {}), ...(opts.maxLayerRatio ? { maxLayerRatio: opts.maxLayerRatio } : {}), ...(opts.headRate !== undefined ? { headRate: opts.headRate } : {}), planOptions: opts, allowShort: true })
      : planStructured(an.dg, cost, score, opts);
    removed = res.removed;
    plan = res.plan;
    plan.options = { ...plan.options, importance: opts.importance ?? 'l2', aggregate: opts.aggregate ?? 'mean', ...(opts.importance === 'random' ? { seed: opts.seed ?? 0 } : {}), ...(opts.ignore ? { ignore: opts.ignore.source } : {}), ...(opts.splitUnits === 'positions' ? { splitUnits: 'positions' } : {}), ...(opts.normalized ? { normalized: true } : {}) };
  } else {
    removed = new Set();
    plan = { format: 'shears.structured-plan', version: 1, removedBlocks: [], removed: [], groups: [], tensors: {}, options: {}, estimate: { baseMacs: cost.baseMacs, macs: cost.baseMacs, baseParams: cost.baseParams, params: cost.baseParams } };
  }
  plan.removedBlocks = blocks;
  lap('plan');
  const { model: out, changed } = removeUnits(an.dg, removed);
  lap('surgery');
  say(`removed ${removed.size} of ${an.dg.units.length} prunable channels`);

  // MACs/params from the op cost rules over the analysed (simplified) graph: the same numbers analyzeCost gives
  // on it, without re-inferring the pruned model. Depth pruning changes the graph: then `before` is measured on
  // the original model.
  const size = cost.initialSizes();
  for (const u of removed) for (const e of an.dg.units[u]!.elements) size[an.dg.elementSpace[e]!]!--;
  const after = { macs: cost.macs(size), params: cost.paramCount(size) };
  let before = { macs: cost.baseMacs, params: cost.baseParams };
  if (blocks.length) {
    const orig = analyzeModel(model, { inputShapes, ...analysisOptions(opts) });
    const oc = new CostModel(orig.dg, orig.shapes, orig.parameters);
    before = { macs: oc.baseMacs, params: oc.baseParams };
  }
  lap('report');
  const layers: LayerWidth[] = [];
  for (const n of out.graph.nodes) {
    const w = weightSpec(n);
    if (!w) continue;
    const wn = n.inputs[w.input];
    if (!wn) continue;
    const c = changed.get(`${wn}@${w.outAxis}`);
    const ci = changed.get(`${wn}@${w.inAxis}`);
    if (!c && !ci) continue;
    const dims = out.graph.initializers.get(wn)?.dims;
    if (!dims) continue;
    layers.push({ node: n.name, opType: n.opType, weight: wn, before: c?.before ?? dims[w.outAxis]!, after: dims[w.outAxis]! });
  }
  return {
    model: out,
    plan,
    report: {
      before: { macs: before.macs, params: before.params },
      after: { macs: after.macs, params: after.params },
      macsRatio: before.macs ? after.macs / before.macs : 1,
      paramsRatio: before.params ? after.params / before.params : 1,
      layers,
      removedBlocks: blocks,
      removedUnits: unitNames,
      frozen: an.dg.frozen,
      groups: an.dg.groups.filter((g) => g.units.length).length,
      prunableChannels: an.dg.units.length,
      removedChannels: removed.size,
      timings: t,
    },
  };
}

export { analyzeModel } from '../../depgraph/analyze.js';

/**
 * Gradients for Taylor importance, computed on the same working graph pruneStructured analyses (so weight names
 * match, including weights that simplification gave their own copy).
 */
export async function taylorGradients(model: Model, data: ArrayData | TokenDataset, opts: { inputShapes?: Record<string, Dim[]>; removeBlocks?: string[] } & GradientOptions = {}): Promise<Map<string, Float32Array>> {
  let work = model;
  const inputShapes = concreteInputShapes(model, opts.inputShapes);
  if (opts.removeBlocks?.length) {
    work = cloneModel(model);
    removeBlocks(work, opts.removeBlocks, inputShapes);
  }
  const an = analyzeModel(work, { inputShapes });
  // token windows: next-token cross-entropy of a language model; arrays: a classifier's, on labels
  if (data instanceof TokenDataset) return lmWeightGradients(an.model, data, { ...(opts.batch ? { batch: opts.batch } : {}), ...(opts.batches ? { batches: opts.batches } : {}), ...(opts.threads ? { threads: opts.threads } : {}) });
  return weightGradients(an.model, data, opts);
}
/**
 * Layer input statistics for activation importance, computed on the same working graph pruneStructured analyses
 * (weight names match), for the layers that read a prunable channel only. Default batch size: the largest
 * layer's input patches stay within about 16 M floats per batch (8 images for resnet18 at 224, 64 at most).
 */
export async function activationStatistics(model: Model, data: Dataset, opts: { inputShapes?: Record<string, Dim[]>; removeBlocks?: string[]; ignore?: RegExp; notParameters?: ReadonlySet<string> } & Omit<ActivationOptions, 'weights'> = {}): Promise<ActivationStats> {
  let work = model;
  const inputShapes = concreteInputShapes(model, opts.inputShapes);
  if (opts.removeBlocks?.length) {
    work = cloneModel(model);
    removeBlocks(work, opts.removeBlocks, inputShapes);
  }
  const an = analyzeModel(work, { inputShapes, ...(opts.ignore ? { ignore: opts.ignore } : {}), ...(opts.notParameters ? { notParameters: opts.notParameters } : {}) });
  const weights = new Set<string>();
  for (const s of an.dg.spaces) {
    if (!s.param || s.role !== 'reads') continue;
    for (let j = 0; j < s.size; j++) if (an.dg.elementUnit[s.offset + j]! >= 0) {
      weights.add(s.value);
      break;
    }
  }
  // batch size: the largest layer's patches (input elements x kernel positions per sample) within ~16 M floats
  let perSample = 1;
  const batch1 = Object.values(an.inputShapes)[0]?.[0] ?? 1;
  for (const n of an.model.graph.nodes) {
    const wn = n.inputs[1];
    const w = wn && weights.has(wn) ? an.model.graph.initializers.get(wn) : undefined;
    const spec = w ? weightSpec(n, w.dims) : undefined;
    const inShape = an.shapes.types.get(n.inputs[0]!)?.shape;
    if (!w || !spec || !inShape?.every((d) => typeof d === 'number')) continue;
    const kernel = w.dims.reduce((a, b) => a * b, 1) / (w.dims[spec.outAxis]! * w.dims[spec.inAxis]!);
    perSample = Math.max(perSample, ((inShape as number[]).reduce((a, b) => a * b, 1) / Math.max(1, batch1)) * kernel);
  }
  const batchSize = opts.batchSize ?? Math.max(1, Math.min(64, Math.floor(2 ** 24 / perSample)));
  return activationStats(an.model, data, { batchSize, ...(opts.threads ? { threads: opts.threads } : {}), weights });
}
export { removeUnits, sliceTensor } from './surgery.js';
export { findResidualBlocks, depthUnits, chooseUnits, chooseBlocks, removeBlocks } from './depth.js';
