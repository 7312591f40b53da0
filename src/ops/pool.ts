/**
 * Pooling: MaxPool (with its optional Indices output), AveragePool, LpPool (windows with strides, dilations,
 * pads, auto_pad, ceil_mode) and the global pools. Cost: kernel size flops per output element; global pools
 * one flop per input element.
 */
import { DataType } from '../ir/dtype.js';
import { attrInt, attrInts, type Dim, type TensorType } from '../ir/graph.js';
import type { CostContext, InferContext, OpDef } from './types.js';
import { opError } from './args.js';
import { outElems } from './cost.js';
import { staticProd } from './dims.js';
import { shapeOf, tt } from './shape-rules.js';
import { windowAttrs, windowOut } from './window.js';

function inferPool(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  if (!x) return [undefined, undefined];
  const xs = x.shape;
  const withIndices = (s?: Dim[]) => [tt(x.elemType, s), tt(DataType.INT64, s)];
  if (!xs) return withIndices();
  if (xs.length < 3) opError(ctx, `input must have rank >= 3 (N, C, spatial...), got rank ${xs.length}`);
  const kernel = attrInts(ctx.node, 'kernel_shape');
  if (!kernel) opError(ctx, 'kernel_shape is required');
  if (kernel.length !== xs.length - 2) opError(ctx, `kernel_shape has ${kernel.length} values for ${xs.length - 2} spatial axes`);
  const win = windowAttrs(ctx, xs.slice(2), kernel);
  const ceil = attrInt(ctx.node, 'ceil_mode', 0) !== 0;
  return withIndices([xs[0]!, xs[1]!, ...xs.slice(2).map((n, i) => windowOut(ctx, win, i, n, ceil))]);
}

function poolCost(ctx: CostContext) {
  const k = staticProd(attrInts(ctx.node, 'kernel_shape') ?? []) ?? 0;
  return { macs: 0, flops: k * outElems(ctx) };
}

function inferGlobalPool(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  if (!x?.shape) return [x && tt(x.elemType)];
  if (x.shape.length < 2) opError(ctx, `input must have rank >= 2, got rank ${x.shape.length}`);
  return [tt(x.elemType, [x.shape[0]!, x.shape[1]!, ...x.shape.slice(2).map(() => 1)])];
}

function globalPoolCost(ctx: CostContext) {
  return { macs: 0, flops: staticProd(shapeOf(ctx, 0)) ?? 0 };
}

export const POOL_OPS = {
  MaxPool: { infer: inferPool, cost: poolCost, quant: { kind: 'move' } },
  AveragePool: { infer: (ctx) => inferPool(ctx).slice(0, 1), cost: poolCost, quant: { kind: 'compute' } },
  LpPool: { infer: (ctx) => inferPool(ctx).slice(0, 1), cost: poolCost },
  GlobalAveragePool: { infer: inferGlobalPool, cost: globalPoolCost, quant: { kind: 'compute' } },
  GlobalMaxPool: { infer: inferGlobalPool, cost: globalPoolCost, quant: { kind: 'move' } },
  GlobalLpPool: { infer: inferGlobalPool, cost: globalPoolCost },
} satisfies Record<string, OpDef>;
