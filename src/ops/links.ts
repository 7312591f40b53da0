/** Small constructors shared by the channel rules (ops/channels.ts and the op families with their own rules). */
import type { AxisRef } from './types.js';

/** Axis `axis` of input `index`. */
export const IN = (index: number, axis: number): AxisRef => ({ io: 'in', index, axis });
/** Axis `axis` of output `index`. */
export const OUT = (index: number, axis: number): AxisRef => ({ io: 'out', index, axis });

/** An index map of length n (ChannelLink.map): element j -> f(j). */
export function mapOf(n: number, f: (j: number) => number): Int32Array {
  const m = new Int32Array(n);
  for (let j = 0; j < n; j++) m[j] = f(j);
  return m;
}
