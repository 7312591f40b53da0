/**
 * --target-latency F: keep F of the predicted onnxruntime latency. The widths come from the budgeted planner
 * (plan/budget.ts) with a latency budget: per-segment latencies measured at the widths it considers, cached on
 * disk (plan/latency-table.ts), calibrated on the dense model and one narrower copy (plan/latency-model.ts). No
 * whole-model trial loop: the chosen plan is replayed by pruneStructured.
 */
import { ShearsError } from '../../errors.js';
import type { Dim, Model } from '../../ir/graph.js';
import { benchShapes, type LatencyOptions } from '../../metrics/latency.js';
import { analyzeModel } from '../../depgraph/analyze.js';
import { CostModel } from '../../plan/cost.js';
import { planBudget, type Allocation } from '../../plan/budget.js';
import { SegmentLatency, halfWidths, nchwcLayout } from '../../plan/latency-model.js';
import { LatencyTable, currentMeta, defaultCachePath, hashKey, type MeasureOptions } from '../../plan/latency-table.js';
import type { Landing, LandingAttempt, StructuredPlan } from '../../plan/plan.js';
import { analysisOptions, importanceScores, pruneStructured, requireImportanceData, type StructuredOptions, type StructuredResult } from './index.js';
import { removeUnits } from './surgery.js';
import { chooseUnits, depthUnits, findResidualBlocks, removeBlocks } from './depth.js';
import { cloneModel } from '../../ir/clone.js';

export interface LatencyPlanOptions extends LatencyOptions {
  /** The latency table file: a path, false for none (measure everything, keep nothing), default the user cache. */
  cache?: string | false;
  /** A table already open (overrides `cache`): the caller's, shared by depthUnitTimes and pruneToLatency (latencyTableOf); tests. */
  table?: LatencyTable;
  /**
   * The landing check (default true): the planned model is measured against the dense one (interleaved, kept in
   * the table), and planned again for a corrected target when it lands more than LANDING_TOLERANCE off (landing()).
   */
  landingCheck?: boolean;
  /** Measures the planned model's fraction of the dense latency (tests; default: timed through the table). */
  measureLanding?: (pruned: Model, key: string) => Promise<number>;
}

/** A plan whose measured fraction of the dense latency is within this (relative) of the target is kept. */
export const LANDING_TOLERANCE = 0.03;
/** Plans made at most, the first included, when landings miss the target. */
export const LANDING_ATTEMPTS = 3;

/**
 * The planner's target for the next attempt, from the landings so far: the last plan's predicted fraction scaled
 * by how far it landed from the target (target/measured), or with two plans the secant through the last two
 * (predicted -> measured); undefined when it would ask a target already asked.
 */
export function nextLandingTarget(target: number, attempts: LandingAttempt[]): number | undefined {
  const a = attempts.at(-1)!;
  let t = a.predicted * (target / a.measured);
  const b = attempts.at(-2);
  if (b && Math.abs(a.predicted - b.predicted) > 1e-6) {
    const slope = (a.measured - b.measured) / (a.predicted - b.predicted);
    if (slope > 0.2) t = a.predicted + (target - a.measured) / slope;
  }
  t = Math.min(1, t);
  if (!(t > 0) || attempts.some((x) => Math.abs(x.planned - t) < 1e-4)) return undefined;
  return t;
}

export interface LatencyTargetResult extends StructuredResult {
  latency: {
    /** Measured dense latency (ms, the calibration's) and the predicted latency of the pruned model. */
    dense: number;
    predicted: number;
    ratio: number;
    batch: number;
    threads: number;
    /** Timing graphs measured by this plan (0: everything came from the cache), and where the table is kept. */
    measured: number;
    cache: string | null;
    cacheIgnored?: string;
    planSeconds: number;
    /**
     * The landing check: each plan made, with its planner target, predicted and measured fraction of the dense
     * latency (interleaved with the dense model, CPU time at 1 thread); the plan kept is `landing.kept`.
     */
    landing?: Landing;
  };
}

