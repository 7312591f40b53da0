/**
 * Iterative pruning: gradual magnitude pruning (Zhu & Gupta 2017, cubic sparsity schedule), lottery-ticket
 * iterative magnitude pruning with weight rewinding (Frankle et al. 2019), and iterative structured pruning
 * (prune a step, fine-tune, repeat). Each is a loop of the pruning library calls (sparsity/, prune/structured/)
 * and finetune(); masks travel in the model's metadata and stay enforced while training.
 */
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import { numel } from '../ir/tensor.js';
import { getMasks } from '../sparsity/masks.js';
import { pruneUnstructured, type UnstructuredOptions } from '../sparsity/unstructured.js';
import { pruneStructured, type StructuredOptions } from './structured/index.js';
import { cloneModel } from '../ir/clone.js';
import type { EpochStats } from '../train/epoch-stats.js';
import { evaluateAccuracy, finetune, type FinetuneOptions } from '../train/trainer.js';

/** Zhu & Gupta: s_t = s_f + (s_i - s_f) (1 - t/n)^3 for prune step t = 0..n. */
export function cubicSparsity(t: number, n: number, initial: number, final: number): number {
  const p = Math.min(1, Math.max(0, t / n));
  return final + (initial - final) * (1 - p) ** 3;
}

export type IterativeFinetune = Omit<FinetuneOptions, 'epochs' | 'masks' | 'resume' | 'checkpoint' | 'checkpointOnStop' | 'stopAfterEpochs'>;

export interface IterativeStage {
  step: number;
  /** Sparsity (unstructured) or MACs fraction (structured) after this step's pruning. */
  target: number;
  /** Measured: fraction of pruned weights among the masked layers (unstructured) or MACs ratio (structured). */
  achieved: number;
  oneShotAcc?: number;
  acc?: number;
  history: EpochStats[];
  seconds: number;
}

export interface IterativeResult {
  model: Model;
  stages: IterativeStage[];
  seconds: number;
}

function maskedSparsity(model: Model): number {
  let total = 0;
  let pruned = 0;
  for (const m of getMasks(model).values()) {
    total += m.length;
    for (let i = 0; i < m.length; i++) if (!m[i]) pruned++;
  }
  return total ? pruned / total : 0;
}

/** Prunes (in place) to an absolute sparsity over the selected weights, given the pruner's incremental API. */
function pruneTo(model: Model, sparsity: number, opts: Omit<UnstructuredOptions, 'sparsity'>): void {
  const cur = maskedSparsity(model);
  if (sparsity <= cur + 1e-9) return;
  const frac = (sparsity - cur) / (1 - cur);
  pruneUnstructured(model, { ...opts, sparsity: Math.min(frac, 0.999999) });
}

async function stage(model: Model, ft: IterativeFinetune, epochs: number, step: number, target: number, achieved: number, t0: number): Promise<{ model: Model; st: IterativeStage }> {
  const oneShotAcc = ft.val ? await evaluateAccuracy(model, ft.val, ft.threads ? { threads: ft.threads } : {}) : undefined;
  let out = model;
  let history: EpochStats[] = [];
  if (epochs > 0) {
    const r = await finetune(model, { ...ft, epochs });
    out = r.model;
    history = r.history;
  }
  const st: IterativeStage = { step, target, achieved, history, seconds: (performance.now() - t0) / 1000 };
  if (oneShotAcc !== undefined) st.oneShotAcc = oneShotAcc;
  const last = history.at(-1)?.valAcc ?? oneShotAcc;
  if (last !== undefined) st.acc = last;
  return { model: out, st };
}

export interface GmpOptions {
  finalSparsity: number;
  initialSparsity?: number;
  /** Pruning steps (default 5). */
  steps?: number;
  /** Fine-tuning epochs after each pruning step (default 1). */
  epochsPerStep?: number;
  /** Extra epochs after the last step (default 0). */
  finalEpochs?: number;
  prune?: Omit<UnstructuredOptions, 'sparsity'>;
  finetune: IterativeFinetune;
  onStage?: (s: IterativeStage) => void;
}

/** Gradual magnitude pruning: sparsity rises along the cubic schedule, with fine-tuning between steps. */
export async function gradualMagnitudePruning(model: Model, o: GmpOptions): Promise<IterativeResult> {
  const t0 = performance.now();
  const steps = o.steps ?? 5;
  if (!(o.finalSparsity > 0 && o.finalSparsity < 1)) throw new ShearsError('final sparsity must be in (0, 1)');
  let m = cloneModel(model);
  const stages: IterativeStage[] = [];
  for (let t = 1; t <= steps; t++) {
    const target = cubicSparsity(t, steps, o.initialSparsity ?? 0, o.finalSparsity);
    pruneTo(m, target, o.prune ?? {});
    const epochs = (o.epochsPerStep ?? 1) + (t === steps ? o.finalEpochs ?? 0 : 0);
    const { model: next, st } = await stage(m, { ...o.finetune, seed: (o.finetune.seed ?? 0) + t }, epochs, t, target, maskedSparsity(m), t0);
    m = next;
    stages.push(st);
    o.onStage?.(st);
  }
  return { model: m, stages, seconds: (performance.now() - t0) / 1000 };
}

