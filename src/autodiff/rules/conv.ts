/** Gradients of Conv and ConvTranspose, as ConvTranspose/Conv nodes over (transposed) tensors. */
import { ShearsError } from '../../errors.js';
import { attrInt, attrInts, attrString, type Node } from '../../ir/graph.js';
import type { GradContext, GradEmitter, GradRule } from '../../ops/types.js';
import { reduceSum, reshape, transpose } from '../helpers.js';

export interface ConvGeom {
  group: number;
  strides: number[];
  dilations: number[];
  /** [begin..., end...] as in ONNX. */
  pads: number[];
  kernel: number[];
}

/** Effective Conv geometry (auto_pad resolved) from the node and static shapes. */
export function convGeom(node: Node, xShape: number[], wShape: number[], yShape: number[]): ConvGeom {
  const r = xShape.length - 2;
  const kernel = wShape.slice(2);
  const strides = attrInts(node, 'strides') ?? new Array<number>(r).fill(1);
  const dilations = attrInts(node, 'dilations') ?? new Array<number>(r).fill(1);
  const group = attrInt(node, 'group', 1);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  let pads = attrInts(node, 'pads') ?? new Array<number>(2 * r).fill(0);
  if (autoPad === 'VALID') pads = new Array<number>(2 * r).fill(0);
  else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    pads = new Array<number>(2 * r).fill(0);
    for (let i = 0; i < r; i++) {
      const dk = dilations[i]! * (kernel[i]! - 1) + 1;
      const total = Math.max(0, (yShape[i + 2]! - 1) * strides[i]! + dk - xShape[i + 2]!);
      const small = Math.floor(total / 2);
      pads[i] = autoPad === 'SAME_UPPER' ? small : total - small;
      pads[i + r] = total - pads[i]!;
    }
  }
  return { group, strides, dilations, pads, kernel };
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

export const convGrad: GradRule = (ctx: GradContext) => {
  const { e, node } = ctx;
  const g = ctx.gradOut(0);
  if (!g) return [];
  const x = ctx.input(0);
  const w = ctx.input(1);
  const xShape = ctx.shape(x);
  const wShape = ctx.shape(w);
  const yShape = ctx.shape(ctx.output(0));
  const geom = convGeom(node, xShape, wShape, yShape);
  const r = xShape.length - 2;
  const out: (string | undefined)[] = [];
  if (ctx.needs(0)) {
    const outputPadding = xShape.slice(2).map((h, i) =>
      h - ((yShape[i + 2]! - 1) * geom.strides[i]! - geom.pads[i]! - geom.pads[i + r]! + geom.dilations[i]! * (geom.kernel[i]! - 1) + 1));
    if (outputPadding.some((p) => p < 0)) {
      throw new ShearsError(`Conv input gradient: unexpected output padding ${outputPadding.join(',')}`, { node: node.name });
    }
    out[0] = e.op('ConvTranspose', [g, w], {
      group: geom.group,
      strides: geom.strides,
      dilations: geom.dilations,
      pads: geom.pads,
      kernel_shape: geom.kernel,
      output_padding: outputPadding,
    });
  }
  if (ctx.needs(1)) out[1] = convWeightGrad(e, x, xShape, g, yShape, geom);
  if (node.inputs[2] && ctx.needs(2)) out[2] = reduceSum(e, g, [0, ...xShape.slice(2).map((_, i) => i + 2)], false);
  return out;
};

/** Effective ConvTranspose geometry: explicit pads, or derived from output_shape/auto_pad and the shapes. */
function convTransposeGeom(node: Node, xShape: number[], wShape: number[], yShape: number[]): ConvGeom {
  const r = xShape.length - 2;
  const kernel = wShape.slice(2);
  const strides = attrInts(node, 'strides') ?? new Array<number>(r).fill(1);
  const dilations = attrInts(node, 'dilations') ?? new Array<number>(r).fill(1);
  const group = attrInt(node, 'group', 1);
  const outputPadding = attrInts(node, 'output_padding') ?? new Array<number>(r).fill(0);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  let pads = attrInts(node, 'pads') ?? new Array<number>(2 * r).fill(0);
  if (attrInts(node, 'output_shape') || autoPad !== 'NOTSET') {
    pads = new Array<number>(2 * r).fill(0);
    for (let i = 0; i < r; i++) {
      const total = strides[i]! * (xShape[i + 2]! - 1) + outputPadding[i]! + dilations[i]! * (kernel[i]! - 1) + 1 - yShape[i + 2]!;
      const half = Math.floor(total / 2);
      pads[i] = autoPad === 'SAME_UPPER' ? half : total - half;
      pads[i + r] = total - pads[i]!;
    }
  }
  return { group, strides, dilations, pads, kernel };
}

export const convTransposeGrad: GradRule = (ctx: GradContext) => {
  const { e, node } = ctx;
  const g = ctx.gradOut(0);
  if (!g) return [];
  const x = ctx.input(0);
  const w = ctx.input(1);
  const xShape = ctx.shape(x);
  const wShape = ctx.shape(w);
  const yShape = ctx.shape(ctx.output(0));
  const geom = convTransposeGeom(node, xShape, wShape, yShape);
  const out: (string | undefined)[] = [];
  if (ctx.needs(0)) {
    out[0] = e.op('Conv', [g, w], { group: geom.group, strides: geom.strides, dilations: geom.dilations, pads: geom.pads, kernel_shape: geom.kernel });
  }
  // Y = ConvT(X, W) is the adjoint of Z = Conv(Y, W) (W read as Conv weights [C, M/G, k]): dW is that Conv's
  // weight gradient with g in the input's place and X in the output gradient's place.
  if (ctx.needs(1)) out[1] = convWeightGrad(e, g, yShape, x, xShape, geom);
  if (node.inputs[2] && ctx.needs(2)) out[2] = reduceSum(e, g, [0, ...xShape.slice(2).map((_, i) => i + 2)], false);
  return out;
};
