/** Gradients of Conv and ConvTranspose, as ConvTranspose/Conv nodes over (transposed) tensors. */
import { ShearsError } from '../../errors.js';
import { attrInt, type Node } from '../../ir/graph.js';
import type { GradContext, GradEmitter, GradRule } from '../types.js';
import { convTransposeAttrs } from '../window.js';
import { reduceSum, reshape, staticWindow, transpose } from './helpers.js';

/**
 * The stride-1 weight gradient folds the batch into its products for images of up to `maxPositions` positions
 * (default: all). A benchmark knob: `bench/train.js export-step --wgrad-fold 0` builds the per-image form to A/B.
 */
export const WGRAD_FOLD = { maxPositions: Infinity };

export interface ConvGeom {
  group: number;
  strides: number[];
  dilations: number[];
  /** [begin..., end...] as in ONNX. */
  pads: number[];
  kernel: number[];
}

/** Effective Conv geometry (auto_pad resolved) from the node and static shapes. */
export function convGeom(node: Node, xShape: number[], wShape: number[]): ConvGeom {
  const kernel = wShape.slice(2);
  return { group: attrInt(node, 'group', 1), ...staticWindow(node, xShape, kernel), kernel };
}

/**
 * dW for 2-D stride-1 convs, without sliced copies per tap. Tap (i, j) pairs output (h, w) with input
 * (h + i dh - pt, w + j dw - pl). Shifting rows on the input side and columns on the gradient side:
 *   X_i = x with rows shifted to h + i dh - pt (zero rows outside), [N, C, Ho, W];
 *   G_j = g with columns shifted to w + j dw - pl and cut to x's width W, [N, M, Ho, W]
 * (outputs whose input column falls in the padding meet no x and are rightly cut away), and
 * dW[:, :, i, j] = sum over n, h, w of X_i G_j: a batched MatMul over Ho x W positions. Each shift is a Pad
 * (negative pads cut), so a 3x3 conv copies x twice and g twice where per-tap Slices copied x nine times, and
 * the products run over Ho x W instead of a padded row length. ResNet-20 training step (bench/train.js
 * throughput, 2 replicas of batch 64): 120 -> 112 ms; per conv at batch 128 (bench/train_ops.js) 0-13%.
 * Undefined when a shift would cut a whole axis (pads beyond the input).
 */
function convWeightGradShifted(e: GradEmitter, x: string, xShape: number[], g: string, gShape: number[], geom: ConvGeom): string | undefined {
  const [n, c, h, w] = xShape as [number, number, number, number];
  const m = gShape[1]!;
  const G = geom.group;
  const [ho, wo] = gShape.slice(2) as [number, number];
  const [kh, kw] = geom.kernel as [number, number];
  const [dh, dw] = geom.dilations as [number, number];
  const [pt, pl] = geom.pads as [number, number];
  const rowPads = Array.from({ length: kh }, (_, i) => [pt - i * dh, ho - h - (pt - i * dh)] as const);
  const colPads = Array.from({ length: kw }, (_, j) => [j * dw - pl, w - wo - (j * dw - pl)] as const);
  if (rowPads.some(([b, a]) => -b >= h || -a >= h) || colPads.some(([b, a]) => -b >= wo || -a >= wo)) return undefined;
  const cg = c / G;
  const mg = m / G;
  const p = ho * w;
  if (G === 1 && p <= WGRAD_FOLD.maxPositions) {
    // One product per tap over all images at once (the batch folded into the contraction: [C, N P] x [N P, M]),
    // x and g transposed to channel-major [C, N, ...] once, and no sum over the batch afterwards. Against the
    // per-image products below: ResNet-20 training step 0.94-0.97x the time (BN folded), 0.95x (pruned, BN),
    // interleaved A/B on an AVX-512 Xeon (bench/train.js ab); not measured on AVX2.
    const xt = reshape(e, transpose(e, x, [1, 0, 2, 3]), [c, n, h * w]);
    const gt = transpose(e, g, [1, 0, 2, 3]);
    const xsT = rowPads.map(([b, a]) => reshape(e, b === 0 && a === 0 ? xt : e.op('Pad', [xt, e.constI([0, 0, b * w, 0, 0, a * w])]), [c, n * p]));
    const gsT = colPads.map(([b, a]) => transpose(e, reshape(e, b === 0 && a === 0 ? gt : e.op('Pad', [gt, e.constI([0, 0, 0, b, 0, 0, 0, a])]), [m, n * p]), [1, 0]));
    const tapsT: string[] = [];
    for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) tapsT.push(reshape(e, e.op('MatMul', [xsT[i]!, gsT[j]!]), [c, m, 1]));
    const allT = tapsT.length === 1 ? tapsT[0]! : e.op('Concat', tapsT, { axis: 2 }); // [C, M, K]
    return reshape(e, transpose(e, allT, [1, 0, 2]), [m, c, kh, kw]);
  }
  const xf = reshape(e, x, [n, c, h * w]);
  const xs = rowPads.map(([b, a]) => (b === 0 && a === 0 ? xf : e.op('Pad', [xf, e.constI([0, 0, b * w, 0, 0, a * w])])));
  const depthwise = cg === 1 && mg === 1;
  const gs = colPads.map(([b, a]) => {
    const gj = b === 0 && a === 0 ? g : e.op('Pad', [g, e.constI([0, 0, 0, b, 0, 0, 0, a])]);
    return depthwise ? reshape(e, gj, [n, m, p]) : transpose(e, reshape(e, gj, [n, G, mg, p]), [0, 1, 3, 2]);
  });
  const taps: string[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      let tap: string;
      if (depthwise) {
        tap = reshape(e, e.op('ReduceSum', [e.op('Mul', [xs[i]!, gs[j]!]), e.constI([0, 2])], { keepdims: 0 }), [G, 1, 1, 1]);
      } else {
        const mm = e.op('MatMul', [reshape(e, xs[i]!, [n, G, cg, p]), gs[j]!]);
        tap = reshape(e, e.op('ReduceSum', [mm, e.constI([0])], { keepdims: 0 }), [G, cg, mg, 1]);
      }
      taps.push(tap);
    }
  }
  const all = taps.length === 1 ? taps[0]! : e.op('Concat', taps, { axis: 3 });
  return reshape(e, transpose(e, all, [0, 2, 1, 3]), [m, cg, kh, kw]);
}

