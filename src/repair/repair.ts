/**
 * Training-free accuracy repair of a pruned model against its dense original, layer by layer in topological
 * order, each layer seeing the outputs of the layers repaired before it:
 * - stats: per-channel affine correction of each layer's output to the dense output's mean and variance;
 * - lsq: least-squares refit of each layer's weights (and bias) so its output matches the dense layer's output
 *   (damped normal equations; layers with stored sparsity masks keep their masks: masked OBS reconstruction);
 * - obs: OBS/SparseGPT one-shot pruning from the dense weights with the layer Hessian: new masks at the pruned
 *   model's per-layer sparsity (or N:M pattern), remaining weights updated; `keepMask` keeps the given masks;
 * - wanda: new masks by |w| x ||x|| at the same sparsity, no update.
 * Layers are matched by node name (the structured pruner keeps names); output channels of layers that lost some
 * are matched to the dense ones by their weights, or given by `keptChannels`.
 */
import type { Dataset } from '../data/dataset.js';
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import { removeDeadNodes, topoSort, uniqueName } from '../ir/edit.js';
import type { Model, Node } from '../ir/graph.js';
import { numel, toFloat32, type Tensor } from '../ir/tensor.js';
import { batchSizeFor, runBatchSize } from '../metrics/evaluate.js';
import { FeedState, planInputs } from '../data/feeds.js';
import { createSession } from '../runtime/session.js';
import { relMse } from '../metrics/relative-mse.js';
import { opDef } from '../ops/registry.js';
import type { LinearForm } from '../ops/types.js';
import { getMasks, updateMasks } from '../sparsity/masks.js';
import { activations } from '../sparsity/layers.js';
import type { NMPattern } from '../sparsity/nm.js';
import { linearContext, resolveConstant, type LayerPair, type LayerStats, type StatsWanted } from './calib.js';
import { Stepper } from './stepper.js';
import { checkTokenData } from './token-checks.js';
import { fixDead, leastSquares, obsPrune, statsCorrect, wandaPrune, type GroupProblem, type MaskRule } from './solve.js';
import { cloneModel } from '../ir/clone.js';

export type RepairMethod = 'none' | 'stats' | 'lsq' | 'obs' | 'wanda';
export const REPAIR_METHODS: RepairMethod[] = ['none', 'stats', 'lsq', 'obs', 'wanda'];

export interface RepairOptions {
  method: RepairMethod;
  /** obs/wanda: N:M masks (keep N of every M consecutive input channels) instead of a count per layer. */
  pattern?: NMPattern;
  /** obs/wanda: prune this fraction of every layer (default: as many weights as the pruned model has zeros). */
  sparsity?: number;
  /** obs: keep the pruned model's masks and only update the remaining weights. */
  keepMask?: boolean;
  /** Damping of the normal equations, as a fraction of the mean Hessian diagonal (default 0.01). */
  damp?: number;
  /** stats: only shift the mean (no variance scaling). */
  meanOnly?: boolean;
  /** Calibration batch size (default 128). */
  batchSize?: number;
  threads?: number;
  /** Dense output channels kept by a pruned layer (by node name), where the caller knows them. */
  keptChannels?: (node: string) => Int32Array | undefined;
  /** Node names (RegExp) of the layers to repair (default all). */
  include?: RegExp;
  /** Only the layers with these weights (initializer names); default all. */
  weights?: ReadonlySet<string>;
  /** Leave the layers whose output is a model output (an LM head) as they are. */
  skipOutputLayers?: boolean;
  onProgress?: (p: { done: number; total: number; node: string; seconds: number }) => void;
}

export interface LayerRepair {
  node: string;
  op: string;
  /** Reduction length per group (input channels x kernel) and output rows. */
  k: number;
  rows: number;
  groups: number;
  action: string;
  /** Zero weights before and after (obs/wanda/masked lsq). */
  zerosBefore?: number;
  zerosAfter?: number;
  /** Relative output error ||W P - Yd||^2 / ||Yd||^2 on the calibration data, before and after (lsq/obs/wanda). */
  errBefore?: number;
  errAfter?: number;
  seconds: number;
  /** Of which collecting calibration statistics in onnxruntime. */
  statsSeconds: number;
}

