/**
 * Scoring: accuracy of a model on labelled data and its fidelity to the run's dense model (metrics/evaluate.ts).
 * The score step scores the model as it stands at that point of the pipeline, and the dense model once per data
 * set for comparison.
 */
import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/graph.js';
import { evaluate, type EvalReport } from '../metrics/evaluate.js';
import type { RunContext } from './context.js';
import type { ScoreStep } from './steps.js';

export interface ScoreReport {
  /** The step's position in the recipe and the step it follows. */
  index: number;
  after: string;
  data: string;
  dense: EvalReport;
  model: EvalReport;
}

const pct = (v: number | undefined) => (v === undefined ? '-' : `${(100 * v).toFixed(2)}%`);

/** Scores `model` against the dense model on `ds` (at most `limit` samples), with a progress line per stage. */
export async function scoreModel(ctx: RunContext, model: Model, ds: Dataset, limit: number | undefined, label: string): Promise<EvalReport> {
  ctx.emit({ type: 'info', message: `evaluating ${label} ...` });
  const r = await evaluate(model, ds, { reference: ctx.dense, batchSize: 128, ...(limit ? { limit } : {}) });
  const acc = r.accuracy ? `top-1 ${pct(r.accuracy.top1)}` : '';
  const fid = Object.entries(r.fidelity ?? {}).map(([k, f]) => `${k}: ${f.agreement !== undefined ? `agreement ${pct(f.agreement)} ` : ''}relMSE ${f.relMse.toExponential(2)}`).join('; ');
  ctx.emit({ type: 'info', message: `  ${label}: ${[acc, fid].filter(Boolean).join('  ')}` });
  return r;
}

export async function runScore(ctx: RunContext, model: Model, step: ScoreStep, index: number, after: string): Promise<ScoreReport> {
  const ds = await ctx.data('score.data', step.data);
  const key = `${ctx.specOf(step.data)}|${step.limit ?? ''}`;
  let dense = ctx.denseScores.get(key);
  if (!dense) {
    dense = scoreModel(ctx, ctx.dense, ds, step.limit, 'dense');
    ctx.denseScores.set(key, dense);
    ctx.emit({ type: 'scored', what: 'the dense model', report: await dense });
  }
  return { index, after, data: ctx.specOf(step.data), dense: await dense, model: await scoreModel(ctx, model, ds, step.limit, `after ${after}`) };
}
