/**
 * Convolutions: Conv, ConvTranspose and their quantized forms (QLinearConv, ConvInteger).
 * MACs: Conv = prod(output dims) * (Cin/group) * prod(kernel); ConvTranspose = prod(input dims) * (Cout/group) * prod(kernel).
 */
import { DataType } from '../ir/dtype.js';
import { attrInt, type Attr, type Dim, type Node, type TensorType } from '../ir/graph.js';
import type { CostContext, InferContext, LayerOpDef, NchwcContext, OpDef, WeightSpec } from './types.js';
import { opError, withBias } from './args.js';
import { ZERO_COST } from './cost.js';
import { dimAdd, dimMul, isNum, staticProd } from './dims.js';
import { checkDim, shapeOf, tt } from './shape-rules.js';
import { convTransposeAttrs, kernelShape, windowAttrs, windowOut } from './window.js';

interface ConvInputs {
  x: number;
  w: number;
  bias?: number;
  /** Output dtype; default X's. */
  outType?: (ctx: InferContext) => number | undefined;
}

/** Shared checks: X rank >= 3, W rank = X rank, group divides channels. Returns [xShape, wShape] when known. */
function convShapes(ctx: InferContext, io: ConvInputs): { x: Dim[]; w: Dim[] | undefined; group: number } | undefined {
  const x = shapeOf(ctx, io.x);
  if (!x) return undefined;
  if (x.length < 3) opError(ctx, `input must have rank >= 3 (N, C, spatial...), got rank ${x.length}`);
  const w = shapeOf(ctx, io.w);
  if (w && w.length !== x.length) opError(ctx, `weight rank ${w.length} differs from input rank ${x.length}`);
  const group = attrInt(ctx.node, 'group', 1);
  if (group < 1) opError(ctx, `group ${group} must be >= 1`);
  return { x, w, group };
}

function checkBias(ctx: InferContext, io: ConvInputs, channels: Dim): void {
  if (io.bias === undefined) return;
  const b = shapeOf(ctx, io.bias);
  if (!b) return;
  if (b.length !== 1) opError(ctx, `bias must be 1-D, got rank ${b.length}`);
  checkDim(ctx, b[0], channels, 'bias length differs from the output channels');
}

function outElemType(ctx: InferContext, io: ConvInputs): number | undefined {
  return io.outType ? io.outType(ctx) : ctx.input(io.x)?.elemType;
}

function inferConvWith(io: ConvInputs) {
  return (ctx: InferContext): (TensorType | undefined)[] => {
    const elem = outElemType(ctx, io);
    if (elem === undefined) return [undefined];
    const s = convShapes(ctx, io);
    if (!s) return [tt(elem)];
    const { x, w, group } = s;
    const m = w ? w[0]! : null;
    if (w) {
      const cin = isNum(w[1]) ? w[1] * group : null;
      checkDim(ctx, x[1], cin, `input has ${x[1]} channels but the weight expects ${w[1]} x group ${group}`);
      if (isNum(m) && m % group !== 0) opError(ctx, `output channels ${m} are not divisible by group ${group}`);
    }
    checkBias(ctx, io, m);
    const sp = x.length - 2;
    const kernel = kernelShape(ctx, w, sp);
    if (!kernel) return [tt(elem, [x[0]!, m, ...new Array<Dim>(sp).fill(null)])];
    const win = windowAttrs(ctx, x.slice(2), kernel);
    return [tt(elem, [x[0]!, m, ...x.slice(2).map((n, i) => windowOut(ctx, win, i, n))])];
  };
}

function convTransposeOut(ctx: InferContext, x: Dim[], kernel: number[]): Dim[] {
  const sp = x.length - 2;
  const a = convTransposeAttrs(ctx.node, sp);
  if (a.outputShape) return a.outputShape.length === sp ? a.outputShape : a.outputShape.slice(-sp);
  const pads = a.autoPad === 'NOTSET' ? a.pads : new Array<number>(2 * sp).fill(0);
  return x.slice(2).map((n, i) => {
    const s = a.strides[i]!;
    if (a.autoPad === 'SAME_UPPER' || a.autoPad === 'SAME_LOWER') return dimMul(n, s);
    const extra = a.outputPadding[i]! + (kernel[i]! - 1) * a.dilations[i]! + 1 - pads[i]! - pads[i + sp]!;
    if (!isNum(n)) return s === 1 ? dimAdd(n, extra - 1) : null;
    const out = s * (n - 1) + extra;
    if (out <= 0) opError(ctx, `output size ${out} along spatial axis ${i} is not positive`);
    return out;
  });
}

