/** Input shapes given by name (`NAME=1x3x224x224`), as the commands and recipes spell them. */
import type { Dim, Model } from '../ir/graph.js';
import { modelInputs } from '../data/feeds.js';

export { modelInputs };

/**
 * Parses input shape specs: `NAME=1x3x224x224`, or `1x3x224x224` when the model has one input. A dimension may
 * be a number or a symbol name (kept symbolic). `fail` makes the error for a problem (its text follows the name
 * of the option, e.g. "'1x3' needs NAME=DIMS ...").
 */
export function parseInputShapes(specs: readonly string[] | undefined, model: Model, fail: (problem: string) => Error): Record<string, Dim[]> {
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
      if (inputs.length !== 1) throw fail(`'${spec}' needs NAME=DIMS: the model has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')})`);
      name = inputs[0]!.name;
      dims = spec;
    }
    if (!inputs.some((i) => i.name === name)) throw fail(`names '${name}', but the model has no input '${name}' (inputs: ${inputs.map((i) => i.name).join(', ')})`);
    const parts = dims.split(/[x,]/);
    if (dims === '' || parts.some((p) => p === '')) throw fail(`'${spec}': expected dimensions like 1x3x224x224`);
    out[name] = parts.map((p) => {
      if (/^\d+$/.test(p)) {
        const v = Number(p);
        if (v < 1 || v > 2 ** 31 - 1) throw fail(`'${spec}': dimension ${p} is out of range`);
        return v;
      }
      if (/^[A-Za-z_][\w]*$/.test(p)) return p;
      throw fail(`'${spec}': '${p}' is not a dimension`);
    });
  }
  return out;
}

/**
 * Parses pinned input values: `NAME=V` or `NAME=V1,V2,...` (numbers). The input must exist; whether the values
 * fit its type and shape is checked when they are pinned (simplify.ts pinInputValues).
 */
export function parseInputValues(specs: readonly string[] | undefined, model: Model, fail: (problem: string) => Error): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  if (!specs) return out;
  const inputs = modelInputs(model);
  for (const spec of specs) {
    const eq = spec.lastIndexOf('=');
    if (eq <= 0) throw fail(`'${spec}' needs NAME=VALUE (inputs: ${inputs.map((i) => i.name).join(', ')})`);
    const name = spec.slice(0, eq);
    if (!inputs.some((i) => i.name === name)) throw fail(`names '${name}', but the model has no input '${name}' (inputs: ${inputs.map((i) => i.name).join(', ')})`);
    const parts = spec.slice(eq + 1).split(',');
    const vals = parts.map((p) => (p.trim() === '' ? NaN : Number(p)));
    if (vals.some((v) => !Number.isFinite(v))) throw fail(`'${spec}': expected numbers like ${name}=16000 or ${name}=1,2,3`);
    out[name] = vals;
  }
  return out;
}
