/**
 * The prune step: unstructured or N:M masks (sparsity/), or structured removal of channels and residual blocks
 * (prune/structured/) towards one target. Also the step's report, completed once the repair steps after it are
 * done (the sizes and sparsity it reports are those of the pruned and repaired model).
 */
import { analyzeModel, concreteInputShapes } from '../depgraph/analyze.js';
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import { encodeModel } from '../onnx/codec.js';
import type { StructuredPlan } from '../plan/plan.js';
import { chooseBlocks, depthUnits } from '../prune/structured/depth.js';
import type { DepthRanking } from '../prune/structured/influence.js';
import { activationStatistics, deepenToTarget, pruneStructured, taylorGradients, type StructuredOptions, type StructuredReport, type StructuredResult } from '../prune/structured/index.js';
import { depthScoresPerMs, depthUnitTimes, latencyTableOf, pruneToLatency, type LatencyPlanOptions, type LatencyTargetResult } from '../prune/structured/latency.js';
import { verifyPruned } from '../prune/structured/verify.js';
import { removeMasks } from '../sparsity/masks.js';
import { parsePattern } from '../sparsity/nm.js';
import { modelSizes, modelSparsity, type LayerSparsity, type ModelSparsity } from '../sparsity/stats.js';
import { pruneUnstructured, type LayerPruneResult, type PruneReport, type UnstructuredOptions } from '../sparsity/unstructured.js';
import { pruneCalibrated, type CalibratedMethod, type CalibratedReport } from '../prune/calibrated.js';
import { selectLayers } from '../sparsity/layers.js';
import { checkTokenData } from '../repair/token-checks.js';
import { bindTokens, isTokenData } from '../data/tokens.js';
import { numel, toFloat32 } from '../ir/tensor.js';
import { loadArrays } from '../data/in-memory.js';
import { parseInputShapes, parseInputValues } from '../analysis/input-shapes.js';
import { foldModel } from '../analysis/fold.js';
import type { RunContext } from './context.js';
import { OptionError, withDefaults } from './options.js';
import { detectorHead } from './detector.js';
import { formatDetectHead } from '../analysis/detector.js';
import { defaultImportance, isTransformer, NM_OPTIONS, TRANSFORMER_HEAD_RATE, STRUCTURED_OPTIONS, UNSTRUCTURED_OPTIONS, type NMStep, type PruneStep, type StructuredStep, type UnstructuredStep } from './steps.js';
import { plannerTarget } from './target.js';
import { calibSpec, depthRanking } from './depth.js';

/** A model's sparsity counts (without the per-layer list) and its file sizes. */
type SizeSummary = Omit<ModelSparsity, 'layers'> & { fileBytes: number; gzipBytes: number };

/** The report of unstructured and N:M pruning (the fields `shears prune --json` prints). */
export interface UnstructuredSummary {
  mode: { kind: PruneReport['kind']; scope?: PruneReport['scope']; method?: PruneReport['method']; sparsity?: number; pattern?: string };
  masksStored: boolean;
  before: SizeSummary;
  after: SizeSummary;
  pruned: PruneReport['total'];
  layers: (LayerSparsity & { prunedNow: number; pruned: boolean })[];
  skipped: PruneReport['skipped'];
  warnings: string[];
  /** --method wanda | sparsegpt: the layers as pruned, timings, OWL's allocation. */
  calibrated?: CalibratedReport;
}

/** The report of structured pruning (the fields `shears prune --structured --json` prints). */
export interface StructuredSummary {
  before: StructuredReport['before'];
  after: StructuredReport['after'];
  macsRatio: number;
  paramsRatio: number;
  removedChannels: number;
  prunableChannels: number;
  groups: number;
  removedBlocks: string[];
  layers: StructuredReport['layers'];
  frozen: StructuredReport['frozen'];
  latency?: LatencyTargetResult['latency'];
  /** Depth pruning: the unit, how the units were ranked (scores: smaller is removed first) and which were removed. */
  depth?: { unit: string; ranking: DepthRanking['method']; units: { name: string; kind: string; score: number; removed: boolean }[] };
  seconds: number;
  timingsMs: Record<string, number>;
}