function inferConvTranspose(ctx: InferContext): (TensorType | undefined)[] {
  const io: ConvInputs = { x: 0, w: 1, bias: 2 };
  const elem = ctx.input(0)?.elemType;
  if (elem === undefined) return [undefined];
  const s = convShapes(ctx, io);
  if (!s) return [tt(elem)];
  const { x, w, group } = s;
  if (w) checkDim(ctx, x[1], w[0], `input has ${x[1]} channels but the weight expects ${w[0]}`);
  const m = w ? dimMul(w[1]!, group) : null;
  checkBias(ctx, io, m);
  const kernel = kernelShape(ctx, w, x.length - 2);
  if (!kernel) return [tt(elem, [x[0]!, m, ...new Array<Dim>(x.length - 2).fill(null)])];
  return [tt(elem, [x[0]!, m, ...convTransposeOut(ctx, x, kernel)])];
}

/** MACs of a conv-like node: prod(output dims) * prod(W dims[1:]). */
function convCost(io: ConvInputs) {
  return (ctx: CostContext) => {
    const out = staticProd(ctx.output(0)?.shape);
    const w = staticProd(ctx.input(io.w)?.shape?.slice(1));
    return out === undefined || w === undefined ? ZERO_COST : { macs: out * w, flops: 0 };
  };
}

/** ConvTranspose MACs: prod(input dims) * (Cout/group) * prod(kernel) = prod(X) * prod(W dims[1:]). */
function convTransposeCost(ctx: CostContext) {
  const x = staticProd(ctx.input(0)?.shape);
  const w = staticProd(ctx.input(1)?.shape?.slice(1));
  return x === undefined || w === undefined ? ZERO_COST : { macs: x * w, flops: 0 };
}

function spec(s: WeightSpec, minRank: number) {
  return (node: Node, dims?: readonly number[]): WeightSpec | undefined =>
    dims !== undefined && dims.length < minRank ? undefined : withBias(node, s);
}

/**
 * Most extra multiply-adds accepted to run a Conv on the NCHWc kernels with its channel counts padded up to the
 * block: (O' C') / (O C) with O', C' rounded up. ResNet-20 pruned to 11/23/46 channels (padded to 16/32/48, at
 * most 2.1x) trained 15% faster per step this way than on onnxruntime's plain NCHW convolution.
 */
const NCHWC_MAX_PADDING = 2.25;

/** Node maker for one Conv's NCHWc rewrite, and the common tail: a blocked weight, reorders and the nchwc Conv. */
function nchwcRewrite(node: Node, ctx: NchwcContext) {
  const domain = 'com.microsoft.nchwc';
  const mk = (opType: string, inputs: string[], attrs: [string, Attr][], out: string, dom = ''): Node =>
    ({ name: ctx.fresh(`${node.name}/nchwc_${opType}`), opType, domain: dom, inputs, outputs: [out], attrs: new Map(attrs) });
  /**
   * The weight `w` rearranged by Reshape(blocks) -> Transpose(perm) -> Reshape(dims), then
   * ReorderInput(x) -> nchwc Conv -> ReorderOutput(channels) onto the node's output.
   */
  const tail = (x: string, w: string, bias: string | undefined, blocks: number[], perm: number[], dims: number[], kernel: number[], channels: number, out = node.outputs[0]!): Node[] => {
    const wb = ctx.fresh(`${w}/blocks`);
    const wt = ctx.fresh(`${w}/blocked`);
    const wr = ctx.fresh(`${w}/nchwc_layout`);
    const xr = ctx.fresh(`${x}/nchwc`);
    const y = ctx.fresh(`${node.outputs[0]}/nchwc`);
    const attrs: [string, Attr][] = [...node.attrs].filter(([k]) => k !== 'kernel_shape');
    attrs.push(['kernel_shape', { kind: 'ints', value: kernel }]);
    return [
      mk('Reshape', [w, ctx.int64(blocks)], [], wb),
      mk('Transpose', [wb], [['perm', { kind: 'ints', value: perm }]], wt),
      mk('Reshape', [wt, ctx.int64(dims)], [], wr),
      mk('ReorderInput', [x], [], xr, domain),
      mk('Conv', bias ? [xr, wr, bias] : [xr, wr], attrs, y, domain),
      mk('ReorderOutput', [y], [['channels', { kind: 'int', value: channels }]], out, domain),
    ];
  };
  return { mk, tail };
}

