/**
 * Recognising a YOLOv8-style detector by its graph structure: the pre-decode head. An Ultralytics export ends in
 * one value [N, 4*R + nc, A] (per anchor: R box-distribution logits for each of the 4 box sides, then nc class
 * logits) from which every output is computed without learned layers: a distribution (Softmax over the R bins,
 * OpDef.distributionAxis) and its expectation (the DFL conv) give the box, a sigmoid the scores. That value is the
 * last one every path from the input to the output passes through (a dominator) with such a distribution node
 * after it. Found, the detector gets its own defaults (pipeline/detector.ts): distillation on this value instead of
 * on the decoded pixel boxes, whose squared error the coordinates dominate.
 */
import type { Model, Node } from '../ir/graph.js';
import { topoSort } from '../ir/edit.js';
import { opDef } from '../ops/registry.js';
import { inferShapes, nodeContext, type ShapeInfo } from './shapes.js';

export interface DetectHead {
  /** The pre-decode value [N, boxChannels + classes, anchors]: box-bin logits first, then class logits. */
  raw: string;
  /** The model output computed from it (the first output). */
  output: string;
  /** Bins of each side's distribution (DFL reg_max). */
  bins: number;
  /** 4 x bins. */
  boxChannels: number;
  classes: number;
  /** Anchors (positions), when known. */
  anchors: number | null;
  /** The node whose distribution identified the head (a Softmax over the bins). */
  via: string;
}

/** The detector head of a model, or undefined when the model is not a YOLOv8-style detector. */
export function findDetectHead(model: Model, info?: ShapeInfo): DetectHead | undefined {
  const g = model.graph;
  const output = g.outputs[0]?.name;
  if (!output) return undefined;
  const nodes = topoSort(g);
  const producer = new Map<string, Node>();
  const consumers = new Map<string, Node[]>();
  for (const n of nodes) {
    for (const o of n.outputs) if (o) producer.set(o, n);
    for (const i of n.inputs) if (i) (consumers.get(i) ?? consumers.set(i, []).get(i)!).push(n);
  }
  // Distribution nodes among the output's ancestors: without one, no DFL head (cheap exit for most models).
  const ancestors = new Set<Node>();
  const stack = [output];
  const seenV = new Set<string>();
  while (stack.length) {
    const v = stack.pop()!;
    if (seenV.has(v)) continue;
    seenV.add(v);
    const p = producer.get(v);
    if (!p || ancestors.has(p)) continue;
    ancestors.add(p);
    for (const i of p.inputs) if (i) stack.push(i);
  }
  const dists = [...ancestors].filter((n) => opDef(n)?.distributionAxis !== undefined);
  if (dists.length === 0) return undefined;
  const shapes = info ?? inferShapes(model);
  const dataInputs = g.inputs.filter((i) => !g.initializers.has(i.name)).map((i) => i.name);
  // Whether every path from the data inputs to the output passes through value v.
  const isCut = (v: string): boolean => {
    const seen = new Set<string>([v]);
    const q = dataInputs.filter((i) => i !== v);
    for (const i of q) seen.add(i);
    while (q.length) {
      const x = q.pop()!;
      if (x === output) return false;
      for (const c of consumers.get(x) ?? []) for (const o of c.outputs) {
        if (o && !seen.has(o)) {
          seen.add(o);
          q.push(o);
        }
      }
    }
    return true;
  };
  // Values downstream of v (bounded to the output's ancestors).
  const downstream = (v: string): Set<Node> => {
    const out = new Set<Node>();
    const q = [v];
    while (q.length) {
      const x = q.pop()!;
      for (const c of consumers.get(x) ?? []) {
        if (!ancestors.has(c) || out.has(c)) continue;
        out.add(c);
        for (const o of c.outputs) if (o) q.push(o);
      }
    }
    return out;
  };
  const order = nodes.filter((n) => ancestors.has(n)).reverse();
  for (const n of order) {
    for (const v of n.outputs) {
      if (!v || v === output) continue;
      const shape = shapes.types.get(v)?.shape;
      if (!shape || shape.length !== 3 || typeof shape[1] !== 'number') continue;
      const C = shape[1];
      const after = downstream(v);
      const dist = dists.find((d) => after.has(d));
      if (!dist) continue;
      const xs = shapes.types.get(dist.inputs[0]!)?.shape;
      if (!xs) continue;
      const axis = opDef(dist)!.distributionAxis!(nodeContext(model, shapes, dist), xs.length);
      const R = xs[axis];
      if (typeof R !== 'number' || R < 2 || 4 * R >= C) continue;
      if (!isCut(v)) continue;
      const A = shape[2];
      return { raw: v, output, bins: R, boxChannels: 4 * R, classes: C - 4 * R, anchors: typeof A === 'number' ? A : null, via: dist.name };
    }
  }
  return undefined;
}

/** One line naming the head, for reports. */
export function formatDetectHead(h: DetectHead): string {
  return `detector head '${h.raw}' [N, ${h.boxChannels}+${h.classes}, ${h.anchors ?? '?'}] (${h.bins} box bins per side via '${h.via}', ${h.classes} classes) before the decoding into '${h.output}'`;
}
