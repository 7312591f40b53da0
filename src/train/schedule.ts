/** Learning-rate (and momentum) schedules, as pure functions of the step. */
import { ShearsError } from '../errors.js';

export type ScheduleSpec =
  | { kind: 'constant' }
  | { kind: 'cosine'; /** Final lr as a fraction of the base lr (default 0). */ minFactor?: number; warmupSteps?: number }
  | { kind: 'onecycle'; pctStart?: number; divFactor?: number; finalDivFactor?: number; /** Cycle momentum 0.95 -> 0.85 -> 0.95 like PyTorch's OneCycleLR (default true). */ cycleMomentum?: boolean; baseMomentum?: number; maxMomentum?: number }
  | { kind: 'step'; /** Multiply by gamma every `every` steps. */ every: number; gamma?: number };

export interface ScheduleValue {
  lr: number;
  /** Momentum override (one-cycle), when the schedule cycles momentum. */
  momentum?: number;
}

/** lr (and momentum) at step t of totalSteps, for base (peak, for one-cycle) learning rate baseLr. */
export function scheduleAt(spec: ScheduleSpec, baseLr: number, t: number, totalSteps: number): ScheduleValue {
  switch (spec.kind) {
    case 'constant':
      return { lr: baseLr };
    case 'cosine': {
      const w = spec.warmupSteps ?? 0;
      if (t < w) return { lr: (baseLr * (t + 1)) / w };
      const min = baseLr * (spec.minFactor ?? 0);
      const p = Math.min(1, (t - w) / Math.max(1, totalSteps - w));
      return { lr: min + (baseLr - min) * 0.5 * (1 + Math.cos(Math.PI * p)) };
    }
    case 'onecycle': {
      // PyTorch OneCycleLR (two phases, cosine annealing).
      const pct = spec.pctStart ?? 0.3;
      const initial = baseLr / (spec.divFactor ?? 25);
      const final = initial / (spec.finalDivFactor ?? 1e4);
      const up = pct * totalSteps - 1;
      const down = totalSteps - 1;
      const cos = (start: number, end: number, p: number) => end + ((start - end) / 2) * (Math.cos(Math.PI * p) + 1);
      const bm = spec.baseMomentum ?? 0.85;
      const mm = spec.maxMomentum ?? 0.95;
      let lr: number;
      let mom: number;
      if (t <= up) {
        const p = up > 0 ? t / up : 1;
        lr = cos(initial, baseLr, p);
        mom = cos(mm, bm, p);
      } else {
        const p = (t - up) / Math.max(1e-9, down - up);
        lr = cos(baseLr, final, Math.min(1, p));
        mom = cos(bm, mm, Math.min(1, p));
      }
      return spec.cycleMomentum === false ? { lr } : { lr, momentum: mom };
    }
    case 'step':
      if (!(spec.every > 0)) throw new ShearsError('step schedule needs every > 0');
      return { lr: baseLr * (spec.gamma ?? 0.1) ** Math.floor(t / spec.every) };
  }
}

export function parseSchedule(s: string): ScheduleSpec {
  const [kind, arg] = s.split(':');
  switch (kind) {
    case 'constant': return { kind: 'constant' };
    case 'cosine': {
      if (arg === undefined) return { kind: 'cosine' };
      const w = Number(arg);
      if (!(Number.isInteger(w) && w >= 0)) throw new ShearsError(`schedule 'cosine:W' needs W >= 0 warmup steps (got '${s}')`);
      return { kind: 'cosine', warmupSteps: w };
    }
    case 'onecycle': return { kind: 'onecycle' };
    case 'step': {
      const every = Number(arg);
      if (!(every > 0)) throw new ShearsError(`schedule 'step:N' needs N > 0 steps (got '${s}')`);
      return { kind: 'step', every };
    }
    default: throw new ShearsError(`unknown schedule '${s}' (constant, cosine, cosine:W (W warmup steps), onecycle, step:N)`);
  }
}
