/**
 * Pruning while fine-tuning (prune/iterative.ts): gradual magnitude pruning, lottery-ticket rounds with weight
 * rewinding, or structured pruning in steps towards a MAC target. The schedule is one union, validated and run
 * here for the finetune step and `shears finetune` alike.
 */
import type { Model } from '../ir/graph.js';
import { gradualMagnitudePruning, iterativeStructured, lotteryTicket, type IterativeFinetune, type IterativeResult, type IterativeStage } from '../prune/iterative.js';
import { OptionError, numberType, parseOption } from './options.js';

export type IterativeSchedule =
  | { kind: 'gmp'; sparsity: number; steps?: number }
  | { kind: 'lottery'; sparsity: number; steps?: number; rewindEpoch?: number }
  | { kind: 'macs'; target: number; steps?: number };

/** Pruning steps (rounds) when a schedule gives none. */
export const DEFAULT_PRUNE_STEPS = 3;

const FIELDS = {
  gmp: { sparsity: numberType({ min: 0, max: 0.999, minExclusive: true }), steps: numberType({ min: 1, integer: true }) },
  lottery: { sparsity: numberType({ min: 0, max: 0.999, minExclusive: true }), steps: numberType({ min: 1, integer: true }), rewindEpoch: numberType({ min: 0 }) },
  macs: { target: numberType({ min: 0, max: 1, minExclusive: true, maxExclusive: true }), steps: numberType({ min: 1, integer: true }) },
} as const;
const REQUIRED = { gmp: 'sparsity', lottery: 'sparsity', macs: 'target' } as const;

/** Checks a schedule (from a recipe, or built from flags); `key` names it in errors. */
export function validateSchedule(v: unknown, key: string): IterativeSchedule {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new OptionError(key, 'must be an object { kind: gmp | lottery | macs, ... }');
  const o = v as Record<string, unknown>;
  const kind = o['kind'];
  if (kind !== 'gmp' && kind !== 'lottery' && kind !== 'macs') throw new OptionError(`${key}.kind`, `must be one of gmp, lottery, macs, not ${JSON.stringify(kind)}`);
  const fields: Record<string, (typeof FIELDS)[typeof kind][keyof (typeof FIELDS)[typeof kind]]> = FIELDS[kind];
  const out: Record<string, unknown> = { kind };
  for (const [k, x] of Object.entries(o)) {
    if (k === 'kind') continue;
    const type = fields[k];
    if (!type) throw new OptionError(`${key}.${k}`, `is not a field of a ${kind} schedule (fields: kind, ${Object.keys(fields).join(', ')})`);
    out[k] = parseOption(`${key}.${k}`, type, x, 'json');
  }
  if (out[REQUIRED[kind]] === undefined) throw new OptionError(`${key}.${REQUIRED[kind]}`, `is missing: a ${kind} schedule needs it`);
  return out as IterativeSchedule;
}

/** Runs the schedule on `model` (not modified): `epochs` of fine-tuning after every pruning step. */
export function pruneIteratively(model: Model, schedule: IterativeSchedule, epochs: number, finetune: IterativeFinetune, onStage: (s: IterativeStage) => void): Promise<IterativeResult> {
  const steps = schedule.steps ?? DEFAULT_PRUNE_STEPS;
  switch (schedule.kind) {
    case 'gmp': return gradualMagnitudePruning(model, { finalSparsity: schedule.sparsity, steps, epochsPerStep: epochs, finetune, onStage });
    case 'lottery': return lotteryTicket(model, { finalSparsity: schedule.sparsity, rounds: steps, epochsPerRound: epochs, rewindEpoch: schedule.rewindEpoch ?? 0, finetune, onStage });
    case 'macs': return iterativeStructured(model, { targetMacs: schedule.target, steps, epochsPerStep: epochs, finetune, onStage });
  }
}

/** One line per pruning step. */
export function formatStage(s: IterativeStage): string {
  return `step ${s.step}: target ${s.target.toFixed(4)} achieved ${s.achieved.toFixed(4)}${s.oneShotAcc !== undefined ? ` one-shot ${(s.oneShotAcc * 100).toFixed(2)}%` : ''}${s.acc !== undefined ? ` after fine-tuning ${(s.acc * 100).toFixed(2)}%` : ''}`;
}
