/**
 * Constant producers and dtype conversion: Constant, ConstantOfShape, Range, Cast, CastLike, EyeLike. They
 * fold (within the size limit) so that shape subgraphs and Paddle-style Constant weights become initializers.
 */
import { DataType, isIntegerType } from '../ir/dtype.js';
import { attrInt, attrTensor, type Dim, type TensorType } from '../ir/graph.js';
import { floatTensor, int64Tensor, numel, toNumbers, type Tensor } from '../ir/tensor.js';
import type { InferContext, OpDef } from './types.js';
import { inputInts, opError } from './args.js';
import { isNum, isStatic } from './dims.js';
import { FOLD_LIMIT, foldable, makeTensor } from './fold.js';
import { shapeOf, tt } from './shape-rules.js';
import { symbolicSame } from './elementwise.js';

/** The tensor a Constant node holds (undefined for sparse or unsupported forms). */
export function constantValue(ctx: InferContext): Tensor | undefined {
  const node = ctx.node;
  const t = attrTensor(node, 'value');
  if (t) return t;
  const a = [...node.attrs.entries()].find(([k]) => k.startsWith('value'));
  if (!a) opError(ctx, 'Constant without a value attribute');
  const [name, attr] = a;
  switch (name) {
    case 'value_float': return attr.kind === 'float' || attr.kind === 'int' ? floatTensor([], [attr.value]) : undefined;
    case 'value_floats': return attr.kind === 'floats' || attr.kind === 'ints' ? floatTensor([attr.value.length], attr.value) : undefined;
    case 'value_int': return attr.kind === 'int' ? int64Tensor([], [attr.value]) : undefined;
    case 'value_ints': return attr.kind === 'ints' ? int64Tensor([attr.value.length], attr.value) : undefined;
    case 'value_string': return attr.kind === 'string' ? { dtype: DataType.STRING, dims: [], data: [new TextEncoder().encode(attr.value)] } : undefined;
    case 'value_strings': return attr.kind === 'strings'
      ? { dtype: DataType.STRING, dims: [attr.value.length], data: attr.value.map((s) => new TextEncoder().encode(s)) }
      : undefined;
    default: return undefined;
  }
}

const Constant: OpDef = {
  infer(ctx) {
    const t = constantValue(ctx);
    return [t && tt(t.dtype, [...t.dims])];
  },
  foldCopies: true,
  fold(ctx) {
    const t = constantValue(ctx);
    return t && [t];
  },
};

function fillValue(ctx: InferContext): Tensor {
  return attrTensor(ctx.node, 'value') ?? floatTensor([1], [0]);
}

const ConstantOfShape: OpDef = {
  infer(ctx) {
    const dtype = fillValue(ctx).dtype;
    const v = ctx.value(0);
    if (v) {
      for (const d of v) if (isNum(d) && d < 0) opError(ctx, `negative dimension ${d}`);
      return [tt(dtype, v)];
    }
    const s = shapeOf(ctx, 0);
    return [tt(dtype, s && isNum(s[0]) ? new Array<Dim>(s[0]).fill(null) : undefined)];
  },
  fold(ctx) {
    const v = ctx.value(0);
    if (!v || !isStatic(v) || numel(v) > FOLD_LIMIT) return undefined;
    const fill = fillValue(ctx);
    if (!foldable(fill)) return undefined;
    const t = makeTensor(fill.dtype, v, new Array<number>(numel(v)).fill(toNumbers(fill)[0] ?? 0));
    return t && [t];
  },
};

function rangeArgs(ctx: InferContext): [number, number, number] | undefined {
  const [s, l, d] = [0, 1, 2].map((i) => inputInts(ctx, i)?.[0]);
  return s === undefined || l === undefined || d === undefined ? undefined : [s, l, d];
}

function rangeCount(ctx: InferContext, [s, l, d]: [number, number, number]): number {
  if (d === 0) opError(ctx, 'delta is 0');
  return Math.max(Math.ceil((l - s) / d), 0);
}

const Range: OpDef = {
  infer(ctx) {
    const elem = ctx.input(0)?.elemType;
    if (elem === undefined) return [undefined];
    const args = rangeArgs(ctx);
    return [tt(elem, [args ? rangeCount(ctx, args) : null])];
  },
  fold(ctx, inputs) {
    const args = rangeArgs(ctx);
    const x = inputs[0];
    if (!args || !x) return undefined;
    const n = rangeCount(ctx, args);
    if (n > FOLD_LIMIT) return undefined;
    const t = makeTensor(x.dtype, [n], Array.from({ length: n }, (_, i) => args[0] + i * args[2]));
    return t && [t];
  },
  symbolic(ctx) {
    const args = rangeArgs(ctx);
    if (!args || !isIntegerType(ctx.input(0)?.elemType ?? 0)) return undefined;
    const n = rangeCount(ctx, args);
    return n <= 64 ? [Array.from({ length: n }, (_, i) => args[0] + i * args[2])] : undefined;
  },
};

/** A cast's fold: values converted into the target dtype (only dtypes held as plain JS numbers). */
function castFold(target: (ctx: InferContext) => number | undefined) {
  return (ctx: InferContext, inputs: (Tensor | undefined)[]): Tensor[] | undefined => {
    const x = inputs[0];
    const to = target(ctx);
    if (!foldable(x) || to === undefined || numel(x.dims) > FOLD_LIMIT) return undefined;
    if (x.dtype === to) return [x];
    const t = makeTensor(to, [...x.dims], toNumbers(x));
    return t && [t];
  };
}

function castSymbolic(target: (ctx: InferContext) => number | undefined) {
  return (ctx: InferContext) => (isIntegerType(target(ctx) ?? 0) ? symbolicSame(ctx) : undefined);
}

const castTo = (ctx: InferContext): number | undefined => attrInt(ctx.node, 'to');
const castLikeTo = (ctx: InferContext): number | undefined => ctx.input(1)?.elemType;

function inferCast(target: (ctx: InferContext) => number | undefined) {
  return (ctx: InferContext): (TensorType | undefined)[] => {
    const to = target(ctx);
    const x = ctx.input(0);
    return [to === undefined ? undefined : tt(to, x?.shape)];
  };
}

export const CONSTANT_OPS = {
  Constant,
  ConstantOfShape,
  Range,
  Cast: { infer: inferCast(castTo), fold: castFold(castTo), symbolic: castSymbolic(castTo), quant: { castTo: 'to' } },
  CastLike: { infer: inferCast(castLikeTo), fold: castFold(castLikeTo), symbolic: castSymbolic(castLikeTo) },
  EyeLike: {
    infer(ctx) {
      const x = ctx.input(0);
      const dtype = attrInt(ctx.node, 'dtype') ?? x?.elemType;
      return [dtype === undefined ? undefined : tt(dtype, x?.shape)];
    },
  },
  RandomNormalLike: { nondeterministic: true, infer: (ctx) => [ctx.input(0) && tt(attrInt(ctx.node, 'dtype') ?? ctx.input(0)!.elemType, ctx.input(0)!.shape)] },
  RandomUniformLike: { nondeterministic: true, infer: (ctx) => [ctx.input(0) && tt(attrInt(ctx.node, 'dtype') ?? ctx.input(0)!.elemType, ctx.input(0)!.shape)] },
} satisfies Record<string, OpDef>;