/**
 * 2-D float Conv with group 1: ReorderInput(X) -> nchwc Conv with the weight rearranged in-graph to
 * onnxruntime's OIHWBiBo layout ([O/b][I/b][kh][kw][b in][b out], as MlasReorderFilterOIHWBiBo writes it) ->
 * ReorderOutput. The weight may be any value (a fed or computed one). Channel counts that are not multiples of
 * the block are padded with zero weights (ReorderInput zero-fills the extra input channels once X has a multiple
 * of 4, ReorderOutput drops the extra outputs) when that costs at most NCHWC_MAX_PADDING times the work.
 */
function convNchwc(node: Node, ctx: NchwcContext): Node[] | undefined {
  const [x, w, bias] = node.inputs;
  if (!x || !w || node.outputs.length !== 1) return undefined;
  if (attrInt(node, 'group', 1) !== 1) return depthwiseNchwc(node, ctx);
  const wd = ctx.shape(w);
  const b = ctx.block;
  if (!wd || wd.length !== 4 || ctx.shape(x)?.length !== 4) return undefined;
  if (ctx.elemType(x) !== DataType.FLOAT || ctx.elemType(w) !== DataType.FLOAT) return undefined;
  const [o, c, kh, kw] = wd as [number, number, number, number];
  if (o <= 0 || c <= 0 || kh <= 0 || kw <= 0) return undefined;
  const folded = foldBatchNchwc(node, ctx, o, c, kh, kw);
  if (folded) return folded;
  const op = Math.ceil(o / b) * b;
  const cp = Math.ceil(c / b) * b;
  if ((op * cp) / (o * c) > NCHWC_MAX_PADDING) return undefined;
  const { mk, tail } = nchwcRewrite(node, ctx);
  const nodes: Node[] = [];
  let wIn = w;
  let biasIn = bias;
  if (op !== o || cp !== c) {
    wIn = ctx.fresh(`${w}/padded`);
    nodes.push(mk('Pad', [w, ctx.int64([0, 0, 0, 0, op - o, cp - c, 0, 0])], [], wIn));
    if (bias && op !== o) {
      biasIn = ctx.fresh(`${bias}/padded`);
      nodes.push(mk('Pad', [bias, ctx.int64([0, op - o])], [], biasIn));
    }
  }
  // ReorderInput takes channel counts divisible by 4 (it zero-fills up to the block): pad X to that first.
  let xIn = x;
  if (c % 4 !== 0) {
    xIn = ctx.fresh(`${x}/pad4`);
    nodes.push(mk('Pad', [x, ctx.int64([0, 0, 0, 0, 0, 4 - (c % 4), 0, 0])], [], xIn));
  }
  nodes.push(...tail(xIn, wIn, biasIn, [op / b, b, cp / b, b, kh, kw], [0, 2, 4, 5, 3, 1], [op, cp, kh, kw], [kh, kw], o));
  return nodes;
}

/**
 * A narrow Conv (both channel counts at most half the block, e.g. 8 channels with AVX-512's blocks of 16) ran on
 * onnxruntime's plain NCHW path at a fraction of the blocked kernels' speed, and padding its channels up to the
 * block multiplies the work by up to 4. Instead, k = block / max(O, C) images of the batch are folded into the
 * channel axis (a free Reshape of [N, C, H, W] to [N/k, kC, H, W]) and convolved with the block-diagonal weight
 * [kO, kC, kh, kw] built in-graph, each image meeting only its own copy of the weight: k times the multiply-adds
 * of the plain Conv, on the NCHWc kernels, then Reshaped back to [N, O, Ho, Wo]. Needs static batch and output
 * dims, and the batch divisible by k.
 */