/** A prune step done: the pruned model, and how to finish its report once its repair steps are done. */
export interface Pruned {
  model: Model;
  plan?: StructuredPlan;
  /** The step's report for the final model (masks dropped first when the step keeps none). */
  finish(model: Model): UnstructuredSummary | StructuredSummary;
  /** The N:M pattern the repair steps after it keep. */
  pattern?: string;
  /** Unstructured and N:M: the weights (initializer names) the step pruned; repair re-chooses N:M masks of these only. */
  weights?: ReadonlySet<string>;
  /** --method wanda | sparsegpt: what ran, layer by layer (OWL's allocation included). */
  calibrated?: CalibratedReport;
}

export async function runPrune(ctx: RunContext, model: Model, step: PruneStep, inputBytes: Uint8Array | undefined): Promise<Pruned> {
  const computed = await foldForPruning(ctx, model, step);
  return step.mode === 'structured' ? pruneChannels(ctx, model, step, computed) : pruneMasks(ctx, model, step, inputBytes);
}

/**
 * Before pruning: inputs pinned by `inputValue` become constants and an If on them keeps only its branch (no
 * input shape is assumed, so the model stays valid for every input shape it accepted). Structured pruning also
 * computes constant subgraphs once in onnxruntime (shape arithmetic on a static input shape: Swin's window masks
 * and pads), because its MAC and latency targets and its channel rules need them folded: without it a
 * torchvision swin_t counts 0.48 of its 4.49 GMACs and a 50% target removes a few percent. Their values become
 * initializers of the pruned model (onnxruntime computes the same at session start); unstructured pruning
 * selects by weights and leaves them as they are.
 */
/** Returns the names of the constants computed in onnxruntime (not parameters). */
async function foldForPruning(ctx: RunContext, model: Model, step: PruneStep): Promise<Set<string>> {
  const specs = (step as { inputValue?: string[] }).inputValue;
  const inputValues = parseInputValues(specs, model, (problem) => new OptionError('prune.inputValue', problem));
  const pinned = Object.keys(inputValues).length > 0;
  const runtime = step.mode === 'structured';
  if (!pinned && !runtime) return new Set();
  const r = await foldModel(model, { inputValues, runtime });
  if (pinned) ctx.emit({ type: 'info', message: `pinned ${Object.entries(inputValues).map(([k, v]) => `${k}=${v.join(',')}`).join(' ')}: ${r.inlined} If inlined (the model is specialised to these values)` });
  if (r.runtimeFolded > 0) ctx.emit({ type: 'info', message: `folded ${r.runtimeFolded} constant value(s) computed once in onnxruntime (shape arithmetic on the model's static input shape)` });
  if (r.runtimeFailure !== undefined) ctx.emit({ type: 'warning', message: `constant subgraphs not folded: ${r.runtimeFailure}` });
  return new Set(r.created);
}

function sizes(s: ModelSparsity, bytes: { bytes: number; gzipBytes: number }): SizeSummary {
  return {
    params: s.params, nonzero: s.nonzero, sparsity: s.sparsity,
    layerParams: s.layerParams, layerNonzero: s.layerNonzero, layerSparsity: s.layerSparsity,
    fileBytes: bytes.bytes, gzipBytes: bytes.gzipBytes,
  };
}

async function pruneMasks(ctx: RunContext, model: Model, step: UnstructuredStep | NMStep, inputBytes: Uint8Array | undefined): Promise<Pruned> {
  const s = step.mode === 'nm' ? withDefaults(NM_OPTIONS, step) : withDefaults(UNSTRUCTURED_OPTIONS, step);
  if (s.method === 'wanda' || s.method === 'sparsegpt') return pruneWithCalibration(ctx, model, s, inputBytes);
  const opts: UnstructuredOptions = { scope: s.scope, method: s.method === 'magnitude' ? 'l1' : s.method };
  if ('sparsity' in s) opts.sparsity = s.sparsity;
  if ('pattern' in s) opts.pattern = parsePattern(s.pattern);
  if (s.include !== undefined) opts.include = new RegExp(s.include);
  if (s.exclude !== undefined) opts.exclude = new RegExp(s.exclude);
  if (s.keepFirstLast) opts.keepFirstLast = true;
  opts.seed = s.seed;
  if ('layerSparsity' in s && s.layerSparsity) opts.perLayer = s.layerSparsity;
  const before = sizes(modelSparsity(model), modelSizes(inputBytes ?? encodeModel(model)));
  const report = pruneUnstructured(model, opts);
  return finishMasks(ctx, model, s, before, report);
}

