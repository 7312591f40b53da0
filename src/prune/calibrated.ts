/**
 * One-shot pruning with calibration data, layer by layer in topological order, each layer on the outputs of
 * the layers pruned before it (repair/stepper.ts: one onnxruntime session per step computes the pruned model
 * from the kept frontier up to the layer's input and the statistics H = X^T X there):
 * - wanda (Sun et al. 2023): score |W_ij| * ||X_j||, the lowest scores of each output row pruned (N:M: in every
 *   group of M consecutive weights along the reduction axis of an output), no weight update;
 * - sparsegpt (Frantar & Alistarh 2023): OBS with the layer Hessian, damping 1% of the mean diagonal, masks chosen
 *   per block of 128 columns (N:M: per group), the error of each pruned weight moved onto the columns after it.
 * Layers that read the same input (q/k/v, gate/up) share one step: their statistics are the same.
 * OWL (Yin et al. 2023) allocates the sparsity per block (a transformer block: attention + MLP) from the
 * fraction of Wanda scores above M times the block mean on the dense model: S_b = S - (D_b - mean D), with D
 * scaled to [0, 2 lambda], so the blocks average S.
 * A layer whose Hessian stays singular after damping (the factorisation retries with 10x more damping, up to
 * 1e11x) or whose statistics are not finite is pruned by magnitude instead, and the report says so; no
 * non-finite weight is written.
 */
import { Emitter } from '../autodiff/emitter.js';
import type { Dataset } from '../data/dataset.js';
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import type { Model, Node } from '../ir/graph.js';
import { opsetVersion } from '../ir/graph.js';
import { cloneModel } from '../ir/clone.js';
import type { Tensor } from '../ir/tensor.js';
import { depthUnits, findResidualBlocks } from './structured/depth.js';
import type { LayerStats, StatsWanted } from '../repair/calib.js';
import { calibrationBatches, groupProblem, prepareLayers, readGroup, writeLayer, type Prepared } from '../repair/repair.js';
import { fixDead, k1, obsPrune, wandaPrune, type GroupProblem, type MaskRule } from '../repair/solve.js';
import { obsPruneOrt, OrtLinalg } from '../repair/ort-linalg.js';
import { Stepper } from '../repair/stepper.js';
import { releaseTensor } from '../ir/lazy.js';
import { createSession } from '../runtime/session.js';
import { updateMasks } from '../sparsity/masks.js';
import type { NMPattern } from '../sparsity/nm.js';

export type CalibratedMethod = 'wanda' | 'sparsegpt';
export const CALIBRATED_METHODS: readonly CalibratedMethod[] = ['wanda', 'sparsegpt'];

export interface OwlOptions {
  /** Outlier threshold: a score above m x the block's mean score is an outlier (default 5). */
  m?: number;
  /** Half-range of the block sparsities around the target (default 0.04, measured; the paper's 0.08 was for LLaMA-7B). */
  lambda?: number;
}

export interface CalibratedOptions {
  method: CalibratedMethod;
  /** Fraction of each layer's weights to prune (with OWL: the average over blocks). */
  sparsity?: number;
  /** N:M along the reduction axis instead of a fraction. */
  pattern?: NMPattern;
  /** The weights (initializer names) to prune; others are left as they are (default: every linear layer's). */
  weights?: ReadonlySet<string>;
  /** Leave the layers whose output is a model output (an LM head) as they are. */
  skipOutputLayers?: boolean;
  /** Store the masks in the model's metadata (default true). */
  storeMasks?: boolean;
  /**
   * Streaming (a model loaded with lazy external data, ir/lazy.ts): each pruned weight goes through `put` as soon
   * as it is computed (a writer that puts it on disk, onnx/io.ts StreamedSave, and returns a lazy tensor to keep
   * in its place), and each layer's dense weights are released once read: memory holds about one onnxruntime
   * step's weights plus the calibration activations, not the model.
   */
  output?: { put(t: Tensor): Tensor };
  owl?: OwlOptions;
  /** sparsegpt: damping, fraction of the mean Hessian diagonal (default 0.01). */
  damp?: number;
  /** sparsegpt: columns per mask block (default 128). */
  blockSize?: number;
  /**
   * sparsegpt: refit each layer to the dense model's output by least squares before pruning (needs the dense
   * model's outputs: a second forward pass per step). Default false (see DEFAULT_FIT_FIRST).
   */
  fitFirst?: boolean;
  batchSize?: number;
  threads?: number;
  onProgress?: (p: { done: number; total: number; node: string; seconds: number }) => void;
}

