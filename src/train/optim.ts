/**
 * Optimizers over Float32Array parameters (per-parameter arithmetic in JS: ~0.3 M parameters take about a
 * millisecond per step, a small part of a training step). Semantics follow PyTorch's SGD and AdamW.
 */
import { ShearsError } from '../errors.js';

export type OptimizerSpec =
  | { kind: 'sgd'; momentum?: number; nesterov?: boolean; weightDecay?: number }
  | { kind: 'adamw'; beta1?: number; beta2?: number; eps?: number; weightDecay?: number };

export interface ParamState {
  name: string;
  value: Float32Array;
  /** 1 = trainable, 0 = pruned (kept at zero), per element; undefined = dense. */
  mask?: Uint8Array;
  /** Whether weight decay applies (not to biases and norm parameters, by default: rank >= 2). */
  decay: boolean;
}

export interface Optimizer {
  /** Applies one update with the given gradients (consumed: may be modified). */
  step(grads: Float32Array[], lr: number, momentum?: number): void;
  /** Optimizer state (momentum buffers etc.) for checkpoints. */
  state(): Record<string, Float32Array[]>;
  load(state: Record<string, Float32Array[]>): void;
  readonly stepCount: number;
}

/** Scales all gradients so their global L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm(grads: Float32Array[], maxNorm: number): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  const norm = Math.sqrt(s);
  if (norm > maxNorm && norm > 0) {
    const f = maxNorm / norm;
    for (const g of grads) for (let i = 0; i < g.length; i++) g[i]! *= f;
  }
  return norm;
}

export function createOptimizer(spec: OptimizerSpec, params: ParamState[]): Optimizer {
  if (spec.kind === 'sgd') return sgd(spec, params);
  if (spec.kind === 'adamw') return adamw(spec, params);
  throw new ShearsError(`unknown optimizer ${(spec as { kind: string }).kind}`);
}

function sgd(spec: Extract<OptimizerSpec, { kind: 'sgd' }>, params: ParamState[]): Optimizer {
  const wd = spec.weightDecay ?? 0;
  const nesterov = spec.nesterov ?? false;
  let bufs = params.map((p) => new Float32Array(p.value.length));
  let count = 0;
  return {
    get stepCount() {
      return count;
    },
    step(grads, lr, momentumOverride) {
      const mom = momentumOverride ?? spec.momentum ?? 0;
      params.forEach((p, k) => {
        const w = p.value;
        const g = grads[k]!;
        const b = bufs[k]!;
        const d = p.decay ? wd : 0;
        const mask = p.mask;
        for (let i = 0; i < w.length; i++) {
          let gi = g[i]! + d * w[i]!;
          if (mom !== 0) {
            const bi = count === 0 ? gi : mom * b[i]! + gi;
            b[i] = bi;
            gi = nesterov ? gi + mom * bi : bi;
          }
          w[i] = w[i]! - lr * gi;
        }
        if (mask) for (let i = 0; i < w.length; i++) if (!mask[i]) w[i] = 0;
      });
      count++;
    },
    state: () => ({ momentum: bufs }),
    load(s) {
      if (s['momentum']) bufs = s['momentum'].map((b) => Float32Array.from(b));
      count = 1;
    },
  };
}

function adamw(spec: Extract<OptimizerSpec, { kind: 'adamw' }>, params: ParamState[]): Optimizer {
  const b1 = spec.beta1 ?? 0.9;
  const b2 = spec.beta2 ?? 0.999;
  const eps = spec.eps ?? 1e-8;
  const wd = spec.weightDecay ?? 0.01;
  let m = params.map((p) => new Float32Array(p.value.length));
  let v = params.map((p) => new Float32Array(p.value.length));
  let count = 0;
  return {
    get stepCount() {
      return count;
    },
    step(grads, lr) {
      count++;
      const c1 = 1 - b1 ** count;
      const c2 = 1 - b2 ** count;
      params.forEach((p, k) => {
        const w = p.value;
        const g = grads[k]!;
        const mk = m[k]!;
        const vk = v[k]!;
        const decay = p.decay ? 1 - lr * wd : 1;
        for (let i = 0; i < w.length; i++) {
          const gi = g[i]!;
          mk[i] = b1 * mk[i]! + (1 - b1) * gi;
          vk[i] = b2 * vk[i]! + (1 - b2) * gi * gi;
          w[i] = w[i]! * decay - (lr * (mk[i]! / c1)) / (Math.sqrt(vk[i]! / c2) + eps);
        }
        if (p.mask) for (let i = 0; i < w.length; i++) if (!p.mask[i]) w[i] = 0;
      });
    },
    state: () => ({ m, v, count: [Float32Array.of(count)] }),
    load(s) {
      if (s['m']) m = s['m'].map((b) => Float32Array.from(b));
      if (s['v']) v = s['v'].map((b) => Float32Array.from(b));
      if (s['count']) count = s['count'][0]![0]!;
    },
  };
}
