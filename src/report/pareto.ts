/**
 * The Pareto front of accuracy against latency: the models no other model beats on both (as fast or faster and as
 * accurate or more, better on one). Used by `shears sweep` (pipeline/sweep.ts) and by `shears report` given
 * several variants; report/html.ts marks the front on its accuracy-against-latency chart.
 */
import type { EvidenceReport, ModelEvidence, ParetoLatency, ParetoMetric, ParetoSummary } from './evidence.js';

export type { ParetoLatency, ParetoMetric, ParetoSummary };

/** One model as the front sees it: latency (lower is better) and quality (higher is better: see qualityOf). */
export interface ParetoPoint {
  latency: number;
  quality: number;
}

/**
 * For each point, whether it is on the front: no other point has latency <= and quality >= with one of the two
 * strictly better. Equal points are all on the front. Points with a non-finite value are never on it.
 */
export function paretoFront(points: readonly ParetoPoint[]): boolean[] {
  const ok = (p: ParetoPoint) => Number.isFinite(p.latency) && Number.isFinite(p.quality);
  return points.map((p, i) => ok(p) && !points.some((q, j) => j !== i && ok(q) && q.latency <= p.latency && q.quality >= p.quality && (q.latency < p.latency || q.quality > p.quality)));
}

/**
 * A model's quality by `metric` (higher is better): relMSE is negated; the base model (index 0) has agreement 1
 * and relMSE 0 with itself. undefined: the model has no such figure.
 */
export function qualityOf(m: ModelEvidence, metric: ParetoMetric, isBase: boolean): number | undefined {
  switch (metric) {
    case 'top1':
      return m.accuracy?.top1;
    case 'map50-95':
      return m.detection?.map5095;
    case 'agreement': {
      if (isBase) return 1;
      const f = m.fidelity ? Object.values(m.fidelity)[0] : undefined;
      return m.agreement ?? f?.agreement ?? f?.scalar?.decisionAgreement;
    }
    case 'relMse': {
      if (isBase) return 0;
      const f = m.fidelity ? Object.values(m.fidelity)[0] : undefined;
      return f ? -f.relMse : undefined;
    }
  }
}

/**
 * The quality figure every model of the report has, in order of preference: top-1 (labelled data), mAP50-95
 * (detection data), agreement with the base, -relMSE to the base (no labels). undefined: no data was scored.
 */
export function paretoMetric(r: EvidenceReport): ParetoMetric | undefined {
  for (const metric of ['top1', 'map50-95', 'agreement', 'relMse'] as const) {
    if (r.models.every((m, k) => qualityOf(m, metric, k === 0) !== undefined)) return metric;
  }
  return undefined;
}

/** The front of an evidence report's models (undefined when no quality figure is common to all of them). */
export function evidencePareto(r: EvidenceReport, latency: ParetoLatency = 'median'): ParetoSummary | undefined {
  const metric = paretoMetric(r);
  if (!metric) return undefined;
  const points = r.models.map((m, k) => ({ latency: m.latency[latency], quality: qualityOf(m, metric, k === 0)! }));
  const on = paretoFront(points);
  const front = r.models.map((m, k) => ({ label: m.label, latency: points[k]!.latency, on: on[k]! })).filter((x) => x.on).sort((a, b) => a.latency - b.latency);
  return { metric, latency, front: front.map((x) => x.label) };
}
