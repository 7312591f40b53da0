/** Seeded pseudo-random numbers for reproducible shuffles and calibration samples. */
import { rng as baseRng } from '../random.js';

/** The shared generator with the seed mixed first (keeps this module's historical streams). */
export function rng(seed: number): () => number {
  return baseRng((Math.floor(seed) ^ 0x9e3779b9) >>> 0);
}

/** 0..n-1 in a seeded random order (Fisher-Yates). */
export function permutation(n: number, seed: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const r = rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

/** k distinct indices out of 0..n-1 chosen with a seed, in increasing order (partial Fisher-Yates). */
export function sampleIndices(n: number, k: number, seed: number): Int32Array {
  k = Math.min(k, n);
  const r = rng(seed);
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