export interface CalibratedLayer {
  node: string;
  weight: string;
  k: number;
  rows: number;
  /** The sparsity asked of this layer (OWL: its block's). */
  target: number;
  /** Weights zero after pruning, of rows x k. */
  zeros: number;
  seconds: number;
  /** What happened instead of the method (magnitude after a singular Hessian, more damping). */
  note?: string;
}

export interface OwlBlock {
  name: string;
  layers: string[];
  /** Fraction of the block's Wanda scores above m x their mean. */
  outlierRatio: number;
  sparsity: number;
}

export interface CalibratedReport {
  method: CalibratedMethod;
  calibSamples: number;
  layers: CalibratedLayer[];
  skipped: { node: string; reason: string }[];
  owl?: { m: number; lambda: number; blocks: OwlBlock[] };
  /** Onnxruntime steps run (layers reading the same input share one). */
  steps: number;
  seconds: number;
  /** Of which in onnxruntime (forward passes and H accumulation) and in the per-layer solves. */
  statsSeconds: number;
  solveSeconds: number;
}

/** The measured default for sparsegpt's least-squares refit first (see the README's language-model table). */
export const DEFAULT_FIT_FIRST = false;

/**
 * Prunes `model` in place: the layers of `opts.weights` by `opts.method` on calibration data, masks stored.
 * Throws a ShearsError before any work on bad options.
 */
