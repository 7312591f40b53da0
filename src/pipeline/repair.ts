/**
 * The repair step: training-free repair of the pruned model against the dense one (repair/), one method after
 * the other on a seeded sample of the calibration data, with the stages scored (dense, pruned, repaired) on the
 * evaluation data when it is given, else on the calibration samples.
 */
import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/graph.js';
import type { EvalReport } from '../metrics/evaluate.js';
import { repair, type RepairMethod, type RepairReport } from '../repair/repair.js';
import { parsePattern } from '../sparsity/nm.js';
import { getMasks } from '../sparsity/masks.js';
import type { RunContext } from './context.js';
import { withDefaults } from './options.js';
import { scoreModel } from './score.js';
import { REPAIR_OPTIONS, type RepairStep } from './steps.js';

export interface StageScores {
  data: string;
  dense: EvalReport;
  pruned: EvalReport;
  repaired?: EvalReport;
}

export interface RepairStageReport {
  methods: RepairMethod[];
  steps: RepairReport[];
  seconds: number;
  /** Accuracy/fidelity per stage, on the step's data (or on the calibration samples when it gives none). */
  scores?: StageScores;
}

/**
 * Repairs `model` (not modified) against the run's dense model; `pattern`: the N:M pattern of the pruning,
 * `pruned`: the weights the prune step pruned (obs and wanda choose N:M masks for these only; without a prune
 * step, the weights with stored masks, else all).
 */
export async function runRepair(ctx: RunContext, model: Model, step: RepairStep, pattern: string | undefined, pruned?: ReadonlySet<string>): Promise<{ model: Model; report: RepairStageReport }> {
  const t0 = performance.now();
  const s = withDefaults(REPAIR_OPTIONS, step);
  const report: RepairStageReport = { methods: s.methods, steps: [], seconds: 0 };
  const calibrated = s.methods.some((m) => m !== 'none');
  const calib = calibrated ? (await ctx.data('repair.calib', s.calib!)).sample(s.calibSize, s.calibSeed) : undefined;
  const evalData: Dataset | undefined = s.data !== undefined ? await ctx.data('repair.data', s.data) : calib;
  const limit = s.dataLimit;
  let scores: StageScores | undefined;
  if (evalData) {
    // (the dense model's score: once per run, and once per cache shared by runs: a sweep's variants)
    const on = s.data !== undefined ? ctx.dataKey(s.data) : ['calib', ctx.dataKey(s.calib!), s.calibSize, s.calibSeed];
    const dense = await ctx.denseScore(['repair', on, limit ?? null], () => scoreModel(ctx, ctx.dense, evalData, limit, 'dense')).report;
    ctx.emit({ type: 'scored', what: 'the dense model', report: dense });
    scores = { data: s.data !== undefined ? ctx.specOf(s.data) : `calibration samples (${calib!.description})`, dense, pruned: await scoreModel(ctx, model, evalData, limit, 'pruned') };
  }
  const nm = s.pattern ?? pattern;
  // the weights pruned before (the prune step's, else those with stored masks): N:M masks for these only
  const stored = getMasks(model);
  const prunedWeights = pruned ?? (stored.size ? new Set(stored.keys()) : undefined);
  let current = model;
  for (const method of s.methods) {
    if (method === 'none') continue;
    const { model: out, report: r } = await repair(ctx.dense, current, calib!, {
      method,
      // N:M masks only for the weights the prune step pruned (an excluded LM head stays dense)
      ...(nm !== undefined ? { pattern: parsePattern(nm), ...(prunedWeights && (method === 'obs' || method === 'wanda') ? { weights: prunedWeights } : {}) } : {}),
      damp: s.damp,
      onProgress: (p) => ctx.emit({ type: 'progress', message: `repair ${method}: ${p.done}/${p.total} layers (${p.seconds.toFixed(1)} s)`, done: p.done, total: p.total }),
    });
    ctx.emit({ type: 'info', message: `repair ${method}: ${r.layers.length} layers in ${r.seconds.toFixed(1)} s${r.skipped.length ? `, ${r.skipped.length} skipped` : ''}` });
    for (const sk of r.skipped) ctx.emit({ type: 'info', message: `  skipped ${sk.node}: ${sk.reason}` });
    report.steps.push(r);
    current = out;
  }
  if (scores && current !== model) scores.repaired = await scoreModel(ctx, current, evalData!, limit, 'repaired');
  if (calibrated) ctx.storePreprocess(current);
  if (scores) report.scores = scores;
  report.seconds = (performance.now() - t0) / 1000;
  return { model: current, report };
}
