/**
 * Fidelity of a model's outputs against a reference model's, per output, for any model (classifiers and
 * detectors alike):
 * - agreement: fraction of samples whose argmax matches (class-score outputs [N, K] only);
 * - kl: mean KL(softmax(ref) || softmax(model)) over axis 1 (the class/channel axis), averaged over the batch and
 *   any trailing positions (outputs of rank >= 2 with dims[1] >= 2);
 * - cosine: mean over samples of the cosine similarity of the flattened per-sample outputs;
 * - relMse: sum((y - ref)^2) / sum(ref^2) over everything (0 when identical);
 * - maxAbs: the largest |y - ref|.
 */
import { ShearsError } from '../errors.js';
import type { Tensor } from '../ir/tensor.js';
import { toFloat32 } from '../ir/tensor.js';
import { argmaxRow, isClassScores } from './accuracy.js';
import { relMse } from './relative-mse.js';

export interface OutputFidelity {
  samples: number;
  agreement?: number;
  kl?: number;
  cosine: number;
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
    const out: OutputFidelity = {
      samples: this.samples,
      cosine: this.samples ? this.cosSum / this.samples : 1,
      relMse: relMse(this.sqDiff, this.sqRef),
      maxAbs: this.maxAbs,
    };
    if (this.classScores && this.samples) out.agreement = this.agree / this.samples;
    if (this.klAxis && this.klCount) out.kl = this.klSum / this.klCount;
    return out;
  }
}
