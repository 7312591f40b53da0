/**
 * Fidelity of a model's outputs against a reference model's, per output, for any model (classifiers and
 * detectors alike):
 * - agreement: fraction of samples whose argmax matches (class-score outputs [N, K] only);
 * - kl: mean KL(softmax(ref) || softmax(model)) over axis 1 (the class/channel axis), averaged over the batch and
 *   any trailing positions (outputs of rank >= 2 with dims[1] >= 2);
 * - cosine: mean over samples of the cosine similarity of the flattened per-sample outputs; left out for outputs
 *   of one value per sample ([N], [N, 1]), where it is always 1 (the cosine of two 1-vectors of one sign), and
 *   replaced there by `scalar`: the correlation across the samples, the relative error and, for outputs in
 *   [0, 1] (sigmoid-like scores), the agreement of the decisions at 0.5;
 * - relMse: sum((y - ref)^2) / sum(ref^2) over everything (0 when identical);
 * - maxAbs: the largest |y - ref|.
 */
import { ShearsError } from '../errors.js';
import type { Tensor } from '../ir/tensor.js';
import { toFloat32 } from '../ir/tensor.js';
import { argmaxRow, isClassScores } from './accuracy.js';
import { relMse } from './relative-mse.js';

/** Fidelity of an output of one value per sample ([N], [N, 1]), where a per-sample cosine means nothing. */
export interface ScalarFidelity {
  /** Pearson correlation of the model's and the reference's values across the samples (absent when either is constant). */
  correlation?: number;
  /** sum |y - ref| / sum |ref| (0 when identical). */
  relError: number;
  meanAbsError: number;
  /** Fraction of samples on the same side of 0.5, when every value of both is within [0, 1] (sigmoid-like scores). */
  decisionAgreement?: number;
  /** Why cosine is not given, and what is missing (a constant output). */
  note: string;
}

export interface OutputFidelity {
  samples: number;
  agreement?: number;
  kl?: number;
  /** Absent for outputs of one value per sample (see `scalar`). */
  cosine?: number;
  scalar?: ScalarFidelity;
  relMse: number;
  maxAbs: number;
}

export class FidelityMeter {
  private samples = 0;
  private agree = 0;
  private classScores = true;
  private klSum = 0;
  private klCount = 0;
  private cosSum = 0;
  private sqDiff = 0;
  private sqRef = 0;
  private maxAbs = 0;
  private klAxis = true;
  /** Every batch so far had one value per sample. */
  private perSampleScalar = true;
  private s = { y: 0, r: 0, yy: 0, rr: 0, yr: 0, absDiff: 0, absRef: 0, inUnit: true, decisions: 0 };

  constructor(readonly name: string) {}