export interface RepairReport {
  method: RepairMethod;
  calibSamples: number;
  layers: LayerRepair[];
  skipped: { node: string; reason: string }[];
  seconds: number;
}


/** The float32 elements of a FLOAT tensor (no copy), else undefined. */
export function floatData(t: Tensor | undefined): Float32Array | undefined {
  return t && t.dtype === DataType.FLOAT && t.data instanceof Float32Array ? t.data : undefined;
}

/** Dense output channel of each pruned output channel (groups = 1), matched by the weights (and bias). */
export function matchOutputChannels(wp: Float32Array, fp: LinearForm, bp: Float32Array | undefined, wd: Float32Array, fd: LinearForm, bd: Float32Array | undefined): Int32Array | undefined {
  const cp = fp.outPerGroup;
  const cd = fd.outPerGroup;
  const kern = fp.kernel;
  if (kern !== fd.kernel || fp.groups !== 1 || fd.groups !== 1) return undefined;
  const cinP = fp.k / kern;
  const cinD = fd.k / kern;
  const sliceEq = (o: number, c: number, d: number, cd2: number) => {
    for (let s = 0; s < kern; s++) if (wp[fp.weightIndex(0, o, c * kern + s)] !== wd[fd.weightIndex(0, d, cd2 * kern + s)]) return false;
    return true;
  };
  const rowMatch = (o: number, d: number) => {
    if (bp && bd && bp[o] !== bd[d]) return false;
    let c = 0;
    for (let x = 0; x < cinD && c < cinP; x++) {
      if (cinD - x < cinP - c) return false;
      if (sliceEq(o, c, d, x)) c++;
    }
    return c === cinP;
  };
  const map = new Int32Array(cp);
  let d = 0;
  for (let o = 0; o < cp; o++) {
    while (d < cd && !rowMatch(o, d)) d++;
    if (d >= cd) return undefined;
    map[o] = d++;
  }
  return map;
}

export interface Prepared {
  pair: LayerPair;
  weightName: string;
  /** Per pruned output row: the dense output row (within its group). */
  outMap: Int32Array;
  /** Whether a bias column takes part (existing bias, or one we may add). */
  bias: boolean;
  /**
   * The layer's bias is a constant added right after it (MatMul -> Add(B), as exporters write a Linear layer):
   * the Add node and the input index of the constant. The fit solves for a change of that constant.
   */
  after?: { node: Node; input: number };
}

/**
 * A constant that the only consumer of a bias-less layer's output adds to it along the output's channel (last)
 * axis: an elementwise sum (OpDef.residualJoin) of the layer output and a [C] (or [1, ..., 1, C]) initializer.
 */
function biasAfter(model: Model, node: Node, channels: number): { node: Node; input: number } | undefined {
  const g = model.graph;
  const y = node.outputs[0];
  if (!y || g.outputs.some((o) => o.name === y)) return undefined;
  const users = g.nodes.filter((n) => n.inputs.includes(y));
  if (users.length !== 1) return undefined;
  const a = users[0]!;
  if (!opDef(a)?.residualJoin || a.inputs.length !== 2 || a.inputs[0] === a.inputs[1]) return undefined;
  const input = a.inputs[0] === y ? 1 : 0;
  const t = g.initializers.get(a.inputs[input]!);
  if (!t || t.dtype !== DataType.FLOAT || numel(t.dims) !== channels || t.dims.length === 0 || t.dims[t.dims.length - 1] !== channels) return undefined;
  return { node: a, input };
}

