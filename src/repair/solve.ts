/**
 * Per-layer repair math on accumulated statistics (float64), for one group of a layer:
 * W is [rows x K1] row-major: K reduction columns, plus a bias column at K when the layer has (or can take) a bias.
 * H1 is the K1 x K1 Gram matrix of the patches augmented with the all-ones row (its entries: H, patch sums, count).
 */
import { smallestIndices } from './select.js';
import { reversedFactor, solveReversed, upperInverse, type ReversedFactor } from './linalg.js';

export interface GroupProblem {
  /** Reduction columns (without the bias column). */
  k: number;
  /** Whether column k is the bias (ones) column. */
  bias: boolean;
  rows: number;
  /** K1 x K1 augmented Gram matrix. */
  h: Float64Array;
  /** K1 x rows: P Yd^T for the dense outputs each row should match (augmented with the output sums). */
  c?: Float64Array;
}

export function k1(p: GroupProblem): number {
  return p.k + (p.bias ? 1 : 0);
}

/** Columns whose patches are always zero: their Gram diagonal is set to 1 (no information, weight goes to 0). */
export function fixDead(p: GroupProblem): number[] {
  const n = k1(p);
  const dead: number[] = [];
  for (let i = 0; i < p.k; i++) {
    if (p.h[i * n + i]! <= 0) {
      dead.push(i);
      for (let j = 0; j < n; j++) {
        p.h[i * n + j] = 0;
        p.h[j * n + i] = 0;
      }
      p.h[i * n + i] = 1;
    }
  }
  return dead;
}

/**
 * Least squares: argmin over W of ||W P - Yd||^2 + lambda ||W - base||^2, i.e.
 * W = base + (H + lambda I)^-1 (C - H base^T) transposed. Returns the new W (rows x K1).
 */
export function leastSquares(p: GroupProblem, base: Float64Array, damp: number, factor?: ReversedFactor): Float64Array {
  const n = k1(p);
  const m = p.rows;
  if (!p.c) throw new Error('least squares needs the cross statistics');
  // rhs = C - H base^T  (n x m)
  const rhs = Float64Array.from(p.c);
  for (let i = 0; i < n; i++) {
    const hi = i * n;
    for (let r = 0; r < m; r++) {
      let s = 0;
      const br = r * n;
      for (let j = 0; j < n; j++) s += p.h[hi + j]! * base[br + j]!;
      rhs[i * m + r]! -= s;
    }
  }
  solveReversed(factor ?? reversedFactor(p.h, n, damp), rhs, m);
  const w = Float64Array.from(base);
  for (let r = 0; r < m; r++) for (let i = 0; i < n; i++) w[r * n + i]! += rhs[i * m + r]!;
  return w;
}

/** How OBS chooses which weights to drop. */
export type MaskRule =
  | { kind: 'count'; prune: number }
  | { kind: 'nm'; n: number; m: number; channels: number; kernel: number }
  | { kind: 'fixed'; keep: Uint8Array };

/**
 * OBS / SparseGPT: prunes W (rows x K1, the bias column never pruned) column by column in `order`, choosing the
 * weights with the smallest w^2 / [U]_jj^2 (U: upper Cholesky factor of the damped inverse Hessian) and moving
 * the error of each dropped weight onto the columns not yet visited. Returns the new W and its keep-mask over
 * the K reduction columns (rows x K).
 */
export function obsPrune(p: GroupProblem, w0: Float64Array, rule: MaskRule, damp: number, opts: { fitFirst?: boolean; blockSize?: number } = {}): { w: Float64Array; keep: Uint8Array } {
  const blockSize = opts.blockSize ?? 128;
  const n = k1(p);
  const rows = p.rows;
  // column order: N:M groups must be consecutive (M input channels at one kernel position); bias last
  const order: number[] = [];
  if (rule.kind === 'nm' && rule.kernel > 1) {
    for (let s = 0; s < rule.kernel; s++) for (let c = 0; c < rule.channels; c++) order.push(c * rule.kernel + s);
  } else for (let j = 0; j < p.k; j++) order.push(j);
  if (p.bias) order.push(p.k);
  // permuted H and W
  const hp = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) hp[i * n + j] = p.h[order[i]! * n + order[j]!]!;
  let w: Float64Array = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) w[r * n + j] = w0[r * n + order[j]!]!;
  const f = reversedFactor(hp, n, damp);
  if (opts.fitFirst && p.c) {
    // start from the least-squares optimum (in the permuted order, same factor)
    const cp = new Float64Array(n * rows);
    for (let i = 0; i < n; i++) for (let r = 0; r < rows; r++) cp[i * rows + r] = p.c[order[i]! * rows + r]!;
    w = leastSquares({ k: p.k, bias: p.bias, rows, h: hp, c: cp }, w, damp, f);
  }
  const u = upperInverse(f);
  const pruned = new Uint8Array(rows * n); // in permuted column order
  const score = (r: number, j: number) => {
    const d = u[j * n + j]!;
    return (w[r * n + j]! * w[r * n + j]!) / (d * d);
  };
  let prunedSoFar = 0;
  const k = p.k;
  for (let i = 0; i < k; i++) {
    // mask selection at block starts
    if (rule.kind === 'count' && i % blockSize === 0) {
      const end = Math.min(k, i + blockSize);
      const target = Math.round((rule.prune * end) / k) - prunedSoFar;
      if (target > 0) {
        const cand: { s: number; r: number; j: number }[] = [];
        for (let r = 0; r < rows; r++) for (let j = i; j < end; j++) cand.push({ s: score(r, j), r, j });
        cand.sort((a, b) => a.s - b.s);
        for (let t = 0; t < Math.min(target, cand.length); t++) pruned[cand[t]!.r * n + cand[t]!.j] = 1;
        prunedSoFar += Math.min(target, cand.length);
      }
    } else if (rule.kind === 'nm' && i % rule.m === 0) {
      for (let r = 0; r < rows; r++) {
        const idx = Array.from({ length: rule.m }, (_, t) => i + t).sort((a, b) => score(r, a) - score(r, b) || b - a);
        for (let t = 0; t < rule.m - rule.n; t++) pruned[r * n + idx[t]!] = 1;
      }
    } else if (rule.kind === 'fixed' && i === 0) {
      for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) if (!rule.keep[r * k + order[j]!]) pruned[r * n + j] = 1;
    }
    const d = u[i * n + i]!;
    for (let r = 0; r < rows; r++) {
      if (!pruned[r * n + i]) continue;
      const err = w[r * n + i]! / d;
      if (err !== 0) for (let j = i; j < n; j++) w[r * n + j]! -= err * u[i * n + j]!;
      w[r * n + i] = 0;
    }
  }
  // un-permute
  const out = new Float64Array(rows * n);
  const keep = new Uint8Array(rows * k);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < n; j++) {
      const col = order[j]!;
      out[r * n + col] = pruned[r * n + j] ? 0 : w[r * n + j]!;
      if (col < k) keep[r * k + col] = pruned[r * n + j] ? 0 : 1;
    }
  }
  return { w: out, keep };
}

