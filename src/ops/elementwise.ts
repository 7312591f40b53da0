/**
 * Elementwise ops: unary math, broadcasting binary arithmetic/comparison/logic, variadic Min/Max/Sum/Mean, and
 * Where. Their shape rule is numpy broadcasting; their cost is one flop per output element (unless noted).
 */
import { DataType } from '../ir/dtype.js';
import type { Dim, TensorType } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import type { Cost, CostContext, InferContext, OpDef } from './types.js';
import { broadcastShapes } from './broadcast.js';
import { flopsPerOutput } from './cost.js';
import { dimAdd, dimDiv, dimEqual, dimMul, dimsBinary, dimSub, isNum, isStatic } from './dims.js';
import { foldElementwise } from './fold.js';
import { tt } from './shape-rules.js';

// -------------------------------------------------------------------------------------------- unary ops

/** Same type and shape as input 0. */
export function inferSame(ctx: InferContext): (TensorType | undefined)[] {
  return [ctx.input(0)];
}

function inferPredicate(ctx: InferContext): (TensorType | undefined)[] {
  const x = ctx.input(0);
  return [x ? tt(DataType.BOOL, x.shape) : undefined];
}

/** A unary op's fold from a scalar function (output dtype = input dtype unless given). */
export function foldUnary(f: (x: number) => number, outDtype?: number) {
  return (_ctx: InferContext, inputs: (Tensor | undefined)[]): Tensor[] | undefined => {
    const x = inputs[0];
    if (!x) return undefined;
    const t = foldElementwise(x.dims, outDtype ?? x.dtype, [x], (a) => f(a[0]!));
    return t && [t];
  };
}

/** The symbolic values of a value-preserving unary op (Identity, Cast to an integer type, ...). */
export function symbolicSame(ctx: InferContext): (Dim[] | undefined)[] {
  return [ctx.value(0)];
}

const perElement = (n: number): ((ctx: CostContext) => Cost) => flopsPerOutput(n);

export const UNARY_OPS = {
  Neg: { infer: inferSame, cost: perElement(1), fold: foldUnary((x) => -x), symbolic: (ctx) => [ctx.value(0)?.map((d) => dimSub(0, d))] },
  Abs: { infer: inferSame, cost: perElement(1), fold: foldUnary(Math.abs) },
  Sign: { infer: inferSame, cost: perElement(1), fold: foldUnary(Math.sign) },
  Floor: { infer: inferSame, cost: perElement(1), fold: foldUnary(Math.floor) },
  Ceil: { infer: inferSame, cost: perElement(1), fold: foldUnary(Math.ceil) },
  Round: { infer: inferSame, cost: perElement(1) },
  Sqrt: { infer: inferSame, cost: perElement(1), fold: foldUnary(Math.sqrt) },
  Reciprocal: { infer: inferSame, cost: perElement(1) },
  Exp: { infer: inferSame, cost: perElement(1) },
  Log: { infer: inferSame, cost: perElement(1) },
  Erf: { infer: inferSame, cost: perElement(1) },
  Sin: { infer: inferSame, cost: perElement(1) },
  Cos: { infer: inferSame, cost: perElement(1) },
  Tan: { infer: inferSame, cost: perElement(1) },
  Asin: { infer: inferSame, cost: perElement(1) },
  Acos: { infer: inferSame, cost: perElement(1) },
  Atan: { infer: inferSame, cost: perElement(1) },
  Sinh: { infer: inferSame, cost: perElement(1) },
  Cosh: { infer: inferSame, cost: perElement(1) },
  Asinh: { infer: inferSame, cost: perElement(1) },
  Acosh: { infer: inferSame, cost: perElement(1) },
  Atanh: { infer: inferSame, cost: perElement(1) },
  BitwiseNot: { infer: inferSame, cost: perElement(1) },
  Not: { infer: inferSame, cost: perElement(1), fold: foldUnary((x) => (x ? 0 : 1)) },
  IsNaN: { infer: inferPredicate, cost: perElement(1) },
  IsInf: { infer: inferPredicate, cost: perElement(1) },
  // Same shape, scanning/ masking ops.
  CumSum: { infer: inferSame, cost: perElement(1) },
  Trilu: { infer: inferSame, cost: perElement(1) },
} satisfies Record<string, OpDef>;

// ------------------------------------------------------------------------------------------ binary ops

/** Broadcast output type of the inputs; dtype from `dtypeOf` (default: input 0's). */
function inferBroadcast(ctx: InferContext, dtypeOf?: (t: TensorType) => number, first = 0): (TensorType | undefined)[] {
  const ins: (TensorType | undefined)[] = [];
  for (let i = first; i < ctx.inputCount; i++) ins.push(ctx.input(i));
  const base = ins[0] ?? ins.find((t) => t);
  if (!base) return [undefined];
  const elemType = dtypeOf ? dtypeOf(base) : base.elemType;
  const shapes = ins.map((t) => t?.shape);
  if (!shapes.every((s): s is Dim[] => s !== undefined)) return [tt(elemType)];
  return [tt(elemType, broadcastShapes(ctx, shapes))];
}

/** A fold over all inputs with numpy broadcasting, from a scalar function; dtype from input `dtypeFrom` or fixed. */
function foldBroadcast(f: (args: number[]) => number, outDtype?: number, dtypeFrom = 0) {
  return (ctx: InferContext, inputs: (Tensor | undefined)[]): Tensor[] | undefined => {
    const ins = inputs.slice(0, ctx.inputCount);
    if (!ins.every((t): t is Tensor => t !== undefined)) return undefined;
    const shape = broadcastShapes(ctx, ins.map((t) => t.dims));
    if (!isStatic(shape)) return undefined;
    const t = foldElementwise(shape, outDtype ?? ins[dtypeFrom]!.dtype, ins, f);
    return t && [t];
  };
}

