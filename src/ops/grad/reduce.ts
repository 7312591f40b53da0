/** Gradients of reductions, softmax and pooling. */
import { ShearsError } from '../../errors.js';
import { attrFloat, attrInt, attrInts } from '../../ir/graph.js';
import { DataType } from '../../ir/dtype.js';
import { numel } from '../../ir/tensor.js';
import type { GradContext, GradRule } from '../types.js';
import { nodeAxis, reduceAxes } from '../args.js';
import { floatAttr, reduceSum, reshape, scale, staticWindow, zeros } from './helpers.js';

function reduceGradImpl(ctx: GradContext, mean: boolean): (string | undefined)[] {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const { e } = ctx;
  const xShape = ctx.shape(ctx.input(0));
  const axes = reduceAxes(ctx, xShape.length);
  if (axes === 'axes') throw new ShearsError(`${ctx.node.opType} gradient needs constant axes`, { node: ctx.node.name });
  if (axes.length === 0) return [g];
  const keptShape = xShape.map((d, i) => (axes.includes(i) ? 1 : d));
  let r = attrInt(ctx.node, 'keepdims', 1) === 1 ? g : reshape(e, g, keptShape);
  if (mean) r = scale(e, r, 1 / axes.reduce((p, a) => p * xShape[a]!, 1));
  return [e.op('Expand', [r, e.constI(xShape)])];
}

export const reduceSumGrad: GradRule = (ctx) => reduceGradImpl(ctx, false);
export const reduceMeanGrad: GradRule = (ctx) => reduceGradImpl(ctx, true);

export const softmaxGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  if (ctx.opset < 13) throw new ShearsError('Softmax gradient needs opset 13 or later', { node: ctx.node.name });
  const { e } = ctx;
  const y = ctx.output(0);
  const axis = attrInt(ctx.node, 'axis', -1);
  const s = e.op('ReduceSum', [e.op('Mul', [g, y]), e.constI([axis])], { keepdims: 1 });
  return [e.op('Mul', [y, e.op('Sub', [g, s])])];
};

export const logSoftmaxGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  if (ctx.opset < 13) throw new ShearsError('LogSoftmax gradient needs opset 13 or later', { node: ctx.node.name });
  const { e } = ctx;
  const axis = attrInt(ctx.node, 'axis', -1);
  const s = e.op('ReduceSum', [g, e.constI([axis])], { keepdims: 1 });
  return [e.op('Sub', [g, e.op('Mul', [e.op('Exp', [ctx.output(0)]), s])])];
};

export const globalAveragePoolGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const xShape = ctx.shape(ctx.input(0));
  const hw = numel(xShape.slice(2));
  return [ctx.e.op('Expand', [scale(ctx.e, g, 1 / hw), ctx.e.constI(xShape)])];
};

export const globalMaxPoolGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  // Ties share the gradient equally would need counting; use the equality mask (ties are rare in float data).
  const { e } = ctx;
  const mask = e.op('Equal', [ctx.input(0), ctx.output(0)]);
  return [e.op('Where', [mask, e.op('Expand', [g, e.constI(ctx.shape(ctx.input(0)))]), e.constF(0)])];
};

interface PoolGeom {
  kernel: number[];
  strides: number[];
  pads: number[];
}

function poolGeom(ctx: GradContext, xShape: number[]): PoolGeom {
  const { node } = ctx;
  const kernel = attrInts(node, 'kernel_shape')!;
  const dil = attrInts(node, 'dilations');
  if (dil && dil.some((d) => d !== 1)) throw new ShearsError(`${node.opType} gradient: dilations are not supported`, { node: node.name });
  const { strides, pads } = staticWindow(node, xShape, kernel);
  return { kernel, strides, pads };
}

/**
 * MaxPool: g added at the argmax positions (the forward node's Indices output). From opset 16, one
 * ScatterElements(reduction='add'); before it (ScatterElements has no reduction, and overlapping windows can
 * share an argmax), per kernel tap: a mask of the outputs whose argmax is that tap of their window, the masked
 * g put back by a grouped ConvTranspose with a one-hot kernel at the tap (the adjoint of the window
 * gather). Both forms add exactly the same values.
 */
