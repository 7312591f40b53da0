/**
 * Layers as grouped matrix products, for the repair stage (least squares, OBS/SparseGPT, Wanda): Conv (patches by
 * a one-hot depthwise Conv, i.e. im2col in onnxruntime), Gemm and MatMul with a constant 2-D weight.
 */
import { attrInt, attrInts, attrString } from '../ir/graph.js';
import { gemmArgs } from './args.js';
import type { GradAttr, LinearContext, LinearForm, LinearRule } from './types.js';

function constWeight(ctx: LinearContext, i: number): number[] | string {
  const w = ctx.constant(i);
  if (!w) return 'the weight is not a constant';
  return w.dims;
}

const conv: LinearRule = {
  form(ctx) {
    const wd = constWeight(ctx, 1);
    if (typeof wd === 'string') return wd;
    const group = attrInt(ctx.node, 'group', 1);
    const [cout, cinG, ...ks] = wd as [number, number, ...number[]];
    if (ks.length === 0) return 'the weight has no kernel dimensions';
    const kernel = ks.reduce((a, b) => a * b, 1);
    const k = cinG * kernel;
    const outPerGroup = cout / group;
    if (!Number.isInteger(outPerGroup)) return `output channels ${cout} not divisible by group ${group}`;
    const form: LinearForm = {
      groups: group, k, outPerGroup, kernel, alpha: 1, beta: 1,
      // W [cout, cinG, ...k] flattened: ((g * outPerGroup + o) * cinG + c) * kernel + s = (g * outPerGroup + o) * k + kk
      weightIndex: (g, o, kk) => (g * outPerGroup + o) * k + kk,
    };
    if (ctx.node.inputs[2]) {
      if (!ctx.constant(2)) return 'the bias is not a constant';
      form.bias = 2;
    }
    return form;
  },
  patches(ctx, form, e, x) {
    const w = ctx.constant(1)!;
    const ks = w.dims.slice(2);
    const cin = w.dims[1]! * form.groups;
    const kernel = form.kernel;
    // One-hot depthwise kernel: output channel c * kernel + s copies input channel c at kernel position s.
    const eye = new Float32Array(cin * kernel * kernel);
    for (let c = 0; c < cin; c++) for (let s = 0; s < kernel; s++) eye[(c * kernel + s) * kernel + s] = 1;
    const attrs: Record<string, GradAttr> = { group: cin, kernel_shape: ks };
    for (const a of ['strides', 'pads', 'dilations'] as const) {
      const v = attrInts(ctx.node, a);
      if (v) attrs[a] = v;
    }
    const ap = attrString(ctx.node, 'auto_pad', 'NOTSET');
    if (ap !== 'NOTSET') attrs['auto_pad'] = ap;
    const p = e.op('Conv', [x, e.constT({ dtype: w.dtype, dims: [cin * kernel, 1, ...ks], data: eye })], attrs);
    // [N, G*K, ...spatial] -> [N, G, K, S] -> [G, K, N, S] -> [G, K, N*S]
    const r = e.op('Reshape', [p, e.constI([0, form.groups, form.k, -1])]);
    const t = e.op('Transpose', [r], { perm: [1, 2, 0, 3] });
    return e.op('Reshape', [t, e.constI([form.groups, form.k, -1])]);
  },
  outputs(_ctx, form, e, y) {
    const r = e.op('Reshape', [y, e.constI([0, form.groups, form.outPerGroup, -1])]);
    const t = e.op('Transpose', [r], { perm: [1, 2, 0, 3] });
    return e.op('Reshape', [t, e.constI([form.groups, form.outPerGroup, -1])]);
  },
  addBias: 2,
};

const gemm: LinearRule = {
  form(ctx) {
    const wd = constWeight(ctx, 1);
    if (typeof wd === 'string') return wd;
    if (wd.length !== 2) return 'the weight is not 2-D';
    const { transB, alpha, beta } = gemmArgs(ctx.node);
    const [k, n] = transB ? [wd[1]!, wd[0]!] : [wd[0]!, wd[1]!];
    const form: LinearForm = {
      groups: 1, k, outPerGroup: n, kernel: 1, alpha, beta,
      weightIndex: transB ? (_g, o, kk) => o * k + kk : (_g, o, kk) => kk * n + o,
    };
    if (ctx.node.inputs[2]) {
      const c = ctx.constant(2);
      // only a per-output bias ([N] or [1, N]) is a bias in this sense
      if (!c || c.dims.reduce((a, b) => a * b, 1) !== n || (c.dims.length === 2 && c.dims[0] !== 1)) return 'C is not a constant per-output bias';
      form.bias = 2;
    }
    return form;
  },
  patches(ctx, form, e, x) {
    const t = gemmArgs(ctx.node).transA ? x : e.op('Transpose', [x], { perm: [1, 0] });
    return e.op('Reshape', [t, e.constI([1, form.k, -1])]);
  },
  outputs(_ctx, form, e, y) {
    return e.op('Reshape', [e.op('Transpose', [y], { perm: [1, 0] }), e.constI([1, form.outPerGroup, -1])]);
  },
  addBias: 2,
};

const matmul: LinearRule = {
  form(ctx) {
    const wd = constWeight(ctx, 1);
    if (typeof wd === 'string') return wd;
    if (wd.length !== 2) return 'the weight is not 2-D';
    const [k, n] = [wd[0]!, wd[1]!];
    return { groups: 1, k, outPerGroup: n, kernel: 1, alpha: 1, beta: 1, weightIndex: (_g, o, kk) => kk * n + o };
  },
  patches(_ctx, form, e, x) {
    const r = e.op('Reshape', [x, e.constI([-1, form.k])]);
    return e.op('Reshape', [e.op('Transpose', [r], { perm: [1, 0] }), e.constI([1, form.k, -1])]);
  },
  outputs(_ctx, form, e, y) {
    const r = e.op('Reshape', [y, e.constI([-1, form.outPerGroup])]);
    return e.op('Reshape', [e.op('Transpose', [r], { perm: [1, 0] }), e.constI([1, form.outPerGroup, -1])]);
  },
  biasAfter: true,
};

export const LINEAR_RULES: Record<string, LinearRule> = { Conv: conv, Gemm: gemm, MatMul: matmul };
