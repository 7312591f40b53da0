/** Building blocks of shape rules (OpDef.infer): input shapes, output types, dim checks. */
import type { Dim, TensorType } from '../ir/graph.js';
import { opError, present } from './args.js';
import { isNum } from './dims.js';
import type { InferContext } from './types.js';

/** The shape of input i when its type and rank are known. */
export function shapeOf(ctx: InferContext, i: number): Dim[] | undefined {
  return ctx.input(i)?.shape;
}

export function tt(elemType: number, shape?: Dim[]): TensorType {
  return shape ? { elemType, shape } : { elemType };
}

/** The input's type with another shape (unknown shape when `shape` is undefined). */
export function like(t: TensorType | undefined, shape: Dim[] | undefined): TensorType | undefined {
  return t ? tt(t.elemType, shape) : undefined;
}

/** Checks that two dims can be equal (fixed sizes must match); `what` may be lazy (costly messages). */
export function checkDim(ctx: InferContext, a: Dim | undefined, b: Dim | undefined, what: string | (() => string)): void {
  if (isNum(a) && isNum(b) && a !== b) opError(ctx, `${typeof what === 'string' ? what : what()}: ${a} vs ${b}`);
}

/**
 * Length of a non-constant axes input (Squeeze, Unsqueeze, Reduce*) or shape input (Expand), from its known
 * elements or its static 1-D shape: the output rank follows from it even when the values are unknown.
 */
export function axesCount(ctx: InferContext, i: number): number | undefined {
  if (!present(ctx, i)) return undefined;
  const v = ctx.value(i);
  if (v) return v.length;
  const s = shapeOf(ctx, i);
  return s && s.length === 1 && isNum(s[0]) ? s[0] : undefined;
}
