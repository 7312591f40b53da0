/**
 * What structured pruning aims for, as one discriminated union validated here and nowhere else: a fraction of
 * channels to remove (`ratio`), a fraction of the MACs, parameters or measured latency to keep, or a saved plan to
 * replay. The command line's target flags are generated from TARGET_FLAGS.
 */
import type { StructuredPlan } from '../plan/plan.js';
import { OptionError, numberType, parseOption, type OptionType } from './options.js';

export type StructuredTarget =
  | { kind: 'ratio'; value: number }
  | { kind: 'macs'; value: number }
  | { kind: 'params'; value: number }
  | { kind: 'latency'; value: number; batch?: number }
  | { kind: 'plan'; plan: StructuredPlan };

export type TargetKind = StructuredTarget['kind'];

const VALUES = {
  ratio: numberType({ min: 0, max: 1, maxExclusive: true }),
  macs: numberType({ min: 0, max: 1, minExclusive: true }),
  params: numberType({ min: 0, max: 1, minExclusive: true }),
  latency: numberType({ min: 0, max: 1, minExclusive: true }),
} as const;

const BATCH = numberType({ min: 1, integer: true });

/** The command-line flag of each target kind. */
export const TARGET_FLAGS: readonly { kind: TargetKind; flag: string; help: string }[] = [
  { kind: 'ratio', flag: '--ratio <r>', help: 'fraction of channels to remove from each group (or globally with --global)' },
  { kind: 'macs', flag: '--target-macs <f>', help: 'keep this fraction of the MACs (within 2%)' },
  { kind: 'params', flag: '--target-params <f>', help: 'keep this fraction of the parameters (within 2%)' },
  { kind: 'latency', flag: '--target-latency <f>', help: 'keep this fraction of the measured onnxruntime latency' },
  { kind: 'plan', flag: '--plan <file>', help: 'replay a saved plan' },
];

/** The batch of latency measurements, a field of the latency target. */
export const LATENCY_BATCH = { flag: '--batch <n>', help: 'batch size for --target-latency measurements (default 1)', type: BATCH } as const;

/** The value type of a target kind's number (`ratio`: [0, 1); the others (0, 1]). */
export function targetValueType(kind: Exclude<TargetKind, 'plan'>): OptionType<number> {
  return VALUES[kind];
}

const KINDS = ['ratio', 'macs', 'params', 'latency', 'plan'] as const;

/** Checks a target (from a recipe, or built from flags); `key` names it in errors (e.g. 'prune.target'). */
export function validateTarget(v: unknown, key: string): StructuredTarget {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new OptionError(key, `must be an object { kind: ${KINDS.join(' | ')}, ... }`);
  const o = v as Record<string, unknown>;
  const kind = o['kind'];
  if (typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind)) {
    throw new OptionError(`${key}.kind`, `must be one of ${KINDS.join(', ')}, not ${JSON.stringify(kind)}`);
  }
  const allowed = kind === 'plan' ? ['kind', 'plan'] : kind === 'latency' ? ['kind', 'value', 'batch'] : ['kind', 'value'];
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new OptionError(`${key}.${k}`, `is not a field of a ${kind} target (fields: ${allowed.join(', ')})`);
  if (kind === 'plan') return { kind, plan: validatePlan(o['plan'], `${key}.plan`) };
  const k = kind as Exclude<TargetKind, 'plan'>;
  if (o['value'] === undefined) throw new OptionError(`${key}.value`, `is missing: a ${kind} target needs a value`);
  const value = parseOption(`${key}.value`, VALUES[k], o['value'], 'json');
  if (k === 'latency') return o['batch'] === undefined ? { kind: k, value } : { kind: k, value, batch: parseOption(`${key}.batch`, BATCH, o['batch'], 'json') };
  return { kind: k, value };
}

/** A saved plan's outer shape (its channels are checked against the model when it is replayed). */
function validatePlan(v: unknown, key: string): StructuredPlan {
  const p = v as Partial<StructuredPlan> | null;
  if (typeof p !== 'object' || p === null || Array.isArray(p) || p.format !== 'shears.structured-plan' || p.version !== 1 ||
    !Array.isArray(p.removed) || !Array.isArray(p.removedBlocks)) {
    throw new OptionError(key, 'must be a structured plan (format shears.structured-plan, version 1), as --save-plan writes it');
  }
  return p as StructuredPlan;
}

/** The structured pruner's target fields for a target other than a plan or latency (searched separately). */
export function plannerTarget(t: StructuredTarget): { ratio?: number; targetMacs?: number; targetParams?: number } {
  if (t.kind === 'ratio') return { ratio: t.value };
  if (t.kind === 'macs') return { targetMacs: t.value };
  if (t.kind === 'params') return { targetParams: t.value };
  return {};
}
