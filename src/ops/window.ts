/**
 * Sliding-window geometry of Conv, ConvTranspose and the pools: kernel, strides, dilations, pads with auto_pad
 * resolved, output sizes; read by the shape and gradient rules alike.
 */
import { attrInt, attrInts, attrString, type Dim, type Node } from '../ir/graph.js';
import { opError } from './args.js';
import { isNum, isStatic } from './dims.js';

export interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  /** [begin..., end...] after resolving auto_pad for the given input sizes (undefined where it depends on an unknown size). */
  pads: (number | undefined)[];
  autoPad: string;
}

/**
 * Spatial window attributes of Conv/ConvTranspose/pooling: kernel (attribute or given), strides, dilations,
 * pads with auto_pad resolved against the spatial input sizes.
 */
export function windowAttrs(ctx: { readonly node: Node }, spatial: readonly Dim[], kernel: number[]): Window {
  return nodeWindow(ctx.node, spatial, kernel, (msg) => opError(ctx, msg));
}

/** windowAttrs for any caller (gradient rules, ...): `fail` reports attributes that do not fit. */
export function nodeWindow(node: Node, spatial: readonly Dim[], kernel: number[], fail: (msg: string) => never): Window {
  const k = kernel.length;
  const strides = attrInts(node, 'strides') ?? new Array<number>(k).fill(1);
  const dilations = attrInts(node, 'dilations') ?? new Array<number>(k).fill(1);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  if (strides.length !== k || dilations.length !== k) fail(`strides/dilations do not match the ${k} spatial axes`);
  let pads: (number | undefined)[] = attrInts(node, 'pads') ?? new Array<number>(2 * k).fill(0);
  if (pads.length !== 2 * k) fail(`pads has ${pads.length} values, expected ${2 * k}`);
  if (autoPad === 'VALID') pads = new Array<number>(2 * k).fill(0);
  else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    pads = new Array<number | undefined>(2 * k);
    for (let i = 0; i < k; i++) {
      const n = spatial[i];
      if (!isNum(n)) continue;
      const out = Math.ceil(n / strides[i]!);
      const total = Math.max(0, (out - 1) * strides[i]! + (kernel[i]! - 1) * dilations[i]! + 1 - n);
      const small = Math.floor(total / 2);
      pads[i] = autoPad === 'SAME_UPPER' ? small : total - small;
      pads[i + k] = total - pads[i]!;
    }
  } else if (autoPad !== 'NOTSET') fail(`unknown auto_pad '${autoPad}'`);
  return { kernel, strides, dilations, pads, autoPad };
}

/** Output size of a sliding window along one axis (Conv, pools). */
export function windowOut(ctx: { readonly node: Node }, w: Window, axis: number, n: Dim, ceilMode = false): Dim {
  const k = w.kernel.length;
  const s = w.strides[axis]!;
  const d = w.dilations[axis]!;
  const ext = (w.kernel[axis]! - 1) * d + 1;
  if (w.autoPad === 'SAME_UPPER' || w.autoPad === 'SAME_LOWER') return isNum(n) ? Math.ceil(n / s) : s === 1 ? n : null;
  const pb = w.pads[axis];
  const pe = w.pads[axis + k];
  if (pb === undefined || pe === undefined) return null;
  if (!isNum(n)) return s === 1 && pb + pe === ext - 1 ? n : null;
  const span = n + pb + pe - ext;
  if (span < 0) opError(ctx, `window of extent ${ext} does not fit the input size ${n} (pads ${pb}+${pe})`);
  if (!ceilMode) return Math.floor(span / s) + 1;
  let out = Math.ceil(span / s) + 1;
  // The last window must start inside the input or the begin padding.
  if ((out - 1) * s >= n + pb) out--;
  return out;
}

/** The kernel sizes of a window op: its kernel_shape attribute or the weight's trailing dims. */
export function kernelShape(ctx: { readonly node: Node }, weight: readonly Dim[] | undefined, spatialRank: number): number[] | undefined {
  const k = attrInts(ctx.node, 'kernel_shape');
  if (k) {
    if (k.length !== spatialRank) opError(ctx, `kernel_shape has ${k.length} values for ${spatialRank} spatial axes`);
    return k;
  }
  const ws = weight?.slice(2);
  return ws && isStatic(ws) ? ws : undefined;
}

/** ConvTranspose's attributes over `spatial` axes, with their defaults. */
export interface ConvTransposeAttrs {
  group: number;
  strides: number[];
  dilations: number[];
  outputPadding: number[];
  /** NOTSET: the pads hold; SAME_UPPER/SAME_LOWER/VALID: the output size does (and output_shape overrides both). */
  autoPad: string;
  /** [begin..., end...] as given (zeros when absent). */
  pads: number[];
  outputShape?: number[];
}

export function convTransposeAttrs(node: Node, spatial: number): ConvTransposeAttrs {
  const a: ConvTransposeAttrs = {
    group: attrInt(node, 'group', 1),
    strides: attrInts(node, 'strides') ?? new Array<number>(spatial).fill(1),
    dilations: attrInts(node, 'dilations') ?? new Array<number>(spatial).fill(1),
    outputPadding: attrInts(node, 'output_padding') ?? new Array<number>(spatial).fill(0),
    autoPad: attrString(node, 'auto_pad', 'NOTSET'),
    pads: attrInts(node, 'pads') ?? new Array<number>(2 * spatial).fill(0),
  };
  const outputShape = attrInts(node, 'output_shape');
  if (outputShape) a.outputShape = outputShape;
  return a;
}
