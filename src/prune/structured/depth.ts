/**
 * Depth pruning: removes whole residual branches. A residual join (OpDef.residualJoin: Add/Sum) whose one
 * summand is the block input `s` and whose other summand is computed only from `s` and constants by nodes
 * used nowhere else is a removable block: its output becomes `s` and the branch dies.
 */
import { ShearsError } from '../../errors.js';
import { isFloatType } from '../../ir/dtype.js';
import { removeDeadNodes, replaceAllUses } from '../../ir/edit.js';
import type { Model, Node } from '../../ir/graph.js';
import { toFloat32 } from '../../ir/tensor.js';
import { inferShapes } from '../../analysis/shapes.js';
import { opDef } from '../../ops/registry.js';

export interface ResidualBlock {
  /** The join node's name. */
  join: string;
  /** The skip input (kept). */
  skip: string;
  /** Nodes of the branch (removed). */
  branch: string[];
  /** RMS of the branch's parameters (smaller: less important). */
  score: number;
}

const MAX_BRANCH = 400;

/** Residual blocks of a model whose branch can be dropped (skip path kept). */
export function findResidualBlocks(model: Model, inputShapes: Record<string, number[]>): ResidualBlock[] {
  const g = model.graph;
  const shapes = inferShapes(model, { inputShapes });
  const producer = new Map<string, Node>();
  const consumers = new Map<string, Node[]>();
  for (const n of g.nodes) {
    for (const o of n.outputs) if (o) producer.set(o, n);
    for (const i of n.inputs) if (i) (consumers.get(i) ?? consumers.set(i, []).get(i)!).push(n);
  }
  const outputs = new Set(g.outputs.map((o) => o.name));
  const isConst = (v: string) => g.initializers.has(v) || shapes.constants.has(v);
  const sameShape = (a: string, b: string) => {
    const x = shapes.types.get(a)?.shape, y = shapes.types.get(b)?.shape;
    return !!x && !!y && x.length === y.length && x.every((d, i) => d === y[i] && typeof d === 'number');
  };
  const blocks: ResidualBlock[] = [];
  for (const join of g.nodes) {
    if (!opDef(join)?.residualJoin || join.inputs.length !== 2) continue;
    const y = join.outputs[0]!;
    for (let bi = 0; bi < 2; bi++) {
      const b = join.inputs[bi]!, s = join.inputs[1 - bi]!;
      if (!b || !s || isConst(b) || isConst(s) || !sameShape(s, y) || !sameShape(b, y)) continue;
      const branch = new Set<Node>();
      const stack: string[] = [b];
      let ok = true, readsSkip = false;
      while (stack.length && ok) {
        const v = stack.pop()!;
        if (v === s) {
          readsSkip = true;
          continue;
        }
        if (isConst(v)) continue;
        const p = producer.get(v);
        if (!p) {
          ok = false;
          break;
        }
        if (branch.has(p)) continue;
        branch.add(p);
        if (branch.size > MAX_BRANCH) ok = false;
        for (const i of p.inputs) if (i) stack.push(i);
      }
      if (!ok || !readsSkip || branch.size === 0) continue;
      // Nothing outside the branch may read its values.
      for (const n of branch) {
        for (const o of n.outputs) {
          if (!o) continue;
          if (outputs.has(o)) ok = false;
          for (const c of consumers.get(o) ?? []) if (c !== join && !branch.has(c)) ok = false;
        }
      }
      if (!ok) continue;
      let ss = 0, cnt = 0;
      for (const n of branch) {
        for (const i of n.inputs) {
          const t = i ? g.initializers.get(i) : undefined;
          if (!t || !isFloatType(t.dtype) || t.dims.length < 2) continue;
          const w = toFloat32(t);
          for (let k = 0; k < w.length; k++) ss += w[k]! * w[k]!;
          cnt += w.length;
        }
      }
      blocks.push({ join: join.name, skip: s, branch: [...branch].map((n) => n.name), score: cnt ? Math.sqrt(ss / cnt) : 0 });
      break;
    }
  }
  return blocks;
}

/** Removes the branch of the named join nodes (in place on the given model). */
export function removeBlocks(model: Model, joins: string[], inputShapes: Record<string, number[]>): void {
  for (const name of joins) {
    const blocks = findResidualBlocks(model, inputShapes);
    const b = blocks.find((x) => x.join === name);
    if (!b) throw new ShearsError(`'${name}' is not a removable residual block of this model`);
    const g = model.graph;
    const join = g.nodes.find((n) => n.name === name)!;
    const y = join.outputs[0]!;
    g.nodes = g.nodes.filter((n) => n !== join);
    replaceAllUses(g, y, b.skip);
    removeDeadNodes(g);
  }
}

/** Chooses the K least important blocks (one at a time, so nested blocks are not counted twice). */
export function chooseBlocks(model: Model, k: number, inputShapes: Record<string, number[]>): string[] {
  const chosen: string[] = [];
  const blocks = findResidualBlocks(model, inputShapes);
  if (k > blocks.length) throw new ShearsError(`cannot remove ${k} residual blocks: the model has ${blocks.length} removable ones`);
  blocks.sort((a, b) => a.score - b.score);
  const removedNodes = new Set<string>();
  for (const b of blocks) {
    if (chosen.length >= k) break;
    if (removedNodes.has(b.join)) continue;
    chosen.push(b.join);
    for (const n of b.branch) removedNodes.add(n);
  }
  return chosen;
}