export function prepareLayers(model: Model, dense: Model, opts: Pick<RepairOptions, 'include' | 'keptChannels' | 'weights' | 'skipOutputLayers'> & { select?: (node: Node) => boolean }, skipped: { node: string; reason: string }[]): Prepared[] {
  const g = model.graph;
  const denseByName = new Map<string, Node>();
  for (const n of dense.graph.nodes) if (n.name) denseByName.set(n.name, n);
  const weightUses = new Map<string, number>();
  for (const n of g.nodes) for (const i of n.inputs) if (i) weightUses.set(i, (weightUses.get(i) ?? 0) + 1);
  const out: Prepared[] = [];
  const acts = activations(g);
  for (const node of topoSort(g)) {
    const rule = opDef(node)?.linear;
    if (!rule) continue;
    // a product of two activations (attention's Q K^T, A V) is no layer with a weight: not a skipped layer either
    if (node.inputs[1] !== undefined && acts.has(node.inputs[1])) continue;
    if (opts.include && !opts.include.test(node.name)) continue;
    if (opts.select && !opts.select(node)) continue;
    if (opts.weights && !opts.weights.has(node.inputs[1] ?? '')) continue;
    const skip = (reason: string) => skipped.push({ node: node.name || node.opType, reason });
    if (opts.skipOutputLayers && node.outputs.some((o) => g.outputs.some((v) => v.name === o))) {
      skip('an output layer (LM head): left as it is');
      continue;
    }
    const ctx = linearContext(model, node);
    const form = rule.form(ctx);
    if (typeof form === 'string') {
      skip(form);
      continue;
    }
    const dn = node.name ? denseByName.get(node.name) : undefined;
    if (!dn || dn.opType !== node.opType) {
      skip('no node of that name and type in the dense model');
      continue;
    }
    const denseCtx = linearContext(dense, dn);
    const denseForm = rule.form(denseCtx);
    if (typeof denseForm === 'string') {
      skip(`dense counterpart: ${denseForm}`);
      continue;
    }
    const weightName = node.inputs[1]!;
    // (the dtype only: reading the data would load every weight of a lazily loaded model at once)
    const wpt = g.initializers.get(weightName);
    const wdt = dense.graph.initializers.get(dn.inputs[1]!);
    if (wpt?.dtype !== DataType.FLOAT || wdt?.dtype !== DataType.FLOAT) {
      skip('only float32 weights are repaired');
      continue;
    }
    if ((weightUses.get(weightName) ?? 0) > 1) {
      skip('the weight is shared with other nodes');
      continue;
    }
    if (form.groups !== denseForm.groups || form.kernel !== denseForm.kernel) {
      skip(`the group count or kernel differs from the dense layer (${form.groups} vs ${denseForm.groups} groups)`);
      continue;
    }
    let outMap: Int32Array | undefined;
    if (form.outPerGroup === denseForm.outPerGroup) outMap = Int32Array.from({ length: form.outPerGroup }, (_, i) => i);
    else {
      outMap = opts.keptChannels?.(node.name);
      if (!outMap) {
        const bias = (m: Model, n: Node, f: LinearForm) => (f.bias !== undefined ? floatData(resolveConstant(m, n.inputs[f.bias])) : undefined);
        outMap = matchOutputChannels(floatData(wpt)!, form, bias(model, node, form), floatData(wdt)!, denseForm, bias(dense, dn, denseForm));
      }
      if (!outMap || outMap.length !== form.outPerGroup) {
        skip('cannot tell which dense output channels the layer kept (weights were changed after pruning); pass keptChannels');
        continue;
      }
    }
    // a layer without a bias of its own (MatMul) gets the constant added after it, where there is one
    const after = form.bias === undefined && rule.biasAfter ? biasAfter(model, node, form.groups * form.outPerGroup) : undefined;
    const bias = form.beta !== 0 && (form.bias !== undefined || rule.addBias !== undefined || after !== undefined);
    out.push({ pair: { node, dense: dn, rule, form, denseForm, ctx, denseCtx }, weightName, outMap, bias, ...(after ? { after } : {}) });
  }
  return out;
}

/** The problem of group gi of a layer from its statistics; rows follow the pruned layer's outputs. */
export function groupProblem(p: Prepared, s: LayerStats, gi: number, withCross: boolean): GroupProblem {
  const { form, denseForm } = p.pair;
  const k = form.k;
  const n = k + (p.bias ? 1 : 0);
  const h = new Float64Array(n * n);
  const hs = s.h!;
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) h[i * n + j] = hs[(gi * k + i) * k + j]!;
  if (p.bias) {
    for (let i = 0; i < k; i++) {
      h[i * n + k] = s.sp![gi * k + i]!;
      h[k * n + i] = s.sp![gi * k + i]!;
    }
    h[k * n + k] = s.count;
  }
  const rows = form.outPerGroup;
  const prob: GroupProblem = { k, bias: p.bias, rows, h };
  if (withCross) {
    const cd = denseForm.outPerGroup;
    const c = new Float64Array(n * rows);
    for (let i = 0; i < k; i++) for (let r = 0; r < rows; r++) c[i * rows + r] = s.c![(gi * k + i) * cd + p.outMap[r]!]!;
    if (p.bias) for (let r = 0; r < rows; r++) c[k * rows + r] = s.syd![gi * cd + p.outMap[r]!]!;
    prob.c = c;
  }
  return prob;
}

