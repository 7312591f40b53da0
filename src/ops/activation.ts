/**
 * Activations: shape-preserving elementwise nonlinearities (flops per element approximate the arithmetic),
 * PRelu (slope broadcast to X), and the softmax family (normalising along one axis).
 */
import { inferSame } from './elementwise.js';
import type { InferContext, OpDef } from './types.js';
import { opError, softmaxAxis } from './args.js';
import { broadcastShapes } from './broadcast.js';
import { flopsPerOutput } from './cost.js';
import { fmtShape, staticProd } from './dims.js';
import { checkDim } from './shape-rules.js';

function act(flops: number): OpDef {
  return { infer: inferSame, cost: flopsPerOutput(flops), activation: true };
}

/** Softmax-like ops: axis must exist; default axis -1 from opset 13, 1 before (on the coerced 2-D view). */
function inferSoftmax(ctx: InferContext) {
  const x = ctx.input(0);
  if (x?.shape) softmaxAxis(ctx, x.shape.length);
  return [x];
}

function inferPRelu(ctx: InferContext) {
  const x = ctx.input(0);
  const s = ctx.input(1)?.shape;
  if (ctx.opset < 7 && x?.shape && s) {
    // PRelu-6 (no numpy broadcasting yet): a slope of one element is shared, a 1-D slope of C elements is per
    // channel (axis 1), as PyTorch 0.3 exported nn.PReLU(num_parameters=C).
    const n = staticProd(s);
    if (n === 1) return [x];
    if (s.length === 1 && x.shape.length >= 2) {
      checkDim(ctx, s[0], x.shape[1], `slope ${fmtShape(s)} is neither shared (1 element) nor per channel of X ${fmtShape(x.shape)}`);
      return [x];
    }
  }
  if (x?.shape && s) {
    const b = broadcastShapes(ctx, [x.shape, s]);
    if (b.length !== x.shape.length) opError(ctx, `slope ${fmtShape(s)} does not broadcast to X ${fmtShape(x.shape)}`);
    b.forEach((d, i) => checkDim(ctx, d, x.shape![i], 'slope does not broadcast to X'));
  }
  return [x];
}

export const ACTIVATION_OPS = {
  Relu: { ...act(1), quant: { kind: 'clamp' } },
  LeakyRelu: { ...act(2), quant: { kind: 'compute' } },
  PRelu: { infer: inferPRelu, cost: flopsPerOutput(2), paramInputs: [1], activation: true },
  ThresholdedRelu: act(1),
  Sigmoid: { ...act(4), quant: { kind: 'compute' } },
  HardSigmoid: act(3),
  HardSwish: act(4),
  Tanh: act(4),
  Elu: act(4),
  Selu: act(5),
  Celu: act(5),
  Softplus: act(3),
  Softsign: act(3),
  Mish: act(8),
  Gelu: act(8),
  Clip: { ...act(2), quant: { kind: 'clamp' } },
  Shrink: act(2),
  Softmax: { infer: inferSoftmax, cost: flopsPerOutput(5), distributionAxis: softmaxAxis },
  LogSoftmax: { infer: inferSoftmax, cost: flopsPerOutput(6), distributionAxis: softmaxAxis },
  Hardmax: { infer: inferSoftmax, cost: flopsPerOutput(2) },
} satisfies Record<string, OpDef>;
