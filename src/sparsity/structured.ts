/**
 * Structured masks (torch.nn.utils.prune ln_structured / random_structured) and custom masks. Structured masks
 * zero whole slices of a weight (output filters/rows by default) but keep every shape: they show which channels
 * would go and let fine-tuning adapt before real channel removal; only removing channels saves compute.
 */
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import { axisLayout, numel } from '../ir/tensor.js';
import { selectLayers, type LayerFilter } from './layers.js';
import { applyMasks, getMasks, isMaskableDtype, updateMasks } from './masks.js';
import { rng } from '../random.js';
import { commit, prepare, checkSparsity, type PruneReport } from './unstructured.js';

export interface StructuredMaskOptions extends LayerFilter {
  /** Fraction in [0, 1) of each layer's surviving slices to prune (rounded to the nearest count). */
  amount: number;
  /** p of the Ln norm ranking the slices (1, 2, Infinity, ...); default 2. Ignored for method 'random'. */
  norm?: number | undefined;
  /** 'ln' (default): lowest norm first; 'random': uniformly random slices (seeded). */
  method?: 'ln' | 'random' | undefined;
  /** Which slices: 'out' (default) whole output channels/filters/rows, 'in' whole input channels/columns. */
  axis?: 'out' | 'in' | undefined;
  /** Per-layer amounts by initializer or node name. */
  perLayer?: Record<string, number> | undefined;
  seed?: number | undefined;
}

/** Ln norms (over surviving elements) of the slices of a weight along an axis. */
export function sliceNorms(values: Float32Array, keep: Uint8Array | undefined, dims: readonly number[], axis: number, p: number): Float64Array {
  const { outer, len, inner } = axisLayout(dims, axis);
  const acc = new Float64Array(len);
  for (let o = 0; o < outer; o++)
    for (let c = 0; c < len; c++)
      for (let i = 0; i < inner; i++) {
        const e = (o * len + c) * inner + i;
        if (keep && !keep[e]) continue;
        const a = Math.abs(values[e]!);
        if (p === Infinity) acc[c] = Math.max(acc[c]!, a);
        else acc[c]! += p === 1 ? a : p === 2 ? a * a : a ** p;
      }
  if (p !== Infinity && p !== 1) for (let c = 0; c < len; c++) acc[c] = acc[c]! ** (1 / p);
  return acc;
}

/**
 * Masks whole slices (filters/rows by default) of each selected layer weight, per layer; stored in the model
 * like the unstructured masks (repeated calls accumulate over the surviving slices).
 */
export function structuredMask(model: Model, opts: StructuredMaskOptions): PruneReport {
  checkSparsity(opts.amount, 'amount');
  const method = opts.method ?? 'ln';
  if (method !== 'ln' && method !== 'random') throw new ShearsError(`unknown method '${String(method)}' (ln or random)`);
  const p = opts.norm ?? 2;
  if (typeof p !== 'number' || !(p > 0)) throw new ShearsError(`norm must be a positive number (1, 2, Infinity, ...), got ${String(p)}`);
  const axisKind = opts.axis ?? 'out';
  if (axisKind !== 'out' && axisKind !== 'in') throw new ShearsError(`axis must be 'out' or 'in', got '${String(axisKind)}'`);
  for (const [k, v] of Object.entries(opts.perLayer ?? {})) checkSparsity(v, `per-layer amount of '${k}'`);
  const next = rng(opts.seed ?? 0);
  const { layers, left } = selectLayers(model, opts);
  const items = prepare(model, layers);
  for (const w of items) {
    const { dims, spec } = w.layer;
    const axis = axisKind === 'out' ? spec.outAxis : spec.inAxis;
    const { outer, len, inner } = axisLayout(dims, axis);
    // A slice survives while any of its elements does.
    const alive = new Uint8Array(len);
    for (let o = 0; o < outer; o++)
      for (let c = 0; c < len; c++)
        for (let i = 0; i < inner; i++) if (!w.keep || w.keep[(o * len + c) * inner + i]) alive[c] = 1;
    const cand: number[] = [];
    for (let c = 0; c < len; c++) if (alive[c]) cand.push(c);
    const own = opts.perLayer ? [w.layer.name, ...w.layer.nodes].map((k) => opts.perLayer![k]).find((v) => v !== undefined) : undefined;
    const k = Math.round((own ?? opts.amount) * cand.length);
    let score: Float64Array;
    if (method === 'random') {
      score = new Float64Array(len);
      for (const c of cand) score[c] = next();
    } else score = sliceNorms(w.values, w.keep, dims, axis, p);
    const order = cand.slice().sort((a, b) => score[a]! - score[b]! || a - b);
    const drop = new Uint8Array(len);
    for (let j = 0; j < k; j++) drop[order[j]!] = 1;
    const mask = new Uint8Array(w.values.length);
    for (let o = 0; o < outer; o++)
      for (let c = 0; c < len; c++)
        for (let i = 0; i < inner; i++) {
          const e = (o * len + c) * inner + i;
          mask[e] = drop[c] || (w.keep && !w.keep[e]) ? 0 : 1;
        }
    w.mask = mask;
  }
  return commit(model, items, { kind: 'structured', method, sparsity: opts.amount, skipped: left });
}

/**
 * Applies a custom mask (1/true = keep, 0 = prune) to one float initializer, combined with any stored mask
 * (a weight stays pruned once pruned). Returns how many weights are masked now.
 */
export function customMask(model: Model, name: string, mask: ArrayLike<number | boolean>): number {
  const t = model.graph.initializers.get(name);
  if (!t) throw new ShearsError(`custom mask: no initializer named '${name}'`);
  if (!isMaskableDtype(t.dtype)) throw new ShearsError(`custom mask: '${name}' is not a float tensor`);
  const n = numel(t.dims);
  if (mask.length !== n) throw new ShearsError(`custom mask for '${name}' has ${mask.length} elements, the initializer ${n}`);
  const old = getMasks(model).get(name);
  const m = new Uint8Array(n);
  let masked = 0;
  for (let i = 0; i < n; i++) {
    m[i] = mask[i] && (!old || old[i]) ? 1 : 0;
    masked += 1 - m[i]!;
  }
  updateMasks(model, new Map([[name, m]]));
  applyMasks(model);
  return masked;
}