function foldBatchNchwc(node: Node, ctx: NchwcContext, o: number, c: number, kh: number, kw: number): Node[] | undefined {
  const b = ctx.block;
  const k = Math.floor(b / Math.max(o, c));
  const [x, w, bias] = node.inputs as [string, string, string | undefined];
  const xd = ctx.shape(x);
  const yd = ctx.shape(node.outputs[0]!);
  if (k < 2 || !xd || !yd || yd.length !== 4 || xd.some((d) => d <= 0) || yd.some((d) => d <= 0) || xd[0]! % k !== 0) return undefined;
  const ko = k * o;
  const kc = k * c;
  const op = Math.ceil(ko / b) * b;
  const cp = Math.ceil(kc / b) * b;
  if ((op * cp) / (ko * kc) > NCHWC_MAX_PADDING) return undefined;
  const { mk, tail } = nchwcRewrite(node, ctx);
  const nodes: Node[] = [];
  const xf = ctx.fresh(`${x}/batch_folded`);
  nodes.push(mk('Reshape', [x, ctx.int64([xd[0]! / k, kc, xd[2]!, xd[3]!])], [], xf));
  const copies: string[] = [];
  for (let i = 0; i < k; i++) {
    const wi = ctx.fresh(`${w}/diag${i}`);
    nodes.push(mk('Pad', [w, ctx.int64([0, i * c, 0, 0, op === ko || i < k - 1 ? 0 : op - ko, (k - 1 - i) * c + cp - kc, 0, 0])], [], wi));
    copies.push(wi);
  }
  // The last copy carries the padding of the output channels up to the block; the others are padded to kC' only.
  const wbd = ctx.fresh(`${w}/block_diagonal`);
  nodes.push(mk('Concat', copies, [['axis', { kind: 'int', value: 0 }]], wbd));
  let biasIn: string | undefined;
  if (bias) {
    biasIn = ctx.fresh(`${bias}/folded`);
    const parts = Array.from({ length: k }, () => bias);
    if (op !== ko) {
      const padded = ctx.fresh(`${bias}/padded`);
      nodes.push(mk('Pad', [bias, ctx.int64([0, op - ko])], [], padded));
      parts[k - 1] = padded;
    }
    nodes.push(mk('Concat', parts, [['axis', { kind: 'int', value: 0 }]], biasIn));
  }
  let xIn = xf;
  if (cp !== kc) {
    xIn = ctx.fresh(`${xf}/padded`);
    nodes.push(mk('Pad', [xf, ctx.int64([0, 0, 0, 0, 0, cp - kc, 0, 0])], [], xIn));
  }
  const yf = ctx.fresh(`${node.outputs[0]}/batch_folded`);
  nodes.push(...tail(xIn, wbd, biasIn, [op / b, b, cp / b, b, kh, kw], [0, 2, 4, 5, 3, 1], [op, cp, kh, kw], [kh, kw], ko, yf));
  nodes.push(mk('Reshape', [yf, ctx.int64(yd)], [], node.outputs[0]!));
  return nodes;
}

/**
 * Depthwise 2-D float Conv (group = channels, one filter per channel) with the channel count a multiple of the
 * block: the NCHWc depthwise kernel with the weight in onnxruntime's OIHWBo layout ([C/b][kh][kw][b], as
 * MlasReorderFilterOIHWBo writes it).
 */
function depthwiseNchwc(node: Node, ctx: NchwcContext): Node[] | undefined {
  const [x, w, bias] = node.inputs as [string, string, string | undefined];
  const wd = ctx.shape(w);
  const xd = ctx.shape(x);
  const b = ctx.block;
  if (!wd || wd.length !== 4 || xd?.length !== 4) return undefined;
  if (ctx.elemType(x) !== DataType.FLOAT || ctx.elemType(w) !== DataType.FLOAT) return undefined;
  const [o, one, kh, kw] = wd as [number, number, number, number];
  const group = attrInt(node, 'group', 1);
  if (one !== 1 || group !== o || xd[1] !== o || o % b !== 0 || kh <= 0 || kw <= 0) return undefined;
  return nchwcRewrite(node, ctx).tail(x, w, bias, [o / b, b, kh, kw], [0, 2, 3, 1], [o, 1, kh, kw], [kh, kw], o);
}

const CONV: ConvInputs = { x: 0, w: 1, bias: 2 };
const QLINEAR_CONV: ConvInputs = { x: 0, w: 3, bias: 8, outType: (ctx) => ctx.input(7)?.elemType ?? ctx.input(0)?.elemType };
const CONV_INTEGER: ConvInputs = { x: 0, w: 1, outType: () => DataType.INT32 };

export const CONV_OPS = {
  Conv: {
    infer: inferConvWith(CONV),
    cost: convCost(CONV),
    paramInputs: [1, 2],
    weight: spec({ input: 1, outAxis: 0, inAxis: 1, bias: 2 }, 3),
    quant: { kind: 'compute', inputs: [0, 1], bias: 2 },
    nchwc: convNchwc,
  } satisfies LayerOpDef,
  ConvTranspose: {
    infer: inferConvTranspose,
    cost: convTransposeCost,
    paramInputs: [1, 2],
    weight: spec({ input: 1, outAxis: 1, inAxis: 0, bias: 2 }, 3),
  } satisfies LayerOpDef,
  QLinearConv: { infer: inferConvWith(QLINEAR_CONV), cost: convCost(QLINEAR_CONV), paramInputs: [3, 8], integerParams: true },
  ConvInteger: { infer: inferConvWith(CONV_INTEGER), cost: convCost(CONV_INTEGER), paramInputs: [1], integerParams: true },
} satisfies Record<string, OpDef | LayerOpDef>;
