/** Gradient of Resize (nearest): the source index of every output element, scattered with addition. */
import { ShearsError } from '../../errors.js';
import { attrString } from '../../ir/graph.js';
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

/** Source index along one axis of a nearest Resize, per ONNX's coordinate transformation modes. */
export function nearestSource(outIdx: number, inLen: number, outLen: number, scale: number, coordMode: string, nearestMode: string): number {
  let x: number;
  switch (coordMode) {
    case 'asymmetric': x = outIdx / scale; break;
    case 'align_corners': x = outLen === 1 ? 0 : (outIdx * (inLen - 1)) / (outLen - 1); break;
    case 'pytorch_half_pixel': x = outLen > 1 ? (outIdx + 0.5) / scale - 0.5 : 0; break;
    case 'tf_half_pixel_for_nn': x = (outIdx + 0.5) / scale; break;
    case 'half_pixel': x = (outIdx + 0.5) / scale - 0.5; break;
    default: throw new ShearsError(`Resize gradient: coordinate_transformation_mode '${coordMode}' is not supported`);
  }
  return Math.min(Math.max(nearest(x, nearestMode), 0), inLen - 1);
}

export const resizeGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g || !ctx.needs(0)) return [];
  const { e, node } = ctx;
  if (attrString(node, 'mode', 'nearest') !== 'nearest') throw new ShearsError('Resize gradient: only mode nearest is supported', { node: node.name });
  const coordMode = attrString(node, 'coordinate_transformation_mode', 'half_pixel');
  const nearestMode = attrString(node, 'nearest_mode', 'round_prefer_floor');
  const xShape = ctx.shape(ctx.input(0));
  const yShape = ctx.shape(ctx.output(0));
  const rank = xShape.length;
  const scalesT = node.inputs[2] ? ctx.constant(2) : undefined;
  const scales = scalesT && numel(scalesT.dims) === rank ? toNumbers(scalesT) : yShape.map((y, i) => y / xShape[i]!);
  const maps = yShape.map((yl, a) => Array.from({ length: yl }, (_, o) => nearestSource(o, xShape[a]!, yl, scales[a]!, coordMode, nearestMode)));
  return [scatterAddBySource(e, g, xShape, yShape, maps)];
};
