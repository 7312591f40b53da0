/** Gradients of elementwise ops: arithmetic with broadcasting and activations. */
import { attrFloat } from '../../ir/graph.js';
import type { GradContext, GradRule } from '../types.js';
import { maskGrad, scale, unbroadcast } from './helpers.js';

function binary(ctx: GradContext, fa: (g: string) => string | undefined, fb: (g: string) => string | undefined): (string | undefined)[] {
  const g = ctx.gradOut(0);
  if (!g) return [];
  const gShape = ctx.shape(ctx.output(0));
  const out: (string | undefined)[] = [];
  if (ctx.needs(0)) {
    const d = fa(g);
    if (d) out[0] = unbroadcast(ctx.e, d, gShape, ctx.shape(ctx.input(0)));
  }
  if (ctx.needs(1)) {
    const d = fb(g);
    if (d) out[1] = unbroadcast(ctx.e, d, gShape, ctx.shape(ctx.input(1)));
  }
  return out;
}

export const addGrad: GradRule = (ctx) => binary(ctx, (g) => g, (g) => g);
export const subGrad: GradRule = (ctx) => binary(ctx, (g) => g, (g) => ctx.e.op('Neg', [g]));
export const mulGrad: GradRule = (ctx) =>
  binary(ctx, (g) => ctx.e.op('Mul', [g, ctx.input(1)]), (g) => ctx.e.op('Mul', [g, ctx.input(0)]));
export const divGrad: GradRule = (ctx) =>
  binary(
    ctx,
    (g) => ctx.e.op('Div', [g, ctx.input(1)]),
    // d(a/b)/db = -a/b^2 = -y/b
    (g) => ctx.e.op('Neg', [ctx.e.op('Div', [ctx.e.op('Mul', [g, ctx.output(0)]), ctx.input(1)])]),
  );
export const powGrad: GradRule = (ctx) => {
  const { e } = ctx;
  const a = ctx.input(0);
  const b = ctx.input(1);
  return binary(
    ctx,
    // b * a^(b-1)
    (g) => e.op('Mul', [g, e.op('Mul', [b, e.op('Pow', [a, e.op('Sub', [b, e.constF(1)])])])]),
    // y * ln(a)
    (g) => e.op('Mul', [g, e.op('Mul', [ctx.output(0), e.op('Log', [a])])]),
  );
};

/** Sum/Mean/Max/Min with any number of inputs. */
export const sumGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g) return [];
  const gShape = ctx.shape(ctx.output(0));
  return ctx.node.inputs.map((x, i) => (ctx.needs(i) ? unbroadcast(ctx.e, g, gShape, ctx.shape(x)) : undefined));
};
export const meanGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g) return [];
  const gs = scale(ctx.e, g, 1 / ctx.node.inputs.length);
  const gShape = ctx.shape(ctx.output(0));
  return ctx.node.inputs.map((x, i) => (ctx.needs(i) ? unbroadcast(ctx.e, gs, gShape, ctx.shape(x)) : undefined));
};

/** A rule for y = f(x) whose derivative is written with x, y and g. */
function unary(f: (ctx: GradContext, g: string, x: string, y: string) => string): GradRule {
  return (ctx) => {
    const g = ctx.gradOut(0);
    if (!g || !ctx.needs(0)) return [];
    return [f(ctx, g, ctx.input(0), ctx.output(0))];
  };
}

export const identityGrad = unary((_c, g) => g);
export const negGrad = unary((c, g) => c.e.op('Neg', [g]));
export const reluGrad = unary((c, g, _x, y) => maskGrad(c.e, c.e.op('Greater', [y, c.e.constF(0)]), g));
export const leakyReluGrad = unary((c, g, x) => {
  const alpha = attrFloat(c.node, 'alpha', 0.01);
  return c.e.op('Where', [c.e.op('Greater', [x, c.e.constF(0)]), g, scale(c.e, g, alpha)]);
});
export const eluGrad = unary((c, g, x, y) => {
  const alpha = attrFloat(c.node, 'alpha', 1);
  return c.e.op('Where', [c.e.op('Greater', [x, c.e.constF(0)]), g, c.e.op('Mul', [g, c.e.op('Add', [y, c.e.constF(alpha)])])]);
});
export const sigmoidGrad = unary((c, g, _x, y) => c.e.op('Mul', [g, c.e.op('Mul', [y, c.e.op('Sub', [c.e.constF(1), y])])]));
export const tanhGrad = unary((c, g, _x, y) => c.e.op('Mul', [g, c.e.op('Sub', [c.e.constF(1), c.e.op('Mul', [y, y])])]));
export const expGrad = unary((c, g, _x, y) => c.e.op('Mul', [g, y]));
export const logGrad = unary((c, g, x) => c.e.op('Div', [g, x]));
export const sqrtGrad = unary((c, g, _x, y) => c.e.op('Div', [g, c.e.op('Mul', [y, c.e.constF(2)])]));
export const reciprocalGrad = unary((c, g, _x, y) => c.e.op('Neg', [c.e.op('Mul', [g, c.e.op('Mul', [y, y])])]));
export const absGrad = unary((c, g, x) => c.e.op('Mul', [g, c.e.op('Sign', [x])]));
/** d atan(x) = 1 / (1 + x^2). */
export const atanGrad = unary((c, g, x) => c.e.op('Div', [g, c.e.op('Add', [c.e.constF(1), c.e.op('Mul', [x, x])])]));
/**
 * Elementwise Min / Max of any number of broadcast inputs: the gradient goes to the inputs equal to the output,
 * split evenly where several are (torch.minimum / torch.maximum do the same at ties).
 */
