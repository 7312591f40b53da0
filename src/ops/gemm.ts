/**
 * Matrix products: Gemm, MatMul (numpy batch broadcasting), their quantized forms, and Einsum (shape for
 * explicit equations without ellipsis). MACs: Gemm = M*N*K; MatMul = batch*M*N*K.
 */
import { DataType } from '../ir/dtype.js';
import { attrString, type Dim, type Node, type TensorType } from '../ir/graph.js';
import type { CostContext, InferContext, LayerOpDef, OpDef, WeightSpec } from './types.js';
import { gemmArgs, opError, withBias } from './args.js';
import { broadcastShapes } from './broadcast.js';
import { ZERO_COST } from './cost.js';
import { fmtShape, staticProd } from './dims.js';
import { checkDim, shapeOf, tt } from './shape-rules.js';

/** Output shape of numpy matmul (1-D operands get a 1 prepended/appended, then removed). */
export function matmulShape(ctx: InferContext, a: readonly Dim[], b: readonly Dim[]): Dim[] {
  if (a.length === 0 || b.length === 0) opError(ctx, 'operands must not be scalars');
  const a2 = a.length === 1 ? [1, a[0]!] : a;
  const b2 = b.length === 1 ? [b[0]!, 1] : b;
  checkDim(ctx, a2[a2.length - 1], b2[b2.length - 2], `inner dimensions differ (${fmtShape(a)} x ${fmtShape(b)})`);
  const batch = broadcastShapes(ctx, [a2.slice(0, -2), b2.slice(0, -2)]);
  const out = [...batch];
  if (a.length > 1) out.push(a2[a2.length - 2]!);
  if (b.length > 1) out.push(b2[b2.length - 1]!);
  return out;
}

function inferMatMulWith(a: number, b: number, outType: (ctx: InferContext) => number | undefined) {
  return (ctx: InferContext): (TensorType | undefined)[] => {
    const elem = outType(ctx);
    if (elem === undefined) return [undefined];
    const sa = shapeOf(ctx, a);
    const sb = shapeOf(ctx, b);
    return [sa && sb ? tt(elem, matmulShape(ctx, sa, sb)) : tt(elem)];
  };
}

/** batch*M*N*K = prod(output) * K. */
function matmulCost(a: number) {
  return (ctx: CostContext) => {
    const out = staticProd(ctx.output(0)?.shape);
    const sa = ctx.input(a)?.shape;
    const k = sa ? sa[sa.length - 1] : undefined;
    return out === undefined || typeof k !== 'number' ? ZERO_COST : { macs: out * k, flops: 0 };
  };
}

function gemmDims(ctx: InferContext): { m: Dim; n: Dim; k: Dim } | undefined {
  const a = shapeOf(ctx, 0);
  const b = shapeOf(ctx, 1);
  if (!a || !b) return undefined;
  if (a.length !== 2 || b.length !== 2) opError(ctx, `A and B must be 2-D, got ${fmtShape(a)} and ${fmtShape(b)}`);
  const { transA: ta, transB: tb } = gemmArgs(ctx.node);
  const [m, ka] = ta ? [a[1]!, a[0]!] : [a[0]!, a[1]!];
  const [kb, n] = tb ? [b[1]!, b[0]!] : [b[0]!, b[1]!];
  checkDim(ctx, ka, kb, `inner dimensions differ (A ${fmtShape(a)}${ta ? "'" : ''} x B ${fmtShape(b)}${tb ? "'" : ''})`);
  return { m, n, k: typeof ka === 'number' ? ka : kb };
}

function inferGemm(ctx: InferContext): (TensorType | undefined)[] {
  const elem = ctx.input(0)?.elemType ?? ctx.input(1)?.elemType;
  if (elem === undefined) return [undefined];
  const d = gemmDims(ctx);
  if (!d) return [tt(elem)];
  const c = shapeOf(ctx, 2);
  if (c) {
    const out = broadcastShapes(ctx, [[d.m, d.n], c]);
    if (out.length !== 2) opError(ctx, `C ${fmtShape(c)} does not broadcast to [M, N]`);
    checkDim(ctx, out[0], d.m, `C ${fmtShape(c)} does not broadcast to [M, N]`);
    checkDim(ctx, out[1], d.n, `C ${fmtShape(c)} does not broadcast to [M, N]`);
  }
  return [tt(elem, [d.m, d.n])];
}

function gemmCost(ctx: CostContext) {
  const d = gemmDims(ctx);
  if (!d || typeof d.m !== 'number' || typeof d.n !== 'number' || typeof d.k !== 'number') return ZERO_COST;
  return { macs: d.m * d.n * d.k, flops: (ctx.node.inputs[2] ?? '') !== '' ? d.m * d.n : 0 };
}

