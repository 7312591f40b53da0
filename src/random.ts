/**
 * Seeded pseudo-random numbers, the only source of randomness: reproducible shuffles, samples, augmentation,
 * random masks and test data on every platform. Two streams of the same generator (mulberry32), kept apart
 * because saved runs, tests and documented figures depend on each:
 * - rng(seed): the seed as it is (random masks and importance, probe inputs for latency and checks, test data);
 * - mixedSeedRng(seed): the seed mixed with a constant first (data order and samples, augmentation draws and
 *   re-initialisation in training, and the checkpoints that record the draws).
 */

/** mulberry32: a small, fast 32-bit generator; returns floats in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** mulberry32 seeded with floor(seed) XOR 0x9e3779b9 (the golden-ratio constant): another stream than rng(seed). */
export function mixedSeedRng(seed: number): () => number {
  return rng((Math.floor(seed) ^ 0x9e3779b9) >>> 0);
}

/** 0..n-1 in a seeded random order (Fisher-Yates over mixedSeedRng). */
export function permutation(n: number, seed: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const r = mixedSeedRng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

/** k distinct indices out of 0..n-1 chosen with a seed, in increasing order (partial Fisher-Yates over mixedSeedRng). */
export function sampleIndices(n: number, k: number, seed: number): Int32Array {
  k = Math.min(k, n);
  const r = mixedSeedRng(seed);
  const swapped = new Map<number, number>();
  const out = new Int32Array(k);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(r() * (n - i));
    const vi = swapped.get(i) ?? i;
    const vj = swapped.get(j) ?? j;
    out[i] = vj;
    swapped.set(j, vi);
  }
  return out.sort();
}

/** n uniform scores in (0, 1) as float32, for random pruning. */
export function randomScores(next: () => number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = next() + 2 ** -30;
  return out;
}

/**
 * Fills `a` with `next()` draws scaled to [lo, hi) (floats whose values do not matter, only that they are ordinary
 * numbers: timing inputs and weights): the first `period` draws, then that stretch repeated (a copy, not a draw
 * per element: a batch-32 activation of 6M floats took 60 ms to draw, the time of a run of the graph it feeds).
 */
export function fillTiled(a: Float32Array | Float64Array, next: () => number, lo = 0, hi = 1, period = 65521): void {
  const n = Math.min(a.length, period);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * next();
  for (let filled = n; filled < a.length; filled *= 2) a.copyWithin(filled, 0, Math.min(filled, a.length - filled));
}
