/**
 * Control flow: If, Loop, Scan. analysis/shapes.ts infers their subgraphs (with the enclosing scope visible)
 * before the node; these rules read what it found through InferContext.subgraphOutput. An If whose condition
 * is constant takes its branch's types and constants exactly, and simplify inlines that branch (OpDef.inline).
 * Otherwise an If output merges the two branches (dims kept where equal). Never throws.
 */
import type { Attr, Dim, Graph, TensorType } from '../ir/graph.js';
import { numel, toNumbers } from '../ir/tensor.js';
import type { InferContext, OpDef } from './types.js';
import { tt } from './shape-rules.js';

function graphAttr(ctx: InferContext, name: string): Graph | undefined {
  const a: Attr | undefined = ctx.node.attrs.get(name);
  return a?.kind === 'graph' ? a.value : undefined;
}

/** Two declared types merged: same dtype required; dims kept where equal. */
function merge(a: TensorType | undefined, b: TensorType | undefined): TensorType | undefined {
  if (!a || !b || a.elemType !== b.elemType) return undefined;
  if (!a.shape || !b.shape || a.shape.length !== b.shape.length) return tt(a.elemType);
  return tt(a.elemType, a.shape.map((d, i): Dim => (d === b.shape![i] ? d : null)));
}

/** Output i of a branch: as analysed when the caller analyses subgraphs, else as declared. */
function branchType(ctx: InferContext, attr: string, i: number): TensorType | undefined {
  return ctx.subgraphOutput?.(attr, i)?.type ?? graphAttr(ctx, attr)?.outputs[i]?.type;
}

/** The branch an If takes when its condition is a constant ('then_branch' / 'else_branch'). */
function takenBranch(ctx: InferContext): string | undefined {
  const c = ctx.constant(0);
  if (!c || Array.isArray(c.data) || numel(c.dims) !== 1) return undefined;
  const attr = toNumbers(c)[0] ? 'then_branch' : 'else_branch';
  return graphAttr(ctx, attr) ? attr : undefined;
}

const If: OpDef = {
  infer(ctx) {
    const taken = takenBranch(ctx);
    if (taken) return ctx.node.outputs.map((_, i) => branchType(ctx, taken, i));
    return ctx.node.outputs.map((_, i) => merge(branchType(ctx, 'then_branch', i), branchType(ctx, 'else_branch', i)));
  },
  fold(ctx) {
    const taken = takenBranch(ctx);
    if (!taken) return undefined;
    const out = ctx.node.outputs.map((_, i) => ctx.subgraphOutput?.(taken, i)?.constant);
    return out.every((t) => t !== undefined) ? out : undefined;
  },
  foldCopies: true,
  inline: takenBranch,
};

const Loop: OpDef = {
  infer(ctx) {
    const body = graphAttr(ctx, 'body');
    const carried = ctx.inputCount - 2;
    return ctx.node.outputs.map((_, i) => {
      if (i < carried) return ctx.input(i + 2) ?? body?.outputs[i + 1]?.type;
      const t = body?.outputs[i + 1]?.type;
      return t && tt(t.elemType, t.shape ? [null, ...t.shape] : undefined);
    });
  },
};

const Scan: OpDef = {
  infer(ctx) {
    return ctx.node.outputs.map(() => undefined);
  },
};

export const CONTROL_OPS = { If, Loop, Scan } satisfies Record<string, OpDef>;