/**
 * Wanda (Sun et al. 2023): score |w| * ||x_j|| (the input column's norm over the calibration data); prune the
 * lowest-scoring weights of each output row (or in each N:M group). No weight update.
 */
export function wandaPrune(p: GroupProblem, w0: Float64Array, rule: Exclude<MaskRule, { kind: 'fixed' }>, perRow = true): { w: Float64Array; keep: Uint8Array } {
  const n = k1(p);
  const k = p.k;
  const rows = p.rows;
  const norm = new Float64Array(k);
  for (let j = 0; j < k; j++) norm[j] = Math.sqrt(Math.max(0, p.h[j * n + j]!));
  const w = Float64Array.from(w0);
  const keep = new Uint8Array(rows * k).fill(1);
  const score = (r: number, j: number) => Math.abs(w0[r * n + j]!) * norm[j]!;
  if (rule.kind === 'count' && !perRow) {
    // one comparison group over the whole layer
    const idx = Array.from({ length: rows * k }, (_, i) => i).sort((a, b) => score(Math.floor(a / k), a % k) - score(Math.floor(b / k), b % k));
    for (let t = 0; t < Math.min(rule.prune, idx.length); t++) keep[idx[t]!] = 0;
  } else if (rule.kind === 'count') {
    // Wanda compares weights within an output row: each row drops the same share (rounding spread over rows)
    let done = 0;
    const rowScores = new Float64Array(k);
    for (let r = 0; r < rows; r++) {
      const target = Math.round((rule.prune * (r + 1)) / rows) - done;
      // the lowest `target` scores, as a stable sort would take them, by selection (O(k) a row)
      for (let j = 0; j < k; j++) rowScores[j] = score(r, j);
      for (const j of smallestIndices(rowScores, Math.min(target, k))) keep[r * k + j] = 0;
      done += Math.min(target, k);
    }
  } else {
    for (let r = 0; r < rows; r++) {
      for (let s = 0; s < rule.kernel; s++) {
        for (let c0 = 0; c0 < rule.channels; c0 += rule.m) {
          const idx = Array.from({ length: rule.m }, (_, t) => (c0 + t) * rule.kernel + s).sort((a, b) => score(r, a) - score(r, b));
          for (let t = 0; t < rule.m - rule.n; t++) keep[r * k + idx[t]!] = 0;
        }
      }
    }
  }
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) if (!keep[r * k + j]) w[r * n + j] = 0;
  return { w, keep };
}

/**
 * Statistics correction: per output row, an affine map a * y + b that gives the pruned output the dense output's
 * mean and variance, folded into the row (and its bias column). Rows with (near) constant pruned output only
 * get the mean shift.
 */
export function statsCorrect(w0: Float64Array, rows: number, n: number, biasCol: number | undefined, m: {
  count: number; syp: ArrayLike<number>; qyp: ArrayLike<number>; syd: ArrayLike<number>; qyd: ArrayLike<number>;
}, scale = true): { w: Float64Array; a: Float64Array; b: Float64Array } {
  const w = Float64Array.from(w0);
  const a = new Float64Array(rows);
  const b = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const mp = m.syp[r]! / m.count;
    const md = m.syd[r]! / m.count;
    const vp = Math.max(0, m.qyp[r]! / m.count - mp * mp);
    const vd = Math.max(0, m.qyd[r]! / m.count - md * md);
    let ar = 1;
    if (scale && vp > 1e-12 * Math.max(1, vd) && vd > 0) ar = Math.sqrt(vd / vp);
    const br = md - ar * mp;
    a[r] = ar;
    b[r] = br;
    for (let j = 0; j < n; j++) w[r * n + j]! *= ar;
    if (biasCol !== undefined) w[r * n + biasCol]! += br;
  }
  return { w, a, b };
}
