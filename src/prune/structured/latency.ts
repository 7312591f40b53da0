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
import { LatencyTable, currentMeta, defaultCachePath } from '../../plan/latency-table.js';
import { analysisOptions, importanceScores, pruneStructured, requireImportanceData, type StructuredOptions, type StructuredResult } from './index.js';
import { removeUnits } from './surgery.js';

export interface LatencyPlanOptions extends LatencyOptions {
  /** The latency table file: a path, false for none (measure everything, keep nothing), default the user cache. */
  cache?: string | false;
  /** A table to use (tests; overrides `cache`). */
  table?: LatencyTable;
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
  };
}

export async function pruneToLatency(model: Model, target: number, opts: StructuredOptions, bench: LatencyPlanOptions): Promise<LatencyTargetResult> {
  if (!(target > 0 && target <= 1)) throw new ShearsError('the latency target must be in (0, 1]');
  if (opts.removeBlocks) throw new ShearsError('a latency target plans channel widths only: give --remove-blocks with a MAC or parameter target');
  const say = opts.progress ?? (() => {});
  const t0 = performance.now();
  const batch = bench.batch ?? 1;
  const threads = bench.threads ?? 1;
  const meta = currentMeta(threads);
  const path = bench.cache === false ? undefined : bench.cache ?? defaultCachePath(meta);
  const table = bench.table ?? LatencyTable.open(meta, path);
  if (table.ignored) say(`latency table ${path}: ignored, ${table.ignored}`);
  const inputShapes: Record<string, Dim[]> = benchShapes(model, { batch, ...(opts.inputShapes ? { inputShapes: opts.inputShapes } : {}) }).shapes;
  const an = analyzeModel(model, { inputShapes, ...(opts.ignore ? { ignore: opts.ignore } : {}), ...analysisOptions(opts) });
  if (!an.dg.units.length) throw new ShearsError('no prunable channels: a latency target cannot be planned');
  requireImportanceData(opts);
  const cost = new CostModel(an.dg, an.shapes, an.parameters);
  const score = importanceScores(an.dg, opts);
  const layout = await nchwcLayout();
  const sl = new SegmentLatency(an.model, an.shapes, table, layout, an.dg);
  const measure = { runs: bench.runs ?? 7, warmup: bench.warmup ?? 1, progress: say };
  const half = halfWidths(an.dg, layout.block);
  const before = table.measured;
  const cal = await sl.calibrateDense(measure, { size: half.size, model: () => benchShapes(removeUnits(an.dg, half.removed).model, { batch }).model });
  const dense = cal.points[0]!.whole;
  say(`latency model: dense ${dense.toFixed(2)} ms measured at batch ${batch}, ${threads} thread(s); ${sl.segments.length} segments; calibration x${cal.nchwc.toFixed(3)} (NCHWc) ${cal.offset >= 0 ? '+' : ''}${cal.offset.toFixed(2)} ms`);
  // Lookups are each a fraction of the whole model: fewer timed runs where the model is slow (resnet18 at batch 32).
  const planMeasure = { ...measure, runs: bench.runs ?? (dense > 200 ? 3 : dense > 50 ? 5 : 7) };
  let planned;
  try {
    planned = await planBudget(an.dg, cost, score, {
      kind: 'latency', target, latency: sl,
      ...(opts.roundTo ? { roundTo: opts.roundTo } : {}), ...(opts.maxLayerRatio ? { maxLayerRatio: opts.maxLayerRatio } : {}),
      ...(opts.headRate !== undefined ? { headRate: opts.headRate } : {}),
      ...(opts.allocation === 'level' ? { level: true } : {}),
      planOptions: { ...opts }, measure: planMeasure, progress: say,
    });
  } finally {
    table.save();
  }
  const alloc = planned.plan.allocation as Allocation;
  if (sl.unbuildable.size) {
    const [k, why] = [...sl.unbuildable][0]!;
    say(`latency model: ${sl.unbuildable.size} segment(s) could not be timed at the planned widths and count at their dense time (segment ${k}, ${sl.segments[k]!.nodes[0]!.opType} '${sl.segments[k]!.nodes[0]!.name}': ${why})`);
  }
  const measured = table.measured - before;
  const planSeconds = (performance.now() - t0) / 1000;
  say(`planned for ${(target * 100).toFixed(1)}% latency: predicted ${alloc.reached.toFixed(2)} ms of ${alloc.base.toFixed(2)} (${((alloc.reached / alloc.base) * 100).toFixed(1)}%), ${alloc.steps} steps, ${measured} timing graphs measured (${table.entries.size} in the table${path ? `, ${path}` : ''}), ${planSeconds.toFixed(1)} s`);
  const { ratio: _r, targetMacs: _m, targetParams: _p, ...rest } = opts;
  const plan = { ...planned.plan, options: { ...planned.plan.options, targetLatency: target, batch, threads, importance: opts.importance ?? 'l2', aggregate: opts.aggregate ?? 'mean' } };
  const res = pruneStructured(model, { ...rest, plan });
  res.plan = { ...res.plan, allocation: alloc };
  return {
    ...res,
    latency: {
      dense, predicted: alloc.reached, ratio: alloc.reached / alloc.base, batch, threads, measured, cache: path ?? null,
      ...(table.ignored ? { cacheIgnored: table.ignored } : {}), planSeconds,
    },
  };
}
