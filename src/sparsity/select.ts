/**
 * Exact k-smallest selection over many float arrays without sorting: a two-pass radix select on the bit
 * patterns of |x| (IEEE-754 float32 bit patterns of non-negative numbers order like unsigned integers).
 * Pass 1 histograms the high 16 bits, pass 2 the low 16 bits inside the one high bucket that holds the k-th
 * element, which gives the exact k-th smallest value; ties at that value are broken by position (first arrays
 * first, lower indices first), so exactly k elements are selected.
 */

/** One array of candidates; `keep` (1 = candidate, 0 = ignored) restricts ranking to surviving elements. */
export interface SelectInput {
  values: Float32Array;
  keep?: Uint8Array | undefined;
}

export interface Threshold {
  /** Bit pattern of |x| of the k-th smallest candidate (0 when k = 0). */
  bits: number;
  /** |x| of the k-th smallest candidate, as a number. */
  value: number;
  /** Candidates with |x| strictly below the threshold (all selected). */
  below: number;
  /** Candidates with |x| equal to the threshold that are selected (the first ones in position order). */
  tiesTaken: number;
  /** k as asked (clamped to the candidate count). */
  k: number;
}

const ABS = 0x7fffffff;

function u32(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** Number of candidates (keep = 1, or all when keep is absent). */
export function countCandidates(inputs: readonly SelectInput[]): number {
  let n = 0;
  for (const { values, keep } of inputs) {
    if (!keep) n += values.length;
    else for (let i = 0; i < keep.length; i++) n += keep[i]!;
  }
  return n;
}

/** Finds the threshold that selects exactly k of the candidates with the smallest |x|. */
export function selectSmallest(inputs: readonly SelectInput[], k: number): Threshold {
  const total = countCandidates(inputs);
  k = Math.max(0, Math.min(Math.floor(k), total));
  if (k === 0) return { bits: 0, value: 0, below: 0, tiesTaken: 0, k: 0 };
  const hi = new Float64Array(0x8000);
  for (const { values, keep } of inputs) {
    const u = u32(values);
    const h = new Uint32Array(0x8000);
    if (!keep) for (let i = 0; i < u.length; i++) h[(u[i]! & ABS) >>> 16]!++;
    else for (let i = 0; i < u.length; i++) h[(u[i]! & ABS) >>> 16]! += keep[i]!;
    for (let b = 0; b < 0x8000; b++) hi[b]! += h[b]!;
  }
  let below = 0;
  let bucket = 0;
  for (; bucket < 0x8000; bucket++) {
    const c = hi[bucket]!;
    if (below + c >= k) break;
    below += c;
  }
  const lo = new Float64Array(0x10000);
  for (const { values, keep } of inputs) {
    const u = u32(values);
    const h = new Uint32Array(0x10000);
    for (let i = 0; i < u.length; i++) {
      const x = u[i]! & ABS;
      if (x >>> 16 === bucket && (!keep || keep[i])) h[x & 0xffff]!++;
    }
    for (let b = 0; b < 0x10000; b++) lo[b]! += h[b]!;
  }
  let low = 0;
  for (; low < 0x10000; low++) {
    const c = lo[low]!;
    if (below + c >= k) break;
    below += c;
  }
  const bits = ((bucket << 16) | low) >>> 0;
  const f = new Float32Array(1);
  new Uint32Array(f.buffer)[0] = bits;
  return { bits, value: f[0]!, below, tiesTaken: k - below, k };
}

/**
 * Applies a threshold: returns one keep-mask per input (1 = keep) where the selected candidates are 0.
 * Non-candidates (keep = 0 in the input) stay 0. Ties are taken in position order, as selectSmallest counted.
 */
export function dropSelected(inputs: readonly SelectInput[], t: Threshold): Uint8Array[] {
  let ties = t.tiesTaken;
  const out: Uint8Array[] = [];
  for (const { values, keep } of inputs) {
    const u = u32(values);
    const m = new Uint8Array(u.length);
    if (t.k === 0) {
      if (keep) m.set(keep);
      else m.fill(1);
      out.push(m);
      continue;
    }
    const bits = t.bits;
    // Keep what is strictly above the threshold; elements equal to it are rare and fixed up afterwards.
    const eq: number[] = [];
    if (keep) {
      for (let i = 0; i < u.length; i++) {
        const x = u[i]! & ABS;
        m[i] = keep[i]! & (x > bits ? 1 : 0);
        if (x === bits && keep[i]) eq.push(i);
      }
    } else {
      for (let i = 0; i < u.length; i++) {
        const x = u[i]! & ABS;
        m[i] = x > bits ? 1 : 0;
        if (x === bits) eq.push(i);
      }
    }
    for (const i of eq) {
      if (ties > 0) ties--;
      else m[i] = 1;
    }
    out.push(m);
  }
  return out;
}

/** How many candidates of each input the threshold selects (without building masks). */
export function selectedPerInput(inputs: readonly SelectInput[], t: Threshold): number[] {
  let ties = t.tiesTaken;
  const out: number[] = [];
  for (const { values, keep } of inputs) {
    const u = u32(values);
    let c = 0;
    let eq = 0;
    if (t.k > 0) {
      for (let i = 0; i < u.length; i++) {
        if (keep && !keep[i]) continue;
        const x = u[i]! & ABS;
        if (x < t.bits) c++;
        else if (x === t.bits) eq++;
      }
    }
    const take = Math.min(eq, ties);
    ties -= take;
    out.push(c + take);
  }
  return out;
}

/**
 * |x| of the candidates sorted ascending, as float32: an LSD radix sort on the bit patterns (two 16-bit
 * passes), linear time; small inputs use the native sort.
 */
export function sortedAbs(values: Float32Array, keep?: Uint8Array): Float32Array {
  const u = u32(values);
  let n = 0;
  if (!keep) n = u.length;
  else for (let i = 0; i < keep.length; i++) n += keep[i]!;
  const a = new Uint32Array(n);
  for (let i = 0, j = 0; i < u.length; i++) if (!keep || keep[i]) a[j++] = u[i]! & ABS;
  if (n < 1 << 14) {
    a.sort();
    return new Float32Array(a.buffer, 0, n);
  }
  const b = new Uint32Array(n);
  const count = new Uint32Array(0x10000);
  for (const shift of [0, 16]) {
    const [src, dst] = shift === 0 ? [a, b] : [b, a];
    count.fill(0);
    for (let i = 0; i < n; i++) count[(src[i]! >>> shift) & 0xffff]!++;
    let sum = 0;
    for (let d = 0; d < 0x10000; d++) {
      const c = count[d]!;
      count[d] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const v = src[i]!;
      dst[count[(v >>> shift) & 0xffff]!++] = v;
    }
  }
  return new Float32Array(a.buffer, 0, n);
}
