/**
 * The heavy linear algebra of OBS / SparseGPT as onnxruntime graphs, in float64 (MLAS has a double GEMM: on the
 * 2-core AMD EPYC dev machine about 30 GFLOP/s for MatMul on DOUBLE against 60 for FLOAT; float32 would move the
 * OBS scores by ~1e-4 relative and flip masks, double keeps the JavaScript reference's results to ~1e-12).
 *
 * - Damped Cholesky of the (reversed) Hessian together with the inverse of its factor, recursively: the leading
 *   half is factored and inverted (down to leaves of `leaf` columns, done in JavaScript), then one graph forms the
 *   panel L21 = A21 L11^-T and the Schur complement A22 - L21 L21^T, the trailing half recurses, and one graph
 *   forms the off-diagonal block of the inverse -L22^-1 L21 L11^-1. Everything above the leaves is Gemm/MatMul.
 *   The inverse of the reversed factor, reversed, is U with U^T U = (H + lambda I)^-1 (SparseGPT's Hinv), as
 *   linalg.ts `upperInverse` builds it, so no explicit inverse of H and no second Cholesky are needed.
 * - The least-squares start (fitFirst): W^T = base^T + U^T U (C - H base^T), one graph of three Gemms.
 * - The column loop with SparseGPT's lazy batch updates: inside a block of `blockSize` columns JavaScript applies
 *   each dropped weight's error to the block's later columns (the same arithmetic as obsPrune) and records it;
 *   at the block's end one Gemm applies all of them to every later column: W[:, i2:] -= Err Hinv[i1:i2, i2:].
 *   W is kept transposed (columns contiguous), so the columns i2: are one contiguous view passed without a copy.
 *
 * The Hessian itself (X^T X per calibration batch) is already accumulated in onnxruntime by the repair stepper.
 */
import { F, GraphBuilder } from '../ir/builder.js';
import { DataType } from '../ir/dtype.js';
import { createSession, ortTensor, type OrtTensor, type Runner } from '../runtime/session.js';
import { cholesky, lowerInverse } from './linalg.js';
import { k1, unpermute, type GroupProblem, type MaskRule } from './solve.js';

const D = DataType.DOUBLE;

type GraphName = 'panel' | 'inv' | 'lsq' | 'update' | 'matmul';

function graphOf(name: GraphName) {
  const b = new GraphBuilder(`linalg_${name}`);
  const alpha = { alpha: F(-1), beta: F(1) };
  switch (name) {
    case 'panel': {
      // L21 = A21 Li^T; S = A22 - L21 L21^T
      const a21 = b.input('a21', ['p', 'q'], D);
      const a22 = b.input('a22', ['p', 'p'], D);
      const li = b.input('li', ['q', 'q'], D);
      const l21 = b.node('Gemm', [a21, li], { transB: 1 }, { output: 'l21' });
      const s = b.node('Gemm', [l21, l21, a22], { ...alpha, transB: 1 }, { output: 's' });
      b.output(l21, undefined, D);
      b.output(s, undefined, D);
      break;
    }
    case 'inv': {
      // -L22i (L21 L11i)
      const l22i = b.input('l22i', ['p', 'p'], D);
      const l21 = b.input('l21', ['p', 'q'], D);
      const l11i = b.input('l11i', ['q', 'q'], D);
      const t = b.node('MatMul', [l21, l11i]);
      b.output(b.node('Gemm', [l22i, t], { alpha: F(-1) }, { output: 'y' }), undefined, D);
      break;
    }
    case 'lsq': {
      // W^T = B^T + U^T U (C - H B^T)
      const h = b.input('h', ['n', 'n'], D);
      const u = b.input('u', ['n', 'n'], D);
      const c = b.input('c', ['n', 'm'], D);
      const base = b.input('b', ['m', 'n'], D);
      const r1 = b.node('Gemm', [h, base, c], { ...alpha, transB: 1 });
      const r2 = b.node('MatMul', [u, r1]);
      const bt = b.node('Transpose', [base], { perm: [1, 0] });
      b.output(b.node('Gemm', [u, r2, bt], { transA: 1 }, { output: 'y' }), undefined, D);
      break;
    }
    case 'update': {
      // Wt[i2:] - Ub^T E
      const wt = b.input('wt', ['p', 'm'], D);
      const ub = b.input('ub', ['b', 'p'], D);
      const e = b.input('e', ['b', 'm'], D);
      b.output(b.node('Gemm', [ub, e, wt], { ...alpha, transA: 1 }, { output: 'y' }), undefined, D);
      break;
    }
    case 'matmul': {
      const x = b.input('x', ['m', 'k'], D);
      const y = b.input('y', ['k', 'n'], D);
      b.output(b.node('MatMul', [x, y], {}, { output: 'z' }), undefined, D);
      break;
    }
  }
  return b.model(17);
}

