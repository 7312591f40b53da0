/**
 * N:M semi-structured masks: in every group of M consecutive weights along the reduction axis (WeightSpec.inAxis:
 * input channels of a Conv [Cout, Cin/g, kh, kw] at fixed (cout, kh, kw); K of a MatMul [K, N] at fixed n; K of a
 * Gemm with transB), at most N weights are kept: the layout of TensorRT and Ampere/Hopper 2:4 sparse tensor cores.
 * Rule when M does not divide the reduction size: that layer is left dense and reported as skipped.
 */
import { ShearsError } from '../errors.js';
import { axisLayout } from '../ir/tensor.js';

export interface NMPattern {
  n: number;
  m: number;
}

/** Parses 'N:M' (e.g. '2:4'); throws a ShearsError on bad syntax or N > M. */
export function parsePattern(s: string): NMPattern {
  const r = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(s);
  if (!r) throw new ShearsError(`bad pattern '${s}': expected N:M, e.g. 2:4`);
  const p = { n: Number(r[1]), m: Number(r[2]) };
  checkPattern(p);
  return p;
}

export function checkPattern(p: NMPattern): void {
  if (!Number.isInteger(p.n) || !Number.isInteger(p.m) || p.m < 1 || p.n < 1) {
    throw new ShearsError(`bad pattern ${p.n}:${p.m}: N and M must be positive integers`);
  }
  if (p.n > p.m) throw new ShearsError(`bad pattern ${p.n}:${p.m}: N must not exceed M`);
}

/** Why a weight of these dims cannot take the pattern along `axis`, or undefined when it can. */
export function nmUnfit(dims: readonly number[], axis: number, p: NMPattern): string | undefined {
  const len = dims[axis]!;
  if (len % p.m !== 0) return `reduction size ${len} (axis ${axis}) is not a multiple of M=${p.m}`;
  return undefined;
}

/**
 * The N:M keep-mask of one weight: in each group the N highest scores among the candidates (keep = 1, or all)
 * are kept; ties go to the lower index. Non-candidates stay pruned, so a group may end with fewer than N.
 */
export function nmMask(scores: Float32Array, keep: Uint8Array | undefined, dims: readonly number[], axis: number, p: NMPattern): Uint8Array {
  const { outer, len, inner } = axisLayout(dims, axis);
  if (len % p.m !== 0) throw new ShearsError(`N:M ${p.n}:${p.m}: ${nmUnfit(dims, axis, p)}`);
  const out = new Uint8Array(scores.length);
  const s = new Float64Array(p.m);
  const idx = new Int32Array(p.m);
  for (let o = 0; o < outer; o++) {
    for (let c0 = 0; c0 < len; c0 += p.m) {
      for (let i = 0; i < inner; i++) {
        for (let j = 0; j < p.m; j++) {
          const e = (o * len + c0 + j) * inner + i;
          idx[j] = e;
          s[j] = keep && !keep[e] ? -1 : Math.abs(scores[e]!);
        }
        for (let t = 0; t < p.n; t++) {
          let best = -1;
          let bv = -1;
          for (let j = 0; j < p.m; j++) if (s[j]! > bv) {
            bv = s[j]!;
            best = j;
          }
          if (best < 0) break; // only non-candidates left
          out[idx[best]!] = 1;
          s[best] = -2;
        }
      }
    }
  }
  return out;
}

/**
 * Checks the N:M property of a weight: returns the number of groups with more than N nonzeros (0 = valid).
 */
export function nmViolations(values: ArrayLike<number>, dims: readonly number[], axis: number, p: NMPattern): number {
  const { outer, len, inner } = axisLayout(dims, axis);
  if (len % p.m !== 0) throw new ShearsError(`N:M ${p.n}:${p.m}: ${nmUnfit(dims, axis, p)}`);
  let bad = 0;
  for (let o = 0; o < outer; o++)
    for (let c0 = 0; c0 < len; c0 += p.m)
      for (let i = 0; i < inner; i++) {
        let nz = 0;
        for (let j = 0; j < p.m; j++) if (values[(o * len + c0 + j) * inner + i] !== 0) nz++;
        if (nz > p.n) bad++;
      }
  return bad;
}
