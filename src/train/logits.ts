/** Row-wise arithmetic on a batch of logits [rows, classes]: softmax with temperature, correct argmax count. */

/** Softmax of logits / T per row, into out. */
export function softmaxRows(logits: Float32Array, rows: number, classes: number, t: number, out: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let j = 0; j < classes; j++) mx = Math.max(mx, logits[r * classes + j]! / t);
    let s = 0;
    for (let j = 0; j < classes; j++) {
      const v = Math.exp(logits[r * classes + j]! / t - mx);
      out[r * classes + j] = v;
      s += v;
    }
    for (let j = 0; j < classes; j++) out[r * classes + j]! /= s;
  }
}

/** How many of the rows have their largest logit at the label of their sample (idx[r]). */
export function argmaxCorrect(logits: Float32Array, labels: Int32Array, idx: ArrayLike<number>, classes: number, rows = idx.length): number {
  let correct = 0;
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let j = 1; j < classes; j++) if (logits[r * classes + j]! > logits[r * classes + best]!) best = j;
    if (best === labels[idx[r]!]) correct++;
  }
  return correct;
}