/** A calibrated latency model of `model` at the bench shapes (the dense whole model and a half-width copy measured). */
async function latencyModelOf(model: Model, inputShapes: Record<string, Dim[]>, opts: StructuredOptions, table: LatencyTable, batch: number, measure: MeasureOptions) {
  const an = analyzeModel(model, { inputShapes, ...(opts.ignore ? { ignore: opts.ignore } : {}), ...analysisOptions(opts) });
  const layout = await nchwcLayout();
  const sl = new SegmentLatency(an.model, an.shapes, table, layout, an.dg);
  const half = halfWidths(an.dg, layout.block);
  const cal = await sl.calibrateDense(measure, { size: half.size, model: () => benchShapes(removeUnits(an.dg, half.removed).model, { batch }).model });
  return { an, sl, cal, dense: cal.points[0]!.whole };
}

/**
 * Under a latency target, what removing each depth unit saves (ms, predicted by the latency table: the
 * calibrated times of the segments its branch nodes make up), by unit name. The planner removes the units
 * whose importance per ms saved is least (depthScoresPerMs): on fmnist_resnet20 at batch 128 the blocks
 * least important alone are those of the last stage (7x7 activations), which save a few percent of the time.
 */
export async function depthUnitTimes(model: Model, opts: StructuredOptions, bench: LatencyPlanOptions): Promise<Map<string, number>> {
  const { table, inputShapes, batch, measure } = latencySetup(model, opts, bench);
  try {
    const { sl } = await latencyModelOf(model, inputShapes, opts, table, batch, measure);
    const concrete = inputShapes as Record<string, number[]>;
    const branch = new Map(findResidualBlocks(model, concrete).map((b) => [b.join, new Set(b.branch)]));
    const out = new Map<string, number>();
    for (const u of depthUnits(model, concrete, opts.blockUnit ?? 'block', opts.ignore)) {
      const nodes = new Set(u.joins.flatMap((j) => [...(branch.get(j) ?? [])]));
      const ks: number[] = [];
      sl.segments.forEach((seg, k) => { if (seg.nodes.some((n) => nodes.has(n.name))) ks.push(k); });
      out.set(u.name, ks.length ? sl.predict(undefined, ks) : 0);
    }
    return out;
  } finally {
    saveTable(table, opts.progress ?? (() => {}));
  }
}

/** Depth-unit scores divided by the time each unit's removal saves (least importance per ms first). */
export function depthScoresPerMs(scores: ReadonlyMap<string, number>, ms: ReadonlyMap<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, s] of scores) {
    const t = ms.get(name) ?? 0;
    out.set(name, t > 0 ? s / t : Number.MAX_VALUE);
  }
  return out;
}

/** The latency table file of `bench` (undefined: none) and the table to use: `bench.table`, else that file opened. */
export function latencyTableOf(bench: LatencyPlanOptions): { path: string | undefined; table: LatencyTable } {
  const meta = currentMeta(bench.threads ?? 1);
  const path = bench.cache === false ? undefined : bench.cache ?? defaultCachePath(meta);
  return { path, table: bench.table ?? LatencyTable.open(meta, path) };
}

function latencySetup(model: Model, opts: StructuredOptions, bench: LatencyPlanOptions) {
  const say = opts.progress ?? (() => {});
  const batch = bench.batch ?? 1;
  const threads = bench.threads ?? 1;
  const { path, table } = latencyTableOf(bench);
  const inputShapes: Record<string, Dim[]> = benchShapes(model, { batch, ...(opts.inputShapes ? { inputShapes: opts.inputShapes } : {}) }).shapes;
  const measure = { runs: bench.runs ?? 7, warmup: bench.warmup ?? 1, progress: say };
  return { say, batch, threads, path, table, inputShapes, measure };
}

/** The table is a cache: a file that cannot be written (a full disk, a read-only home) costs the next plan its measurements, never this run its result. */
function saveTable(table: LatencyTable, say: (m: string) => void): void {
  try {
    table.save();
  } catch (e) {
    say(`latency table: not saved (${(e as Error).message}); the next plan of this model measures again`);
  }
}