// --------------------------------------------------------------------------------------------- Einsum

interface EinsumTerms {
  inputs: string[];
  output: string;
}

function parseEinsum(eq: string): EinsumTerms | undefined {
  const clean = eq.replace(/\s+/g, '');
  if (clean.includes('.')) return undefined;
  const [lhs, rhs] = clean.split('->');
  if (lhs === undefined) return undefined;
  const inputs = lhs.split(',');
  if (!inputs.every((t) => /^[A-Za-z]*$/.test(t))) return undefined;
  let output = rhs;
  if (output === undefined) {
    const counts = new Map<string, number>();
    for (const c of inputs.join('')) counts.set(c, (counts.get(c) ?? 0) + 1);
    output = [...counts].filter(([, n]) => n === 1).map(([c]) => c).sort().join('');
  }
  if (!/^[A-Za-z]*$/.test(output)) return undefined;
  return { inputs, output };
}

/** Letter sizes of an einsum, checking that repeated letters agree; undefined when shapes or the equation are unknown. */
function einsumSizes(ctx: InferContext): { terms: EinsumTerms; size: Map<string, Dim> } | undefined {
  const terms = parseEinsum(attrString(ctx.node, 'equation', ''));
  if (!terms || terms.inputs.length !== ctx.inputCount) return undefined;
  const size = new Map<string, Dim>();
  for (let i = 0; i < terms.inputs.length; i++) {
    const s = shapeOf(ctx, i);
    const t = terms.inputs[i]!;
    if (!s) return undefined;
    if (s.length !== t.length) opError(ctx, `operand ${i} has rank ${s.length} but the equation term '${t}' has ${t.length} letters`);
    [...t].forEach((c, j) => {
      const prev = size.get(c);
      checkDim(ctx, prev, s[j], `letter '${c}' has two sizes`);
      if (prev === undefined || prev === 1 || typeof prev !== 'number') size.set(c, s[j]!);
    });
  }
  return { terms, size };
}

function inferEinsum(ctx: InferContext): (TensorType | undefined)[] {
  const elem = ctx.input(0)?.elemType;
  if (elem === undefined) return [undefined];
  const e = einsumSizes(ctx);
  if (!e) return [tt(elem)];
  return [tt(elem, [...e.terms.output].map((c) => e.size.get(c) ?? null))];
}

/** Two or more operands: one MAC per point of the full index space. */
function einsumCost(ctx: CostContext) {
  const e = einsumSizes(ctx);
  if (!e) return ZERO_COST;
  const all = staticProd([...e.size.values()]);
  if (all === undefined) return ZERO_COST;
  return e.terms.inputs.length >= 2 ? { macs: all, flops: 0 } : { macs: 0, flops: all };
}

// ------------------------------------------------------------------------------------------- weights

function gemmWeight(node: Node, dims?: readonly number[]): WeightSpec | undefined {
  if (dims !== undefined && dims.length !== 2) return undefined;
  return withBias(node, gemmArgs(node).transB ? { input: 1, outAxis: 0, inAxis: 1, bias: 2 } : { input: 1, outAxis: 1, inAxis: 0, bias: 2 });
}

function matmulWeight(_node: Node, dims?: readonly number[]): WeightSpec | undefined {
  return dims !== undefined && dims.length !== 2 ? undefined : { input: 1, outAxis: 1, inAxis: 0 };
}

export const GEMM_OPS = {
  Gemm: {
    infer: inferGemm,
    cost: gemmCost,
    paramInputs: [1, 2],
    weight: gemmWeight,
    quant: { kind: 'compute', inputs: [0, 1], bias: 2, matmul: (node) => !gemmArgs(node).transA },
  } satisfies LayerOpDef,
  MatMul: {
    infer: inferMatMulWith(0, 1, (ctx) => ctx.input(0)?.elemType ?? ctx.input(1)?.elemType),
    cost: matmulCost(0),
    paramInputs: [0, 1],
    weight: matmulWeight,
    quant: { kind: 'compute', inputs: [0, 1], matmul: () => true },
  } satisfies LayerOpDef,
  QLinearMatMul: {
    infer: inferMatMulWith(0, 3, (ctx) => ctx.input(7)?.elemType ?? ctx.input(0)?.elemType),
    cost: matmulCost(0),
    paramInputs: [3],
    integerParams: true,
  },
  MatMulInteger: { infer: inferMatMulWith(0, 1, () => DataType.INT32), cost: matmulCost(0), paramInputs: [1], integerParams: true },
  Einsum: { infer: inferEinsum, cost: einsumCost },
} satisfies Record<string, OpDef | LayerOpDef>;