  add(y: Tensor, ref: Tensor): void {
    if (y.dims.length !== ref.dims.length || y.dims.some((d, i) => d !== ref.dims[i])) {
      throw new ShearsError(`output '${this.name}' is [${y.dims.join(', ')}], the reference's [${ref.dims.join(', ')}]`);
    }
    const a = toFloat32(y);
    const r = toFloat32(ref);
    const n = y.dims.length ? y.dims[0]! : 1;
    const per = n ? a.length / n : 0;
    // cosine per sample, squared errors
    for (let s = 0; s < n; s++) {
      let dot = 0;
      let na = 0;
      let nr = 0;
      for (let i = s * per; i < (s + 1) * per; i++) {
        const u = a[i]!;
        const v = r[i]!;
        dot += u * v;
        na += u * u;
        nr += v * v;
        const d = u - v;
        this.sqDiff += d * d;
        const ad = Math.abs(d);
        if (ad > this.maxAbs || Number.isNaN(ad)) this.maxAbs = ad;
      }
      this.sqRef += nr;
      this.cosSum += na === 0 && nr === 0 ? 1 : na === 0 || nr === 0 ? 0 : dot / Math.sqrt(na * nr);
    }
    // one value per sample: correlation, relative error, decisions at 0.5
    if (per === 1) {
      const s = this.s;
      for (let i = 0; i < n; i++) {
        const u = a[i]!;
        const v = r[i]!;
        s.y += u;
        s.r += v;
        s.yy += u * u;
        s.rr += v * v;
        s.yr += u * v;
        s.absDiff += Math.abs(u - v);
        s.absRef += Math.abs(v);
        if (!(u >= 0 && u <= 1 && v >= 0 && v <= 1)) s.inUnit = false;
        if (u >= 0.5 === v >= 0.5) s.decisions++;
      }
    } else this.perSampleScalar = false;
    // argmax agreement
    if (isClassScores(y.dims)) {
      const k = y.dims[1]!;
      for (let s = 0; s < n; s++) if (argmaxRow(a, s, k) === argmaxRow(r, s, k)) this.agree++;
    } else this.classScores = false;
    // KL over axis 1
    if (y.dims.length >= 2 && y.dims[1]! >= 2) {
      const c = y.dims[1]!;
      const inner = per / c;
      for (let s = 0; s < n; s++) {
        for (let p = 0; p < inner; p++) {
          const base = s * per + p;
          let ma = -Infinity;
          let mr = -Infinity;
          for (let j = 0; j < c; j++) {
            ma = Math.max(ma, a[base + j * inner]!);
            mr = Math.max(mr, r[base + j * inner]!);
          }
          let za = 0;
          let zr = 0;
          for (let j = 0; j < c; j++) {
            za += Math.exp(a[base + j * inner]! - ma);
            zr += Math.exp(r[base + j * inner]! - mr);
          }
          const lza = Math.log(za);
          const lzr = Math.log(zr);
          let kl = 0;
          for (let j = 0; j < c; j++) {
            const lr = r[base + j * inner]! - mr - lzr;
            const la = a[base + j * inner]! - ma - lza;
            kl += Math.exp(lr) * (lr - la);
          }
          this.klSum += Math.max(0, kl);
          this.klCount++;
        }
      }
    } else this.klAxis = false;
    this.samples += n;
  }

  report(): OutputFidelity {
    const out: OutputFidelity = { samples: this.samples, relMse: relMse(this.sqDiff, this.sqRef), maxAbs: this.maxAbs };
    if (this.perSampleScalar && this.samples) out.scalar = this.scalarReport();
    else out.cosine = this.samples ? this.cosSum / this.samples : 1;
    if (this.classScores && this.samples) out.agreement = this.agree / this.samples;
    if (this.klAxis && this.klCount) out.kl = this.klSum / this.klCount;
    return out;
  }

  private scalarReport(): ScalarFidelity {
    const s = this.s;
    const n = this.samples;
    const vy = s.yy - (s.y * s.y) / n;
    const vr = s.rr - (s.r * s.r) / n;
    const cov = s.yr - (s.y * s.r) / n;
    const constant = !(vy > 1e-12 * Math.max(1, s.yy)) || !(vr > 1e-12 * Math.max(1, s.rr));
    const out: ScalarFidelity = {
      relError: s.absRef > 0 ? s.absDiff / s.absRef : s.absDiff === 0 ? 0 : Infinity,
      meanAbsError: s.absDiff / n,
      note: 'one value per sample: cosine is always 1 there, so correlation across the samples and relative error are reported' +
        (constant ? `; no correlation: ${n < 2 ? 'fewer than 2 samples' : 'the output is constant over the samples'}` : ''),
    };
    if (!constant) out.correlation = Math.max(-1, Math.min(1, cov / Math.sqrt(vy * vr)));
    if (s.inUnit) out.decisionAgreement = s.decisions / n;
    return out;
  }
}

/**
 * The similarity part of a fidelity as one phrase: the cosine, or for one value per sample the correlation,
 * relative error and decision agreement (with `digits` decimals for the cosine/correlation).
 */
export function formatSimilarity(f: OutputFidelity, digits = 6): string {
  if (!f.scalar) return `cosine ${(f.cosine ?? 1).toFixed(digits)}`;
  const s = f.scalar;
  const parts = [s.correlation !== undefined ? `correlation ${s.correlation.toFixed(digits)}` : 'correlation n/a (constant output)', `rel. error ${s.relError.toExponential(3)}`];
  if (s.decisionAgreement !== undefined) parts.push(`decisions at 0.5 agree ${(100 * s.decisionAgreement).toFixed(2)}%`);
  return `${parts.join('  ')} (one value per sample: no cosine, it is always 1)`;
}