export interface OrtLinalgOptions {
  /** onnxruntime intra-op threads (default: onnxruntime's choice, one per core). */
  threads?: number;
  /** Largest diagonal block factored in JavaScript (default 192). */
  leaf?: number;
}

/** A set of float64 onnxruntime sessions for the OBS linear algebra; reuse one over many layers, then release(). */
export class OrtLinalg {
  private readonly sessions = new Map<GraphName, Promise<Runner>>();
  readonly leaf: number;

  constructor(private readonly opts: OrtLinalgOptions = {}) {
    this.leaf = Math.max(8, opts.leaf ?? 192);
  }

  private session(name: GraphName): Promise<Runner> {
    let s = this.sessions.get(name);
    if (!s) {
      s = createSession(graphOf(name), { ...(this.opts.threads ? { threads: this.opts.threads } : {}), spin: false });
      this.sessions.set(name, s);
    }
    return s;
  }

  /** Runs one of the graphs on float64 matrices (row-major, dims given); returns its outputs in order. */
  private async run(name: GraphName, feeds: Record<string, [Float64Array, number, number]>): Promise<Float64Array[]> {
    const s = await this.session(name);
    const f: Record<string, OrtTensor> = {};
    for (const [k, [data, r, c]] of Object.entries(feeds)) f[k] = ortTensor('float64', data, [r, c]);
    const out = await s.runRaw(f);
    return s.outputNames.map((o) => out[o]!.data as Float64Array);
  }

  /** X [m, k] times Y [k, n] in float64. */
  async matmul(x: Float64Array, m: number, k: number, y: Float64Array, n: number): Promise<Float64Array> {
    return (await this.run('matmul', { x: [x, m, k], y: [y, k, n] }))[0]!;
  }

  /**
   * The inverse of the lower Cholesky factor of the symmetric positive definite `a` (n x n, row-major; only
   * its lower triangle is read), or undefined when `a` is not positive definite. The result is written over
   * `a` (its memory is reused: at K = 5632 one matrix is 254 MB); `a` is garbage when undefined is returned.
   */
  async choleskyInverse(a: Float64Array, n: number): Promise<Float64Array | undefined> {
    if (n <= this.leaf) {
      if (!cholesky(a, n)) return undefined;
      a.set(lowerInverse(a, n));
      return a;
    }
    const n1 = Math.min(n - 1, this.leaf * Math.max(1, Math.round(n / 2 / this.leaf)));
    const n2 = n - n1;
    const l11i = await this.choleskyInverse(block(a, n, 0, n1, 0, n1), n1);
    if (!l11i) return undefined;
    const [l21, s] = await this.run('panel', { a21: [block(a, n, n1, n, 0, n1), n2, n1], a22: [block(a, n, n1, n, n1, n), n2, n2], li: [l11i, n1, n1] });
    const l22i = await this.choleskyInverse(s!, n2);
    if (!l22i) return undefined;
    const [l21i] = await this.run('inv', { l22i: [l22i, n2, n2], l21: [l21!, n2, n1], l11i: [l11i, n1, n1] });
    const li = a.fill(0);
    for (let i = 0; i < n1; i++) li.set(l11i.subarray(i * n1, i * n1 + i + 1), i * n);
    for (let i = 0; i < n2; i++) {
      li.set(l21i!.subarray(i * n1, (i + 1) * n1), (n1 + i) * n);
      li.set(l22i.subarray(i * n2, i * n2 + i + 1), (n1 + i) * n + n1);
    }
    return li;
  }

