/**
 * Op arguments decoded once for every rule kind: the shape, channel, surgery, gradient, linear and quantization
 * rules of an op read its attributes and constant inputs through these decoders instead of each their own. Each
 * decoder knows the opset forms (attribute in older opsets, input in newer ones), the defaults and the checks;
 * it returns the name of an argument whose value the context does not know, and each rule kind decides what that
 * means (an unknown shape, a frozen channel, an error naming the missing constant).
 */
import { ShearsError } from '../errors.js';
import { attrFloat, attrInt, attrInts, type Dim, type Node } from '../ir/graph.js';
import { toNumbers, type Tensor } from '../ir/tensor.js';
import { isNum } from './dims.js';
import type { WeightSpec } from './types.js';

/**
 * What every rule context offers (InferContext, ChannelContext, GradContext, LinearContext): the node, the opset
 * of its domain, constant inputs; shape rules also know small integer values element by element (value).
 */
export interface ArgContext {
  readonly node: Node;
  readonly opset: number;
  constant(i: number): Tensor | undefined;
  value?(i: number): Dim[] | undefined;
}

/** A context without symbolic values (channel, gradient, linear rules): known input values are numbers. */
type NumericArgContext = Omit<ArgContext, 'value'> & { value?: undefined };

/** A ShearsError about the node of `ctx`. */
export function opError(ctx: { readonly node: Node }, message: string): never {
  throw new ShearsError(`${ctx.node.opType}: ${message}`, { node: ctx.node.name || ctx.node.opType });
}

// --------------------------------------------------------------------------------------------------- inputs

/** Whether input i is given (not omitted). */
export function present(ctx: { readonly node: Node }, i: number): boolean {
  return (ctx.node.inputs[i] ?? '') !== '';
}

/**
 * Elements of a small integer input where known: numbers when constant, else its value with symbols where the
 * context has one (shape rules: x[:T] with T = Shape(y)[1]); undefined when omitted or unknown.
 */
export function inputDims(ctx: ArgContext, i: number): Dim[] | undefined {
  if (!present(ctx, i)) return undefined;
  const c = ctx.constant(i);
  if (c) return Array.isArray(c.data) ? undefined : toNumbers(c);
  return ctx.value?.(i);
}

/** Elements of a small integer input when all are known numbers (see inputDims). */
export function inputInts(ctx: ArgContext, i: number): number[] | undefined {
  const v = inputDims(ctx, i);
  return v && v.every(isNum) ? (v as number[]) : undefined;
}

/**
 * An int list that older opsets give as attribute and newer ones as input.
 * Returns undefined when it is not given at all, null when it is given but not known.
 */
export function intsArg(ctx: ArgContext, attr: string, input: number): number[] | null | undefined {
  const a = attrInts(ctx.node, attr);
  if (a !== undefined) return a;
  if (!present(ctx, input)) return undefined;
  return inputInts(ctx, input) ?? null;
}

/** A weight spec without its bias when the node omits the bias input. */
export function withBias(node: Node, s: WeightSpec): WeightSpec {
  if (s.bias === undefined || present({ node }, s.bias)) return s;
  return { input: s.input, outAxis: s.outAxis, inAxis: s.inAxis };
}

// ----------------------------------------------------------------------------------------------------- axes

