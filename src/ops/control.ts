/**
 * Control flow: If, Loop, Scan. Their bodies are not analysed; outputs take what is trivially derivable
 * (branch output declarations, loop-carried input types) and are unknown otherwise. Never throws.
 */
import type { Attr, Dim, Graph, TensorType } from '../ir/graph.js';
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

const If: OpDef = {
  infer(ctx) {
    const t = graphAttr(ctx, 'then_branch');
    const e = graphAttr(ctx, 'else_branch');
    return ctx.node.outputs.map((_, i) => merge(t?.outputs[i]?.type, e?.outputs[i]?.type));
  },
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