  /**
   * U upper triangular with U^T U = (H + lambda I)^-1, lambda = damp x mean diagonal (at least 1e-12 x mean),
   * 10x more each time the damped matrix is not positive definite (12 tries), as linalg.ts dampedCholesky and
   * upperInverse do it in JavaScript. Throws the same error when no damping helps.
   */
  async dampedUpperInverse(h: Float64Array, n: number, damp: number): Promise<{ u: Float64Array; lambda: number }> {
    // the mean diagonal summed in the order dampedCholesky sums it (of the reversed matrix): the same lambda
    let mean = 0;
    for (let i = n - 1; i >= 0; i--) mean += h[i * n + i]!;
    mean = mean / n || 1;
    let lambda = Math.max(damp * mean, 1e-12 * mean);
    for (let attempt = 0; attempt < 12; attempt++) {
      // J (H + lambda I) J: the flat array reversed
      const rev = Float64Array.from(h).reverse();
      for (let i = 0; i < n; i++) rev[i * n + i]! += lambda;
      const ri = await this.choleskyInverse(rev, n);
      // U = J R^-1 J: reversed again
      if (ri) return { u: ri.reverse(), lambda };
      lambda *= 10;
    }
    throw new Error('the layer Hessian is not positive definite even with heavy damping');
  }

  async release(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s).release();
  }

  /** The least-squares start of OBS: W^T (n x rows) = base^T + U^T U (C - H base^T). */
  async leastSquaresT(h: Float64Array, u: Float64Array, c: Float64Array, base: Float64Array, n: number, rows: number): Promise<Float64Array> {
    return (await this.run('lsq', { h: [h, n, n], u: [u, n, n], c: [c, n, rows], b: [base, rows, n] }))[0]!;
  }

  /**
   * Columns from..to of W (wt: W transposed, rows per column) minus ub^T e, written back into wt
   * (ub: b x (to - from) rows of U; e: b x rows, the errors of b earlier columns).
   */
  async lazyUpdate(wt: Float64Array, rows: number, from: number, to: number, ub: Float64Array, e: Float64Array, b: number): Promise<void> {
    const tail = wt.subarray(from * rows, to * rows);
    const [y] = await this.run('update', { wt: [tail, to - from, rows], ub: [ub, b, to - from], e: [e, b, rows] });
    tail.set(y!);
  }
}

/** Copy of rows r0..r1, columns c0..c1 of the n x n row-major `a`. */
function block(a: Float64Array, n: number, r0: number, r1: number, c0: number, c1: number): Float64Array {
  const w = c1 - c0;
  const out = new Float64Array((r1 - r0) * w);
  for (let i = r0; i < r1; i++) out.set(a.subarray(i * n + c0, i * n + c1), (i - r0) * w);
  return out;
}

export interface OrtObsOptions {
  /** Start from the least-squares optimum of the dense weights (as obsPrune's fitFirst). */
  fitFirst?: boolean;
  /** Columns per mask-selection block and per lazy batch (default 128; N:M: rounded down to a multiple of M). */
  blockSize?: number;
  /** Sessions to reuse (otherwise opened and released within the call). */
  linalg?: OrtLinalg;
  /**
   * U of this H and damping, from `linalg.dampedUpperInverse(h, K1, damp).u`, when several layers share H (those
   * reading the same input: q/k/v, gate/up): the factorization is then done once. Read only. Not with N:M over
   * kernel > 1 (those permute H's columns).
   */
  hinv?: Float64Array;
  threads?: number;
}

/**
 * obsPrune (solve.ts) with its heavy parts in onnxruntime: the same column order, damping, mask rules and
 * updates, so the same masks and weights up to float64 rounding. Returns the new W (rows x K1) and the keep-mask
 * over the K reduction columns (rows x K).
 */
