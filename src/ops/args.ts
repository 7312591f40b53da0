/**
 * Op arguments for every rule kind (shape, channel, surgery, gradient, linear, quantization): which inputs a node
 * gives, the values of its small integer inputs, axes, and the error that names the node.
 */
import { ShearsError } from '../errors.js';
import { attrInts, type Dim, type Node } from '../ir/graph.js';
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