/**
 * --method wanda | sparsegpt: the selected layers pruned one by one on calibration data (prune/calibrated.ts),
 * in one pass: no magnitude masks first.
 */
async function pruneWithCalibration(ctx: RunContext, model: Model, s: ReturnType<typeof withDefaults<typeof UNSTRUCTURED_OPTIONS>> | ReturnType<typeof withDefaults<typeof NM_OPTIONS>>, inputBytes: Uint8Array | undefined): Promise<Pruned> {
  const method = s.method as CalibratedMethod;
  // the calibration data first: bad data (too short, ids outside the vocabulary, windows too long) before any work
  const calib = (await ctx.data('prune.calib', s.calib!)).sample(s.calibSize, s.calibSeed);
  checkTokenData(model, calib, 'the model');
  const { layers, left } = selectLayers(model, {
    ...(s.include !== undefined ? { include: new RegExp(s.include) } : {}),
    ...(s.exclude !== undefined ? { exclude: new RegExp(s.exclude) } : {}),
    keepFirstLast: s.keepFirstLast,
  });
  for (const l of left) if (l.warn) ctx.emit({ type: 'warning', message: `${l.name} not pruned: ${l.reason}` });
  const before = sizes(modelSparsity(model), modelSizes(inputBytes ?? encodeModel(model)));
  const zeros = (name: string) => {
    const t = toFloat32(model.graph.initializers.get(name)!);
    let z = 0;
    for (let i = 0; i < t.length; i++) if (t[i] === 0) z++;
    return z;
  };
  const zerosBefore = new Map(layers.map((l) => [l.name, zeros(l.name)]));
  const owl = 'owl' in s && s.owl ? { m: s.owlM, lambda: s.owlLambda } : undefined;
  const r = await pruneCalibrated(model, calib, {
    method,
    ...('sparsity' in s ? { sparsity: s.sparsity } : { pattern: parsePattern(s.pattern) }),
    weights: new Set(layers.map((l) => l.name)),
    // as in the Wanda and SparseGPT papers an output layer (an LM head) stays dense, unless --include names the layers
    skipOutputLayers: s.include === undefined,
    ...(owl ? { owl } : {}),
    damp: s.damp,
    blockSize: s.sparsegptBlock,
    fitFirst: s.fitFirst,
    ...(s.threads !== undefined ? { threads: s.threads } : {}),
    onProgress: (p) => ctx.emit({ type: 'progress', message: `${method}: ${p.done}/${p.total} layers (${p.seconds.toFixed(1)} s)`, done: p.done, total: p.total }),
  });
  const what = method === 'sparsegpt' ? `sparsegpt (damping ${s.damp}, blocks of ${s.sparsegptBlock}${s.fitFirst ? ', least-squares fit first' : ''})` : 'wanda';
  ctx.emit({ type: 'info', message: `${what}${owl ? ' + OWL' : ''}: ${r.layers.length} layers in ${r.seconds.toFixed(1)} s on ${r.calibSamples} calibration samples, each layer on the outputs of the pruned layers before it (${r.steps} onnxruntime steps ${r.statsSeconds.toFixed(1)} s, solves ${r.solveSeconds.toFixed(1)} s)` });
  if (r.owl) {
    ctx.emit({ type: 'info', message: `OWL (M ${r.owl.m}, lambda ${r.owl.lambda}) sparsity per block: ${r.owl.blocks.map((b) => `${b.name} ${(100 * b.sparsity).toFixed(1)}% (outliers ${(100 * b.outlierRatio).toFixed(2)}%)`).join(', ')}` });
  }
  for (const l of r.layers) if (l.note) ctx.emit({ type: 'warning', message: `${l.node}: ${l.note}` });
  const byWeight = new Map(r.layers.map((l) => [l.weight, l]));
  const results: LayerPruneResult[] = [];
  for (const l of layers) {
    const done = byWeight.get(l.name);
    if (!done) continue;
    const params = numel(l.dims);
    const zb = zerosBefore.get(l.name)!;
    results.push({ name: l.name, node: done.node, op: l.opTypes[0]!, shape: [...l.dims], params, prunedBefore: zb, prunedNow: done.zeros - zb, nonzero: params - done.zeros, sparsity: done.zeros / params });
  }
  const total = results.reduce((a, l) => ({ params: a.params + l.params, prunedBefore: a.prunedBefore + l.prunedBefore, prunedNow: a.prunedNow + l.prunedNow, nonzero: a.nonzero + l.nonzero, sparsity: 0 }), { params: 0, prunedBefore: 0, prunedNow: 0, nonzero: 0, sparsity: 0 });
  total.sparsity = total.params ? 1 - total.nonzero / total.params : 0;
  const skipped = [...left.map((l) => ({ name: l.name, reason: l.reason })), ...r.skipped.map((x) => ({ name: x.node, reason: x.reason }))];
  const report: PruneReport = {
    kind: 'pattern' in s ? 'n:m' : 'unstructured',
    scope: 'layer',
    method,
    ...('pattern' in s ? { pattern: s.pattern } : { sparsity: s.sparsity }),
    layers: results,
    skipped,
    warnings: [],
    total,
  };
  const pruned = finishMasks(ctx, model, s, before, report);
  return { ...pruned, calibrated: r, finish: (m) => ({ ...(pruned.finish(m) as UnstructuredSummary), calibrated: r }) };
}

