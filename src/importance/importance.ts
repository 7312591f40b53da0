/**
 * Importance of each prunable unit (depgraph Unit), aggregated over every parameter slice tied to it: the
 * producing weights, the consuming weights of every coupled layer, biases and norm parameters.
 * - l1 / l2: sum of |w| / sum of w^2 of each slice;
 * - fpgm: distance of a filter to the others in its layer (filters near the geometric median are redundant);
 * - taylor: sum |w * dL/dw| of each slice (first-order Taylor, gradients from importance/taylor.ts);
 * - activation: activation-aware (Wanda-style), from calibration data: each weight slice that reads the unit's
 *   channel scores sum |w| x the RMS of the input feature it multiplies (importance/activation.ts); only the
 *   consumers' slices count (a hidden neuron of an MLP is scored by the down projection that reads it, a head by
 *   the output projection). A group none of whose units is read by a layer with statistics falls back to l2;
 *   a unit of a scored group without a reading slice gets the group's mean (ranked neutrally);
 * - random: a seeded uniform draw.
 * Aggregation over the unit's slices: sum, mean or max. Scores are normalised per group (divided by the
 * group's mean) so that units of different groups can be ranked globally.
 */
import { ShearsError } from '../errors.js';
import { axisLayout, toFloat32, type Tensor } from '../ir/tensor.js';
import type { DepGraph, Space } from '../depgraph/depgraph.js';
import { rng } from '../random.js';
import { readScores, type ActivationStats } from './activation.js';

export type ImportanceKind = 'l1' | 'l2' | 'random' | 'fpgm' | 'taylor' | 'activation';
/** Importance kinds that need calibration data. */
export const DATA_IMPORTANCE: readonly ImportanceKind[] = ['taylor', 'activation'];
export type Aggregation = 'sum' | 'mean' | 'max';

export interface ImportanceOptions {
  kind?: ImportanceKind;
  aggregate?: Aggregation;
  /** Seed for 'random'. */
  seed?: number;
  /** For 'taylor': loss gradients of the weights, by initializer name (importance/taylor.ts weightGradients). */
  gradients?: Map<string, Float32Array>;
  /** For 'activation': input statistics of the layers (importance/activation.ts activationStats). */
  activations?: ActivationStats;
  /** Divide by the group mean (default true). */
  normalize?: boolean;
}

/** Per-index slice magnitudes of a tensor along an axis: sum |w| (p=1) or sum w^2 (p=2). */
export function sliceNorms(t: Tensor, axis: number, p: 1 | 2): Float64Array {
  const w = toFloat32(t);
  const { outer, len: d, inner } = axisLayout(t.dims, axis);
  const out = new Float64Array(d);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < d; j++) {
      const base = (o * d + j) * inner;
      let s = 0;
      if (p === 1) for (let k = 0; k < inner; k++) s += Math.abs(w[base + k]!);
      else for (let k = 0; k < inner; k++) s += w[base + k]! * w[base + k]!;
      out[j]! += s;
    }
  }
  return out;
}

/** FPGM: for each index, the sum of Euclidean distances of its slice to every other slice. */
export function fpgmScores(t: Tensor, axis: number): Float64Array {
  const w = toFloat32(t);
  const { outer, len: d, inner } = axisLayout(t.dims, axis);
  const len = outer * inner;
  // Gather slices contiguously.
  const rows = new Float32Array(d * len);
  for (let o = 0; o < outer; o++) for (let j = 0; j < d; j++) rows.set(w.subarray((o * d + j) * inner, (o * d + j + 1) * inner), j * len + o * inner);
  const sq = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    let s = 0;
    for (let k = 0; k < len; k++) s += rows[j * len + k]! ** 2;
    sq[j] = s;
  }
  const out = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    for (let j = i + 1; j < d; j++) {
      let dot = 0;
      const bi = i * len, bj = j * len;
      for (let k = 0; k < len; k++) dot += rows[bi + k]! * rows[bj + k]!;
      const dist = Math.sqrt(Math.max(0, sq[i]! + sq[j]! - 2 * dot));
      out[i]! += dist;
      out[j]! += dist;
    }
  }
  return out;
}