export const maxPoolGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const { e } = ctx;
  const xShape = ctx.shape(ctx.input(0));
  const indices = ctx.output(1);
  const colMajor = attrInt(ctx.node, 'storage_order', 0) === 1;
  if (colMajor && xShape.length !== 4) throw new ShearsError('MaxPool gradient: storage_order 1 needs a 2-D pool', { node: ctx.node.name });
  if (ctx.opset < 16) return [maxPoolGradByTaps(ctx, g, indices, xShape, colMajor)];
  const n = numel(ctx.shape(ctx.output(0)));
  let flatIdx = reshape(e, indices, [n]);
  if (colMajor) {
    // Column-major indices (2-D): within each [H, W] plane i = w H + h; row-major is h W + w.
    const [h, w] = [xShape[2]!, xShape[3]!];
    const hw = e.constI([h * w], []);
    const within = e.op('Mod', [flatIdx, hw]);
    const base = e.op('Sub', [flatIdx, within]);
    const row = e.op('Mod', [within, e.constI([h], [])]);
    const col = e.op('Div', [within, e.constI([h], [])]);
    flatIdx = e.op('Add', [base, e.op('Add', [e.op('Mul', [row, e.constI([w], [])]), col])]);
  }
  const flatG = reshape(e, g, [n]);
  const sc = e.op('ScatterElements', [zeros(e, [numel(xShape)]), flatIdx, flatG], { axis: 0, reduction: 'add' });
  return [reshape(e, sc, xShape)];
};

/** The MaxPool gradient in ops of opset 7 and later (Div, Sub, Mul, Equal, Cast, Reshape, ConvTranspose). */
function maxPoolGradByTaps(ctx: GradContext, g: string, indices: string, xShape: number[], colMajor: boolean): string {
  const { e, node } = ctx;
  const yShape = ctx.shape(ctx.output(0));
  const kernel = attrInts(node, 'kernel_shape')!;
  const { strides, dilations, pads } = staticWindow(node, xShape, kernel);
  const r = kernel.length;
  const [nb, c] = [xShape[0]!, xShape[1]!];
  const sp = xShape.slice(2);
  const ysp = yShape.slice(2);
  const plane = numel(sp);
  const taps = numel(kernel);
  const ny = numel(ysp);
  // Flat index within a plane of spatial coordinates p (row-major, or column-major for storage_order 1).
  const planeIndex = (p: number[]): number => (colMajor ? p[1]! * sp[0]! + p[0]! : p.reduce((acc, v, i) => acc * sp[i]! + v, 0));
  // expected[t, o]: the in-plane index tap t of output o's window reads, -1 where it reads padding.
  const expected = new BigInt64Array(taps * ny);
  const tap = new Array<number>(r).fill(0);
  for (let t = 0; t < taps; t++) {
    const o = new Array<number>(r).fill(0);
    for (let k = 0; k < ny; k++) {
      const p = o.map((oi, i) => oi * strides[i]! - pads[i]! + tap[i]! * dilations[i]!);
      expected[t * ny + k] = BigInt(p.every((v, i) => v >= 0 && v < sp[i]!) ? planeIndex(p) : -1);
      for (let a = r - 1; a >= 0; a--) {
        if (++o[a]! < ysp[a]!) break;
        o[a] = 0;
      }
    }
    for (let a = r - 1; a >= 0; a--) {
      if (++tap[a]! < kernel[a]!) break;
      tap[a] = 0;
    }
  }
  const pl = e.constI([plane], []);
  const within = e.op('Sub', [indices, e.op('Mul', [e.op('Div', [indices, pl]), pl])]);
  const hit = e.op('Equal', [reshape(e, within, [nb, c, 1, ...ysp]), e.constT({ dtype: DataType.INT64, dims: [1, 1, taps, ...ysp], data: expected })]);
  const masked = e.op('Mul', [e.op('Cast', [hit], { to: e.elemType }), reshape(e, g, [nb, c, 1, ...ysp])]);
  // Weight [C*taps, 1, ...kernel]: input channel c*taps + t has a 1 at tap t.
  const wv = new Array<number>(c * taps * taps).fill(0);
  for (let ch = 0; ch < c; ch++) for (let t = 0; t < taps; t++) wv[(ch * taps + t) * taps + t] = 1;
  // Full output (ysp-1)*s + (k-1)*d + 1, less the begin pads; the end is cut, or extended by output_padding
  // (less than the stride: the input positions after the last window, which get no gradient).
  const full = ysp.map((yo, i) => (yo - 1) * strides[i]! + (kernel[i]! - 1) * dilations[i]! + 1);
  const padsEnd = full.map((f, i) => Math.max(0, f - pads[i]! - sp[i]!));
  const outPad = full.map((f, i) => Math.max(0, sp[i]! - (f - pads[i]!)));
  const attrs: Record<string, number | number[]> = { group: c, kernel_shape: kernel, strides, dilations, pads: [...pads.slice(0, r), ...padsEnd] };
  if (outPad.some((v) => v > 0)) attrs['output_padding'] = outPad;
  return e.op('ConvTranspose', [reshape(e, masked, [nb, c * taps, ...ysp]), e.constF(wv, [c * taps, 1, ...kernel])], attrs);
}

