/**
 * Zeroing units instead of removing them: the reference that structured pruning is checked against (a model whose
 * removed units are zeroed computes what the pruned model computes, where the op rules say removal is exact).
 */
import { cloneModel } from '../ir/clone.js';
import type { Model } from '../ir/graph.js';
import type { DepGraph } from './depgraph.js';

/** A copy of `model` with every parameter slice of the given units zeroed (new tensors; the input is untouched). */
export function zeroUnits(dg: DepGraph, model: Model, units: ReadonlySet<number>): Model {
  const m = cloneModel(model);
  const inits = m.graph.initializers;
  for (const s of dg.spaces) {
    if (!s.param) continue;
    const t = inits.get(s.value);
    if (!t) continue;
    let data: Float32Array | undefined;
    let inner = 1, outer = 1;
    for (let i = s.axis + 1; i < t.dims.length; i++) inner *= t.dims[i]!;
    for (let i = 0; i < s.axis; i++) outer *= t.dims[i]!;
    for (let j = 0; j < s.size; j++) {
      const u = dg.elementUnit[s.offset + j]!;
      if (u < 0 || !units.has(u)) continue;
      data ??= Float32Array.from(t.data as Float32Array);
      for (let o = 0; o < outer; o++) data.fill(0, (o * s.size + j) * inner, (o * s.size + j + 1) * inner);
    }
    if (data) inits.set(s.value, { ...t, data });
  }
  return m;
}
