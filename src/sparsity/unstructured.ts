/**
 * Unstructured and N:M pruning with masks, over the layer weights of an ONNX model (the torch.nn.utils.prune
 * family): magnitude (L1) or random scores; one global threshold, uniform per-layer amounts, or LAMP
 * allocation; masks stored in the model so repeated pruning accumulates (the amount applies to the weights
 * that survived earlier pruning: 50% then 50% gives 75%) and fine-tuning can keep pruned weights at zero.
 */
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import { numel, toFloat32 } from '../ir/tensor.js';
import { selectLayers, type LayerFilter, type LeftOut, type PrunableLayer } from './layers.js';
import { getMasks, maskTensor, updateMasks } from './masks.js';
import { checkPattern, nmMask, nmUnfit, type NMPattern } from './nm.js';
import { randomScores, rng } from '../random.js';
import { countCandidates, dropSelected, selectSmallest, selectedPerInput, sortedAbs, type SelectInput } from './select.js';
import { countNonzero } from './stats.js';
import { hoistConstants, liftSubgraphInitializers } from '../analysis/hoist.js';

export type Scope = 'global' | 'layer' | 'lamp';
export type Method = 'l1' | 'random';

export interface UnstructuredOptions extends LayerFilter {
  /**
   * Fraction in [0, 1) of the still-unpruned weights to prune (of all selected weights the first time). Pruned
   * means masked by a stored mask or, for a weight without a stored mask, exactly zero.
   * Not used with `pattern`, whose sparsity is 1 - N/M.
   */
  sparsity?: number | undefined;
  /** 'global' (default): one threshold over all selected weights; 'layer': the same fraction in every layer;
   *  'lamp': one threshold over LAMP scores (Lee et al. 2021), which allocates per-layer amounts. */
  scope?: Scope | undefined;
  /** 'l1' (default): smallest |w| first; 'random': uniformly random (seeded). */
  method?: Method | undefined;
  /** N:M semi-structured sparsity along each layer's reduction axis instead of a sparsity fraction. */
  pattern?: NMPattern | undefined;
  /**
   * Per-layer fractions by initializer or node name; these layers are pruned by their own amount and left out
   * of the global/LAMP pool.
   */
  perLayer?: Record<string, number> | undefined;
  /** Seed for 'random' (default 0). */
  seed?: number | undefined;
}

export interface LayerPruneResult {
  name: string;
  node: string;
  op: string;
  shape: number[];
  params: number;
  /** Weights pruned (masked) before this call. */
  prunedBefore: number;
  /** Weights pruned by this call. */
  prunedNow: number;
  /** Weights still nonzero after this call. */
  nonzero: number;
  /** 1 - nonzero/params after this call. */
  sparsity: number;
}

export interface PruneReport {
  kind: 'unstructured' | 'n:m' | 'structured' | 'custom';
  scope?: Scope;
  method?: Method | 'ln' | 'wanda' | 'sparsegpt';
  pattern?: string;
  sparsity?: number;
  layers: LayerPruneResult[];
  /** Layers not pruned by this call, with the reason (filters, first/last, N:M misfit). */
  skipped: { name: string; reason: string }[];
  /** Problems worth a look that are not errors (e.g. a layer pruned to all zeros, which cuts the signal path). */
  warnings: string[];
  /** Over the layers pruned by this call. */
  total: { params: number; prunedBefore: number; prunedNow: number; nonzero: number; sparsity: number };
}

export function checkSparsity(s: number, what = 'sparsity'): void {
  if (typeof s !== 'number' || !Number.isFinite(s) || s < 0 || s >= 1) {
    throw new ShearsError(`${what} must be a number in [0, 1), got ${String(s)}`);
  }
}

interface Work {
  layer: PrunableLayer;
  values: Float32Array;
  keep: Uint8Array | undefined;
  survivors: number;
  mask?: Uint8Array;
}

function survivorsOf(keep: Uint8Array | undefined, n: number): number {
  if (!keep) return n;
  let c = 0;
  for (let i = 0; i < keep.length; i++) c += keep[i]!;
  return c;
}

/** Prepares the weights of the selected layers with their existing masks. */
export function prepare(model: Model, layers: PrunableLayer[]): Work[] {
  const masks = getMasks(model);
  return layers.map((layer) => {
    const t = model.graph.initializers.get(layer.name)!;
    const values = toFloat32(t);
    // Without a stored mask, weights that are exactly zero count as pruned (e.g. a model saved with the masks
    // baked in): repeated pruning still accumulates.
    let keep = masks.get(layer.name);
    if (!keep && values.includes(0)) keep = Uint8Array.from(values, (v) => (v === 0 ? 0 : 1));
    return { layer, values, keep, survivors: survivorsOf(keep, numel(t.dims)) };
  });
}

