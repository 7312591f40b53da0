/**
 * Small dense float64 linear algebra for the repair solves (K x K systems, K = reduction length of one layer:
 * a few thousand at most). Row-major square matrices in Float64Array.
 */

/** In-place lower Cholesky factor of a symmetric positive definite matrix (upper triangle zeroed). False if not PD. */
export function cholesky(a: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let s = a[rj + j]!;
    for (let k = 0; k < j; k++) s -= a[rj + k]! * a[rj + k]!;
    if (!(s > 0) || !Number.isFinite(s)) return false;
    const d = Math.sqrt(s);
    a[rj + j] = d;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let t = a[ri + j]!;
      for (let k = 0; k < j; k++) t -= a[ri + k]! * a[rj + k]!;
      a[ri + j] = t / d;
    }
    for (let k = j + 1; k < n; k++) a[rj + k] = 0;
  }
  return true;
}

/** Solves L L^T X = B in place for a lower Cholesky factor L; B is n x m row-major. */
export function choleskySolve(l: Float64Array, n: number, b: Float64Array, m: number): void {
  // forward: L Y = B
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let k = 0; k < i; k++) {
      const f = l[ri + k]!;
      if (f === 0) continue;
      for (let c = 0; c < m; c++) b[i * m + c]! -= f * b[k * m + c]!;
    }
    const d = l[ri + i]!;
    for (let c = 0; c < m; c++) b[i * m + c]! /= d;
  }
  // backward: L^T X = Y
  for (let i = n - 1; i >= 0; i--) {
    for (let k = i + 1; k < n; k++) {
      const f = l[k * n + i]!;
      if (f === 0) continue;
      for (let c = 0; c < m; c++) b[i * m + c]! -= f * b[k * m + c]!;
    }
    const d = l[i * n + i]!;
    for (let c = 0; c < m; c++) b[i * m + c]! /= d;
  }
}

/** Inverse of a lower triangular matrix, row by row: Linv[i] = (e_i - sum_{k<i} L[i][k] Linv[k]) / L[i][i]. */
export function lowerInverse(l: Float64Array, n: number): Float64Array {
  const li = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let k = 0; k < i; k++) {
      const f = l[ri + k]!;
      if (f === 0) continue;
      const rk = k * n;
      for (let j = 0; j <= k; j++) li[ri + j]! -= f * li[rk + j]!;
    }
    const d = l[ri + i]!;
    for (let j = 0; j < i; j++) li[ri + j]! /= d;
    li[ri + i] = 1 / d;
  }
  return li;
}

/** The inverse of a symmetric positive definite matrix from its lower Cholesky factor (row-contiguous loops). */
export function choleskyInverse(l: Float64Array, n: number): Float64Array {
  const li = lowerInverse(l, n);
  // A^-1 = Linv^T Linv: inv[i][j] = sum_k Linv[k][i] Linv[k][j] (k >= max(i, j)); lower triangle, then mirrored
  const inv = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const rk = k * n;
    for (let i = 0; i <= k; i++) {
      const a = li[rk + i]!;
      if (a === 0) continue;
      const ri = i * n;
      for (let j = 0; j <= i; j++) inv[ri + j]! += a * li[rk + j]!;
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) inv[j * n + i] = inv[i * n + j]!;
  return inv;
}

/**
 * Adds damping to the diagonal (damp x mean diagonal, at least a tiny absolute amount) and factors; retries with
 * 10x more damping when the matrix is not positive definite. Returns the factor and the damping used.
 */
export function dampedCholesky(h: Float64Array, n: number, damp: number): { l: Float64Array; lambda: number } {
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h[i * n + i]!;
  mean = mean / n || 1;
  let lambda = Math.max(damp * mean, 1e-12 * mean);
  for (let attempt = 0; attempt < 12; attempt++) {
    const a = Float64Array.from(h);
    for (let i = 0; i < n; i++) a[i * n + i]! += lambda;
    if (cholesky(a, n)) return { l: a, lambda };
    lambda *= 10;
  }
  throw new Error('the layer Hessian is not positive definite even with heavy damping');
}

/** Upper Cholesky factor U of A^-1 (A^-1 = U^T U), row-major, as SparseGPT uses for its sequential updates. */
export function inverseUpperCholesky(l: Float64Array, n: number): Float64Array {
  const inv = choleskyInverse(l, n);
  if (!cholesky(inv, n)) throw new Error('the inverse layer Hessian is not positive definite');
  // transpose the lower factor into an upper one
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) u[j * n + i] = inv[i * n + j]!;
  return u;
}

/**
 * One factorization serving both least-squares solves and OBS: R, the lower Cholesky factor of J (H + lambda I) J
 * (J reverses the order). Then (H + lambda I)^-1 = U^T U with U = J R^-1 J upper triangular (no explicit inverse).
 */
export interface ReversedFactor {
  n: number;
  r: Float64Array;
  lambda: number;
}

export function reversedFactor(h: Float64Array, n: number, damp: number): ReversedFactor {
  const rev = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) rev[(n - 1 - i) * n + (n - 1 - j)] = h[i * n + j]!;
  const { l, lambda } = dampedCholesky(rev, n, damp);
  return { n, r: l, lambda };
}

/** Solves (H + lambda I) X = B in place (B: n x m row-major). */
export function solveReversed(f: ReversedFactor, b: Float64Array, m: number): void {
  const n = f.n;
  const rb = new Float64Array(n * m);
  for (let i = 0; i < n; i++) rb.set(b.subarray(i * m, (i + 1) * m), (n - 1 - i) * m);
  choleskySolve(f.r, n, rb, m);
  for (let i = 0; i < n; i++) b.set(rb.subarray((n - 1 - i) * m, (n - i) * m), i * m);
}

/** U upper triangular with U^T U = (H + lambda I)^-1 (SparseGPT's Hinv), from the reversed factor. */
export function upperInverse(f: ReversedFactor): Float64Array {
  const n = f.n;
  const l = f.r;
  // Rinv (lower), row by row
  const li = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let k = 0; k < i; k++) {
      const c = l[ri + k]!;
      if (c === 0) continue;
      const rk = k * n;
      for (let j = 0; j <= k; j++) li[ri + j]! -= c * li[rk + j]!;
    }
    const d = l[ri + i]!;
    for (let j = 0; j < i; j++) li[ri + j]! /= d;
    li[ri + i] = 1 / d;
  }
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) u[i * n + j] = li[(n - 1 - i) * n + (n - 1 - j)]!;
  return u;
}