export const minMaxGrad: GradRule = (ctx) => {
  const { e } = ctx;
  const g = ctx.gradOut(0);
  if (!g) return [];
  const y = ctx.output(0);
  const gShape = ctx.shape(y);
  const hits = ctx.node.inputs.map((x) => e.op('Cast', [e.op('Equal', [x, y])], { to: e.elemType }));
  let count = hits[0]!;
  for (let i = 1; i < hits.length; i++) count = e.op('Add', [count, hits[i]!]);
  const share = hits.length === 1 ? g : e.op('Div', [g, count]);
  return ctx.node.inputs.map((x, i) => (ctx.needs(i) ? unbroadcast(e, e.op('Mul', [share, hits[i]!]), gShape, ctx.shape(x)) : undefined));
};
export const softplusGrad = unary((c, g, x) => c.e.op('Mul', [g, c.e.op('Sigmoid', [x])]));
export const erfGrad = unary((c, g, x) => {
  const e2 = c.e.op('Exp', [c.e.op('Neg', [c.e.op('Mul', [x, x])])]);
  return c.e.op('Mul', [g, c.e.op('Mul', [e2, c.e.constF(2 / Math.sqrt(Math.PI))])]);
});
export const geluGrad = unary((c, g, x) => {
  const { e } = c;
  // exact (erf) form: Phi(x) + x*phi(x)
  const phiBig = e.op('Mul', [e.op('Add', [e.op('Erf', [e.op('Mul', [x, e.constF(Math.SQRT1_2)])]), e.constF(1)]), e.constF(0.5)]);
  const phi = e.op('Mul', [e.op('Exp', [e.op('Mul', [e.op('Mul', [x, x]), e.constF(-0.5)])]), e.constF(1 / Math.sqrt(2 * Math.PI))]);
  return e.op('Mul', [g, e.op('Add', [phiBig, e.op('Mul', [x, phi])])]);
});
export const hardSigmoidGrad = unary((c, g, x) => {
  const { e } = c;
  const alpha = attrFloat(c.node, 'alpha', 0.2);
  const beta = attrFloat(c.node, 'beta', 0.5);
  const z = e.op('Add', [e.op('Mul', [x, e.constF(alpha)]), e.constF(beta)]);
  const inside = e.op('And', [e.op('Greater', [z, e.constF(0)]), e.op('Less', [z, e.constF(1)])]);
  return maskGrad(e, inside, scale(e, g, alpha));
});
export const hardSwishGrad = unary((c, g, x) => {
  const { e } = c;
  const mid = e.op('Div', [e.op('Add', [e.op('Mul', [x, e.constF(2)]), e.constF(3)]), e.constF(6)]);
  const d = e.op('Where', [e.op('Less', [x, e.constF(-3)]), e.constF(0), e.op('Where', [e.op('Greater', [x, e.constF(3)]), e.constF(1), mid])]);
  return e.op('Mul', [g, d]);
});
export const clipGrad: GradRule = (ctx) => {
  const { e, node } = ctx;
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const x = ctx.input(0);
  let lo: string | undefined;
  let hi: string | undefined;
  if (ctx.opset >= 11) {
    lo = node.inputs[1] || undefined;
    hi = node.inputs[2] || undefined;
  } else {
    if (node.attrs.has('min')) lo = e.constF(attrFloat(node, 'min', 0));
    if (node.attrs.has('max')) hi = e.constF(attrFloat(node, 'max', 0));
  }
  let cond: string | undefined;
  if (lo) cond = e.op('GreaterOrEqual', [x, lo]);
  if (hi) {
    const c2 = e.op('LessOrEqual', [x, hi]);
    cond = cond ? e.op('And', [cond, c2]) : c2;
  }
  return [cond ? maskGrad(e, cond, g) : g];
};

/** Cast between float types: the gradient cast back to the input's type; from integers: none. */
export const castGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  return [ctx.e.op('Cast', [g], { to: ctx.elemType(ctx.input(0)) ?? ctx.e.elemType })];
};

/** Where(cond, x, y): the gradient goes to x where cond holds and to y elsewhere (each reduced over its broadcast). */
export const whereGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g) return [];
  const { e } = ctx;
  const gShape = ctx.shape(ctx.output(0));
  const cond = ctx.input(0);
  const out: (string | undefined)[] = [];
  if (ctx.needs(1)) out[1] = unbroadcast(e, e.op('Where', [cond, g, e.constF(0)]), gShape, ctx.shape(ctx.input(1)));
  if (ctx.needs(2)) out[2] = unbroadcast(e, e.op('Where', [cond, e.constF(0), g]), gShape, ctx.shape(ctx.input(2)));
  return out;
};