const isInt = (t: Tensor | undefined): boolean => t !== undefined && t.dtype !== DataType.FLOAT && t.dtype !== DataType.DOUBLE;

/** Symbolic elementwise arithmetic on two shape values. */
function symbolicBinary(f: (a: Dim, b: Dim) => Dim) {
  return (ctx: InferContext): (Dim[] | undefined)[] => {
    const a = ctx.value(0);
    const b = ctx.value(1);
    return [a && b ? dimsBinary(a, b, f) : undefined];
  };
}

function arith(f: (a: number, b: number) => number, sym?: (a: Dim, b: Dim) => Dim): OpDef {
  return {
    infer: (ctx) => inferBroadcast(ctx),
    cost: perElement(1),
    fold: foldBroadcast((a) => f(a[0]!, a[1]!)),
    ...(sym ? { symbolic: symbolicBinary(sym) } : {}),
  };
}

function compare(f: (a: number, b: number) => boolean, sym?: (a: Dim, b: Dim) => Dim): OpDef {
  return {
    infer: (ctx) => inferBroadcast(ctx, () => DataType.BOOL),
    cost: perElement(1),
    fold: foldBroadcast((a) => (f(a[0]!, a[1]!) ? 1 : 0), DataType.BOOL),
    ...(sym ? { symbolic: symbolicBinary(sym) } : {}),
  };
}

/**
 * Where on shape values (torch's expand(-1) exports Where(Equal(shape, -1), 1, shape)): picks per element where
 * the condition is known, or where both branches agree.
 */
function symbolicWhere(ctx: InferContext): (Dim[] | undefined)[] {
  const vals = [0, 1, 2].map((i) => ((ctx.input(i)?.shape?.length ?? 2) <= 1 ? ctx.value(i) : undefined));
  if (!vals.every((v): v is Dim[] => v !== undefined)) return [undefined];
  const n = Math.max(...vals.map((v) => v.length));
  if (vals.some((v) => v.length !== n && v.length !== 1)) return [undefined];
  const at = (v: Dim[], i: number): Dim => v[v.length === 1 ? 0 : i]!;
  const [c, x, y] = vals as [Dim[], Dim[], Dim[]];
  return [Array.from({ length: n }, (_, i) => {
    const k = at(c, i);
    if (isNum(k)) return k ? at(x, i) : at(y, i);
    return at(x, i) === at(y, i) ? at(x, i) : null;
  })];
}

/** Integer division truncates like C; float division is exact IEEE. */
function divFold(ctx: InferContext, inputs: (Tensor | undefined)[]): Tensor[] | undefined {
  const int = isInt(inputs[0]);
  return foldBroadcast((a) => (int ? Math.trunc(a[0]! / a[1]!) : a[0]! / a[1]!))(ctx, inputs);
}

export const BINARY_OPS = {
  Add: { ...arith((a, b) => a + b, dimAdd), paramInputs: [0, 1], quant: { kind: 'compute', inputs: 'all' } },
  Sub: { ...arith((a, b) => a - b, dimSub) },
  Mul: { ...arith((a, b) => a * b, dimMul), paramInputs: [0, 1], quant: { kind: 'compute', inputs: 'all' } },
  Div: { ...arith((a, b) => a / b, dimDiv), fold: divFold },
  // Float powers are not folded: JS ** and the runtime's powf may differ in the last bit.
  Pow: { ...arith((a, b) => a ** b), fold: (ctx, inputs) => (isInt(inputs[0]) && isInt(inputs[1]) ? foldBroadcast((a) => a[0]! ** a[1]!)(ctx, inputs) : undefined) },
  Mod: { infer: (ctx) => inferBroadcast(ctx), cost: perElement(1) },
  BitShift: { infer: (ctx) => inferBroadcast(ctx), cost: perElement(1) },
  BitwiseAnd: { infer: (ctx) => inferBroadcast(ctx), cost: perElement(1) },
  BitwiseOr: { infer: (ctx) => inferBroadcast(ctx), cost: perElement(1) },
  BitwiseXor: { infer: (ctx) => inferBroadcast(ctx), cost: perElement(1) },
  Equal: compare((a, b) => a === b, dimEqual),
  Less: compare((a, b) => a < b),
  Greater: compare((a, b) => a > b),
  LessOrEqual: compare((a, b) => a <= b),
  GreaterOrEqual: compare((a, b) => a >= b),
  And: compare((a, b) => a !== 0 && b !== 0),
  Or: compare((a, b) => a !== 0 || b !== 0),
  Xor: compare((a, b) => (a !== 0) !== (b !== 0)),
  Where: {
    infer: (ctx) => inferBroadcast(ctx, (t) => ctx.input(1)?.elemType ?? ctx.input(2)?.elemType ?? t.elemType),
    cost: perElement(1),
    fold: foldBroadcast((a) => (a[0] ? a[1]! : a[2]!), undefined, 1),
    symbolic: symbolicWhere,
  },
  // Variadic ops broadcast all their inputs.
  Min: { infer: (ctx) => inferBroadcast(ctx), cost: perElement(1), fold: foldBroadcast((a) => Math.min(...a)) },
  Max: { infer: (ctx) => inferBroadcast(ctx), cost: perElement(1), fold: foldBroadcast((a) => Math.max(...a)) },
  Sum: { infer: (ctx) => inferBroadcast(ctx), cost: perElement(1), fold: foldBroadcast((a) => a.reduce((s, v) => s + v, 0)) },
  Mean: { infer: (ctx) => inferBroadcast(ctx), cost: perElement(1) },
} satisfies Record<string, OpDef>;

export { inferBroadcast };