export async function pruneToLatency(model: Model, target: number, opts: StructuredOptions, bench: LatencyPlanOptions): Promise<LatencyTargetResult> {
  if (!(target > 0 && target <= 1)) throw new ShearsError('the latency target must be in (0, 1]');
  const t0 = performance.now();
  const { say, batch, threads, path, table, inputShapes, measure } = latencySetup(model, opts, bench);
  if (table.ignored) say(`latency table ${path}: ignored, ${table.ignored}`);
  requireImportanceData(opts);
  const before = table.measured;
  // the dense model: its latency is what the target is a fraction of, and what the landing is measured against
  const orig = await latencyModelOf(model, inputShapes, opts, table, batch, measure);
  const dense = orig.dense;
  say(`latency model: dense ${dense.toFixed(2)} ms measured at batch ${batch}, ${threads} thread(s); ${orig.sl.segments.length} segments; calibration x${orig.cal.nchwc.toFixed(3)} (NCHWc) ${orig.cal.offset >= 0 ? '+' : ''}${orig.cal.offset.toFixed(2)} ms`);
  // --remove-blocks K: the K depth units of least importance per ms saved (opts.depthRanking, as the caller
  // ranked them: depthScoresPerMs) go first; the widths are planned on the model without them, for the
  // target scaled by the depth-pruned model's measured share of the dense latency.
  let blocks: string[] = [];
  let an = orig.an, sl = orig.sl, scale = 1;
  if (opts.removeBlocks) {
    const concrete = inputShapes as Record<string, number[]>;
    const units = chooseUnits(model, opts.removeBlocks, concrete, { ...(opts.blockUnit ? { unit: opts.blockUnit } : {}), ...(opts.depthRanking ? { scores: opts.depthRanking.scores } : {}), ...(opts.ignore ? { ignore: opts.ignore } : {}) });
    blocks = units.flatMap((u) => u.joins);
    say(`removing ${units.length} depth unit(s) (${opts.depthRanking ? `ranked by ${opts.depthRanking.method}` : 'ranked by parameter RMS'}): ${units.map((u) => u.name).join(', ')}`);
    const work = cloneModel(model);
    removeBlocks(work, blocks, concrete);
    const w = await latencyModelOf(work, inputShapes, opts, table, batch, measure);
    an = w.an;
    sl = w.sl;
    // the share measured with the dense model, interleaved (as the landing check measures): the two calibrations'
    // anchors are timed at other moments (one of them may come from the table), and the machine drifts between
    scale = await fractionOfDense(orig.sl, w.sl.staticModel(), hashKey(`blocks|${blocks.join(',')}`), measure);
    say(`latency model: without them ${(scale * dense).toFixed(2)} ms (${(scale * 100).toFixed(1)}% of the dense latency, measured against it)${scale <= target ? `, at or under the target of ${(target * 100).toFixed(1)}%: the widths stay` : ''}`);
    // the blocks alone far under the target: the model written would miss it (faster and less accurate than asked)
    if (scale < target * (1 - LANDING_TOLERANCE)) {
      throw new ShearsError(`the target ${(target * 100).toFixed(1)}% of the latency cannot be reached with ${units.length} depth unit(s) removed: without them the model already runs at ${(scale * 100).toFixed(1)}% of the dense latency; remove fewer (--remove-blocks) or ask a lower target`);
    }
  }
  if (!an.dg.units.length && scale > target) throw new ShearsError('no prunable channels: a latency target cannot be planned');
  const cost = new CostModel(an.dg, an.shapes, an.parameters);
  const score = importanceScores(an.dg, opts);
  const dense1 = sl.calibration.points[0]!.whole;
  // Lookups are each a fraction of the whole model: fewer timed runs where the model is slow (resnet18 at batch 32).
  const planMeasure = { ...measure, runs: bench.runs ?? (dense1 > 200 ? 3 : dense1 > 50 ? 5 : 7) };
  // t: a fraction of the dense model's latency; the planner plans the depth-pruned model for t / scale
  const planAt = (t: number) => planBudget(an.dg, cost, score, {
    kind: 'latency', target: Math.min(1, t / scale), latency: sl,
    ...(opts.roundTo ? { roundTo: opts.roundTo } : {}), ...(opts.maxLayerRatio ? { maxLayerRatio: opts.maxLayerRatio } : {}),
    ...(opts.headRate !== undefined ? { headRate: opts.headRate } : {}),
    ...(opts.allocation === 'level' ? { level: true } : {}),
    planOptions: { ...opts }, measure: planMeasure, progress: say,
  });
  /** Predicted fraction of the dense model's latency of a plan. */
  const fraction = (p: { plan: StructuredPlan }) => {
    const a = p.plan.allocation as Allocation;
    return (a.reached / a.base) * scale;
  };
  const { ratio: _r, targetMacs: _m, targetParams: _p, ...rest } = opts;
  const replays = new Map<StructuredPlan, StructuredResult>();
  const replay = (p: StructuredPlan) => {
    let r = replays.get(p);
    if (!r) replays.set(p, (r = pruneStructured(model, { ...rest, plan: { ...p, removedBlocks: blocks, options: { ...p.options, targetLatency: target, batch, threads, importance: opts.importance ?? 'l2', aggregate: opts.aggregate ?? 'mean' } } })));
    return r;
  };
  let planned: { removed: Set<number>; plan: StructuredPlan };
  let landing: Landing | undefined;
  try {
    planned = await planAt(target);
    if (bench.landingCheck !== false) {
      const r = await landOn(target, planned, planAt, fraction, blocks.join(','), (p, key) => {
        const pruned = benchShapes(replay(p.plan).model, { batch, ...(opts.inputShapes ? { inputShapes: opts.inputShapes } : {}) }).model;
        return bench.measureLanding ? bench.measureLanding(pruned, key) : fractionOfDense(orig.sl, pruned, key, measure);
      }, say);
      planned = r.planned;
      landing = r.landing;
    }
  } finally {
    saveTable(table, say);
  }
  const alloc = planned.plan.allocation as Allocation;
  if (landing) alloc.landing = landing;
  if (sl.unbuildable.size) {
    const [k, why] = [...sl.unbuildable][0]!;
    say(`latency model: ${sl.unbuildable.size} segment(s) could not be timed at the planned widths and count at their dense time (segment ${k}, ${sl.segments[k]!.nodes[0]!.opType} '${sl.segments[k]!.nodes[0]!.name}': ${why})`);
  }
  const measured = table.measured - before;
  const planSeconds = (performance.now() - t0) / 1000;
  const ratio = fraction(planned);
  say(`planned for ${(target * 100).toFixed(1)}% latency: predicted ${(ratio * dense).toFixed(2)} ms of ${dense.toFixed(2)} (${(ratio * 100).toFixed(1)}%${blocks.length ? `, ${blocks.length} residual branch(es) removed` : ''}), ${alloc.steps} steps, ${measured} timing graphs measured${table.remeasured ? ` (${table.remeasured} of them twice: read over 1.5x their dense time)` : ''} (${table.entries.size} in the table${path ? `, ${path}` : ''}), ${planSeconds.toFixed(1)} s`);
  const res = replay(planned.plan);
  res.plan = { ...res.plan, allocation: alloc };
  return {
    ...res,
    latency: {
      dense, predicted: ratio * dense, ratio, batch, threads, measured, cache: path ?? null,
      ...(table.ignored ? { cacheIgnored: table.ignored } : {}), planSeconds, ...(landing ? { landing } : {}),
    },
  };
}

