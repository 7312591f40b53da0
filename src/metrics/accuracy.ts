/** Top-k classification accuracy, accumulated batch by batch. */
import { ShearsError } from '../errors.js';
import type { Tensor } from '../ir/tensor.js';
import { toFloat32 } from '../ir/tensor.js';

/** Whether an output looks like class scores: [N, K] (or [N, K, 1, ..., 1]) with K >= 2. */
export function isClassScores(dims: readonly number[]): boolean {
  return dims.length >= 2 && dims[1]! >= 2 && dims.slice(2).every((d) => d === 1);
}

/** Index of the largest value in row `r` of a [N, K] view (ties: the first). */
export function argmaxRow(data: Float32Array, r: number, k: number): number {
  let best = 0;
  let bv = data[r * k]!;
  for (let j = 1; j < k; j++) {
    const v = data[r * k + j]!;
    if (v > bv || (Number.isNaN(bv) && !Number.isNaN(v))) {
      bv = v;
      best = j;
    }
  }
  return best;
}

export interface AccuracyReport {
  samples: number;
  /** Number of classes scored (the output's K). */
  classes: number;
  top1: number;
  /** Only when there are at least 5 classes. */
  top5?: number;
  correct1: number;
  correct5?: number;
}

/**
 * Whether a top-1 is close enough to guessing that the inputs, not the model, are the likely problem: within
 * 1.5x of chance (1/K), over at least 50 samples of at least 2 classes.
 */
export function nearChance(r: Pick<AccuracyReport, 'samples' | 'classes' | 'top1'>): boolean {
  return r.samples >= 50 && r.classes >= 2 && r.top1 < 1.5 / r.classes;
}

export class AccuracyMeter {
  samples = 0;
  correct1 = 0;
  correct5 = 0;
  private classes = 0;

  /** Adds a batch: scores [B, K] (or [B, K, 1, 1]), labels of length B. */
  add(scores: Tensor, labels: Int32Array): void {
    if (!isClassScores(scores.dims)) throw new ShearsError(`accuracy needs class scores [N, K], the output is [${scores.dims.join(', ')}]`);
    const b = scores.dims[0]!;
    const k = scores.dims[1]!;
    if (labels.length !== b) throw new ShearsError(`accuracy: ${b} score rows but ${labels.length} labels`);
    this.classes = k;
    const d = toFloat32(scores);
    for (let r = 0; r < b; r++) {
      const y = labels[r]!;
      if (y >= k) throw new ShearsError(`label ${y} is not a class of a model with ${k} outputs`);
      const v = d[r * k + y]!;
      // rank of the true class: how many scores beat it (ties count against it only when earlier).
      let above = 0;
      for (let j = 0; j < k; j++) {
        const u = d[r * k + j]!;
        if (u > v || (u === v && j < y) || (Number.isNaN(v) && !Number.isNaN(u))) above++;
      }
      if (above === 0) this.correct1++;
      if (above < 5) this.correct5++;
    }
    this.samples += b;
  }

  report(): AccuracyReport {
    const r: AccuracyReport = { samples: this.samples, classes: this.classes, top1: this.samples ? this.correct1 / this.samples : 0, correct1: this.correct1 };
    if (this.classes >= 5) {
      r.top5 = this.samples ? this.correct5 / this.samples : 0;
      r.correct5 = this.correct5;
    }
    return r;
  }
}
