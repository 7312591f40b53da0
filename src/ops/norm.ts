/**
 * Normalisations: BatchNormalization, InstanceNormalization, GroupNormalization (per-channel parameters
 * checked against X's channel axis), LayerNormalization (with its Mean/InvStdDev outputs), RMSNormalization and
 * SimplifiedLayerNormalization, LRN,
 * LpNormalization, MeanVarianceNormalization. Cost: flops per element (BN 2, others ~5-8).
 */
import { DataType } from '../ir/dtype.js';
import { attrInt, type Dim, type TensorType } from '../ir/graph.js';
import type { InferContext, OpDef } from './types.js';
import { nodeAxis } from './args.js';
import { flopsPerOutput } from './cost.js';
import { checkDim, shapeOf, tt } from './shape-rules.js';

/** Checks that 1-D parameter inputs have the channel count `c`. */
function checkChannelParams(ctx: InferContext, inputs: number[], c: Dim | undefined, what = 'channel'): void {
  for (const i of inputs) {
    const s = shapeOf(ctx, i);
    if (!s) continue;
    if (s.length !== 1) continue;
    checkDim(ctx, s[0], c, `input ${i} has length ${String(s[0])}, X has ${String(c)} ${what}s`);
  }
}

function inferBatchNorm(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  const c = x?.shape?.[1];
  checkChannelParams(ctx, [1, 2, 3, 4], c);
  const stat = x ? tt(ctx.input(3)?.elemType ?? x.elemType, c !== undefined ? [c] : undefined) : undefined;
  const outs: (TensorType | undefined)[] = [x];
  for (let i = 1; i < ctx.node.outputs.length; i++) outs.push(stat);
  return outs;
}

function inferInstanceNorm(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  checkChannelParams(ctx, [1, 2], x?.shape?.[1]);
  return [x];
}

function inferGroupNorm(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  const groups = attrInt(ctx.node, 'num_groups', 1);
  // Opset 18 has per-group scale/bias, opset 21 per-channel: accept either length.
  const c = x?.shape?.[1];
  for (const i of [1, 2]) {
    const s = shapeOf(ctx, i);
    if (s?.length === 1 && s[0] !== groups) checkChannelParams(ctx, [i], c);
  }
  return [x];
}

function inferLayerNorm(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  if (!x) return [undefined, undefined, undefined];
  const stash = attrInt(ctx.node, 'stash_type', 1) === 1 ? DataType.FLOAT : x.elemType;
  if (!x.shape) return [x, tt(stash), tt(stash)];
  const axis = nodeAxis(ctx, x.shape.length, -1);
  const stat = tt(stash, x.shape.map((d, i) => (i < axis ? d : 1)));
  return [x, stat, stat];
}

/**
 * RMSNormalization (ONNX opset 23) and SimplifiedLayerNormalization (onnxruntime's default-domain form, what
 * its transformer optimizer writes for RMSNorm): X / sqrt(mean(X^2 over the trailing axes from `axis`) + eps) *
 * scale. Output 1 of SimplifiedLayerNormalization is the inverse standard deviation.
 */
function inferRmsNorm(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  if (!x) return ctx.node.outputs.map(() => undefined);
  const stash = attrInt(ctx.node, 'stash_type', 1) === 1 ? DataType.FLOAT : x.elemType;
  const axis = x.shape ? nodeAxis(ctx, x.shape.length, -1) : -1;
  const stat = tt(stash, x.shape ? x.shape.map((d, i) => (i < axis ? d : 1)) : undefined);
  return ctx.node.outputs.map((_, i) => (i === 0 ? x : stat));
}

export const NORM_OPS = {
  RMSNormalization: { infer: inferRmsNorm, cost: flopsPerOutput(4), paramInputs: [1], featureNorm: true },
  SimplifiedLayerNormalization: { infer: inferRmsNorm, cost: flopsPerOutput(4), paramInputs: [1], featureNorm: true },
  BatchNormalization: { infer: inferBatchNorm, cost: flopsPerOutput(2), paramInputs: [1, 2] },
  InstanceNormalization: { infer: inferInstanceNorm, cost: flopsPerOutput(6), paramInputs: [1, 2] },
  GroupNormalization: { infer: inferGroupNorm, cost: flopsPerOutput(6), paramInputs: [1, 2] },
  LayerNormalization: { infer: inferLayerNorm, cost: flopsPerOutput(6), paramInputs: [1, 2], featureNorm: true },
  LRN: { infer: (ctx) => [ctx.input(0)], cost: flopsPerOutput(8) },
  LpNormalization: { infer: (ctx) => [ctx.input(0)], cost: flopsPerOutput(3) },
  MeanVarianceNormalization: { infer: (ctx) => [ctx.input(0)], cost: flopsPerOutput(5) },
} satisfies Record<string, OpDef>;