export interface LotteryOptions {
  finalSparsity: number;
  /** Prune-retrain rounds (default 3); each prunes 1 - (1 - s_f)^(1/rounds) of the remaining weights. */
  rounds?: number;
  /** Training epochs per round (default 1). */
  epochsPerRound?: number;
  /**
   * Rewind point in epochs of the first run (default 0: the starting weights). Weights are reset to their
   * value at this point after each pruning step, and training resumes from there.
   */
  rewindEpoch?: number;
  prune?: Omit<UnstructuredOptions, 'sparsity'>;
  finetune: IterativeFinetune;
  onStage?: (s: IterativeStage) => void;
}

/** Lottery-ticket iterative magnitude pruning with weight rewinding. */
export async function lotteryTicket(model: Model, o: LotteryOptions): Promise<IterativeResult> {
  const t0 = performance.now();
  const rounds = o.rounds ?? 3;
  const epochs = o.epochsPerRound ?? 1;
  const rewind = o.rewindEpoch ?? 0;
  if (rewind >= epochs) throw new ShearsError('the rewind epoch must come before the end of a round');
  let m = cloneModel(model);
  let snapshot = m;
  const stages: IterativeStage[] = [];
  if (rewind > 0) {
    snapshot = (await finetune(m, { ...o.finetune, epochs: rewind })).model;
    m = snapshot;
  }
  // Each round trains from the rewind point for (epochs - rewind) epochs.
  let trained = (await finetune(m, { ...o.finetune, epochs: epochs - rewind })).model;
  for (let k = 1; k <= rounds; k++) {
    const target = 1 - (1 - o.finalSparsity) ** (k / rounds);
    pruneTo(trained, target, o.prune ?? {});
    // Rewind: the surviving weights take their values at the rewind point; the masks stay.
    const rewound = cloneModel(trained);
    const masks = getMasks(trained);
    for (const [k2, t] of snapshot.graph.initializers) {
      const cur = rewound.graph.initializers.get(k2);
      if (!cur || numel(cur.dims) !== numel(t.dims)) continue;
      const mask = masks.get(k2);
      if (!mask) {
        rewound.graph.initializers.set(k2, t);
        continue;
      }
      const d = Float32Array.from(t.data as Float32Array);
      for (let i = 0; i < d.length; i++) if (!mask[i]) d[i] = 0;
      rewound.graph.initializers.set(k2, { ...t, data: d });
    }
    const { model: next, st } = await stage(rewound, { ...o.finetune, seed: (o.finetune.seed ?? 0) + k }, epochs - rewind, k, target, maskedSparsity(rewound), t0);
    trained = next;
    stages.push(st);
    o.onStage?.(st);
  }
  return { model: trained, stages, seconds: (performance.now() - t0) / 1000 };
}

export interface IterativeStructuredOptions {
  /** Final fraction of MACs to keep. */
  targetMacs: number;
  steps?: number;
  epochsPerStep?: number;
  finalEpochs?: number;
  prune?: Omit<StructuredOptions, 'targetMacs' | 'ratio' | 'targetParams' | 'plan'>;
  finetune: IterativeFinetune;
  onStage?: (s: IterativeStage) => void;
}

/** Iterative structured pruning: MACs fall geometrically to the target over the steps, fine-tuning in between. */
export async function iterativeStructured(model: Model, o: IterativeStructuredOptions): Promise<IterativeResult> {
  const t0 = performance.now();
  const steps = o.steps ?? 3;
  if (!(o.targetMacs > 0 && o.targetMacs < 1)) throw new ShearsError('target MACs must be a fraction in (0, 1)');
  let m = model;
  let kept = 1;
  const stages: IterativeStage[] = [];
  for (let t = 1; t <= steps; t++) {
    const target = o.targetMacs ** (t / steps);
    // The pruner measures MACs against the model it gets: ask for the step's share of what is left.
    const r = pruneStructured(m, { ...(o.prune ?? {}), targetMacs: target / kept });
    kept *= r.report.macsRatio;
    const epochs = (o.epochsPerStep ?? 1) + (t === steps ? o.finalEpochs ?? 0 : 0);
    const { model: next, st } = await stage(r.model, { ...o.finetune, seed: (o.finetune.seed ?? 0) + t }, epochs, t, target, kept, t0);
    m = next;
    stages.push(st);
    o.onStage?.(st);
  }
  return { model: m, stages, seconds: (performance.now() - t0) / 1000 };
}