function scoresOf(w: Work, method: Method, next: (() => number) | undefined): Float32Array {
  return method === 'random' ? randomScores(next!, w.values.length) : w.values;
}

function pruneEach(items: Work[], amount: (w: Work) => number, method: Method, next: (() => number) | undefined): void {
  for (const w of items) {
    const input: SelectInput = { values: scoresOf(w, method, next), keep: w.keep };
    const k = Math.round(amount(w) * w.survivors);
    [w.mask] = dropSelected([input], selectSmallest([input], k));
  }
}

function pruneGlobal(items: Work[], s: number, method: Method, next: (() => number) | undefined): void {
  if (!items.length) return;
  const inputs: SelectInput[] = items.map((w) => ({ values: scoresOf(w, method, next), keep: w.keep }));
  const k = Math.round(s * countCandidates(inputs));
  const masks = dropSelected(inputs, selectSmallest(inputs, k));
  items.forEach((w, i) => (w.mask = masks[i]!));
}

/**
 * LAMP scores of one layer's surviving weights: with squared magnitudes sorted ascending a_1 <= ... <= a_n,
 * score_i = a_i / sum_{j >= i} a_j (non-decreasing in i, the largest weight scores 1). Returns the scores in
 * sorted order (only their distribution matters: a layer prunes its k_l smallest weights).
 */
export function lampScores(values: Float32Array, keep: Uint8Array | undefined): Float32Array {
  const sorted = sortedAbs(values, keep);
  const n = sorted.length;
  const out = new Float32Array(n);
  let suffix = 0;
  for (let i = n - 1; i >= 0; i--) {
    const a = sorted[i]! * sorted[i]!;
    suffix += a;
    out[i] = suffix > 0 ? a / suffix : 0;
  }
  return out;
}

function pruneLamp(items: Work[], s: number): void {
  if (!items.length) return;
  const scores: SelectInput[] = items.map((w) => ({ values: lampScores(w.values, w.keep) }));
  const k = Math.round(s * countCandidates(scores));
  const per = selectedPerInput(scores, selectSmallest(scores, k));
  items.forEach((w, i) => {
    const input: SelectInput = { values: w.values, keep: w.keep };
    [w.mask] = dropSelected([input], selectSmallest([input], per[i]!));
  });
}

/** Looks a layer's own amount up in perLayer by initializer or node name. */
function ownAmount(perLayer: Record<string, number> | undefined, l: PrunableLayer): number | undefined {
  if (!perLayer) return undefined;
  for (const key of [l.name, ...l.nodes]) if (Object.prototype.hasOwnProperty.call(perLayer, key)) return perLayer[key];
  return undefined;
}

/** Stores the new masks (combined with the old ones), zeros the pruned weights and reports. */
export function commit(model: Model, items: Work[], report: Omit<PruneReport, 'layers' | 'total' | 'warnings'>): PruneReport {
  const changed = new Map<string, Uint8Array>();
  for (const w of items) {
    if (!w.mask) continue;
    let pruned = false;
    for (let i = 0; i < w.mask.length; i++) if (!w.mask[i]) {
      pruned = true;
      break;
    }
    if (pruned || w.keep) changed.set(w.layer.name, w.mask);
  }
  if (changed.size) {
    updateMasks(model, changed);
    for (const [name, mask] of changed) model.graph.initializers.set(name, maskTensor(model.graph.initializers.get(name)!, mask));
  }
  const layers: LayerPruneResult[] = [];
  const total = { params: 0, prunedBefore: 0, prunedNow: 0, nonzero: 0, sparsity: 0 };
  for (const w of items) {
    if (!w.mask) continue;
    const n = w.values.length;
    const after = survivorsOf(w.mask, n);
    const nz = countNonzero(model.graph.initializers.get(w.layer.name)!);
    const r: LayerPruneResult = {
      name: w.layer.name, node: w.layer.nodes[0] ?? '', op: w.layer.opTypes[0] ?? '', shape: [...w.layer.dims],
      params: n, prunedBefore: n - w.survivors, prunedNow: w.survivors - after, nonzero: nz, sparsity: n ? 1 - nz / n : 0,
    };
    layers.push(r);
    total.params += n;
    total.prunedBefore += r.prunedBefore;
    total.prunedNow += r.prunedNow;
    total.nonzero += nz;
  }
  total.sparsity = total.params ? 1 - total.nonzero / total.params : 0;
  const warnings = layers.filter((l) => l.nonzero === 0).map((l) => `${l.name} (${l.node}) is now all zeros: the layer outputs only its bias`);
  return { ...report, layers, warnings, total };
}