export async function pruneCalibrated(model: Model, calib: Dataset, opts: CalibratedOptions): Promise<CalibratedReport> {
  const t0 = performance.now();
  if ((opts.sparsity === undefined) === (opts.pattern === undefined)) throw new ShearsError('give a sparsity or an N:M pattern');
  if (opts.sparsity !== undefined && !(opts.sparsity >= 0 && opts.sparsity < 1)) throw new ShearsError(`sparsity must be in [0, 1), got ${opts.sparsity}`);
  if (opts.owl && opts.pattern) throw new ShearsError('OWL allocates a sparsity per block: it does not apply to N:M, whose sparsity is fixed');
  if (!CALIBRATED_METHODS.includes(opts.method)) throw new ShearsError(`unknown method '${opts.method}' (${CALIBRATED_METHODS.join(', ')})`);
  const damp = opts.damp ?? 0.01;
  const fitFirst = opts.method === 'sparsegpt' && (opts.fitFirst ?? DEFAULT_FIT_FIRST);
  const report: CalibratedReport = { method: opts.method, calibSamples: 0, layers: [], skipped: [], steps: 0, seconds: 0, statsSeconds: 0, solveSeconds: 0 };
  if (opts.output && fitFirst) throw new ShearsError('streamed pruning does not refit to the dense outputs (--fit-first needs the dense model in memory)');
  // the dense model: for the least-squares target only (the model itself is pruned layer by layer)
  const dense = fitFirst ? cloneModel(model) : model;
  const layers = prepareLayers(model, dense, { ...(opts.weights ? { weights: opts.weights } : {}), ...(opts.skipOutputLayers ? { skipOutputLayers: true } : {}) }, report.skipped);
  if (layers.length === 0) throw new ShearsError(`no layer to prune with ${opts.method}${report.skipped.length ? ` (${report.skipped.map((s) => `${s.node}: ${s.reason}`).slice(0, 3).join('; ')})` : ''}`);
  const { batches, samples } = await calibrationBatches(model, dense, calib, opts.batchSize);
  report.calibSamples = samples;
  const threads = opts.threads ? { threads: opts.threads } : {};
  // per-layer sparsity: uniform, or OWL's per block (from the dense model, before any pruning)
  const target = new Map<Prepared, number>();
  if (opts.owl) {
    const t1 = performance.now();
    const owl = await owlAllocation(model, layers, batches, opts.sparsity!, opts.owl, threads);
    report.statsSeconds += (performance.now() - t1) / 1000;
    report.owl = owl.report;
    for (const p of layers) target.set(p, owl.sparsity.get(p) ?? opts.sparsity!);
  } else for (const p of layers) target.set(p, opts.sparsity ?? 1 - opts.pattern!.n / opts.pattern!.m);
  const stepper = new Stepper(model, dense, Object.keys(batches[0]!), batches, threads);
  // SparseGPT's linear algebra in onnxruntime (float64) above ORT_MIN_K; the factor of a Hessian that several
  // layers share (q/k/v, gate/up) is computed once
  const linalg = opts.method === 'sparsegpt' ? new OrtLinalg(threads) : undefined;
  // by group, the factors of the statistics in `shared` (cleared with it)
  const factors = new Map<number, Promise<Factor | undefined>>();
  try {
    // wanda reads only the diagonal of H (the input norms): O(K) per row of X instead of O(K^2)
    const want: StatsWanted = opts.method === 'wanda' ? { norms: true } : fitFirst ? { hessian: true, cross: true } : { hessian: true };
    // statistics by input: layers reading the same (final) value with the same patches share them
    const shared = new Map<string, LayerStats>();
    for (const [li, p] of layers.entries()) {
      const t1 = performance.now();
      const { node, form } = p.pair;
      const key = fitFirst ? undefined : patchKey(p);
      let s = key !== undefined ? shared.get(key) : undefined;
      if (!s) {
        // layers that share statistics come one after the other (q/k/v, gate/up): only the latest are kept, with
        // their factors (at K = 5632 one Hessian and its factor are 254 MB each)
        shared.clear();
        factors.clear();
        s = await stepper.step(p.pair, want, layers.slice(li + 1).map((l) => l.pair));
        report.steps++;
        if (key !== undefined) shared.set(key, s);
      }
      const t2 = performance.now();
      report.statsSeconds += (t2 - t1) / 1000;
      const sparsity = target.get(p)!;
      const k = form.k;
      const rows = form.outPerGroup;
      const out: Float64Array[] = [];
      const mask = new Uint8Array(form.groups * rows * k).fill(1);
      const notes = new Set<string>();
      let skip: string | undefined;
      for (let gi = 0; gi < form.groups; gi++) {
        let rule: Exclude<MaskRule, { kind: 'fixed' }>;
        if (opts.pattern) {
          const channels = k / form.kernel;
          if (channels % opts.pattern.m !== 0) {
            skip = `N:M ${opts.pattern.n}:${opts.pattern.m}: ${channels} input channels per group are not a multiple of ${opts.pattern.m}`;
            break;
          }
          rule = { kind: 'nm', n: opts.pattern.n, m: opts.pattern.m, channels, kernel: form.kernel };
        } else rule = { kind: 'count', prune: Math.round(sparsity * rows * k) };
        const prob = opts.method === 'wanda' ? normsProblem(p, s, gi) : groupProblem(p, s, gi, fitFirst);
        fixDead(prob);
        const cur = readGroup(model, p, gi);
        let factor: Promise<Factor | undefined> | undefined;
        // (shared statistics only: key is undefined under fitFirst)
        if (linalg && key !== undefined && k1(prob) >= ORT_MIN_K) {
          factor = factors.get(gi) ?? linalg.dampedUpperInverse(prob.h, k1(prob), damp).catch(() => undefined);
          factors.set(gi, factor);
        }
        const r = await solveGroup(opts.method, prob, cur, rule, damp, { fitFirst, ...(opts.blockSize ? { blockSize: opts.blockSize } : {}), ...(linalg ? { linalg } : {}), ...(factor ? { factor: await factor } : {}) });
        if (r.note) notes.add(r.note);
        const n = k + (p.bias ? 1 : 0);
        for (let o = 0; o < rows; o++) {
          for (let j = 0; j < k; j++) {
            if (!r.keep[o * k + j]) {
              mask[form.weightIndex(gi, o, j)] = 0;
              r.w[o * n + j] = 0;
            }
          }
        }
        out.push(r.w);
      }
      if (skip) report.skipped.push({ node: node.name, reason: skip });
      else {
        const old = model.graph.initializers.get(p.weightName);
        writeLayer(model, p, out, opts.output);
        // streaming: the dense weight is released (the pruned one is on disk, held until the step that runs it
        // has it in its session: the stepper releases it then)
        if (opts.output && old) releaseTensor(old);
        if (opts.storeMasks !== false) updateMasks(model, new Map([[p.weightName, mask]]));
        const zeros = mask.reduce((a, v) => a + (v ? 0 : 1), 0);
        report.layers.push({ node: node.name, weight: p.weightName, k, rows: rows * form.groups, target: sparsity, zeros, seconds: (performance.now() - t1) / 1000, ...(notes.size ? { note: [...notes].join('; ') } : {}) });
      }
      report.solveSeconds += (performance.now() - t2) / 1000;
      opts.onProgress?.({ done: li + 1, total: layers.length, node: node.name, seconds: (performance.now() - t0) / 1000 });
    }
  } finally {
    await linalg?.release();
  }
  // streaming: pruned weights no step ran (those before a layer left as it is, such as an LM head) are on disk
  if (opts.output) for (const t of model.graph.initializers.values()) releaseTensor(t);
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

/** Below this many columns the JavaScript OBS is as fast as onnxruntime's (bench/linalg.ts: K = 72, 5 ms vs 8 ms). */
const ORT_MIN_K = 128;

/** U with U^T U = (H + lambda I)^-1 and the damping used (OrtLinalg.dampedUpperInverse). */
type Factor = { u: Float64Array; lambda: number };

/** Wanda's problem: H with only its diagonal (the input columns' sums of squares); wandaPrune reads nothing else. */
function normsProblem(p: Prepared, s: LayerStats, gi: number): GroupProblem {
  const k = p.pair.form.k;
  const n = k + (p.bias ? 1 : 0);
  const h = new Float64Array(n * n);
  for (let j = 0; j < k; j++) h[j * n + j] = s.hd![gi * k + j]!;
  if (p.bias) h[k * n + k] = s.count;
  return { k, bias: p.bias, rows: p.pair.form.outPerGroup, h };
}

/** Layers with the same key read the same patches: the same input value through the same kind of layer. */
function patchKey(p: Prepared): string | undefined {
  const { node, form } = p.pair;
  if (form.groups !== 1 || form.kernel !== 1) return undefined;
  const attrs = [...node.attrs].filter(([k]) => k !== 'alpha' && k !== 'beta' && k !== 'transB').map(([k, a]) => `${k}=${JSON.stringify(a, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`).join(',');
  return `${node.domain}|${node.opType}|${node.inputs[0]}|${form.k}|${p.bias}|${attrs}`;
}

function finite(a: Float64Array): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return false;
  return true;
}