/**
 * dW of Y = Conv(X, W), one kernel tap at a time: for tap t the (strided) slice X_t of the padded input lines up
 * with g, and dW[:, :, t] = sum_n X_t[n] g[n]^T is a batched MatMul [N, C, P] x [N, P, M] summed over the batch.
 * Measured in process CPU time on the 2-core machine (bench/train_ops.ts): 3x faster than im2col by a
 * one-hot depthwise Conv plus one MatMul, and 2x faster than the Conv-over-transposed-tensors form below.
 */
export function convWeightGradTaps(e: GradEmitter, x: string, xShape: number[], g: string, gShape: number[], geom: ConvGeom): string {
  if (geom.kernel.length === 2 && geom.strides.every((s0) => s0 === 1) && geom.kernel.some((k0) => k0 > 1)) {
    const dw = convWeightGradShifted(e, x, xShape, g, gShape, geom);
    if (dw) return dw;
  }
  const [n, c] = xShape as [number, number];
  const m = gShape[1]!;
  const G = geom.group;
  const r = geom.kernel.length;
  const ysp = gShape.slice(2);
  const p = ysp.reduce((a, b) => a * b, 1);
  const cg = c / G;
  const mg = m / G;
  const padded = geom.pads.some((q) => q > 0) ? e.op('Pad', [x, e.constI([0, 0, ...geom.pads.slice(0, r), 0, 0, ...geom.pads.slice(r)])]) : x;
  const spAxes = geom.kernel.map((_, i) => i + 2);
  const depthwise = cg === 1 && mg === 1;
  // g as [N, G, P, M/G] (batched MatMul) or [N, C, P] (depthwise: elementwise product).
  const g4 = depthwise ? reshape(e, g, [n, m, p]) : transpose(e, reshape(e, g, [n, G, mg, p]), [0, 1, 3, 2]);
  const taps: string[] = [];
  const k = geom.kernel.reduce((a, b) => a * b, 1);
  for (let t = 0; t < k; t++) {
    const off: number[] = [];
    let rem = t;
    for (let i = r - 1; i >= 0; i--) {
      off[i] = rem % geom.kernel[i]!;
      rem = Math.floor(rem / geom.kernel[i]!);
    }
    const starts = off.map((o, i) => o * geom.dilations[i]!);
    const ends = starts.map((s0, i) => s0 + geom.strides[i]! * (ysp[i]! - 1) + 1);
    const whole = starts.every((s0, i) => s0 === 0 && ends[i] === xShape[i + 2]! + geom.pads[i]! + geom.pads[i + r]! && geom.strides[i] === 1);
    const xt = whole ? padded : e.op('Slice', [padded, e.constI(starts), e.constI(ends), e.constI(spAxes), e.constI(geom.strides)]);
    let tap: string;
    if (depthwise) {
      tap = e.op('ReduceSum', [e.op('Mul', [reshape(e, xt, [n, c, p]), g4]), e.constI([0, 2])], { keepdims: 0 }); // [C]
      tap = reshape(e, tap, [G, 1, 1, 1]);
    } else {
      const mm = e.op('MatMul', [reshape(e, xt, [n, G, cg, p]), g4]); // [N, G, C/G, M/G]
      tap = e.op('ReduceSum', [mm, e.constI([0])], { keepdims: 0 });
      tap = reshape(e, tap, [G, cg, mg, 1]);
    }
    taps.push(tap);
  }
  const all = taps.length === 1 ? taps[0]! : e.op('Concat', taps, { axis: 3 }); // [G, C/G, M/G, K]
  return reshape(e, transpose(e, all, [0, 2, 1, 3]), [m, cg, ...geom.kernel]);
}

