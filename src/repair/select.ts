/**
 * Selection without sorting: the `count` smallest of n scores in O(n) (quickselect), ordered as a stable sort
 * by score would order them (equal scores: lower index first), so that callers that took the first `count` of
 * a sorted index list choose exactly the same elements, much faster (per-row Wanda masks over thousands of rows).
 */

/** Indices (in no particular order) of the `count` smallest values of `s`; ties go to the lower index. */
export function smallestIndices(s: ArrayLike<number>, count: number): Uint32Array {
  const n = s.length;
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  if (count <= 0) return idx.subarray(0, 0);
  if (count >= n) return idx;
  // a strict total order: by score, then by index (NaN scores order as equal, like a sort comparator's NaN)
  const less = (a: number, b: number) => {
    const x = s[a]!;
    const y = s[b]!;
    return x < y || (!(x > y) && a < b);
  };
  const swap = (a: number, b: number) => {
    const t = idx[a]!;
    idx[a] = idx[b]!;
    idx[b] = t;
  };
  const k = count - 1;
  let lo = 0;
  let hi = n - 1;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    if (less(idx[mid]!, idx[lo]!)) swap(lo, mid);
    if (less(idx[hi]!, idx[lo]!)) swap(lo, hi);
    if (less(idx[hi]!, idx[mid]!)) swap(mid, hi);
    const p = idx[mid]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (less(idx[i]!, p)) i++;
      while (less(p, idx[j]!)) j--;
      if (i <= j) {
        swap(i, j);
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return idx.subarray(0, count);
}