/**
 * One group: the method's weights and keep-mask, or magnitude pruning (same rule) where the statistics are not
 * finite or the Hessian stays singular after damping; `note` says what was done instead.
 */
export async function solveGroup(method: CalibratedMethod, prob: GroupProblem, w0: Float64Array, rule: Exclude<MaskRule, { kind: 'fixed' }>, damp: number, o: { fitFirst?: boolean; blockSize?: number; linalg?: OrtLinalg; factor?: Factor | undefined } = {}): Promise<{ w: Float64Array; keep: Uint8Array; note?: string }> {
  const magnitude = (why: string) => {
    const n = prob.k + (prob.bias ? 1 : 0);
    const eye = new Float64Array(n * n);
    for (let i = 0; i < n; i++) eye[i * n + i] = 1;
    return { ...wandaPrune({ k: prob.k, bias: prob.bias, rows: prob.rows, h: eye }, w0, rule), note: `magnitude instead: ${why}` };
  };
  if (!finite(prob.h)) return magnitude('the calibration statistics are not finite (activations overflow)');
  if (method === 'wanda') return wandaPrune(prob, w0, rule);
  const info: { lambda?: number; mean?: number } = {};
  let r: { w: Float64Array; keep: Uint8Array };
  try {
    const n = k1(prob);
    if (o.linalg && n >= ORT_MIN_K) {
      let mean = 0;
      for (let i = 0; i < n; i++) mean += prob.h[i * n + i]!;
      info.mean = mean / n;
      // N:M over kernel positions permutes H's columns: obsPruneOrt factors the permuted H itself
      const permuted = rule.kind === 'nm' && rule.kernel > 1;
      const f = permuted ? undefined : o.factor ?? (await o.linalg.dampedUpperInverse(prob.h, n, damp));
      if (f) info.lambda = f.lambda;
      r = await obsPruneOrt(prob, w0, rule, damp, { linalg: o.linalg, ...(f ? { hinv: f.u } : {}), ...(o.fitFirst ? { fitFirst: true } : {}), ...(o.blockSize ? { blockSize: o.blockSize } : {}) });
    } else r = obsPrune(prob, w0, rule, damp, { ...o, info });
  } catch (e) {
    if (e instanceof ShearsError || (e as Error).message.includes('positive definite')) return magnitude(`the Hessian stays singular after damping (${(e as Error).message})`);
    throw e;
  }
  if (!finite(r.w)) return magnitude('the OBS update is not finite');
  const asked = Math.max(damp * (info.mean ?? 0), 1e-12 * (info.mean ?? 0));
  if (info.lambda !== undefined && info.mean && info.lambda > asked * 1.5) return { ...r, note: `damping raised to ${(info.lambda / info.mean).toPrecision(2)} of the mean diagonal (the Hessian was singular at ${damp})` };
  return r;
}