/** Importance per unit (indexed by unit id). */
export function unitImportance(dg: DepGraph, opts: ImportanceOptions = {}): Float64Array {
  const kind = opts.kind ?? 'l2';
  const agg = opts.aggregate ?? 'mean';
  const n = dg.units.length;
  const score = new Float64Array(n);
  if (kind === 'taylor' && !opts.gradients) throw new ShearsError('Taylor importance needs gradients (give --data)');
  if (kind === 'activation') return activationImportance(dg, opts);
  if (kind === 'random') {
    const rnd = rng(opts.seed ?? 0);
    for (let i = 0; i < n; i++) score[i] = rnd();
    return score;
  }
  const count = new Float64Array(n);
  const inits = dg.model.graph.initializers;
  const perSpace = (s: Space): Float64Array | undefined => {
    const t = inits.get(s.value);
    if (!t) return undefined;
    if (kind === 'fpgm') return t.dims.length >= 2 && s.role !== 'reads' ? fpgmScores(t, s.axis) : undefined;
    if (kind === 'taylor') {
      const g = opts.gradients?.get(s.value);
      if (!g) return undefined;
      const w = toFloat32(t);
      const prod = new Float32Array(w.length);
      for (let i = 0; i < w.length; i++) prod[i] = w[i]! * g[i]!;
      return sliceNorms({ dtype: t.dtype, dims: t.dims, data: prod }, s.axis, 1);
    }
    return sliceNorms(t, s.axis, kind === 'l1' ? 1 : 2);
  };
  // Magnitudes of the first two axes of a weight in one pass (the common Conv/Gemm case).
  const pairNorms = new Map<string, [Float64Array, Float64Array]>();
  if (kind === 'l1' || kind === 'l2') {
    const axesOf = new Map<string, Set<number>>();
    for (const s of dg.spaces) if (s.param) (axesOf.get(s.value) ?? axesOf.set(s.value, new Set()).get(s.value)!).add(s.axis);
    for (const [v, axes] of axesOf) {
      const t = inits.get(v);
      if (!t || axes.size !== 2 || !axes.has(0) || !axes.has(1)) continue;
      const w = toFloat32(t);
      const d0 = t.dims[0]!, d1 = t.dims[1]!, inner = w.length / (d0 * d1);
      const n0 = new Float64Array(d0), n1 = new Float64Array(d1);
      if (inner === 1) {
        for (let o = 0, base = 0; o < d0; o++) {
          let row = 0;
          for (let i = 0; i < d1; i++, base++) {
            const x = kind === 'l1' ? Math.abs(w[base]!) : w[base]! * w[base]!;
            row += x;
            n1[i]! += x;
          }
          n0[o] = row;
        }
        pairNorms.set(v, [n0, n1]);
        continue;
      }
      for (let o = 0, base = 0; o < d0; o++) {
        for (let i = 0; i < d1; i++, base += inner) {
          let x = 0;
          if (kind === 'l1') for (let k = 0; k < inner; k++) x += Math.abs(w[base + k]!);
          else for (let k = 0; k < inner; k++) x += w[base + k]! * w[base + k]!;
          n0[o]! += x;
          n1[i]! += x;
        }
      }
      pairNorms.set(v, [n0, n1]);
    }
  }
  for (const s of dg.spaces) {
    if (!s.param) continue;
    const v = pairNorms.get(s.value)?.[s.axis] ?? perSpace(s);
    if (!v) continue;
    addSliceScores(dg, s, v, agg, score, count);
  }
  if (agg === 'mean') for (let i = 0; i < n; i++) if (count[i]! > 0) score[i]! /= count[i]!;
  if (opts.normalize !== false) normalizeByGroup(dg, score);
  return score;
}

/** Adds per-index scores `v` of a parameter space to the units its elements belong to (sum, or max). */
function addSliceScores(dg: DepGraph, s: Space, v: ArrayLike<number>, agg: Aggregation, score: Float64Array, count: Float64Array): void {
  for (let j = 0; j < s.size; j++) {
    const u = dg.elementUnit[s.offset + j]!;
    if (u < 0) continue;
    const x = v[j]!;
    if (agg === 'max') score[u] = Math.max(score[u]!, x);
    else score[u]! += x;
    count[u]!++;
  }
}

/** Divides each unit's score by the mean score of its group. */
export function normalizeByGroup(dg: DepGraph, score: Float64Array): void {
  for (const g of dg.groups) {
    if (g.units.length === 0) continue;
    let m = 0;
    for (const u of g.units) m += score[u.id]!;
    m /= g.units.length;
    if (m > 0) for (const u of g.units) score[u.id]! /= m;
  }
}

/** The 'activation' kind (see the file comment). */
function activationImportance(dg: DepGraph, opts: ImportanceOptions): Float64Array {
  const act = opts.activations;
  if (!act) throw new ShearsError('activation importance needs calibration data (give --calib)');
  const agg = opts.aggregate ?? 'mean';
  const n = dg.units.length;
  const score = new Float64Array(n);
  const count = new Float64Array(n);
  const inits = dg.model.graph.initializers;
  for (const s of dg.spaces) {
    if (!s.param || s.role !== 'reads') continue;
    const layers = act.layers.get(s.value)?.filter((l) => l.inAxis === s.axis && l.form.k / l.form.kernel === s.size);
    const t = inits.get(s.value);
    if (!layers?.length || !t) continue;
    const w = toFloat32(t);
    for (const l of layers) {
      const v = readScores(w, l);
      addSliceScores(dg, s, v, agg, score, count);
    }
  }
  if (agg === 'mean') for (let i = 0; i < n; i++) if (count[i]! > 0) score[i]! /= count[i]!;
  let fallback: Float64Array | undefined;
  for (const g of dg.groups) {
    const scored = g.units.filter((u) => count[u.id]! > 0);
    if (scored.length === g.units.length) continue;
    if (scored.length === 0) {
      fallback ??= unitImportance(dg, { ...opts, kind: 'l2', normalize: true });
      for (const u of g.units) score[u.id] = fallback[u.id]!;
      continue;
    }
    const mean = scored.reduce((a, u) => a + score[u.id]!, 0) / scored.length;
    for (const u of g.units) if (count[u.id] === 0) score[u.id] = mean;
  }
  if (opts.normalize !== false) normalizeByGroup(dg, score);
  return score;
}