/**
 * Input gradient of a stride-1 Conv as a Conv with the weights flipped and transposed (within groups), when
 * the pads allow; undefined otherwise. Ran faster than ConvTranspose here.
 */
export function convInputGradByConv(e: GradEmitter, g: string, w: string, wShape: number[], geom: ConvGeom): string | undefined {
  const r = geom.kernel.length;
  if (geom.strides.some((s) => s !== 1)) return undefined;
  const newPads = [...geom.kernel.map((kk, i) => geom.dilations[i]! * (kk - 1) - geom.pads[i]!), ...geom.kernel.map((kk, i) => geom.dilations[i]! * (kk - 1) - geom.pads[i + r]!)];
  if (newPads.some((q) => q < 0)) return undefined;
  const [m, cg] = wShape as [number, number];
  const G = geom.group;
  const spAxes = geom.kernel.map((_, i) => i + 2);
  let wt: string;
  if (G === 1) wt = transpose(e, w, [1, 0, ...spAxes]);
  else {
    const w5 = reshape(e, w, [G, m / G, cg, ...geom.kernel]);
    wt = reshape(e, transpose(e, w5, [0, 2, 1, ...geom.kernel.map((_, i) => i + 3)]), [G * cg, m / G, ...geom.kernel]);
  }
  const big = -(2 ** 62);
  const flipped = geom.kernel.every((kk) => kk === 1)
    ? wt
    : e.op('Slice', [wt, e.constI(spAxes.map(() => -1)), e.constI(spAxes.map(() => big)), e.constI(spAxes), e.constI(spAxes.map(() => -1))]);
  return e.op('Conv', [g, flipped], { group: G, kernel_shape: geom.kernel, dilations: geom.dilations, pads: newPads });
}

/**
 * dW of Y = Conv(X, W): Conv of X' (channels to batch, batch to channels) with g' as the kernel, strides and
 * dilations swapped, then sliced to the kernel size and transposed to [M, C/G, k...].
 */
export function convWeightGrad(e: GradEmitter, x: string, xShape: number[], g: string, gShape: number[], geom: ConvGeom): string {
  const [n, c] = xShape as [number, number];
  const sp = xShape.slice(2);
  const r = sp.length;
  const G = geom.group;
  const spAxes = (from: number) => sp.map((_, i) => i + from);
  let xt: string;
  if (G === 1) xt = transpose(e, x, [1, 0, ...spAxes(2)]);
  else {
    const x5 = reshape(e, x, [n, G, c / G, ...sp]);
    const t = transpose(e, x5, [2, 1, 0, ...spAxes(3)]);
    xt = reshape(e, t, [c / G, G * n, ...sp]);
  }
  const gt = transpose(e, g, [1, 0, ...spAxes(2)]);
  let dw = e.op('Conv', [xt, gt], {
    group: G,
    strides: geom.dilations,
    dilations: geom.strides,
    pads: geom.pads,
    kernel_shape: gShape.slice(2),
  });
  // Output spatial size: floor((H + pb + pe - s*(Ho-1) - 1)/d) + 1 >= k; slice the overhang.
  const full = sp.map((h, i) => Math.floor((h + geom.pads[i]! + geom.pads[i + r]! - geom.strides[i]! * (gShape[i + 2]! - 1) - 1) / geom.dilations[i]!) + 1);
  if (full.some((f, i) => f !== geom.kernel[i])) {
    dw = e.op('Slice', [dw, e.constI(full.map(() => 0)), e.constI(geom.kernel), e.constI(spAxes(2))]);
  }
  return transpose(e, dw, [1, 0, ...spAxes(2)]);
}

