/**
 * Labels and losses: OneHot (indices -> one more axis of size depth at `axis`), NegativeLogLikelihoodLoss and
 * SoftmaxCrossEntropyLoss (input [N, C, d1..dk], target [N, d1..dk]; reduction 'none' keeps the target's shape,
 * 'mean' and 'sum' give a scalar; SoftmaxCrossEntropyLoss's optional log_prob is shaped like the scores).
 * Cost: FLOPs per input element (a softmax for SoftmaxCrossEntropyLoss).
 */
import { attrInt, attrString, type Dim, type TensorType } from '../ir/graph.js';
import { inputInts, normAxis, opError, present } from './args.js';
import { fmtShape, staticProd } from './dims.js';
import { checkDim, shapeOf, tt } from './shape-rules.js';
import type { CostContext, InferContext, OpDef } from './types.js';

function inferOneHot(ctx: InferContext): (TensorType | undefined)[] {
  const values = ctx.input(2);
  if (!values) return [undefined];
  const idx = shapeOf(ctx, 0);
  if (!idx) return [tt(values.elemType)];
  const d = inputInts(ctx, 1) ?? ctx.value(1);
  if (d && d.length !== 1) opError(ctx, `depth must have one element, got ${d.length}`);
  const depth: Dim = d?.[0] ?? null;
  if (typeof depth === 'number' && depth < 1) opError(ctx, `depth ${depth} must be positive`);
  const axis = normAxis(ctx, attrInt(ctx.node, 'axis', -1), idx.length + 1);
  const out = [...idx];
  out.splice(axis, 0, depth);
  return [tt(values.elemType, out)];
}

function reduction(ctx: InferContext): string {
  const r = attrString(ctx.node, 'reduction', 'mean');
  if (r !== 'none' && r !== 'mean' && r !== 'sum') opError(ctx, `reduction '${r}' is not none, mean or sum`);
  return r;
}

/** Checks input [N, C, d...] against target [N, d...] and the class weights [C]; returns the loss type. */
function lossType(ctx: InferContext, what: string): TensorType | undefined {
  const x = ctx.input(0);
  if (!x) return undefined;
  const xs = x.shape, t = shapeOf(ctx, 1), w = present(ctx, 2) ? shapeOf(ctx, 2) : undefined;
  if (xs && xs.length < 2) opError(ctx, `${what} must be at least 2-D [N, C, ...], got ${fmtShape(xs)}`);
  if (xs && t) {
    if (t.length !== xs.length - 1) opError(ctx, `target ${fmtShape(t)} must have the ${what}'s shape ${fmtShape(xs)} without its class axis`);
    t.forEach((d, i) => checkDim(ctx, d, xs[i === 0 ? 0 : i + 1], `target ${fmtShape(t)} does not match ${what} ${fmtShape(xs)}`));
  }
  if (w) {
    if (w.length !== 1) opError(ctx, `weight must be 1-D [C], got ${fmtShape(w)}`);
    if (xs) checkDim(ctx, w[0], xs[1], 'weight size differs from the class count');
  }
  if (reduction(ctx) !== 'none') return tt(x.elemType, []);
  const shape = t ?? (xs ? [xs[0]!, ...xs.slice(2)] : undefined);
  return tt(x.elemType, shape);
}

function lossCost(perElement: number) {
  return (ctx: CostContext) => ({ macs: 0, flops: perElement * (staticProd(shapeOf(ctx, 0)) ?? 0) });
}

export const LOSS_OPS = {
  OneHot: { infer: inferOneHot },
  NegativeLogLikelihoodLoss: { infer: (ctx) => [lossType(ctx, 'input')], cost: lossCost(1) },
  SoftmaxCrossEntropyLoss: {
    infer: (ctx) => [lossType(ctx, 'scores'), ctx.input(0)],
    cost: lossCost(4),
  },
} satisfies Record<string, OpDef>;