/** Normalises a possibly negative axis into [0, rank); errors name the node. */
export function normAxis(ctx: { readonly node: Node }, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) opError(ctx, `axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/** normAxis of each axis; repeated axes are an error. */
export function normAxes(ctx: { readonly node: Node }, axes: readonly number[], rank: number): number[] {
  const out = axes.map((a) => normAxis(ctx, a, rank));
  if (new Set(out).size !== out.length) opError(ctx, `repeated axes [${axes.join(',')}]`);
  return out;
}

/** The node's `axis` attribute (default `dflt`) normalised against `rank` (Concat, Split, Gather, norms, ...). */
export function nodeAxis(ctx: { readonly node: Node }, rank: number, dflt = 0): number {
  return normAxis(ctx, attrInt(ctx.node, 'axis', dflt), rank);
}

/**
 * The axis of Softmax, LogSoftmax and Hardmax: default -1 from opset 13 (the one axis normalised), 1 before
 * (the axes from it on, flattened); a scalar counts as rank 1.
 */
export function softmaxAxis(ctx: { readonly node: Node; readonly opset: number }, rank: number): number {
  return nodeAxis(ctx, Math.max(1, rank), ctx.opset >= 13 ? -1 : 1);
}

/**
 * The axes a reduction (Reduce*) reduces, normalised: `axes` as attribute or input (intsArg); none given means
 * all, unless noop_with_empty_axes makes it none ([]). 'axes' when the input is given but not known.
 */
export function reduceAxes(ctx: ArgContext, rank: number): number[] | 'axes' {
  const axes = intsArg(ctx, 'axes', 1);
  if (axes === null) return 'axes';
  if (axes === undefined || axes.length === 0) {
    return attrInt(ctx.node, 'noop_with_empty_axes', 0) !== 0 ? [] : Array.from({ length: rank }, (_, i) => i);
  }
  return normAxes(ctx, axes, rank);
}

// ---------------------------------------------------------------------------------------------------- Slice

/** Slice's arguments; starts and ends may copy symbolic sizes in shape rules (x[:T] with T = Shape(y)[1]). */
export interface SliceArgs<B extends Dim = Dim> {
  starts: B[];
  ends: B[];
  /** Normalised into [0, rank). */
  axes: number[];
  steps: number[];
}

type SliceArgName = 'starts' | 'ends' | 'axes' | 'steps';

/**
 * Slice's starts, ends, axes (default 0..n-1) and steps (default 1): attributes before opset 10, inputs from
 * 10. Returns the name of the first argument whose value is not known instead; throws when the arguments do
 * not fit together (lengths, a step of 0, axes out of range or repeated).
 */
export function sliceArgs(ctx: NumericArgContext, rank: number): SliceArgs<number> | SliceArgName;
export function sliceArgs(ctx: ArgContext, rank: number): SliceArgs | SliceArgName;
export function sliceArgs(ctx: ArgContext, rank: number): SliceArgs | SliceArgName {
  const fromAttrs = ctx.opset < 10;
  const starts = fromAttrs ? attrInts(ctx.node, 'starts') : inputDims(ctx, 1);
  if (!starts) return 'starts';
  const ends = fromAttrs ? attrInts(ctx.node, 'ends') : inputDims(ctx, 2);
  if (!ends) return 'ends';
  const axesArg = fromAttrs ? attrInts(ctx.node, 'axes') : present(ctx, 3) ? inputInts(ctx, 3) ?? null : undefined;
  if (axesArg === null) return 'axes';
  const steps = !fromAttrs && present(ctx, 4) ? inputInts(ctx, 4) : starts.map(() => 1);
  if (!steps) return 'steps';
  const axes = normAxes(ctx, axesArg ?? starts.map((_, i) => i), rank);
  if (ends.length !== starts.length || axes.length !== starts.length || steps.length !== starts.length) {
    opError(ctx, 'starts, ends, axes and steps differ in length');
  }
  if (steps.includes(0)) opError(ctx, 'slice step 0');
  return { starts, ends, axes, steps };
}

/** The arguments when every start and end is a number (shape rules). */
export function numericSlice(a: SliceArgs | SliceArgName): SliceArgs<number> | undefined {
  return typeof a !== 'string' && a.starts.every(isNum) && a.ends.every(isNum) ? (a as SliceArgs<number>) : undefined;
}

// ------------------------------------------------------------------------------------------------------ Pad

/** Pad's amounts for every axis of the data input (0 for axes not padded; negative amounts crop). */
export interface PadArgs {
  begin: number[];
  end: number[];
}

/**
 * Pad's pads (attribute before opset 11, input from 11) over its axes (input from opset 18; default all), as
 * begin and end amounts per axis. Returns the name of the argument whose value is not known instead; throws
 * when the pads do not fit the axes.
 */
export function padArgs(ctx: ArgContext, rank: number): PadArgs | 'pads' | 'axes' {
  const pads = ctx.opset < 11 ? attrInts(ctx.node, 'pads') : inputInts(ctx, 1);
  if (!pads) return 'pads';
  const axesArg = ctx.opset >= 18 && present(ctx, 3) ? inputInts(ctx, 3) ?? null : undefined;
  if (axesArg === null) return 'axes';
  const axes = axesArg ? normAxes(ctx, axesArg, rank) : Array.from({ length: rank }, (_, i) => i);
  const k = axes.length;
  if (pads.length !== 2 * k) opError(ctx, `pads has ${pads.length} values, expected ${2 * k}`);
  const begin = new Array<number>(rank).fill(0);
  const end = new Array<number>(rank).fill(0);
  axes.forEach((a, i) => {
    begin[a] = pads[i]!;
    end[a] = pads[i + k]!;
  });
  return { begin, end };
}

// ----------------------------------------------------------------------------------------------------- Gemm

/** Gemm: Y = alpha * A' B' + beta * C, with A' = A^T when transA, B' = B^T when transB. */
export interface GemmArgs {
  transA: boolean;
  transB: boolean;
  alpha: number;
  beta: number;
}

export function gemmArgs(node: Node): GemmArgs {
  return {
    transA: attrInt(node, 'transA', 0) !== 0,
    transB: attrInt(node, 'transB', 0) !== 0,
    alpha: attrFloat(node, 'alpha', 1),
    beta: attrFloat(node, 'beta', 1),
  };
}
