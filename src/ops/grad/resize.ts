/**
 * Gradient of Resize. Nearest: the source index of every output element, scattered with addition. Linear: the
 * interpolation along each resized axis is a constant matrix M (y = x M along that axis), so the gradient is
 * g M^T, a MatMul per resized axis (the last two axes, as images resize).
 */
import { ShearsError } from '../../errors.js';
import { attrInt, attrString } from '../../ir/graph.js';
import { numel, toNumbers } from '../../ir/tensor.js';
import type { GradRule } from '../types.js';
import { scatterAddBySource } from './helpers.js';

function nearest(xOrig: number, mode: string): number {
  switch (mode) {
    case 'floor': return Math.floor(xOrig);
    case 'ceil': return Math.ceil(xOrig);
    case 'round_prefer_ceil': return Math.floor(xOrig) + (xOrig - Math.floor(xOrig) >= 0.5 ? 1 : 0);
    default: return xOrig - Math.floor(xOrig) > 0.5 ? Math.ceil(xOrig) : Math.floor(xOrig); // round_prefer_floor
  }
}

/** Input coordinate of output index `outIdx` along one axis, per ONNX's coordinate transformation modes. */
function sourceCoord(outIdx: number, inLen: number, outLen: number, scale: number, coordMode: string): number {
  switch (coordMode) {
    case 'asymmetric': return outIdx / scale;
    case 'align_corners': return outLen === 1 ? 0 : (outIdx * (inLen - 1)) / (outLen - 1);
    case 'pytorch_half_pixel': return outLen > 1 ? (outIdx + 0.5) / scale - 0.5 : 0;
    case 'tf_half_pixel_for_nn': return (outIdx + 0.5) / scale;
    case 'half_pixel': return (outIdx + 0.5) / scale - 0.5;
    default: throw new ShearsError(`Resize gradient: coordinate_transformation_mode '${coordMode}' is not supported`);
  }
}

/** Source index along one axis of a nearest Resize. */
export function nearestSource(outIdx: number, inLen: number, outLen: number, scale: number, coordMode: string, nearestMode: string): number {
  return Math.min(Math.max(nearest(sourceCoord(outIdx, inLen, outLen, scale, coordMode), nearestMode), 0), inLen - 1);
}

/** [inLen, outLen] weights of a linear Resize along one axis: y[o] = sum_i x[i] M[i, o] (clamped at the edges). */
function linearMatrix(inLen: number, outLen: number, scale: number, coordMode: string): number[] {
  const m = new Array<number>(inLen * outLen).fill(0);
  for (let o = 0; o < outLen; o++) {
    const x = Math.min(Math.max(sourceCoord(o, inLen, outLen, scale, coordMode), 0), inLen - 1);
    const lo = Math.floor(x);
    const hi = Math.min(lo + 1, inLen - 1);
    const w = x - lo;
    m[lo * outLen + o]! += 1 - w;
    m[hi * outLen + o]! += w;
  }
  return m;
}

export const resizeGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const { e, node } = ctx;
  const mode = attrString(node, 'mode', 'nearest');
  if (mode !== 'nearest' && mode !== 'linear') throw new ShearsError(`Resize gradient: mode '${mode}' is not supported (nearest, linear)`, { node: node.name });
  if (attrInt(node, 'antialias', 0) !== 0) throw new ShearsError('Resize gradient: antialias is not supported', { node: node.name });
  const coordMode = attrString(node, 'coordinate_transformation_mode', 'half_pixel');
  const nearestMode = attrString(node, 'nearest_mode', 'round_prefer_floor');
  const xShape = ctx.shape(ctx.input(0));
  const yShape = ctx.shape(ctx.output(0));
  const rank = xShape.length;
  const scalesT = node.inputs[2] ? ctx.constant(2) : undefined;
  const scales = scalesT && numel(scalesT.dims) === rank ? toNumbers(scalesT) : yShape.map((y, i) => y / xShape[i]!);
  if (mode === 'linear') {
    const resized = xShape.map((_, a) => a).filter((a) => xShape[a] !== yShape[a] || scales[a] !== 1);
    if (resized.some((a) => a < rank - 2)) throw new ShearsError('Resize gradient: linear resizing is supported on the last two axes', { node: node.name });
    let d = g;
    for (const a of resized) {
      const m = linearMatrix(xShape[a]!, yShape[a]!, scales[a]!, coordMode);
      if (a === rank - 1) {
        // dx = g M^T: M^T as [out, in].
        const mt = new Array<number>(m.length);
        for (let i = 0; i < xShape[a]!; i++) for (let o = 0; o < yShape[a]!; o++) mt[o * xShape[a]! + i] = m[i * yShape[a]! + o]!;
        d = e.op('MatMul', [d, e.constF(mt, [yShape[a]!, xShape[a]!])]);
      } else {
        // Along rows: dx = M g with M as [in, out].
        d = e.op('MatMul', [e.constF(m, [xShape[a]!, yShape[a]!]), d]);
      }
    }
    return [d];
  }
  const maps = yShape.map((yl, a) => Array.from({ length: yl }, (_, o) => nearestSource(o, xShape[a]!, yl, scales[a]!, coordMode, nearestMode)));
  return [scatterAddBySource(e, g, xShape, yShape, maps, ctx.opset)];
};