/**
 * Effective weights (alpha W, beta b) of group gi of `node` (a layer of `model` with linear form `form`) as
 * `rows` x K1 float64, row o read from the layer's output row row(o) of that group.
 */
function effectiveRows(model: Model, node: Node, form: LinearForm, gi: number, rows: number, row: (o: number) => number, withBias: boolean): Float64Array {
  const k = form.k;
  const n = k + (withBias ? 1 : 0);
  const w = floatData(model.graph.initializers.get(node.inputs[1]!))!;
  const b = form.bias !== undefined ? floatData(resolveConstant(model, node.inputs[form.bias])) : undefined;
  const out = new Float64Array(rows * n);
  // in tiles: a MatMul's [K, N] weight is read across its rows (a transpose), which untiled misses the cache
  for (let o0 = 0; o0 < rows; o0 += TILE) {
    const o1 = Math.min(rows, o0 + TILE);
    for (let j0 = 0; j0 < k; j0 += TILE) {
      const j1 = Math.min(k, j0 + TILE);
      for (let o = o0; o < o1; o++) {
        const d = row(o);
        for (let j = j0; j < j1; j++) out[o * n + j] = form.alpha * w[form.weightIndex(gi, d, j)]!;
      }
    }
    if (withBias) for (let o = o0; o < o1; o++) out[o * n + k] = b ? form.beta * b[gi * form.outPerGroup + row(o)]! : 0;
  }
  return out;
}

/** Rows and columns per tile of the loops that move weights between layouts. */
const TILE = 64;

/** Reads group gi's effective weights (alpha W, beta b) as rows x K1 float64. */
export function readGroup(model: Model, p: Prepared, gi: number): Float64Array {
  const { form, node } = p.pair;
  return effectiveRows(model, node, form, gi, form.outPerGroup, (o) => o, p.bias);
}

/** The dense layer's effective weights for group gi, rows mapped to the pruned rows (when shapes allow). */
function denseBase(dense: Model, p: Prepared, gi: number): Float64Array | undefined {
  const { form, denseForm, dense: dn } = p.pair;
  if (form.k !== denseForm.k) return undefined;
  return effectiveRows(dense, dn, denseForm, gi, form.outPerGroup, (o) => p.outMap[o]!, p.bias);
}

