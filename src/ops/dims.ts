/**
 * Dimension arithmetic over numbers and symbols (a dim is a number, a symbol such as 'N' or 'N*64', or null when
 * unknown): products, sums, differences, floor division, min, equality of shape values, and shapes as text.
 */
import type { Dim } from '../ir/graph.js';

export function isNum(d: Dim | undefined): d is number {
  return typeof d === 'number';
}

/** Product of dims: a number when all are numbers, otherwise a symbolic product (or null). */
export function dimProd(dims: readonly Dim[]): Dim {
  let acc: Dim = 1;
  for (const d of dims) acc = dimMul(acc, d);
  return acc;
}

/** Product of dims when all are fixed, else undefined. */
export function staticProd(dims: readonly Dim[] | undefined): number | undefined {
  if (!dims) return undefined;
  let n = 1;
  for (const d of dims) {
    if (!isNum(d)) return undefined;
    n *= d;
  }
  return n;
}

export function isStatic(shape: readonly Dim[] | undefined): shape is number[] {
  return shape !== undefined && shape.every(isNum);
}

function symText(d: string): string {
  return /^([A-Za-z_][\w.:]*|\d+)$/.test(d) ? d : `(${d})`;
}

export function dimMul(a: Dim, b: Dim): Dim {
  if (isNum(a) && isNum(b)) return a * b;
  if (a === 1) return b;
  if (b === 1) return a;
  if (a === 0 || b === 0) return 0;
  if (a === null || b === null) return null;
  return `${symText(String(a))}*${symText(String(b))}`;
}

export function dimAdd(a: Dim, b: Dim): Dim {
  if (isNum(a) && isNum(b)) return a + b;
  if (a === 0) return b;
  if (b === 0) return a;
  if (a === null || b === null) return null;
  return `${symText(String(a))}+${symText(String(b))}`;
}

export function dimSub(a: Dim, b: Dim): Dim {
  if (isNum(a) && isNum(b)) return a - b;
  if (b === 0) return a;
  if (a === null || b === null) return null;
  if (a === b) return 0;
  return `${symText(String(a))}-${symText(String(b))}`;
}

/** A dim as a product of factors: 'N*64' -> ['N', 64]; numbers and plain symbols are their own factor. */
export function dimFactors(d: Dim): Dim[] {
  if (typeof d !== 'string') return [d];
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of d) {
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    if (ch === '*' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  if (parts.length === 1) return [d];
  return parts.flatMap((p) => {
    const q = p.startsWith('(') && p.endsWith(')') ? p.slice(1, -1) : p;
    return /^\d+$/.test(q) ? [Number(q)] : dimFactors(q);
  });
}

/** Floor division. */
export function dimDiv(a: Dim, b: Dim): Dim {
  if (isNum(a) && isNum(b)) return b === 0 ? null : Math.floor(a / b);
  if (b === 1) return a;
  if (a === b && a !== null) return 1;
  return null;
}

/** Whether a dim or shape value is known to be >= 0: numbers >= 0 and symbols without a minus (a plain symbol is a size). */
export function dimNonNegative(d: Dim): boolean {
  return isNum(d) ? d >= 0 : d !== null && !d.includes('-');
}

/** min(a, b) of two sizes: a number when both are numbers, else the symbol `min(a,b)` (see broadcastDim). */
export function dimMin(a: Dim, b: Dim): Dim {
  if (isNum(a) && isNum(b)) return Math.min(a, b);
  if (a === b) return a;
  if (a === null || b === null) return null;
  return `min(${a},${b})`;
}

/** The arguments of a `min(...)` symbol made by dimMin, else undefined. */
export function minArgs(d: Dim): Dim[] | undefined {
  if (typeof d !== 'string' || !d.startsWith('min(') || !d.endsWith(')')) return undefined;
  const args: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of d.slice(4, -1)) {
    if (ch === '(') depth++;
    else if (ch === ')' && --depth < 0) return undefined; // min(a)*min(b)
    if (ch === ',' && depth === 0) {
      args.push(cur);
      cur = '';
    } else cur += ch;
  }
  args.push(cur);
  return args.map((a) => (/^\d+$/.test(a) ? Number(a) : a));
}

/** Equality of two shape values as 1/0, null when it depends on the symbols (sizes are never negative). */
export function dimEqual(a: Dim, b: Dim): Dim {
  if (isNum(a) && isNum(b)) return a === b ? 1 : 0;
  if (a !== null && a === b) return 1;
  if ((isNum(a) && a < 0 && dimNonNegative(b)) || (isNum(b) && b < 0 && dimNonNegative(a))) return 0;
  return null;
}

/** Elementwise dim arithmetic of shape values (as used in shape subgraphs), with numpy broadcasting. */
export function dimsBinary(a: readonly Dim[], b: readonly Dim[], f: (x: Dim, y: Dim) => Dim): Dim[] | undefined {
  if (a.length !== b.length && a.length !== 1 && b.length !== 1) return undefined;
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) out.push(f(a[a.length === 1 ? 0 : i]!, b[b.length === 1 ? 0 : i]!));
  return out;
}

/** A shape as text: [N,3,?] (null dims as ?). */
export function fmtShape(s: readonly Dim[]): string {
  return `[${s.map((d) => (d === null ? '?' : String(d))).join(',')}]`;
}