/** AveragePool: a depthwise ConvTranspose with an all-ones kernel of g divided by the window counts. */
export const averagePoolGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const { e, node } = ctx;
  const xShape = ctx.shape(ctx.input(0));
  const yShape = ctx.shape(ctx.output(0));
  const { kernel, strides, pads } = poolGeom(ctx, xShape);
  const r = kernel.length;
  const c = xShape[1]!;
  const sp = xShape.slice(2);
  const ysp = yShape.slice(2);
  const includePad = attrInt(node, 'count_include_pad', 0) === 1;
  // Window counts per output position (product of per-axis counts).
  const axisCounts = ysp.map((yo, i) =>
    Array.from({ length: yo }, (_, o) => {
      const start = o * strides[i]! - pads[i]!;
      const end = start + kernel[i]!;
      if (includePad) {
        // Padded positions count, but not the implicit ceil_mode overhang beyond the end padding.
        return Math.min(end, sp[i]! + pads[i + r]!) - start;
      }
      return Math.min(end, sp[i]!) - Math.max(start, 0);
    }));
  const inv = new Array<number>(numel(ysp));
  for (let k = 0; k < inv.length; k++) {
    let rem = k;
    let cnt = 1;
    for (let i = r - 1; i >= 0; i--) {
      const o = rem % ysp[i]!;
      rem = Math.floor(rem / ysp[i]!);
      cnt *= axisCounts[i]![o]!;
    }
    inv[k] = 1 / cnt;
  }
  const gs = e.op('Mul', [g, e.constF(inv, [1, 1, ...ysp])]);
  const ones = e.constF(new Array<number>(c * numel(kernel)).fill(1), [c, 1, ...kernel]);
  // Full transposed conv covers padded coordinates [0, s*(Ho-1)+k); crop [pb, pb+H) (pad first when short).
  let full = e.op('ConvTranspose', [gs, ones], { group: c, strides, kernel_shape: kernel });
  const fullSp = ysp.map((yo, i) => strides[i]! * (yo - 1) + kernel[i]!);
  const short = sp.map((h, i) => Math.max(0, pads[i]! + h - fullSp[i]!));
  if (short.some((s) => s > 0)) full = e.op('Pad', [full, e.constI([0, 0, ...sp.map(() => 0), 0, 0, ...short])]);
  const dx = e.op('Slice', [full, e.constI(pads.slice(0, r)), e.constI(sp.map((h, i) => pads[i]! + h)), e.constI(sp.map((_, i) => i + 2))]);
  return [dx];
};

/** Frozen (inference-mode) BatchNormalization: scale, bias and input gradients with the running statistics. */
export const batchNormGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g) return [];
  const { e, node } = ctx;
  if (attrInt(node, 'training_mode', 0) === 1) return batchNormTrainingGrad(ctx, g);
  const xShape = ctx.shape(ctx.input(0));
  const c = xShape[1]!;
  const bshape = [1, c, ...xShape.slice(2).map(() => 1)];
  const eps = node.attrs.get('epsilon');
  const epsV = eps && eps.kind === 'float' ? eps.value : 1e-5;
  const [x, gamma, , mean, variance] = node.inputs as [string, string, string, string, string];
  const inv = e.op('Reciprocal', [e.op('Sqrt', [e.op('Add', [variance, e.constF(epsV)])])]);
  const invB = reshape(e, inv, bshape);
  const axes = [0, ...xShape.slice(2).map((_, i) => i + 2)];
  const out: (string | undefined)[] = [];
  if (ctx.needs(0)) out[0] = e.op('Mul', [g, reshape(e, e.op('Mul', [inv, gamma]), bshape)]);
  if (ctx.needs(1)) {
    const xhat = e.op('Mul', [e.op('Sub', [x, reshape(e, mean, bshape)]), invB]);
    out[1] = reduceSum(e, e.op('Mul', [g, xhat]), axes, false);
  }
  if (ctx.needs(2)) out[2] = reduceSum(e, g, axes, false);
  return out;
};

/**
 * Training-mode BatchNormalization (batch statistics), closed form. The batch mean and biased variance come from
 * the forward node's running-statistics outputs, which are new = running * momentum + batch * (1 - momentum)
 * (train/bn.ts sets momentum 0 so they are the batch statistics themselves). With inv = 1/sqrt(var + eps),
 * A = scale * inv, n elements per channel, Sg = sum(g) and Sgc = sum(g * (x - mean)):
 *   dx = A g + K1 x + K2,  K1 = -A inv^2 Sgc / n,  K2 = -A Sg / n - mean K1;  dscale = inv Sgc;  dbias = Sg.
 * Full-tensor work: two reductions, one product and dx (a Mul, a BatchNormalization with unit statistics for
 * K1 x + K2, and an Add), against about twenty ops for the autodiff of the decomposed form.
 */
