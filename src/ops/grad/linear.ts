/** Gradients of Gemm and MatMul. */
import { gemmArgs } from '../args.js';
import type { GradRule } from '../types.js';
import { floatAttr, reshape, scale, unbroadcast } from './helpers.js';

export const gemmGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g) return [];
  const { e, node } = ctx;
  const a = ctx.input(0);
  const b = ctx.input(1);
  const { alpha, beta, transA: tA, transB: tB } = gemmArgs(node);
  const al = floatAttr(alpha);
  const out: (string | undefined)[] = [];
  if (ctx.needs(0)) {
    // dA' = alpha g B'^T ; dA = dA' or its transpose
    if (!tA) out[0] = tB ? e.op('Gemm', [g, b], { alpha: al }) : e.op('Gemm', [g, b], { transB: 1, alpha: al });
    else out[0] = tB ? e.op('Gemm', [b, g], { transA: 1, transB: 1, alpha: al }) : e.op('Gemm', [b, g], { transB: 1, alpha: al });
  }
  if (ctx.needs(1)) {
    // dB' = alpha A'^T g ; dB = dB' or its transpose
    if (!tB) out[1] = tA ? e.op('Gemm', [a, g], { alpha: al }) : e.op('Gemm', [a, g], { transA: 1, alpha: al });
    else out[1] = tA ? e.op('Gemm', [g, a], { transA: 1, transB: 1, alpha: al }) : e.op('Gemm', [g, a], { transA: 1, alpha: al });
  }
  if (node.inputs[2] && ctx.needs(2)) {
    out[2] = unbroadcast(e, scale(e, g, beta), ctx.shape(ctx.output(0)), ctx.shape(node.inputs[2]));
  }
  return out;
};

function swapLast(rank: number): number[] {
  const p = Array.from({ length: rank }, (_, i) => i);
  p[rank - 1] = rank - 2;
  p[rank - 2] = rank - 1;
  return p;
}

export const matmulGrad: GradRule = (ctx) => {
  const g = ctx.gradOut(0);
  if (!g) return [];
  const { e } = ctx;
  let a = ctx.input(0);
  let b = ctx.input(1);
  const aShape0 = ctx.shape(a);
  const bShape0 = ctx.shape(b);
  let aShape = aShape0;
  let bShape = bShape0;
  let gShape = ctx.shape(ctx.output(0));
  let gg = g;
  // 1-D operands: promote to matrices, as MatMul does, and restore the dropped axis in g.
  if (aShape.length === 1) {
    aShape = [1, aShape[0]!];
    a = reshape(e, a, aShape);
    gShape = [...gShape.slice(0, -1), 1, ...gShape.slice(-1)];
  }
  if (bShape.length === 1) {
    bShape = [bShape[0]!, 1];
    b = reshape(e, b, bShape);
    gShape = [...gShape, 1];
  }
  if (gShape.length !== ctx.shape(ctx.output(0)).length) gg = reshape(e, g, gShape);
  const out: (string | undefined)[] = [];
  if (ctx.needs(0)) {
    const d = e.op('MatMul', [gg, e.op('Transpose', [b], { perm: swapLast(bShape.length) })]);
    const dShape = [...gShape.slice(0, -1), aShape[aShape.length - 1]!];
    let r = unbroadcast(e, d, dShape, aShape);
    if (aShape !== aShape0) r = reshape(e, r, aShape0);
    out[0] = r;
  }
  if (ctx.needs(1)) {
    const d = e.op('MatMul', [e.op('Transpose', [a], { perm: swapLast(aShape.length) }), gg]);
    const lead = gShape.slice(0, -2);
    const dShape = [...lead, bShape[bShape.length - 2]!, gShape[gShape.length - 1]!];
    let r = unbroadcast(e, d, dShape, bShape);
    if (bShape !== bShape0) r = reshape(e, r, bShape0);
    out[1] = r;
  }
  return out;
};
