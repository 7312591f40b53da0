/**
 * Detection and sampling ops: NonMaxSuppression (selected_indices [num_selected, 3], a data-dependent count),
 * RoiAlign (Y [num_rois, C, output_height, output_width]) and GridSample (Y [N, C, grid's spatial dims], 2-D
 * and, from opset 20, N-D). Cost: FLOPs only (RoiAlign: 4 per bilinear sample, sampling_ratio^2 samples per
 * output, 2x2 when adaptive; GridSample: 8 per output for linear modes, 1 for nearest, 32 for cubic).
 */
import { DataType } from '../ir/dtype.js';
import { attrInt, attrString, type Dim, type TensorType } from '../ir/graph.js';
import { opError } from './args.js';
import { outElems } from './cost.js';
import { fmtShape } from './dims.js';
import { checkDim, shapeOf, tt } from './shape-rules.js';
import type { CostContext, InferContext, OpDef } from './types.js';

function inferNms(ctx: InferContext): (TensorType | undefined)[] {
  const boxes = shapeOf(ctx, 0), scores = shapeOf(ctx, 1);
  if (boxes) {
    if (boxes.length !== 3) opError(ctx, `boxes must be 3-D [batch, boxes, 4], got ${fmtShape(boxes)}`);
    checkDim(ctx, boxes[2], 4, 'boxes must have 4 coordinates');
  }
  if (scores) {
    if (scores.length !== 3) opError(ctx, `scores must be 3-D [batch, classes, boxes], got ${fmtShape(scores)}`);
    if (boxes) {
      checkDim(ctx, scores[0], boxes[0], 'scores and boxes differ in batch size');
      checkDim(ctx, scores[2], boxes[1], 'scores and boxes differ in box count');
    }
  }
  // [batch_index, class_index, box_index] per selected box; the count depends on the data.
  return [tt(DataType.INT64, [null, 3])];
}

function inferRoiAlign(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  if (!x) return [undefined];
  const xs = x.shape, rois = shapeOf(ctx, 1), idx = shapeOf(ctx, 2);
  if (xs && xs.length !== 4) opError(ctx, `X must be 4-D [N, C, H, W], got ${fmtShape(xs)}`);
  if (rois && (rois.length !== 2 || (typeof rois[1] === 'number' && rois[1] !== 4))) opError(ctx, `rois must be [num_rois, 4], got ${fmtShape(rois)}`);
  if (idx && idx.length !== 1) opError(ctx, `batch_indices must be 1-D [num_rois], got ${fmtShape(idx)}`);
  if (rois && idx) checkDim(ctx, rois[0], idx[0], 'rois and batch_indices differ in count');
  const oh = attrInt(ctx.node, 'output_height', 1), ow = attrInt(ctx.node, 'output_width', 1);
  return [tt(x.elemType, [rois?.[0] ?? idx?.[0] ?? null, xs ? xs[1]! : null, oh, ow])];
}

function roiAlignCost(ctx: CostContext) {
  const sr = attrInt(ctx.node, 'sampling_ratio', 0);
  const samples = sr > 0 ? sr * sr : 4;
  return { macs: 0, flops: outElems(ctx) * samples * 4 };
}

function inferGridSample(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  if (!x) return [undefined];
  const xs = x.shape, g = shapeOf(ctx, 1);
  if (!xs || !g) return [tt(x.elemType)];
  const r = xs.length - 2;
  if (r < 1 || (ctx.opset < 20 && r !== 2)) opError(ctx, `X must be 4-D [N, C, H, W]${ctx.opset >= 20 ? ' or N-D' : ''}, got ${fmtShape(xs)}`);
  if (g.length !== r + 2) opError(ctx, `grid ${fmtShape(g)} must have rank ${r + 2} for X ${fmtShape(xs)}`);
  checkDim(ctx, g[r + 1], r, `grid ${fmtShape(g)} must end in ${r} coordinates`);
  checkDim(ctx, g[0], xs[0], 'grid and X differ in batch size');
  const out: Dim[] = [xs[0]!, xs[1]!, ...g.slice(1, r + 1)];
  return [tt(x.elemType, out)];
}

function gridSampleCost(ctx: CostContext) {
  const mode = attrString(ctx.node, 'mode', ctx.opset >= 20 ? 'linear' : 'bilinear');
  const per = mode === 'nearest' ? 1 : mode === 'cubic' || mode === 'bicubic' ? 32 : 8;
  return { macs: 0, flops: outElems(ctx) * per };
}

export const DETECT_OPS = {
  NonMaxSuppression: { infer: inferNms },
  RoiAlign: { infer: inferRoiAlign, cost: roiAlignCost },
  GridSample: { infer: inferGridSample, cost: gridSampleCost },
} satisfies Record<string, OpDef>;