function finishMasks(ctx: RunContext, model: Model, s: { masks: boolean; pattern?: string }, before: SizeSummary, report: PruneReport): Pruned {
  if (report.kind === 'n:m') for (const sk of report.skipped) if (sk.reason.startsWith('left dense')) ctx.emit({ type: 'warning', message: `${sk.name} ${sk.reason}` });
  for (const w of report.warnings) ctx.emit({ type: 'warning', message: w });
  if (report.total.prunedNow === 0) {
    const sk = report.skipped;
    const why = report.layers.length === 0
      ? `no layer weight was selected${sk.length ? ` (${sk.length} skipped: ${sk.slice(0, 3).map((x) => `${x.name}: ${x.reason}`).join('; ')}${sk.length > 3 ? '; ...' : ''})` : ''}`
      : 'the selected weights are already pruned to the requested sparsity';
    throw new ShearsError(`nothing was pruned: ${why}; no file written`);
  }
  return {
    model,
    ...(s.pattern !== undefined ? { pattern: s.pattern } : {}),
    weights: new Set(report.layers.map((l) => l.name)),
    finish: (m) => {
      if (!s.masks) removeMasks(m);
      const after = modelSparsity(m);
      return {
        mode: definedOnly({ kind: report.kind, scope: report.scope, method: report.method, sparsity: report.sparsity, pattern: report.pattern }),
        masksStored: s.masks,
        before,
        after: sizes(after, modelSizes(encodeModel(m))),
        pruned: report.total,
        layers: after.layers.map((l) => {
          const r = report.layers.find((x) => x.name === l.name);
          return { ...l, prunedNow: r?.prunedNow ?? 0, pruned: r !== undefined };
        }),
        skipped: report.skipped,
        warnings: report.warnings,
      };
    },
  };
}

/**
 * The planner's head rate: as given, else TRANSFORMER_HEAD_RATE for a transformer (attention units cut at a
 * lower rate than the MLP under MAC/param/latency targets), else none (level fractions).
 */
function headRateOf(model: Model, given: number | undefined, target: string | undefined): { headRate?: number } {
  if (given !== undefined) return { headRate: given };
  // MAC/param targets without --global (level or budget allocation) and latency targets (the budget planner)
  return isTransformer(model) && target !== undefined && !['ratio', 'plan', 'global'].includes(target) ? { headRate: TRANSFORMER_HEAD_RATE } : {};
}

