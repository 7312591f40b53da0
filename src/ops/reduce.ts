/**
 * Reductions: Reduce* (axes as attribute before opset 13/18, as input after; keepdims; noop_with_empty_axes),
 * ArgMax/ArgMin, TopK. Cost: one flop per input element (two for L2/SumSquare/LogSumExp).
 */
import { DataType } from '../ir/dtype.js';
import { attrInt, type Dim, type TensorType } from '../ir/graph.js';
import type { CostContext, InferContext, OpDef } from './types.js';
import { inputInts, nodeAxis, opError, present, reduceAxes } from './args.js';
import { isNum, staticProd } from './dims.js';
import { axesCount, shapeOf, tt } from './shape-rules.js';

function reducedShape(x: readonly Dim[], axes: readonly number[], keep: boolean): Dim[] {
  return keep ? x.map((d, i) => (axes.includes(i) ? 1 : d)) : x.filter((_, i) => !axes.includes(i));
}

function inferReduce(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  if (!x?.shape) return [x && tt(x.elemType)];
  const keep = attrInt(ctx.node, 'keepdims', 1) !== 0;
  const axes = reduceAxes(ctx, x.shape.length);
  if (axes === 'axes') {
    if (keep) return [tt(x.elemType, x.shape.map(() => null))];
    // Non-constant axes of a known count k: rank - k axes remain (none for k = 0, unless that is a no-op).
    const k = axesCount(ctx, 1);
    if (k === undefined || k > x.shape.length) return [tt(x.elemType)];
    if (k === 0) return [tt(x.elemType, attrInt(ctx.node, 'noop_with_empty_axes', 0) ? x.shape : [])];
    return [tt(x.elemType, x.shape.slice(k).map(() => null))];
  }
  // (no axes with noop_with_empty_axes: the input's shape)
  return [tt(x.elemType, reducedShape(x.shape, axes, keep))];
}

function reduceCost(perElement: number) {
  return (ctx: CostContext) => ({ macs: 0, flops: perElement * (staticProd(shapeOf(ctx, 0)) ?? 0) });
}

function inferArg(ctx: InferContext): (TensorType | undefined)[] {
  const s = shapeOf(ctx, 0);
  if (!s) return [tt(DataType.INT64)];
  const axis = nodeAxis(ctx, s.length);
  return [tt(DataType.INT64, reducedShape(s, [axis], attrInt(ctx.node, 'keepdims', 1) !== 0))];
}

function inferTopK(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  if (!x) return [undefined, tt(DataType.INT64)];
  if (!x.shape) return [tt(x.elemType), tt(DataType.INT64)];
  const axis = nodeAxis(ctx, x.shape.length, -1);
  let k: Dim = null;
  if (ctx.opset < 10) k = attrInt(ctx.node, 'k', 0);
  else if (present(ctx, 1)) k = inputInts(ctx, 1)?.[0] ?? ctx.value(1)?.[0] ?? null;
  if (isNum(k) && isNum(x.shape[axis]) && k > x.shape[axis]) opError(ctx, `k ${k} exceeds the axis size ${x.shape[axis]}`);
  const s = [...x.shape];
  s[axis] = k;
  return [tt(x.elemType, s), tt(DataType.INT64, s)];
}

const reduce = (perElement = 1): OpDef => ({ infer: inferReduce, cost: reduceCost(perElement) });

export const REDUCE_OPS = {
  ReduceMean: reduce(),
  ReduceSum: reduce(),
  ReduceMax: reduce(),
  ReduceMin: reduce(),
  ReduceProd: reduce(),
  ReduceL1: reduce(),
  ReduceL2: reduce(2),
  ReduceSumSquare: reduce(2),
  ReduceLogSum: reduce(),
  ReduceLogSumExp: reduce(2),
  ArgMax: { infer: inferArg, cost: reduceCost(1) },
  ArgMin: { infer: inferArg, cost: reduceCost(1) },
  TopK: { infer: inferTopK, cost: reduceCost(1) },
} satisfies Record<string, OpDef>;
