/**
 * Per-layer repair math on accumulated statistics (float64), for one group of a layer:
 * W is [rows x K1] row-major: K reduction columns, plus a bias column at K when the layer has (or can take) a bias.
 * H1 is the K1 x K1 Gram matrix of the patches augmented with the all-ones row (its entries: H, patch sums, count).
 */
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
export function obsPrune(p: GroupProblem, w0: Float64Array, rule: MaskRule, damp: number, opts: { fitFirst?: boolean; blockSize?: number; info?: { lambda?: number; mean?: number } } = {}): { w: Float64Array; keep: Uint8Array } {
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
  if (opts.info) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += hp[i * n + i]!;
    opts.info.mean = mean / n || 1;
    opts.info.lambda = f.lambda;
  }
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
  const k = p.k;
  // Rows are independent once their masks are chosen: each row's updates run over its own columns (row-outer,
  // the row in cache), a block of columns at a time. Masks by count are chosen at each block's start over all
  // rows of the block (SparseGPT's adaptive mask selection), N:M ones per row and group as the row reaches them.
  const nmScore = new Float64Array(rule.kind === 'nm' ? rule.m : 0);
  const obsRow = (r: number, from: number, to: number) => {
    const rw = r * n;
    for (let i = from; i < to; i++) {
      if (rule.kind === 'nm' && i % rule.m === 0) {
        // the M - N lowest scores of the group (ties: the later column first)
        for (let t = 0; t < rule.m; t++) nmScore[t] = score(r, i + t);
        for (let d = 0; d < rule.m - rule.n; d++) {
          let lo = -1;
          for (let t = 0; t < rule.m; t++) if (nmScore[t]! !== Infinity && (lo < 0 || nmScore[t]! <= nmScore[lo]!)) lo = t;
          pruned[rw + i + lo] = 1;
          nmScore[lo] = Infinity;
        }
      }
      if (!pruned[rw + i]) continue;
      const ri = i * n;
      const err = w[rw + i]! / u[ri + i]!;
      if (err !== 0) for (let j = i; j < n; j++) w[rw + j]! -= err * u[ri + j]!;
      w[rw + i] = 0;
    }
  };
  if (rule.kind === 'fixed') {
    for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) if (!rule.keep[r * k + order[j]!]) pruned[r * n + j] = 1;
  }
  if (rule.kind === 'count') {
    let prunedSoFar = 0;
    for (let i = 0; i < k; i += blockSize) {
      const end = Math.min(k, i + blockSize);
      const target = Math.round((rule.prune * end) / k) - prunedSoFar;
      if (target > 0) {
        const cols = end - i;
        const sc = new Float64Array(rows * cols);
        for (let r = 0; r < rows; r++) for (let j = i; j < end; j++) sc[r * cols + j - i] = score(r, j);
        const take = Math.min(target, sc.length);
        dropLowest(sc, take, (t) => (pruned[Math.floor(t / cols) * n + i + (t % cols)] = 1));
        prunedSoFar += take;
      }
      for (let r = 0; r < rows; r++) obsRow(r, i, end);
    }
  } else for (let r = 0; r < rows; r++) obsRow(r, 0, k);
  return unpermute(rows, n, k, order, pruned, (r, j) => w[r * n + j]!);
}

/**
 * OBS's result in the layer's column order: W (rows x n) and its keep-mask over the k reduction columns, from the
 * weights in visiting order (`at(r, j)`: row r, j-th visited column `order[j]`) and their pruned flags (rows x n).
 */
export function unpermute(rows: number, n: number, k: number, order: readonly number[], pruned: Uint8Array, at: (r: number, j: number) => number): { w: Float64Array; keep: Uint8Array } {
  const out = new Float64Array(rows * n);
  const keep = new Uint8Array(rows * k);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < n; j++) {
      const col = order[j]!;
      out[r * n + col] = pruned[r * n + j] ? 0 : at(r, j);
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
    const sc = new Float64Array(rows * k);
    for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) sc[r * k + j] = score(r, j);
    dropLowest(sc, Math.min(rule.prune, sc.length), (i) => (keep[i] = 0));
  } else if (rule.kind === 'count') {
    // Wanda compares the weights of one output (a row): each row drops the same share (rounding spread over rows)
    let done = 0;
    const sc = new Float64Array(k);
    for (let r = 0; r < rows; r++) {
      const target = Math.min(k, Math.round((rule.prune * (r + 1)) / rows) - done);
      for (let j = 0; j < k; j++) sc[j] = score(r, j);
      dropLowest(sc, target, (j) => (keep[r * k + j] = 0));
      done += target;
    }
  } else {
    // N:M: in every group of M consecutive input channels (at one kernel position) of an output row, the M - N
    // lowest scores (ties: the later weight goes first, as in the OBS selection)
    const idx = new Int32Array(rule.m);
    const s = new Float64Array(rule.m);
    for (let r = 0; r < rows; r++) {
      for (let ks = 0; ks < rule.kernel; ks++) {
        for (let c0 = 0; c0 < rule.channels; c0 += rule.m) {
          for (let t = 0; t < rule.m; t++) {
            idx[t] = (c0 + t) * rule.kernel + ks;
            s[t] = score(r, idx[t]!);
          }
          for (let d = 0; d < rule.m - rule.n; d++) {
            let lo = -1;
            for (let t = 0; t < rule.m; t++) if (s[t]! !== Infinity && (lo < 0 || s[t]! <= s[lo]!)) lo = t;
            keep[r * k + idx[lo]!] = 0;
            s[lo] = Infinity;
          }
        }
      }
    }
  }
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) if (!keep[r * k + j]) w[r * n + j] = 0;
  return { w, keep };
}

/** Calls drop(i) for the `count` lowest entries of `sc` (ties: lower index first). */
function dropLowest(sc: Float64Array, count: number, drop: (i: number) => void): void {
  if (count <= 0) return;
  if (count >= sc.length) {
    for (let i = 0; i < sc.length; i++) drop(i);
    return;
  }
  const sorted = Float64Array.from(sc).sort();
  const thr = sorted[count - 1]!;
  let below = 0;
  for (let i = 0; i < sc.length; i++) if (sc[i]! < thr) below++;
  let ties = count - below;
  for (let i = 0; i < sc.length; i++) {
    if (sc[i]! < thr) drop(i);
    else if (sc[i] === thr && ties > 0) {
      drop(i);
      ties--;
    }
  }
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