async function pruneChannels(ctx: RunContext, model: Model, step: StructuredStep, computed: ReadonlySet<string>): Promise<Pruned> {
  const t0 = performance.now();
  const s = withDefaults(STRUCTURED_OPTIONS, step);
  const target = s.target;
  const inputShapes = parseInputShapes(s.inputShape, model, (problem) => new OptionError('prune.inputShape', problem));
  const importance = defaultImportance(s);
  if (s.allocation === 'budget' && (s.global || (target !== undefined && target.kind !== 'macs' && target.kind !== 'params' && target.kind !== 'latency'))) {
    throw new OptionError('prune.allocation', `budget plans a MAC or parameter target (a latency target always uses it)${s.global ? ', not --global ranking' : `, not a ${target!.kind} target`}`);
  }
  // A detector (a DFL head found by structure): narrow groups lose their coarse step last (measured on fmnist_det).
  const detector = target !== undefined && target.kind !== 'plan' && target.kind !== 'ratio' && !s.global ? detectorHead(model) : undefined;
  const opts: StructuredOptions = {
    importance,
    aggregate: s.aggregate,
    roundTo: s.roundTo,
    ...(detector ? { levelAfterStep: true } : {}),
    ...(s.allocation === 'budget' ? { allocation: 'budget' as const } : {}),
    // A latency target with level allocation (auto's choice there): the budget planner levels the groups
    // (plan/budget.ts `level`); --allocation budget keeps it to price alone.
    ...(s.allocation !== 'budget' && target?.kind === 'latency' ? { allocation: 'level' as const } : {}),
    maxLayerRatio: s.maxLayerRatio,
    global: s.global,
    ...headRateOf(model, s.headRate, s.global ? 'global' : target?.kind),
    seed: s.seed,
    splitUnits: s.attentionUnits === 'head-dim' ? 'positions' : 'blocks',
    normalized: s.hiddenSize,
    inputShapes,
    ...(computed.size ? { notParameters: computed } : {}),
    progress: (message) => ctx.emit({ type: 'info', message }),
    ...(target ? plannerTarget(target) : {}),
  };
  if (target?.kind === 'plan') opts.plan = target.plan;
  if (s.headRate === undefined && opts.headRate !== undefined) {
    ctx.emit({ type: 'info', message: `a transformer: attention units (heads) lose ${opts.headRate}x the fraction the MLP neurons lose (the default; --head-rate 1 levels the fractions)` });
  }
  if (detector) ctx.emit({ type: 'info', message: `a detector (${formatDetectHead(detector)}): groups are levelled by the fraction they keep after their next step of ${s.roundTo} channels, so narrow groups (the stem) lose theirs last (the default for detectors, measured)` });
  if (s.ignore !== undefined) opts.ignore = new RegExp(s.ignore);
  if (s.removeBlocks !== undefined) opts.removeBlocks = s.removeBlocks;
  opts.blockUnit = s.blockUnit;
  if ((s.blockRank === 'influence' || s.blockRank === 'loss') && calibSpec(step) === undefined) throw new OptionError('prune.blockRank', `${s.blockRank} needs calibration data: {prune.calib}`);
  // Depth units are ranked (on the calibration data: onnxruntime runs) only when some may be removed: K given,
  // a latency target (its MAC searches may remove some), or a MAC/param target channels alone do not reach.
  let ranking: DepthRanking | undefined;
  const rank = async () => {
    ranking ??= await depthRanking(ctx, model, step, inputShapes);
    opts.depthRanking = { method: ranking.method === 'influence' ? 'block influence' : ranking.method === 'loss' ? 'loss increase' : 'parameter RMS', scores: ranking.scores };
  };
  if (!opts.plan && s.removeBlocks) {
    if (s.removeBlocks || calibSpec(step) !== undefined) await rankOrSkip(rank, !!s.removeBlocks, ctx);
  }
  const threads = s.threads !== undefined ? { threads: s.threads } : {};
  // a latency target's table, opened once for the depth ranking and the plan
  let latencyBench: LatencyPlanOptions | undefined;
  if (target?.kind === 'latency') {
    latencyBench = { batch: target.batch ?? 1, ...threads, inputShapes, ...(s.latencyCache !== undefined ? { cache: s.latencyCache } : {}) };
    latencyBench.table = latencyTableOf(latencyBench).table;
  }
  if (!opts.plan && opts.removeBlocks && latencyBench) {
    // Under a latency target the units go by importance per ms their removal saves (the latency table's
    // prediction): the least important blocks alone can be the ones that cost least time (a last stage at 7x7).
    const own = new Map(depthUnits(model, concreteInputShapes(model, inputShapes), s.blockUnit, opts.ignore).map((u) => [u.name, u.score]));
    const ms = await depthUnitTimes(model, opts, latencyBench);
    const by = opts.depthRanking ?? { method: 'parameter RMS', scores: own };
    opts.depthRanking = { method: `${by.method} per ms saved`, scores: depthScoresPerMs(by.scores, ms) };
    ctx.emit({ type: 'info', message: `depth units by ${opts.depthRanking.method}: ${[...opts.depthRanking.scores].sort((a, b) => a[1] - b[1]).map(([n, v]) => `${n} ${v.toPrecision(3)} (${(ms.get(n) ?? 0).toFixed(2)} ms)`).join(', ')}` });
  }
  // The blocks --remove-blocks takes out before channels are ranked (data-driven importance is measured without them).
  const blocksToRemove = (): string[] => (opts.removeBlocks ? chooseBlocks(model, opts.removeBlocks, concreteInputShapes(model, inputShapes), { unit: s.blockUnit, ...(opts.depthRanking ? { scores: opts.depthRanking.scores } : {}), ...(opts.ignore ? { ignore: opts.ignore } : {}) }) : []);
  if (importance === 'taylor' && !opts.plan) {
    const given = await ctx.data('prune.taylorData', s.taylorData!);
    const blocks = blocksToRemove();
    if (isTokenData(given)) {
      // a language model: next-token cross-entropy on batches of 8 windows at seeded random offsets
      const windows = bindTokens(given, model).sample(s.taylorBatches * 8, s.calibSeed);
      ctx.emit({ type: 'info', message: `Taylor importance: next-token cross-entropy gradients over ${Math.max(1, Math.floor(windows.size / 8))} batches of 8 windows of ${windows.context} tokens` });
      opts.gradients = await taylorGradients(model, windows, { inputShapes, removeBlocks: blocks, batch: 8, batches: s.taylorBatches, ...threads });
    } else {
      const data = await loadArrays(given, s.taylorBatches * 32);
      ctx.emit({ type: 'info', message: `Taylor importance: gradients over ${Math.min(s.taylorBatches, Math.floor(data.n / 32)) || 1} batches` });
      opts.gradients = await taylorGradients(model, data, { inputShapes, removeBlocks: blocks, batch: 32, batches: s.taylorBatches, ...threads });
    }
  }
  if (importance === 'activation' && !opts.plan) {
    const calib = (await ctx.data('prune.calib', s.calib!)).sample(s.calibSize, s.calibSeed);
    const blocks = blocksToRemove();
    const t1 = performance.now();
    const compute = () => activationStatistics(model, calib, { inputShapes, removeBlocks: blocks, ...(opts.ignore ? { ignore: opts.ignore } : {}), ...(computed.size ? { notParameters: computed } : {}), ...threads });
    // Kept in the caller's cache (a sweep's) only while the model is the run's input as given: the dense model's
    // statistics, keyed by all they depend on (the folding options included: they decide `model` and `computed`).
    const key = ctx.cache && ctx.sourceKey !== undefined
      ? [ctx.sourceKey, ctx.dataKey(s.calib!), s.calibSize, s.calibSeed, s.inputShape ?? null, (step as { inputValue?: string[] }).inputValue ?? null, [...computed].sort(), blocks, s.ignore ?? null, s.threads ?? null]
      : undefined;
    const hitsBefore = ctx.cache?.hits.activations ?? 0;
    opts.activations = await (key ? ctx.cache!.get('activations', key, compute) : compute());
    const kept = (ctx.cache?.hits.activations ?? 0) > hitsBefore;
    ctx.emit({ type: 'info', message: `activation importance: input statistics of ${opts.activations.layers.size} layers over ${opts.activations.samples} calibration samples (${kept ? 'computed by an earlier run, from the cache' : `${((performance.now() - t1) / 1000).toFixed(1)} s`})` });
  }
  let res: StructuredResult | LatencyTargetResult;
  if (target?.kind === 'latency' && latencyBench) {
    res = await pruneToLatency(model, target.value, opts, { ...latencyBench, landingCheck: s.landingCheck });
  }
  else if ((target?.kind === 'macs' || target?.kind === 'params') && opts.removeBlocks === undefined) {
    // channels alone first; the units are ranked only when depth is needed
    const first = pruneStructured(model, { ...opts, autoDepth: false });
    const got = target.kind === 'macs' ? first.report.macsRatio : first.report.paramsRatio;
    if (got > target.value * (1 + (opts.tolerance ?? 0.02)) && !ranking) await rankOrSkip(rank, false, ctx);
    res = deepenToTarget(model, opts, first);
  } else res = pruneStructured(model, opts);
  const r = res.report;
  if (s.hiddenSize && !opts.plan) {
    // Never silently nothing: say so when --hidden-size made no normalised axis prunable (e.g. a class-token
    // Concat or a model input holds the residual stream).
    const plain = analyzeModel(model, { inputShapes, ...(opts.ignore ? { ignore: opts.ignore } : {}), ...(computed.size ? { notParameters: computed } : {}), ...(opts.splitUnits ? { splitUnits: opts.splitUnits } : {}) });
    if (plain.dg.units.length >= r.prunableChannels) {
      ctx.emit({ type: 'warning', message: `{prune.hiddenSize} made nothing more prunable: the hidden size stays (the residual stream is frozen elsewhere: see the frozen reasons)` });
    }
  }
  if (r.removedBlocks.length && !opts.plan && s.blockRank === 'auto' && (!ranking || ranking.method === 'magnitude')) {
    ctx.emit({ type: 'warning', message: `depth units removed by parameter RMS, a weak proxy of what a block does (vit_fmnist, 1 of 4 blocks: 39.75% top-1 by RMS, 83.16% by block influence): give {prune.calib} to rank by block influence` });
  }
  if (r.removedChannels === 0 && r.removedBlocks.length === 0) {
    throw new ShearsError(`nothing was pruned: ${r.prunableChannels === 0 ? `no prunable channels (frozen: ${frozenReasons(r).slice(0, 3).map(([why, n]) => `${n} x ${why}`).join('; ') || 'none'})` : 'the target keeps every channel'}; no file written`);
  }
  const checked = await verifyPruned(model, res.model, { inputShapes: concreteInputShapes(model, inputShapes), ...threads });
  ctx.emit({ type: 'info', message: `checked in onnxruntime: the pruned model loads and runs (${Object.entries(checked.outputs).map(([k, d]) => `${k} ${d.join('x')}`).join(', ')}, as the original)` });
  const want = target?.kind === 'macs' ? ['MACs', target.value, r.macsRatio] as const : target?.kind === 'params' ? ['params', target.value, r.paramsRatio] as const : undefined;
  if (want && Math.abs(want[2] - want[1]) > 0.02 * want[1]) {
    ctx.emit({
      type: 'warning',
      message: `kept ${(want[2] * 100).toFixed(1)}% of the ${want[0]}, target ${(want[1] * 100).toFixed(1)}%: ` +
        `too few prunable channels (${r.prunableChannels}; ${r.frozen.length} frozen axes, see the report) or {prune.maxLayerRatio}/{prune.roundTo} too strict`,
    });
  }
  return {
    model: res.model,
    plan: res.plan,
    finish: () => ({
      before: r.before,
      after: r.after,
      macsRatio: r.macsRatio,
      paramsRatio: r.paramsRatio,
      removedChannels: r.removedChannels,
      prunableChannels: r.prunableChannels,
      groups: r.groups,
      removedBlocks: r.removedBlocks,
      layers: r.layers,
      frozen: r.frozen,
      ...('latency' in res ? { latency: (res as LatencyTargetResult).latency } : {}),
      ...(ranking ? { depth: depthSummary(ranking, r.removedBlocks) } : {}),
      seconds: (performance.now() - t0) / 1000,
      timingsMs: r.timings,
    }),
  };
}

