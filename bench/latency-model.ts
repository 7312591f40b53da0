/**
 * Issue 17 check of the latency model: per model, the dense model and pruned variants, predicted latency (from
 * the segment table, calibrated on the dense model) against measured (interleaved, median process CPU time at 1
 * thread, else wall), and the error. Prints one JSON document.
 * Usage: node dist/bench/latency-model.js [--threads 1] [--runs 15] [--no-cache] [--only-given] [--pairwise] MODEL.onnx@BATCH[+VARIANT.onnx...] ...
 * (variants after '+': pruned copies made elsewhere, e.g. by --target-latency, predicted and measured too;
 * --only-given: no built-in variants; --pairwise: each variant's fraction of dense also measured interleaved with the
 * dense model alone, as the landing check measures a plan: `pairRatioError`)
 */
import { loadModel } from '../src/onnx/io.js';
import { benchShapes, measureLatencies } from '../src/metrics/latency.js';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { removeUnits } from '../src/prune/structured/surgery.js';
import { pruneStructured } from '../src/prune/structured/index.js';
import { SegmentLatency, halfWidths, nchwcLayout } from '../src/plan/latency-model.js';
import { LatencyTable, currentMeta, defaultCachePath } from '../src/plan/latency-table.js';
import type { Model } from '../src/ir/graph.js';
import { unitsOfPlan, type StructuredPlan } from '../src/plan/plan.js';
import { cpus, loadavg } from 'node:os';

