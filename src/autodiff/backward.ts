/**
 * The graph-level reverse pass: walks the forward graph in reverse topological order, asks each node's gradient
 * rule for its input gradients, and sums the gradients of values used several times. Only nodes on a path from
 * a value we differentiate with respect to (`wrt`) to the loss are visited.
 */
import { ShearsError } from '../errors.js';
import { isFloatType } from '../ir/dtype.js';
import { topoSort } from '../ir/edit.js';
import { attrTensor, opsetVersion, type Graph, type Model, type Node } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { opDef } from '../ops/registry.js';
import type { GradContext, GradRule } from '../ops/types.js';
import { Emitter } from './emitter.js';

/** The gradient rule of a node's op (OpDef.grad, attached in ops/grad/). */
export function gradRule(node: Node): GradRule | undefined {
  return opDef(node)?.grad;
}

export interface ValueTypes {
  shapes: Map<string, number[]>;
  elemTypes: Map<string, number>;
}

export interface BackwardOptions {
  /** Scalar loss value. */
  loss: string;
  /** Values to differentiate with respect to (initializers or graph inputs). */
  wrt: string[];
  /** Static shapes and element types of every forward value (see autodiff/shapes.ts probeTypes). */
  types: ValueTypes;
  /** Float element type of the gradients (FLOAT or DOUBLE). */
  elemType: number;
  /**
   * Values treated as constants (stop-gradient, torch's detach / no_grad): no gradient flows into them or through
   * them, though they are computed from trainable values (the CIoU loss's aspect-ratio weight alpha).
   */
  detached?: ReadonlySet<string>;
}

export interface Backward {
  emitter: Emitter;
  /** wrt value -> its gradient's name; absent where the loss does not depend on it differentiably. */
  grads: Map<string, string>;
}

/**
 * Differentiates `model.graph` in place: forward nodes may gain outputs their rules need (MaxPool Indices);
 * the gradient nodes and constants are returned in the emitter for the caller to append.
 */
export function buildBackward(model: Model, opts: BackwardOptions): Backward {
  const graph = model.graph;
  const opset = opsetVersion(model);
  const taken = new Set<string>();
  for (const n of graph.nodes) {
    taken.add(n.name);
    for (const o of n.outputs) if (o) taken.add(o);
  }
  for (const i of graph.inputs) taken.add(i.name);
  for (const k of graph.initializers.keys()) taken.add(k);
  const e = new Emitter(opts.elemType, taken);
  const order = topoSort(graph);
  const { shapes, elemTypes } = opts.types;

  // Forward: values that depend on a wrt value.
  const active = new Set(opts.wrt);
  const detached = opts.detached;
  for (const n of order) if (n.inputs.some((i) => i && active.has(i))) for (const o of n.outputs) if (o && !detached?.has(o)) active.add(o);
  // Backward: values the loss depends on.
  const producer = new Map<string, Node>();
  for (const n of order) for (const o of n.outputs) if (o) producer.set(o, n);
  const relevant = new Set<string>([opts.loss]);
  for (let k = order.length - 1; k >= 0; k--) {
    const n = order[k]!;
    if (n.outputs.some((o) => o && relevant.has(o))) for (const i of n.inputs) if (i) relevant.add(i);
  }
  if (!active.has(opts.loss)) throw new ShearsError('the loss does not depend on any trainable value');

  const contrib = new Map<string, string[]>();
  const add = (name: string, g: string) => {
    const list = contrib.get(name);
    if (list) list.push(g);
    else contrib.set(name, [g]);
  };
  const total = (name: string): string | undefined => {
    const list = contrib.get(name);
    if (!list || list.length === 0) return undefined;
    if (list.length === 1) return list[0];
    const s = e.op('Sum', list);
    contrib.set(name, [s]);
    return s;
  };
  add(opts.loss, e.constF(1, []));

  const constOf = (name: string): Tensor | undefined => {
    const init = graph.initializers.get(name);
    if (init) return init;
    const p = producer.get(name);
    if (p && p.opType === 'Constant') return attrTensor(p, 'value');
    return undefined;
  };
  const shapeOf = (name: string): number[] => {
    const s = shapes.get(name) ?? e.shapes.get(name) ?? graph.initializers.get(name)?.dims;
    if (!s) throw new ShearsError(`autodiff: no static shape for value '${name}'`);
    return s;
  };

  for (let k = order.length - 1; k >= 0; k--) {
    const node = order[k]!;
    if (!node.outputs.some((o) => o && active.has(o) && relevant.has(o))) continue;
    const hasGrad = node.outputs.some((o) => o && contrib.has(o));
    if (!hasGrad) continue;
    const rule = gradRule(node);
    if (!rule) {
      const why = opDef(node)?.noGrad;
      throw new ShearsError(`${node.opType}: shears has no gradient rule for this op${why ? `; ${why}` : ''}`, { node: node.name });
    }
    const ctx: GradContext = {
      node,
      opset,
      e,
      input: (i) => node.inputs[i] ?? '',
      output: (i) => {
        while (node.outputs.length <= i) node.outputs.push('');
        if (!node.outputs[i]) {
          node.outputs[i] = e.name(`${node.name}_out${i}`);
        }
        return node.outputs[i]!;
      },
      gradOut: (i) => {
        const o = node.outputs[i];
        return o ? total(o) : undefined;
      },
      needs: (i) => {
        const x = node.inputs[i];
        if (!x || !active.has(x)) return false;
        const t = elemTypes.get(x) ?? graph.initializers.get(x)?.dtype;
        return t === undefined || isFloatType(t);
      },
      shape: shapeOf,
      elemType: (name) => elemTypes.get(name) ?? graph.initializers.get(name)?.dtype,
      constant: (i) => {
        const x = node.inputs[i];
        return x ? constOf(x) : undefined;
      },
    };
    const gin = rule(ctx);
    gin.forEach((g, i) => {
      const x = node.inputs[i];
      if (g && x && active.has(x)) add(x, g);
    });
  }

  const grads = new Map<string, string>();
  for (const w of opts.wrt) {
    const g = total(w);
    if (g) grads.set(w, g);
  }
  return { emitter: e, grads };
}

export function appendEmitted(graph: Graph, e: Emitter): void {
  graph.nodes.push(...e.nodes);
  for (const [k, v] of e.initializers) graph.initializers.set(k, v);
}