/** Writes new effective weights of all groups back (new tensors; adds a bias input when the layer had none). */
export function writeLayer(model: Model, p: Prepared, groups: Float64Array[], out?: { put(t: Tensor): Tensor }): void {
  const g = model.graph;
  const { form, node, rule } = p.pair;
  const k = form.k;
  const n = k + (p.bias ? 1 : 0);
  const wt = g.initializers.get(node.inputs[1]!)!;
  const w = Float32Array.from(wt.data as Float32Array);
  const cout = form.groups * form.outPerGroup;
  let b: Float32Array | undefined;
  const oldBias = form.bias !== undefined ? resolveConstant(model, node.inputs[form.bias]) : undefined;
  if (p.bias) b = oldBias ? Float32Array.from(toFloat32(oldBias)) : new Float32Array(cout);
  groups.forEach((gw, gi) => {
    for (let o0 = 0; o0 < form.outPerGroup; o0 += TILE) {
      const o1 = Math.min(form.outPerGroup, o0 + TILE);
      for (let j0 = 0; j0 < k; j0 += TILE) {
        const j1 = Math.min(k, j0 + TILE);
        for (let o = o0; o < o1; o++) for (let j = j0; j < j1; j++) w[form.weightIndex(gi, o, j)] = gw[o * n + j]! / form.alpha;
      }
    }
    if (b) for (let o = 0; o < form.outPerGroup; o++) b[gi * form.outPerGroup + o] = gw[o * n + k]! / form.beta;
  });
  const nt: Tensor = { dtype: wt.dtype, dims: [...wt.dims], data: w };
  g.initializers.set(node.inputs[1]!, out ? out.put(nt) : nt);
  if (p.after) {
    // the fitted bias is a change of the constant added after the layer (its current value is in the target)
    const { node: a, input } = p.after;
    const name = a.inputs[input]!;
    const old = g.initializers.get(name)!;
    const nb = Float32Array.from(toFloat32(old));
    groups.forEach((gw, gi) => {
      for (let o = 0; o < form.outPerGroup; o++) nb[gi * form.outPerGroup + o]! += gw[o * n + k]!;
    });
    const shared = g.nodes.filter((x) => x.inputs.includes(name)).length > 1 || g.outputs.some((o) => o.name === name);
    const target = shared ? uniqueName(g, `${name}_repaired`) : name;
    g.initializers.set(target, { dtype: DataType.FLOAT, dims: [...old.dims], data: nb });
    a.inputs[input] = target;
    return;
  }
  if (b) {
    const cur = form.bias !== undefined ? node.inputs[form.bias]! : undefined;
    const uses = cur !== undefined ? g.nodes.filter((n) => n.inputs.includes(cur)).length : 0;
    if (cur !== undefined && g.initializers.has(cur) && uses === 1) {
      g.initializers.set(cur, { dtype: DataType.FLOAT, dims: [...oldBias!.dims], data: b });
    } else {
      // no bias yet, or one shared with other nodes or reached through Identity: a private initializer
      const name = uniqueName(g, `${node.inputs[1]}_bias`);
      g.initializers.set(name, { dtype: DataType.FLOAT, dims: oldBias ? [...oldBias.dims] : [cout], data: b });
      const at = form.bias ?? rule.addBias!;
      while (node.inputs.length < at) node.inputs.push('');
      node.inputs[at] = name;
      form.bias = at;
    }
  }
}

function allFinite(a: Float64Array): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return false;
  return true;
}

/** ||W P - Yd||^2 relative to ||Yd||^2 from the statistics: tr(W H W^T) - 2 tr(W C) + ||Yd||^2. Needs qyd. */
function relErr(prob: GroupProblem, w: Float64Array, yy: number): number {
  const n = prob.k + (prob.bias ? 1 : 0);
  let quad = 0;
  let lin = 0;
  for (let r = 0; r < prob.rows; r++) {
    for (let i = 0; i < n; i++) {
      const wi = w[r * n + i]!;
      if (wi === 0) continue;
      let s = 0;
      for (let j = 0; j < n; j++) s += prob.h[i * n + j]! * w[r * n + j]!;
      quad += wi * s;
      lin += wi * prob.c![i * prob.rows + r]!;
    }
  }
  return yy > 0 ? Math.max(0, quad - 2 * lin + yy) / yy : 0;
}

/**
 * The calibration batches, read once, as feeds of `model` (with the model's other inputs fed; a carried state
 * follows the dense model, one sample per call); `rename`: the dense model's data input name where it differs.
 */
export async function calibrationBatches(model: Model, dense: Model, calib: Dataset, batchSize = 128): Promise<{ batches: Record<string, Tensor>[]; samples: number; rename: Record<string, string> }> {
  const plan = planInputs(model, calib.feeds, undefined, calib.inputType);
  const densePlan = planInputs(dense, calib.feeds, 'the dense model', calib.inputType);
  const input = plan.data;
  const data = calib.sampleShape ? calib : calib.forInput(input.type?.shape ?? []);
  checkTokenData(model, data);
  const batches: Record<string, Tensor>[] = [];
  // a model with a fixed batch dimension takes batches of exactly that size (a smaller last batch is left out)
  const fixed = plan.carry.length ? runBatchSize(plan, 1) : batchSizeFor(input, 0);
  const state = new FeedState(densePlan);
  const stateRunner = plan.carry.length ? await createSession(dense) : undefined;
  try {
    for await (const b of data.batches(fixed || batchSize)) {
      if (fixed && b.x.dims[0] !== fixed) continue;
      const feeds = state.feeds(b.x, b.feeds);
      if (stateRunner) state.update(await stateRunner.run(feeds, state.carriedOutputs));
      // the dense model's data input may have another name: the batch holds it under the pruned model's
      const { [densePlan.data.name]: x, ...rest } = feeds;
      batches.push({ ...rest, [input.name]: x! });
    }
  } finally {
    await stateRunner?.release();
  }
  if (batches.length === 0) throw new ShearsError(`the model takes batches of ${fixed} samples: give at least ${fixed} calibration samples`);
  const samples = batches.reduce((a, t) => a + t[input.name]!.dims[0]!, 0);
  const rename = densePlan.data.name !== input.name ? { [densePlan.data.name]: input.name } : {};
  return { batches, samples, rename };
}