/**
 * Ranks the depth units; where depth pruning is only a possibility (automatic), a model without units is said
 * and the step goes on with channels alone.
 */
async function rankOrSkip(rank: () => Promise<void>, required: boolean, ctx: RunContext): Promise<void> {
  try {
    await rank();
  } catch (e) {
    if (required || !(e instanceof ShearsError) || e instanceof OptionError) throw e;
    ctx.emit({ type: 'info', message: `no depth pruning: ${e.message}` });
  }
}

function depthSummary(ranking: DepthRanking, removedJoins: string[]): NonNullable<StructuredSummary['depth']> {
  const removed = new Set(removedJoins);
  return {
    unit: ranking.unit,
    ranking: ranking.method,
    units: ranking.units.map((u) => ({ name: u.name, kind: u.kind, score: u.score, removed: u.joins.every((j) => removed.has(j)) })),
  };
}

/** The object without its undefined fields (a report is plain JSON). */
function definedOnly<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** How many channel axes stayed whole for each reason, most frequent first. */
export function frozenReasons(r: Pick<StructuredReport, 'frozen'>): [string, number][] {
  const reasons = new Map<string, number>();
  for (const f of r.frozen) reasons.set(f.reason, (reasons.get(f.reason) ?? 0) + 1);
  return [...reasons].sort((a, b) => b[1] - a[1]);
}