/** What both convolution rules start from: input, weight and their shapes, the output's, and the bias gradient. */
function convOperands(ctx: GradContext, g: string) {
  const x = ctx.input(0);
  const w = ctx.input(1);
  const xShape = ctx.shape(x);
  // The bias adds along axis 1: its gradient sums g over the batch and the spatial axes.
  const biasGrad = () => (ctx.node.inputs[2] && ctx.needs(2) ? reduceSum(ctx.e, g, [0, ...xShape.slice(2).map((_, i) => i + 2)], false) : undefined);
  return { x, w, xShape, wShape: ctx.shape(w), yShape: ctx.shape(ctx.output(0)), biasGrad };
}

export const convGrad: GradRule = (ctx: GradContext) => {
  const { e, node } = ctx;
  const g = ctx.gradOut(0);
  if (!g) return [];
  const { x, w, xShape, wShape, yShape, biasGrad } = convOperands(ctx, g);
  const geom = convGeom(node, xShape, wShape);
  const r = xShape.length - 2;
  const out: (string | undefined)[] = [];
  if (ctx.needs(0)) {
    const outputPadding = xShape.slice(2).map((h, i) =>
      h - ((yShape[i + 2]! - 1) * geom.strides[i]! - geom.pads[i]! - geom.pads[i + r]! + geom.dilations[i]! * (geom.kernel[i]! - 1) + 1));
    if (outputPadding.some((p) => p < 0)) {
      throw new ShearsError(`Conv input gradient: unexpected output padding ${outputPadding.join(',')}`, { node: node.name });
    }
    out[0] = convInputGradByConv(e, g, w, wShape, geom) ?? e.op('ConvTranspose', [g, w], {
      group: geom.group,
      strides: geom.strides,
      dilations: geom.dilations,
      pads: geom.pads,
      kernel_shape: geom.kernel,
      output_padding: outputPadding,
    });
  }
  if (ctx.needs(1)) out[1] = convWeightGradTaps(e, x, xShape, g, yShape, geom);
  out[2] = biasGrad();
  return out;
};

/** Effective ConvTranspose geometry: explicit pads, or derived from output_shape/auto_pad and the shapes. */
function convTransposeGeom(node: Node, xShape: number[], wShape: number[], yShape: number[]): ConvGeom {
  const r = xShape.length - 2;
  const kernel = wShape.slice(2);
  const a = convTransposeAttrs(node, r);
  let pads = a.pads;
  if (a.outputShape || a.autoPad !== 'NOTSET') {
    pads = new Array<number>(2 * r).fill(0);
    for (let i = 0; i < r; i++) {
      const total = a.strides[i]! * (xShape[i + 2]! - 1) + a.outputPadding[i]! + a.dilations[i]! * (kernel[i]! - 1) + 1 - yShape[i + 2]!;
      const half = Math.floor(total / 2);
      pads[i] = a.autoPad === 'SAME_UPPER' ? half : total - half;
      pads[i + r] = total - pads[i]!;
    }
  }
  return { group: a.group, strides: a.strides, dilations: a.dilations, pads, kernel };
}

export const convTransposeGrad: GradRule = (ctx: GradContext) => {
  const { e, node } = ctx;
  const g = ctx.gradOut(0);
  if (!g) return [];
  const { x, w, xShape, wShape, yShape, biasGrad } = convOperands(ctx, g);
  const geom = convTransposeGeom(node, xShape, wShape, yShape);
  const out: (string | undefined)[] = [];
  if (ctx.needs(0)) {
    out[0] = e.op('Conv', [g, w], { group: geom.group, strides: geom.strides, dilations: geom.dilations, pads: geom.pads, kernel_shape: geom.kernel });
  }
  // Y = ConvT(X, W) is the adjoint of Z = Conv(Y, W) (W read as Conv weights [C, M/G, k]): dW is that Conv's
  // weight gradient with g in the input's place and X in the output gradient's place.
  if (ctx.needs(1)) out[1] = convWeightGrad(e, g, yShape, x, xShape, geom);
  out[2] = biasGrad();
  return out;
};
