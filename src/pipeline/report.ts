/**
 * The report step: evidence of the final model against the dense model (report/evidence.ts, what `shears report
 * DENSE MODEL` gathers): sizes, parameters and nonzeros, MACs, latency measured interleaved, and accuracy and
 * fidelity on the step's data when given. Plain JSON; report/html.ts draws it.
 */
import type { Model } from '../ir/graph.js';
import { gatherEvidence, type EvidenceOptions, type EvidenceReport } from '../report/evidence.js';
import type { RunContext } from './context.js';
import { withDefaults, type Given } from './options.js';
import { REPORT_OPTIONS, type ReportStep } from './steps.js';

/** The measurement settings of a report step's options (defaults filled in); its data set is the caller's to open. */
export function evidenceSettings(given: Given<typeof REPORT_OPTIONS>): Pick<EvidenceOptions, 'dataLimit' | 'evalBatch' | 'batch' | 'threads' | 'warmup' | 'runs'> {
  const s = withDefaults(REPORT_OPTIONS, given);
  return {
    evalBatch: s.evalBatch, batch: s.batch, warmup: s.warmup, runs: s.runs,
    ...(s.dataLimit !== undefined ? { dataLimit: s.dataLimit } : {}),
    ...(s.threads !== undefined ? { threads: s.threads } : {}),
  };
}

/** `denseBytes`: the dense model's file as read (its sizes; default: re-encoded). */
export async function runReport(ctx: RunContext, model: Model, step: ReportStep, after: string, denseBytes?: Uint8Array): Promise<EvidenceReport> {
  const settings = evidenceSettings(step);
  const data = step.data !== undefined ? await ctx.data('report.data', step.data) : undefined;
  ctx.emit({ type: 'info', message: `measuring the dense model and the model after ${after} (${settings.runs} interleaved runs${data ? `, data ${data.description}` : ''}) ...` });
  return gatherEvidence([
    { label: 'dense', model: ctx.dense, ...(denseBytes ? { bytes: denseBytes } : {}) },
    { label: `after ${after}`, model },
  ], {
    ...settings,
    ...(data ? { data } : {}),
    ...(ctx.feeds ? { feeds: ctx.feeds } : {}),
    onProgress: (label, p) => ctx.emit({ type: 'progress', message: `evaluating ${label} ${p.done}/${p.total}`, done: p.done, total: p.total }),
  });
}