/**
 * A model's measured fraction of the dense latency (a planned model's landing, a depth-pruned model's share):
 * both timed interleaved (CPU time at one thread; as the calibration's anchors are, SegmentLatency.anchorRuns),
 * kept as two entries of the table (keyed by the dense model's segments and `key`: the model's widths and
 * blocks), so that a warm replay measures nothing.
 */
async function fractionOfDense(sl: SegmentLatency, model: Model, key: string, measure: MeasureOptions): Promise<number> {
  const dk = hashKey(`landing-dense|${sl.wholeKey()}|${key}`), pk = hashKey(`landing|${sl.wholeKey()}|${key}`);
  if (sl.table.get(dk) === undefined || sl.table.get(pk) === undefined) {
    sl.table.entries.delete(dk);
    sl.table.entries.delete(pk);
    await sl.table.measure([{ key: dk, model: () => sl.staticModel() }, { key: pk, model: () => model }], { ...measure, ...sl.anchorRuns(), chunk: 2, rewarm: false });
  }
  const d = sl.table.get(dk), p = sl.table.get(pk);
  if (d === undefined || p === undefined || !(d > 0)) throw new ShearsError(`latency landing check: the planned model cannot be timed (${sl.table.failed.get(pk) ?? sl.table.failed.get(dk) ?? 'not measured'})`);
  return p / d;
}