export async function obsPruneOrt(p: GroupProblem, w0: Float64Array, rule: MaskRule, damp: number, opts: OrtObsOptions = {}): Promise<{ w: Float64Array; keep: Uint8Array }> {
  const la = opts.linalg ?? new OrtLinalg(opts.threads ? { threads: opts.threads } : {});
  try {
    return await obsCore(la, p, w0, rule, damp, opts);
  } finally {
    if (!opts.linalg) await la.release();
  }
}

async function obsCore(la: OrtLinalg, p: GroupProblem, w0: Float64Array, rule: MaskRule, damp: number, opts: OrtObsOptions): Promise<{ w: Float64Array; keep: Uint8Array }> {
  const blockSize = opts.blockSize ?? 128;
  const n = k1(p);
  const rows = p.rows;
  const k = p.k;
  const order: number[] = [];
  if (rule.kind === 'nm' && rule.kernel > 1) {
    for (let s = 0; s < rule.kernel; s++) for (let c = 0; c < rule.channels; c++) order.push(c * rule.kernel + s);
  } else for (let j = 0; j < k; j++) order.push(j);
  if (p.bias) order.push(k);
  const identity = order.every((v, i) => v === i);
  let hp = p.h;
  let wp = w0;
  if (!identity) {
    hp = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) hp[i * n + j] = p.h[order[i]! * n + order[j]!]!;
    wp = new Float64Array(rows * n);
    for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) wp[r * n + j] = w0[r * n + order[j]!]!;
  }
  if (opts.hinv && (!identity || opts.hinv.length !== n * n)) throw new Error(!identity ? 'a shared Hinv cannot serve N:M over kernel positions (columns are permuted)' : `the shared Hinv is not ${n} x ${n}`);
  const u = opts.hinv ?? (await la.dampedUpperInverse(hp, n, damp)).u;
  // W transposed: wt[j * rows + r] = W[r, j] (permuted columns)
  let wt: Float64Array;
  if (opts.fitFirst && p.c) {
    let cp = p.c;
    if (!identity) {
      cp = new Float64Array(n * rows);
      for (let i = 0; i < n; i++) cp.set(p.c.subarray(order[i]! * rows, (order[i]! + 1) * rows), i * rows);
    }
    wt = await la.leastSquaresT(hp, u, cp, wp, n, rows);
  } else {
    wt = new Float64Array(n * rows);
    for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) wt[j * rows + r] = wp[r * n + j]!;
  }
  const pruned = new Uint8Array(rows * n);
  // d_j^2 of the scores w^2 / d_j^2 (the same products as obsPrune's score)
  const dsq = new Float64Array(n);
  for (let j = 0; j < n; j++) dsq[j] = u[j * n + j]! * u[j * n + j]!;
  // lazy blocks of `lazy` columns (their updates to all later columns: one Gemm), cut into sub-blocks of `sub`
  // columns whose errors JavaScript applies at once to the sub-block's later columns (and one Gemm to the rest of
  // the block): mask selections (block starts; N:M group starts) always see up-to-date columns
  const m = rule.kind === 'nm' ? rule.m : 1;
  const sub = rule.kind === 'nm' ? m * Math.max(1, Math.floor(32 / m)) : Math.min(32, blockSize);
  const lazy = rule.kind === 'count' ? blockSize : sub * Math.max(1, Math.round(blockSize / sub));
  const err = new Float64Array(lazy * rows);
  let prunedSoFar = 0;
  const sc = new Float64Array(m);
  const id = new Int32Array(m);
  for (let i1 = 0; i1 < k; i1 += lazy) {
    const i2 = Math.min(k, i1 + lazy);
    err.fill(0);
    let anyBlock = false;
    for (let s1 = i1; s1 < i2; s1 += sub) {
      const s2 = Math.min(i2, s1 + sub);
      let anySub = false;
      for (let i = s1; i < s2; i++) {
        if (rule.kind === 'count' && i % blockSize === 0) {
          const end = Math.min(k, i + blockSize);
          const target = Math.round((rule.prune * end) / k) - prunedSoFar;
          if (target > 0) prunedSoFar += selectSmallest(wt, dsq, rows, i, end, n, target, pruned);
        } else if (rule.kind === 'nm' && i % m === 0) {
          for (let r = 0; r < rows; r++) {
            // the M columns by score, ties: the later column first (obsPrune's comparator), insertion sort
            for (let t = 0; t < m; t++) {
              const w = wt[(i + t) * rows + r]!;
              sc[t] = (w * w) / dsq[i + t]!;
              let at = t;
              while (at > 0 && ((sc[t]! - sc[id[at - 1]!]!) || id[at - 1]! - t) < 0) {
                id[at] = id[at - 1]!;
                at--;
              }
              id[at] = t;
            }
            for (let t = 0; t < m - rule.n; t++) pruned[r * n + i + id[t]!] = 1;
          }
        } else if (rule.kind === 'fixed' && i === 0) {
          for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) if (!rule.keep[r * k + order[j]!]) pruned[r * n + j] = 1;
        }
        const d = u[i * n + i]!;
        const e = err.subarray((i - i1) * rows, (i - i1 + 1) * rows);
        const wi = i * rows;
        let col = false;
        for (let r = 0; r < rows; r++) {
          if (!pruned[r * n + i]) continue;
          e[r] = wt[wi + r]! / d;
          wt[wi + r] = 0;
          if (e[r] !== 0) col = true;
        }
        if (!col) continue;
        anySub = true;
        for (let j = i + 1; j < s2; j++) {
          const uij = u[i * n + j]!;
          if (uij === 0) continue;
          const wj = j * rows;
          for (let r = 0; r < rows; r++) wt[wj + r]! -= e[r]! * uij;
        }
      }
      if (!anySub) continue;
      anyBlock = true;
      if (s2 < i2) await la.lazyUpdate(wt, rows, s2, i2, uBlock(u, n, s1, s2, s2, i2), err.subarray((s1 - i1) * rows, (s2 - i1) * rows), s2 - s1);
    }
    if (anyBlock && i2 < n) await la.lazyUpdate(wt, rows, i2, n, uBlock(u, n, i1, i2, i2, n), err.subarray(0, (i2 - i1) * rows), i2 - i1);
  }
  return unpermute(rows, n, k, order, pruned, (r, j) => wt[j * rows + r]!);
}

