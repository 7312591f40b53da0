/**
 * Gradients of the RMS norms: RMSNormalization (ONNX opset 23) and SimplifiedLayerNormalization (onnxruntime's
 * default-domain RMSNorm). y = x * r * scale with r = 1 / sqrt(mean(x^2 over the axes from `axis`) + epsilon):
 * dx = r * (g*scale - xhat * mean(g*scale * xhat)) with xhat = x * r, dscale = g * xhat summed over the axes
 * scale broadcasts along. r is recomputed in the graph's float type (the forward's inv_std_var output is float32
 * by stash_type, whatever the data type).
 */
import { ShearsError } from '../../errors.js';
import { attrFloat } from '../../ir/graph.js';
import { numel } from '../../ir/tensor.js';
import { nodeAxis } from '../args.js';
import type { GradRule } from '../types.js';
import { reduceSum, scale, unbroadcast } from './helpers.js';

export const rmsNormGrad: GradRule = (ctx) => {
  if (ctx.node.outputs[1] && ctx.gradOut(1)) {
    throw new ShearsError(`${ctx.node.opType} gradient: the loss depends on its inv_std_var output, which shears does not differentiate`, { node: ctx.node.name });
  }
  const g = ctx.gradOut(0);
  if (!g) return [];
  const { e, node } = ctx;
  const x = ctx.input(0);
  const xShape = ctx.shape(x);
  const rank = xShape.length;
  const axis = nodeAxis(ctx, rank, -1);
  const normAx = Array.from({ length: rank - axis }, (_, i) => axis + i);
  const d = numel(normAx.map((a) => xShape[a]!));
  const meanOver = (t: string) => scale(e, reduceSum(e, t, normAx, true), 1 / d);
  const ms = meanOver(e.op('Mul', [x, x]));
  const r = e.op('Reciprocal', [e.op('Sqrt', [e.op('Add', [ms, e.constF(attrFloat(node, 'epsilon', 1e-5))])])]);
  const xhat = e.op('Mul', [x, r]);
  const gamma = ctx.input(1);
  const out: (string | undefined)[] = [];
  if (ctx.needs(0)) {
    const gg = e.op('Mul', [g, gamma]);
    out[0] = e.op('Mul', [r, e.op('Sub', [gg, e.op('Mul', [xhat, meanOver(e.op('Mul', [gg, xhat]))])])]);
  }
  if (ctx.needs(1)) out[1] = unbroadcast(e, e.op('Mul', [g, xhat]), xShape, ctx.shape(gamma));
  return out;
};
