/** Argument parsers shared by the CLI commands. Each throws a ShearsError (exit code 2) on bad input. */
import { ShearsError } from '../errors.js';
import type { Dim, Model } from '../ir/graph.js';
import { modelInputs, parseInputShapes as parseShapes } from '../analysis/input-shapes.js';

/** Parses `--input-shape` values (see analysis/input-shapes.ts). */
export function parseInputShapes(specs: string[] | undefined, model: Model): Record<string, Dim[]> {
  return parseShapes(specs, model, (problem) => new ShearsError(`--input-shape ${problem}`));
}

/**
 * Input shapes with every dynamic dimension fixed: given ones from `given`, the rest 1 (or `dflt`).
 */
export function staticInputShapes(model: Model, given: Record<string, Dim[]>, dflt = 1): Record<string, Dim[]> {
  const out: Record<string, Dim[]> = {};
  for (const i of modelInputs(model)) {
    const g = given[i.name];
    const shape = g ?? i.type?.shape;
    if (!shape) continue;
    out[i.name] = shape.map((d) => (typeof d === 'number' ? d : dflt));
  }
  return out;
}

export function parseNumber(value: string, what: string, opts: { min?: number; max?: number; integer?: boolean; exclusiveMax?: boolean } = {}): number {
  const v = Number(value);
  if (value.trim() === '' || !Number.isFinite(v)) throw new ShearsError(`${what} must be a number, got '${value}'`);
  if (opts.integer && !Number.isInteger(v)) throw new ShearsError(`${what} must be an integer, got '${value}'`);
  if (opts.min !== undefined && v < opts.min) throw new ShearsError(`${what} must be at least ${opts.min}, got ${value}`);
  if (opts.max !== undefined && (opts.exclusiveMax ? v >= opts.max : v > opts.max)) {
    throw new ShearsError(`${what} must be ${opts.exclusiveMax ? 'below' : 'at most'} ${opts.max}, got ${value}`);
  }
  return v;
}