/**
 * The landing check: the plan is measured against the dense model; while it lands more than LANDING_TOLERANCE
 * off the target (the table's timings of small graphs carry the machine's drift between them, and a planner
 * that takes the steps whose timings read cheapest takes their noise too: densenet121 at 0.6 landed at 0.669
 * and 0.768 from two cold tables), the planner is given a corrected target (nextLandingTarget), at most
 * LANDING_ATTEMPTS plans in all. The plan kept is the one measured closest to the target.
 */
async function landOn(
  target: number,
  first: { removed: Set<number>; plan: StructuredPlan },
  planAt: (t: number) => Promise<{ removed: Set<number>; plan: StructuredPlan }>,
  fraction: (p: { plan: StructuredPlan }) => number,
  /** What else makes the planned model (its removed blocks): part of the landing's key, with the removed units. */
  depth: string,
  measure: (p: { removed: Set<number>; plan: StructuredPlan }, key: string) => Promise<number>,
  say: (m: string) => void,
): Promise<{ planned: { removed: Set<number>; plan: StructuredPlan }; landing: Landing }> {
  const attempts: LandingAttempt[] = [];
  const plans = [first];
  const keyOf = (p: { removed: Set<number> }) => hashKey(`${depth}|${[...p.removed].sort((x, y) => x - y).join(',')}`);
  const keys = new Set<string>();
  let t = target;
  let p = first;
  let key = keyOf(first);
  for (;;) {
    keys.add(key);
    const measured = await measure(p, key);
    const predicted = fraction(p);
    attempts.push({ planned: t, predicted, measured });
    const off = measured / target - 1;
    say(`landing check: the plan${attempts.length > 1 ? ` for ${(t * 100).toFixed(1)}%` : ''} measures ${(measured * 100).toFixed(1)}% of the dense latency (predicted ${(predicted * 100).toFixed(1)}%)${Math.abs(off) <= LANDING_TOLERANCE ? '' : `: ${off > 0 ? '+' : ''}${(off * 100).toFixed(1)}% off the target`}`);
    if (Math.abs(off) <= LANDING_TOLERANCE || attempts.length >= LANDING_ATTEMPTS) break;
    const next = nextLandingTarget(target, attempts);
    if (next === undefined) break;
    let q;
    try {
      q = await planAt(next);
    } catch (e) {
      if (!(e instanceof ShearsError)) throw e;
      say(`landing check: a plan for ${(next * 100).toFixed(1)}% cannot be made (${e.message})`);
      break;
    }
    key = keyOf(q);
    if (keys.has(key)) break; // the corrected target gave a plan already measured
    p = q;
    t = next;
    plans.push(p);
  }
  let kept = 0;
  attempts.forEach((a, i) => { if (Math.abs(a.measured - target) < Math.abs(attempts[kept]!.measured - target)) kept = i; });
  if (attempts.length > 1) say(`landing check: kept the plan ${kept === 0 ? 'made first' : `for ${(attempts[kept]!.planned * 100).toFixed(1)}%`}, measured ${(attempts[kept]!.measured * 100).toFixed(1)}% of the dense latency`);
  return { planned: plans[kept]!, landing: { attempts, kept, measured: attempts[kept]!.measured } };
}
