import { rng } from '../random.js';

export { rng };
/** A small seeded PRNG (mulberry32): reproducible random masks across runs and platforms. */

/** n uniform scores in (0, 1) as float32, for random pruning. */
export function randomScores(next: () => number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = next() + 2 ** -30;
  return out;
}
