/** Numpy-style multidirectional broadcasting of shapes with symbolic dims; errors name the node. */
import type { Dim, Node } from '../ir/graph.js';
import { opError } from './args.js';
import { fmtShape, isNum, minArgs } from './dims.js';

/**
 * Whether broadcasting `a` with `m` = min(a, k...) (all k >= 1) gives `a`: m <= a, so either m = a, or m < a and
 * then m must be 1 (a = 1 would need m = 0 < 1 <= k). E.g. x[:T] of a [256, d] cache broadcast with [.., T, d].
 */
function isMinOf(a: Dim, m: Dim): boolean {
  const args = minArgs(m);
  if (a === null || !args?.includes(a)) return false;
  return args.every((k) => k === a || (isNum(k) && k >= 1));
}

/** Broadcasts two dims; throws (message only) when two fixed sizes differ and neither is 1. */
function broadcastDim(a: Dim, b: Dim): Dim {
  if (a === b) return a;
  if (a === 1) return b;
  if (b === 1) return a;
  if (isNum(a) && isNum(b)) throw new Error(`cannot broadcast ${a} with ${b}`);
  if (isNum(a)) return a;
  if (isNum(b)) return b;
  if (isMinOf(a, b)) return a;
  if (isMinOf(b, a)) return b;
  return null;
}

/** Numpy-style multidirectional broadcasting of several shapes; errors name the node. */
export function broadcastShapes(ctx: { readonly node: Node }, shapes: readonly (readonly Dim[])[]): Dim[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: Dim[] = new Array<Dim>(rank).fill(1);
  for (const s of shapes) {
    const off = rank - s.length;
    for (let i = 0; i < s.length; i++) {
      try {
        out[off + i] = broadcastDim(out[off + i]!, s[i]!);
      } catch {
        opError(ctx, `input shapes ${shapes.map(fmtShape).join(' and ')} do not broadcast`);
      }
    }
  }
  return out;
}