/**
 * Prunes individual weights of the selected layers and stores the masks in the model (see masks.ts); the
 * model is changed in place. Returns a JSON-ready report.
 */
export function pruneUnstructured(model: Model, opts: UnstructuredOptions): PruneReport {
  const scope = opts.scope ?? 'global';
  const method = opts.method ?? 'l1';
  if (!['global', 'layer', 'lamp'].includes(scope)) throw new ShearsError(`unknown scope '${scope}' (global, layer or lamp)`);
  if (!['l1', 'random'].includes(method)) throw new ShearsError(`unknown method '${method}' (l1 or random)`);
  if (opts.pattern) {
    checkPattern(opts.pattern);
    if (opts.sparsity !== undefined) throw new ShearsError('give either a sparsity or an N:M pattern, not both');
  } else {
    if (opts.sparsity === undefined) throw new ShearsError('a sparsity or an N:M pattern is required');
    checkSparsity(opts.sparsity);
  }
  if (scope === 'lamp' && method === 'random') throw new ShearsError('LAMP ranks magnitudes: it cannot be combined with random pruning');
  for (const [k, v] of Object.entries(opts.perLayer ?? {})) checkSparsity(v, `per-layer sparsity of '${k}'`);
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed)) throw new ShearsError(`seed must be an integer, got ${String(seed)}`);
  const next = method === 'random' ? rng(seed) : undefined;

  // Weights kept in Constant nodes (Paddle exports) become initializers, where layers look for them.
  hoistConstants(model);
  // Weights of If branches and loop bodies move to the main graph (read from the outer scope) to be pruned there.
  liftSubgraphInitializers(model);
  const { layers, left } = selectLayers(model, opts);
  if (opts.perLayer) {
    for (const key of Object.keys(opts.perLayer)) {
      if (!layers.some((l) => l.name === key || l.nodes.includes(key))) {
        throw new ShearsError(`per-layer amount for '${key}': no selected layer weight has that initializer or node name`);
      }
    }
  }
  const skipped = [...left];

  if (opts.pattern) {
    const p = opts.pattern;
    const fit: PrunableLayer[] = [];
    for (const l of layers) {
      const why = nmUnfit(l.dims, l.spec.inAxis, p);
      if (why) skipped.push({ name: l.name, reason: `left dense: ${why}` });
      else fit.push(l);
    }
    if (layers.length && !fit.length) throw new ShearsError(`no selected layer can take ${p.n}:${p.m} sparsity: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`);
    const items = prepare(model, fit);
    for (const w of items) w.mask = nmMask(scoresOf(w, method, next), w.keep, w.layer.dims, w.layer.spec.inAxis, p);
    return withLeftWarnings(commit(model, items, { kind: 'n:m', method, pattern: `${p.n}:${p.m}`, skipped }), left, fit);
  }

  const s = opts.sparsity!;
  const items = prepare(model, layers);
  const own = items.filter((w) => ownAmount(opts.perLayer, w.layer) !== undefined);
  const pool = items.filter((w) => ownAmount(opts.perLayer, w.layer) === undefined);
  pruneEach(own, (w) => ownAmount(opts.perLayer, w.layer)!, method, next);
  if (scope === 'layer') pruneEach(pool, () => s, method, next);
  else if (scope === 'global') pruneGlobal(pool, s, method, next);
  else pruneLamp(pool, s);
  return withLeftWarnings(commit(model, items, { kind: 'unstructured', scope, method, sparsity: s, skipped }), left, layers);
}

/**
 * The report with a warning for each weight left out for a reason the user did not give (fixed, quantized,
 * computed), and for each pruned weight that several layers share (tied weights, or a fixed constant such as a
 * filter bank applied twice: --exclude it if so).
 */
function withLeftWarnings(r: PruneReport, left: readonly LeftOut[], pruned: readonly PrunableLayer[]): PruneReport {
  const shared = pruned.filter((l) => l.nodes.length > 1)
    .map((l) => `${l.name} is the weight of ${l.nodes.length} nodes (${l.nodes.join(', ')}): pruned once for all of them; if it is a fixed constant rather than a trained weight, --exclude it`);
  return { ...r, warnings: [...left.filter((l) => l.warn).map((l) => `${l.name} not pruned: ${l.reason}`), ...shared, ...r.warnings] };
}

