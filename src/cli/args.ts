/** Argument parsers shared by the CLI commands. Each throws a ShearsError (exit code 2) on bad input. */
import { ShearsError } from '../errors.js';
import type { Dim, Model } from '../ir/graph.js';

/**
 * Parses `--input-shape` values: `NAME=1x3x224x224`, or `1x3x224x224` when the model has one input.
 * A dimension may be a number or a symbol name (kept symbolic).
 */
export function parseInputShapes(specs: string[] | undefined, model: Model): Record<string, Dim[]> {
  const out: Record<string, Dim[]> = {};
  if (!specs) return out;
  const inputs = modelInputs(model);
  for (const spec of specs) {
    const eq = spec.lastIndexOf('=');
    let name: string;
    let dims: string;
    if (eq >= 0) {
      name = spec.slice(0, eq);
      dims = spec.slice(eq + 1);
    } else {
      if (inputs.length !== 1) throw new ShearsError(`--input-shape '${spec}' needs NAME=DIMS: the model has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')})`);
      name = inputs[0]!.name;
      dims = spec;
    }
    if (!inputs.some((i) => i.name === name)) throw new ShearsError(`--input-shape: the model has no input '${name}' (inputs: ${inputs.map((i) => i.name).join(', ')})`);
    const parts = dims.split(/[x,]/);
    if (dims === '' || parts.some((p) => p === '')) throw new ShearsError(`--input-shape '${spec}': expected dimensions like 1x3x224x224`);
    out[name] = parts.map((p) => {
      if (/^\d+$/.test(p)) {
        const v = Number(p);
        if (v < 1 || v > 2 ** 31 - 1) throw new ShearsError(`--input-shape '${spec}': dimension ${p} is out of range`);
        return v;
      }
      if (/^[A-Za-z_][\w]*$/.test(p)) return p;
      throw new ShearsError(`--input-shape '${spec}': '${p}' is not a dimension`);
    });
  }
  return out;
}

/** Graph inputs that are real inputs (not initializers listed as inputs, as old exporters did). */
export function modelInputs(model: Model) {
  return model.graph.inputs.filter((i) => !model.graph.initializers.has(i.name));
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

export function parseRegex(value: string, what: string): RegExp {
  try {
    return new RegExp(value);
  } catch (e) {
    throw new ShearsError(`${what}: invalid regular expression '${value}' (${(e as Error).message})`);
  }
}
