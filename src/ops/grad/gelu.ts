/**
 * Gradients of onnxruntime's GELU family (domain com.microsoft, attached in ops/contrib-transformer.ts): Gelu
 * (erf form), BiasGelu (Gelu of A + B), FastGelu (tanh form, optional bias) and QuickGelu (x * sigmoid(alpha x)).
 * The bias gradient is the input gradient summed over the axes the bias broadcasts along.
 */
import { attrFloat } from '../../ir/graph.js';
import type { GradEmitter, GradRule } from '../types.js';
import { unbroadcast } from './helpers.js';

type Deriv = (e: GradEmitter, x: string, alpha: number) => string;

/** d/dx x * Phi(x) = Phi(x) + x * phi(x). */
const erfGeluDeriv: Deriv = (e, x) => {
  const cdf = e.op('Mul', [e.op('Add', [e.op('Erf', [e.op('Mul', [x, e.constF(Math.SQRT1_2)])]), e.constF(1)]), e.constF(0.5)]);
  const pdf = e.op('Mul', [e.op('Exp', [e.op('Mul', [e.op('Mul', [x, x]), e.constF(-0.5)])]), e.constF(1 / Math.sqrt(2 * Math.PI))]);
  return e.op('Add', [cdf, e.op('Mul', [x, pdf])]);
};

/** y = 0.5 x (1 + t), t = tanh(k (x + c x^3)): dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2). */
const tanhGeluDeriv: Deriv = (e, x) => {
  const k = Math.sqrt(2 / Math.PI), c = 0.044715;
  const x2 = e.op('Mul', [x, x]);
  const t = e.op('Tanh', [e.op('Mul', [e.op('Mul', [x, e.op('Add', [e.op('Mul', [x2, e.constF(c)]), e.constF(1)])]), e.constF(k)])]);
  const half = e.op('Mul', [e.op('Add', [t, e.constF(1)]), e.constF(0.5)]);
  const sech2 = e.op('Sub', [e.constF(1), e.op('Mul', [t, t])]);
  const inner = e.op('Mul', [e.op('Add', [e.op('Mul', [x2, e.constF(3 * c)]), e.constF(1)]), e.constF(0.5 * k)]);
  return e.op('Add', [half, e.op('Mul', [e.op('Mul', [x, sech2]), inner])]);
};

/** y = x s, s = sigmoid(alpha x): dy/dx = s + alpha x s (1 - s). */
const quickGeluDeriv: Deriv = (e, x, alpha) => {
  const s = e.op('Sigmoid', [e.op('Mul', [x, e.constF(alpha)])]);
  return e.op('Add', [s, e.op('Mul', [e.op('Mul', [x, e.constF(alpha)]), e.op('Mul', [s, e.op('Sub', [e.constF(1), s])])])]);
};

/** The rule for f(X [+ bias]) with f' = `deriv`; input 1, when present, is the bias. */
function activationGrad(deriv: Deriv): GradRule {
  return (ctx) => {
    const g = ctx.gradOut(0);
    if (!g) return [];
    const { e, node } = ctx;
    const x = ctx.input(0), bias = node.inputs[1] ? ctx.input(1) : '';
    const arg = bias ? e.op('Add', [x, bias]) : x;
    const gx = e.op('Mul', [g, deriv(e, arg, attrFloat(node, 'alpha', 1.702))]);
    const out: (string | undefined)[] = [];
    const yShape = ctx.shape(ctx.output(0));
    if (ctx.needs(0)) out[0] = unbroadcast(e, gx, yShape, ctx.shape(x));
    if (bias && ctx.needs(1)) out[1] = unbroadcast(e, gx, yShape, ctx.shape(bias));
    return out;
  };
}

/** com.microsoft Gelu and BiasGelu (erf form). */
export const msGeluGrad = activationGrad(erfGeluDeriv);
/** com.microsoft FastGelu (tanh form). */
export const fastGeluGrad = activationGrad(tanhGeluDeriv);
/** com.microsoft QuickGelu. */
export const quickGeluGrad = activationGrad(quickGeluDeriv);
