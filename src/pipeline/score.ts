/**
 * Scoring: accuracy of a model on labelled data and its fidelity to the run's dense model (metrics/evaluate.ts).
 * The score step scores the model as it stands at that point of the pipeline, and the dense model once per data
 * set for comparison.
 */
import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/graph.js';
import { isTokenData } from '../data/tokens.js';
import { formatPerplexity } from '../metrics/perplexity.js';
import { evaluate, type EvalOptions, type EvalReport } from '../metrics/evaluate.js';
import type { RunContext } from './context.js';
import { withDefaults } from './options.js';
import { SCORE_OPTIONS, type ScoreStep } from './steps.js';

export interface ScoreReport {
  /** The step's position in the recipe and the step it follows. */
  index: number;
  after: string;
  data: string;
  /** The dense model's scores (absent with `dense: false`). */
  dense?: EvalReport;
  model: EvalReport;
}

const pct = (v: number | undefined) => (v === undefined ? '-' : `${(100 * v).toFixed(2)}%`);

/** How a model is scored: fidelity to the dense model unless `compare` is false, batch 128 unless given. */
export type ScoreSettings = Pick<EvalOptions, 'batchSize' | 'threads' | 'output'> & { compare?: boolean };

/** Scores `model` against the dense model on `ds` (at most `limit` samples), with a progress line per stage. */
export async function scoreModel(ctx: RunContext, model: Model, ds: Dataset, limit: number | undefined, label: string, settings: ScoreSettings = {}): Promise<EvalReport> {
  const { compare = true, ...opts } = settings;
  ctx.emit({ type: 'info', message: `evaluating ${label} ...` });
  const r = await evaluate(model, ds, {
    batchSize: isTokenData(ds) ? 16 : 128, ...opts, ...(compare ? { reference: ctx.dense } : {}), ...(limit ? { limit } : {}),
    onProgress: (p) => ctx.emit({ type: 'progress', message: `evaluating ${label} ${p.done}/${p.total}`, done: p.done, total: p.total }),
  });
  const acc = r.perplexity ? formatPerplexity(r.perplexity) : r.accuracy ? `top-1 ${pct(r.accuracy.top1)}` : '';
  const fid = Object.entries(r.fidelity ?? {}).map(([k, f]) => `${k}: ${f.agreement !== undefined ? `agreement ${pct(f.agreement)} ` : ''}relMSE ${f.relMse.toExponential(2)}`).join('; ');
  ctx.emit({ type: 'info', message: `  ${label}: ${[acc, fid].filter(Boolean).join('  ')}` });
  return r;
}

/**
 * Scores the model as it stands; its fidelity to the dense model is measured when `changed` (a step before it
 * changed the model, or the run has its own reference model), and the dense model is scored too unless
 * `dense: false`.
 */
export async function runScore(ctx: RunContext, model: Model, step: ScoreStep, index: number, after: string, changed: boolean): Promise<ScoreReport> {
  const s = withDefaults(SCORE_OPTIONS, step);
  const ds = await ctx.data('score.data', s.data);
  const settings: ScoreSettings = { batchSize: s.batch, ...(s.threads !== undefined ? { threads: s.threads } : {}), ...(s.output !== undefined ? { output: s.output } : {}) };
  const data = ctx.specOf(s.data);
  let dense: Promise<EvalReport> | undefined;
  if (s.dense) {
    const d = ctx.denseScore(['score', ctx.dataKey(s.data), s.limit ?? null, settings], () => scoreModel(ctx, ctx.dense, ds, s.limit, 'dense', settings));
    dense = d.report;
    if (d.fresh) ctx.emit({ type: 'scored', what: 'the dense model', report: await dense });
  }
  const scored = await scoreModel(ctx, model, ds, s.limit, `after ${after}`, { ...settings, compare: changed });
  return { index, after, data, ...(dense ? { dense: await dense } : {}), model: scored };
}