// ------------------------------------------------------------------------------------------------------- OWL

/**
 * OWL: per block, the fraction of Wanda scores |W_ij| ||X_j|| (dense model, calibration data) above m x the
 * block's mean score; sparsities S - (D' - mean D') with D' the ratios scaled to [0, 2 lambda]. Layers outside
 * any block (an LM head, a stem) keep S; without blocks each layer is its own.
 */
async function owlAllocation(model: Model, layers: Prepared[], batches: Record<string, Tensor>[], s: number, o: OwlOptions, threads: { threads?: number }): Promise<{ sparsity: Map<Prepared, number>; report: NonNullable<CalibratedReport['owl']> }> {
  const m = o.m ?? 5;
  const lambda = o.lambda ?? 0.04;
  if (!(m > 0)) throw new ShearsError(`OWL's outlier threshold M must be positive, not ${m}`);
  if (!(lambda >= 0)) throw new ShearsError(`OWL's lambda must be non-negative, not ${lambda}`);
  const norms = await inputSquares(model, layers, batches, threads);
  // blocks: the model's transformer blocks (residual attention + MLP), else one per layer
  const blockOf = new Map<Prepared, string>();
  try {
    const first = batches[0]!;
    const shapes: Record<string, number[]> = {};
    for (const i of model.graph.inputs) if (first[i.name]) shapes[i.name] = [1, ...first[i.name]!.dims.slice(1)];
    const branches = new Map(findResidualBlocks(model, shapes).map((b) => [b.join, b.branch]));
    for (const u of depthUnits(model, shapes, 'block')) {
      const nodes = new Set(u.joins.flatMap((j) => branches.get(j) ?? []));
      for (const p of layers) if (nodes.has(p.pair.node.name)) blockOf.set(p, u.name);
    }
  } catch (e) {
    if (!(e instanceof ShearsError)) throw e;
  }
  const groups = new Map<string, Prepared[]>();
  for (const p of layers) {
    const b = blockOf.get(p) ?? (blockOf.size ? undefined : p.pair.node.name);
    if (b === undefined) continue;
    groups.set(b, [...(groups.get(b) ?? []), p]);
  }
  const blocks: OwlBlock[] = [];
  for (const [name, ps] of groups) {
    const scores: Float64Array[] = [];
    let sum = 0;
    let count = 0;
    for (const p of ps) {
      const { form } = p.pair;
      const nrm = norms.get(p)!;
      for (let gi = 0; gi < form.groups; gi++) {
        const w = readGroup(model, p, gi);
        const n = form.k + (p.bias ? 1 : 0);
        const sc = new Float64Array(form.outPerGroup * form.k);
        for (let r = 0; r < form.outPerGroup; r++) {
          for (let j = 0; j < form.k; j++) {
            const v = Math.abs(w[r * n + j]!) * Math.sqrt(Math.max(0, nrm[gi * form.k + j]!));
            sc[r * form.k + j] = v;
            sum += v;
          }
        }
        count += sc.length;
        scores.push(sc);
      }
    }
    const thr = (m * sum) / count;
    let above = 0;
    for (const sc of scores) for (let i = 0; i < sc.length; i++) if (sc[i]! > thr) above++;
    blocks.push({ name, layers: ps.map((p) => p.pair.node.name), outlierRatio: above / count, sparsity: s });
  }
  const ratios = blocks.map((b) => b.outlierRatio);
  const lo = Math.min(...ratios);
  const hi = Math.max(...ratios);
  if (hi > lo) {
    const scaled = ratios.map((r) => ((r - lo) / (hi - lo)) * 2 * lambda);
    const mean = scaled.reduce((a, b) => a + b, 0) / scaled.length;
    blocks.forEach((b, i) => (b.sparsity = Math.min(0.999, Math.max(0, s - (scaled[i]! - mean)))));
  }
  const sparsity = new Map<Prepared, number>();
  for (const b of blocks) for (const p of groups.get(b.name)!) sparsity.set(p, b.sparsity);
  return { sparsity, report: { m, lambda, blocks } };
}