const args = process.argv.slice(2);
let threads = 1, runs = 15, cache = true, onlyGiven = false, pairwise = false;
const specs: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--threads') threads = Number(args[++i]);
  else if (args[i] === '--runs') runs = Number(args[++i]);
  else if (args[i] === '--no-cache') cache = false;
  else if (args[i] === '--only-given') onlyGiven = true;
  else if (args[i] === '--pairwise') pairwise = true;
  else specs.push(args[i]!);
}
const meta = currentMeta(threads);
const table = LatencyTable.open(meta, cache ? defaultCachePath(meta) : undefined);
const VARIANTS: { name: string; opts: Record<string, unknown> }[] = [
  { name: 'macs0.5-round1', opts: { targetMacs: 0.5, roundTo: 1 } },
  { name: 'macs0.5-round8', opts: { targetMacs: 0.5, roundTo: 8 } },
  { name: 'macs0.7-round16', opts: { targetMacs: 0.7, roundTo: 16 } },
  { name: 'macs0.35-round8', opts: { targetMacs: 0.35, roundTo: 8 } },
];
const layout = await nchwcLayout();
const out: unknown[] = [];
const load0 = loadavg();
const t0 = performance.now();
function prepared(m: Model, batch: number) {
  return analyzeModel(m, { inputShapes: benchShapes(m, { batch }).shapes });
}
for (const spec of specs) {
  const [path, rest = '1'] = spec.split('@');
  const [b = '1', ...given] = rest.split('+');
  const batch = Number(b);
  const base = loadModel(path!);
  // variants: given files (any model: predicted from their own segments) and the built-in width variants, whose
  // plans are predicted as the planner predicts a plan: the dense model's segments at the plan's widths
  const variants: { name: string; model: Model; plan?: StructuredPlan }[] = [{ name: 'dense', model: base }];
  for (const g of given) variants.push({ name: g.split('/').pop()!, model: loadModel(g) });
  for (const v of onlyGiven ? [] : VARIANTS) {
    try {
      const r = pruneStructured(base, { ...v.opts, autoDepth: false });
      variants.push({ name: v.name, model: r.model, plan: r.plan });
    } catch (e) {
      variants.push({ name: `${v.name} (failed: ${(e as Error).message})`, model: base });
    }
  }
  const preds: { name: string; model: Model; predicted: number }[] = [];
  let dense: SegmentLatency | undefined;
  let denseDg: ReturnType<typeof prepared>['dg'] | undefined;
  for (const v of variants) {
    if (dense && denseDg && v.plan) {
      const size = Int32Array.from(denseDg.spaces.map((sp) => sp.size));
      for (const u of unitsOfPlan(denseDg, v.plan)) for (const e of denseDg.units[u]!.elements) size[denseDg.elementSpace[e]!]!--;
      await dense.ensure([size]);
      preds.push({ name: v.name, model: v.model, predicted: dense.predict(size) });
      table.save();
      continue;
    }
    const p = prepared(v.model, batch);
    const sl = new SegmentLatency(p.model, p.shapes, table, layout, p.dg);
    if (!dense) {
      dense = sl;
      denseDg = p.dg;
      const half = halfWidths(p.dg, layout.block);
      if (process.env['ONE_POINT']) await sl.calibrateDense({ runs: 10 });
      else await sl.calibrateDense({ runs: 10 }, { size: half.size, model: () => benchShapes(removeUnits(p.dg, half.removed).model, { batch }).model });
    } else {
      await sl.ensure();
      sl.calibration = dense.calibration;
    }
    preds.push({ name: v.name, model: p.model, predicted: sl.predict() });
    table.save();
  }
  const res = await measureLatencies(preds.map((p) => p.model), { batch, threads, runs, warmup: 3 });
  // --pairwise: each variant against the dense model alone (two models interleaved: the planner's anchors and the
  // landing check measure so; five models interleaved find each other's data in cache, which costs a small model more)
  const pairs: (number | undefined)[] = [];
  for (const [k, p] of preds.entries()) {
    if (!pairwise || k === 0) continue;
    const r2 = await measureLatencies([preds[0]!.model, p.model], { batch, threads, runs, warmup: 3 });
    const f = (r: (typeof r2)[number]) => (threads === 1 ? r.cpuMedian : r.median);
    pairs[k] = f(r2[1]!) / f(r2[0]!);
  }
  for (const [k, p] of preds.entries()) {
    const measured = threads === 1 ? res[k]!.cpuMedian : res[k]!.median;
    const m0 = threads === 1 ? res[0]!.cpuMedian : res[0]!.median;
    // error: of the absolute figure (the dense calibration may come from the table, measured at another time);
    // ratioError: of the fraction of dense, both measured in this interleaved run (what a target is)
    out.push({ model: path!.split('/').pop(), batch, variant: p.name, predicted: +p.predicted.toFixed(3), measured: +measured.toFixed(3), wallMedian: +res[k]!.median.toFixed(3),
      error: +(p.predicted / measured - 1).toFixed(4), speedup: +(m0 / measured).toFixed(3), ratioError: +(p.predicted / preds[0]!.predicted / (measured / m0) - 1).toFixed(4),
      ...(pairs[k] !== undefined ? { pairRatio: +pairs[k]!.toFixed(4), pairRatioError: +(p.predicted / preds[0]!.predicted / pairs[k]! - 1).toFixed(4) } : {}) });
    console.error(JSON.stringify(out[out.length - 1]));
  }
  console.error(`calibration ${JSON.stringify(dense!.calibration)}`);
}
const errs = out.map((r) => Math.abs((r as { ratioError: number }).ratioError));
const pairErrs = out.flatMap((r) => ((r as { pairRatioError?: number }).pairRatioError !== undefined ? [Math.abs((r as { pairRatioError: number }).pairRatioError)] : []));
console.log(JSON.stringify({ cpu: cpus()[0]?.model, nchwc: layout, threads, runs, loadBefore: load0, loadAfter: loadavg(), seconds: +((performance.now() - t0) / 1000).toFixed(1),
  table: { entries: table.entries.size, measuredNow: table.measured, ignored: table.ignored ?? null, path: table.path ?? null },
  maxAbsRatioError: Math.max(...errs), ratioWithin10: errs.filter((e) => e <= 0.1).length + '/' + errs.length,
  ...(pairwise ? { maxAbsPairRatioError: Math.max(...pairErrs), pairRatioWithin10: pairErrs.filter((e) => e <= 0.1).length + '/' + pairErrs.length } : {}), rows: out }, null, 1));