/** Rows r0..r1, columns c0..c1 of U (n x n). */
function uBlock(u: Float64Array, n: number, r0: number, r1: number, c0: number, c1: number): Float64Array {
  return block(u, n, r0, r1, c0, c1);
}

/**
 * Marks the `target` lowest-scoring (row, column) pairs of columns i..end as pruned, ties in (row, column)
 * order: the set a stable sort of obsPrune's candidate list gives. Returns how many were marked.
 */
function selectSmallest(wt: Float64Array, dsq: Float64Array, rows: number, i: number, end: number, n: number, target: number, pruned: Uint8Array): number {
  const len = end - i;
  const total = rows * len;
  const take = Math.min(target, total);
  const s = new Float64Array(total);
  for (let j = i; j < end; j++) {
    const d = dsq[j]!;
    const wj = j * rows;
    for (let r = 0; r < rows; r++) {
      const w = wt[wj + r]!;
      s[r * len + (j - i)] = (w * w) / d;
    }
  }
  const thr = kthSmallest(Float64Array.from(s), take - 1);
  let below = 0;
  for (let t = 0; t < total; t++) if (s[t]! < thr) below++;
  let ties = take - below;
  for (let t = 0; t < total; t++) {
    const v = s[t]!;
    if (v < thr || (v === thr && ties-- > 0)) pruned[Math.floor(t / len) * n + i + (t % len)] = 1;
  }
  return take;
}

/** The value of rank q (0-based, ascending) of `a` (reordered in place): quickselect, median-of-three pivots. */
function kthSmallest(a: Float64Array, q: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const mid = (lo + hi) >> 1;
    // median of three as the pivot
    const x = a[lo]!, y = a[mid]!, z = a[hi]!;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (q <= j) hi = j;
    else if (q >= i) lo = i;
    else return a[q]!;
  }
  return a[q]!;
}