/** Repairs `pruned` against `dense` on calibration data; returns a new model (the inputs are not modified). */
export async function repair(dense: Model, pruned: Model, calib: Dataset, opts: RepairOptions): Promise<{ model: Model; report: RepairReport }> {
  const t0 = performance.now();
  const model = cloneModel(pruned);
  const report: RepairReport = { method: opts.method, calibSamples: calib.size, layers: [], skipped: [], seconds: 0 };
  if (opts.method === 'none') return { model, report };
  if (!(['stats', 'lsq', 'obs', 'wanda'] as string[]).includes(opts.method)) throw new ShearsError(`unknown repair method '${opts.method}' (${REPAIR_METHODS.join(', ')})`);
  if (opts.sparsity !== undefined && !(opts.sparsity >= 0 && opts.sparsity < 1)) throw new ShearsError(`sparsity must be in [0, 1), got ${opts.sparsity}`);
  const damp = opts.damp ?? 0.01;
  const layers = prepareLayers(model, dense, opts, report.skipped);
  const masks = getMasks(model);
  const want: StatsWanted = opts.method === 'stats' ? { moments: true } : { hessian: true, cross: true, moments: true };
  let done = 0;
  const { batches, samples, rename } = await calibrationBatches(model, dense, calib, opts.batchSize);
  report.calibSamples = samples;
  const stepper = new Stepper(model, dense, Object.keys(batches[0]!), batches, opts.threads ? { threads: opts.threads } : {}, rename);
  for (const [li, p] of layers.entries()) {
    const t1 = performance.now();
    const { form, node } = p.pair;
    const s = await stepper.step(p.pair, want, layers.slice(li + 1).map((l) => l.pair));
    const entry: LayerRepair = { node: node.name, op: node.opType, k: form.k, rows: form.outPerGroup, groups: form.groups, action: '', seconds: 0, statsSeconds: (performance.now() - t1) / 1000 };
    const groupsOut: Float64Array[] = [];
    const mask = masks.get(p.weightName);
    const newMask = new Uint8Array(numel(model.graph.initializers.get(p.weightName)!.dims)).fill(1);
    let zerosBefore = 0;
    let zerosAfter = 0;
    let errB = 0;
    let errA = 0;
    let yyAll = 0;
    let skipReason: string | undefined;
    for (let gi = 0; gi < form.groups && !skipReason; gi++) {
      const cur = readGroup(model, p, gi);
      const n = form.k + (p.bias ? 1 : 0);
      if (opts.method === 'stats') {
        const cd = p.pair.denseForm.outPerGroup;
        const pick = (a: Float64Array) => Array.from(p.outMap, (d) => a[gi * cd + d]!);
        const sl = (a: Float64Array) => a.subarray(gi * form.outPerGroup, (gi + 1) * form.outPerGroup);
        const r = statsCorrect(cur, form.outPerGroup, n, p.bias ? form.k : undefined, { count: s.count, syp: sl(s.syp!), qyp: sl(s.qyp!), syd: pick(s.syd!), qyd: pick(s.qyd!) }, !opts.meanOnly);
        groupsOut.push(r.w);
        entry.action = opts.meanOnly ? 'mean shift' : 'mean/variance correction';
        continue;
      }
      const prob = groupProblem(p, s, gi, true);
      fixDead(prob);
      if (!allFinite(prob.h) || (prob.c && !allFinite(prob.c))) {
        skipReason = 'the calibration statistics are not finite (activations overflow float32): left as it was';
        break;
      }
      const cd = p.pair.denseForm.outPerGroup;
      let yy = 0;
      for (const d of p.outMap) yy += s.qyd![gi * cd + d]!;
      yyAll += yy;
      const kk = form.k;
      // current keep-mask of this group (stored mask, else nonzero weights)
      const keepCur = new Uint8Array(form.outPerGroup * kk);
      for (let o = 0; o < form.outPerGroup; o++) {
        for (let j = 0; j < kk; j++) {
          const wi = form.weightIndex(gi, o, j);
          const kept = mask ? mask[wi]! : cur[o * n + j] !== 0 ? 1 : 0;
          keepCur[o * kk + j] = kept;
          if (!kept) zerosBefore++;
        }
      }
      errB += relErr(prob, cur, yy) * yy;
      const pruneCount = opts.sparsity !== undefined ? Math.round(opts.sparsity * form.outPerGroup * kk) : form.outPerGroup * kk - keepCur.reduce((a, b) => a + b, 0);
      let rule: MaskRule | undefined;
      if (opts.method === 'lsq') {
        if (mask || pruneCount > 0) rule = { kind: 'fixed', keep: keepCur };
      } else if (opts.keepMask) rule = { kind: 'fixed', keep: keepCur };
      else if (opts.pattern) {
        const channels = kk / form.kernel;
        if (channels % opts.pattern.m !== 0) {
          skipReason = `N:M ${opts.pattern.n}:${opts.pattern.m}: ${channels} input channels per group are not a multiple of ${opts.pattern.m}`;
          break;
        }
        rule = { kind: 'nm', n: opts.pattern.n, m: opts.pattern.m, channels, kernel: form.kernel };
      } else rule = { kind: 'count', prune: pruneCount };
      let w: Float64Array;
      let keep: Uint8Array | undefined;
      try {
        if (opts.method === 'wanda') {
          const base = denseBase(dense, p, gi) ?? cur;
          if (rule!.kind === 'fixed') throw new ShearsError('wanda chooses masks: it cannot keep the given ones');
          ({ w, keep } = wandaPrune(prob, base, rule as Exclude<MaskRule, { kind: 'fixed' }>));
          entry.action = 'wanda masks';
        } else if (opts.method === 'obs') {
          const base = (rule!.kind === 'fixed' ? undefined : denseBase(dense, p, gi)) ?? cur;
          ({ w, keep } = obsPrune(prob, base, rule!, damp, { fitFirst: true }));
          entry.action = rule!.kind === 'fixed' ? 'obs update (masks kept)' : rule!.kind === 'nm' ? `obs ${rule!.n}:${rule!.m}` : 'obs masks + update';
        } else {
          if (rule) {
            ({ w, keep } = obsPrune(prob, cur, rule, damp, { fitFirst: true }));
            entry.action = 'least squares (masks kept: obs update)';
          } else {
            w = leastSquares(prob, cur, damp);
            entry.action = 'least squares';
          }
        }
      } catch (e) {
        if (!(e instanceof Error) || !e.message.includes('positive definite')) throw e;
        skipReason = `${e.message}: left as it was`;
        break;
      }
      if (!allFinite(w)) {
        skipReason = 'the solve gave non-finite weights: left as it was';
        break;
      }
      errA += relErr(prob, w, yy) * yy;
      if (keep) {
        for (let o = 0; o < form.outPerGroup; o++) {
          for (let j = 0; j < kk; j++) {
            if (!keep[o * kk + j]) {
              newMask[form.weightIndex(gi, o, j)] = 0;
              zerosAfter++;
            }
          }
        }
      }
      groupsOut.push(w);
    }
    if (skipReason) {
      report.skipped.push({ node: node.name, reason: skipReason });
    } else {
      writeLayer(model, p, groupsOut);
      if (opts.method !== 'stats') {
        entry.zerosBefore = zerosBefore;
        entry.zerosAfter = zerosAfter;
        entry.errBefore = relMse(errB, yyAll);
        entry.errAfter = relMse(errA, yyAll);
        if (zerosAfter > 0 || mask) updateMasks(model, new Map([[p.weightName, newMask]]));
      }
      entry.seconds = (performance.now() - t1) / 1000;
      report.layers.push(entry);
    }
    done++;
    opts.onProgress?.({ done, total: layers.length, node: node.name, seconds: (performance.now() - t0) / 1000 });
  }
  // Identity nodes that fed a bias now replaced by a private one
  removeDeadNodes(model.graph);
  report.seconds = (performance.now() - t0) / 1000;
  return { model, report };
}