/** Per layer, the sums over the calibration data of each input column's squares ([G, K]), one forward pass. */
async function inputSquares(model: Model, layers: Prepared[], batches: Record<string, Tensor>[], threads: { threads?: number }): Promise<Map<Prepared, Float64Array>> {
  const g = model.graph;
  const taken = new Set<string>([...g.nodes.flatMap((n: Node) => n.outputs), ...g.initializers.keys(), ...g.inputs.map((i) => i.name)]);
  const e = new Emitter(DataType.FLOAT, taken, 'owl/');
  const opset = opsetVersion(model);
  const outOf = new Map<Prepared, string>();
  const byKey = new Map<string, string>();
  for (const p of layers) {
    const key = patchKey(p);
    const have = key !== undefined ? byKey.get(key) : undefined;
    if (have) {
      outOf.set(p, have);
      continue;
    }
    const x = p.pair.rule.patches(p.pair.ctx, p.pair.form, e, p.pair.node.inputs[0]!);
    const sq = e.op('Mul', [x, x]);
    const v = opset >= 13 ? e.op('ReduceSum', [sq, e.constI([2])], { keepdims: 0 }) : e.op('ReduceSum', [sq], { axes: [2], keepdims: 0 });
    outOf.set(p, v);
    if (key !== undefined) byKey.set(key, v);
  }
  const names = [...new Set(outOf.values())];
  const graph = { ...g, nodes: [...g.nodes, ...e.nodes], initializers: new Map([...g.initializers, ...e.initializers]), outputs: names.map((name) => ({ name })), valueInfo: new Map() };
  const runner = await createSession({ ...model, graph }, threads);
  const acc = new Map<string, Float64Array>();
  try {
    for (const b of batches) {
      const res = await runner.run(b, names);
      for (const n of names) {
        const src = res[n]!.data as Float32Array;
        const a = acc.get(n) ?? new Float64Array(src.length);
        for (let i = 0; i < src.length; i++) a[i]! += src[i]!;
        acc.set(n, a);
      }
    }
  } finally {
    await runner.release();
  }
  return new Map([...outOf].map(([p, n]) => [p, acc.get(n)!]));
}