function batchNormTrainingGrad(ctx: GradContext, g: string): (string | undefined)[] {
  const { e, node } = ctx;
  const [x, gamma, , rm, rv] = node.inputs as [string, string, string, string, string];
  const xShape = ctx.shape(x);
  const c = xShape[1]!;
  const n = numel(xShape) / c;
  const axes = [0, ...xShape.slice(2).map((_, i) => i + 2)];
  const bshape = [1, c, ...xShape.slice(2).map(() => 1)];
  const epsV = attrFloat(node, 'epsilon', 1e-5);
  const mom = attrFloat(node, 'momentum', 0.9);
  if (!(mom < 1)) throw new ShearsError(`BatchNormalization gradient: momentum ${mom} hides the batch statistics`, { node: node.name });
  const batchStat = (out: string, running: string) => (mom === 0 ? out : scale(e, e.op('Sub', [out, e.op('Mul', [running, e.constF(mom)])]), 1 / (1 - mom)));
  const mean = batchStat(ctx.output(1), rm);
  const variance = batchStat(ctx.output(2), rv);
  const inv = e.op('Reciprocal', [e.op('Sqrt', [e.op('Add', [variance, e.constF(epsV)])])]);
  const sg = reduceSum(e, g, axes, false);
  const sgc = e.op('Sub', [reduceSum(e, e.op('Mul', [g, x]), axes, false), e.op('Mul', [mean, sg])]);
  const out: (string | undefined)[] = [];
  if (ctx.needs(0)) {
    const a = e.op('Mul', [gamma, inv]);
    const k1 = e.op('Neg', [scale(e, e.op('Mul', [e.op('Mul', [a, e.op('Mul', [inv, inv])]), sgc]), 1 / n)]);
    const k2 = e.op('Sub', [e.op('Neg', [scale(e, e.op('Mul', [a, sg]), 1 / n)]), e.op('Mul', [mean, k1])]);
    const zero = e.constF(new Array<number>(c).fill(0), [c]);
    const one = e.constF(new Array<number>(c).fill(1), [c]);
    const affine = e.op('BatchNormalization', [x, k1, k2, zero, one], { epsilon: floatAttr(0) });
    out[0] = e.op('Add', [e.op('Mul', [g, reshape(e, a, bshape)]), affine]);
  }
  if (ctx.needs(1)) out[1] = e.op('Mul', [inv, sgc]);
  if (ctx.needs(2)) out[2] = sg;
  return out;
}

/** LayerNormalization, using the forward node's Mean and InvStdDev outputs. */
export const layerNormGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g) return [];
  const { e, node } = ctx;
  const xShape = ctx.shape(ctx.input(0));
  const rank = xShape.length;
  const axis = nodeAxis(ctx, rank, -1);
  const normAx = Array.from({ length: rank - axis }, (_, i) => axis + i);
  const leadAx = Array.from({ length: axis }, (_, i) => i);
  const x = ctx.input(0);
  const gamma = ctx.input(1);
  const mean = ctx.output(1);
  const invStd = ctx.output(2);
  const xhat = e.op('Mul', [e.op('Sub', [x, mean]), invStd]);
  const out: (string | undefined)[] = [];
  if (ctx.needs(0)) {
    const gg = e.op('Mul', [g, gamma]);
    const d = numel(normAx.map((a) => xShape[a]!));
    const m1 = scale(e, reduceSum(e, gg, normAx, true), 1 / d);
    const m2 = scale(e, reduceSum(e, e.op('Mul', [gg, xhat]), normAx, true), 1 / d);
    out[0] = e.op('Mul', [invStd, e.op('Sub', [e.op('Sub', [gg, m1]), e.op('Mul', [xhat, m2])])]);
  }
  const gammaShape = ctx.shape(gamma);
  const red = (t: string, pShape: number[]) => {
    // Sum over the leading axes and over normalised axes where the parameter broadcasts.
    const tShape = xShape;
    const lead = tShape.length - pShape.length;
    const axes = [...leadAx.filter((a) => a < lead)];
    for (let i = lead; i < rank; i++) if (pShape[i - lead] === 1 && tShape[i] !== 1) axes.push(i);
    for (let i = axis; i < lead; i++) axes.push(i);
    const uniq = [...new Set(axes)].sort((p, q) => p - q);
    let s = uniq.length ? reduceSum(e, t, uniq, true) : t;
    s = reshape(e, s, pShape);
    return s;
  };
  if (ctx.needs(1)) out[1] = red(e.op('Mul', [g, xhat]), gammaShape);
  if (node.inputs[2] && ctx.needs(2)) out[2] = red(g, ctx.shape(node.inputs[2]));
  return out;
};
