/** Building blocks of shape rules (OpDef.infer): input shapes, output types, dim checks. */
import type { Dim, TensorType } from '../ir/graph.js';
import { opError } from './args.js';
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
