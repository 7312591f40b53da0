/**
 * The pre-decode head of a YOLOv8/YOLO11-style detector (Ultralytics export), found by structure: the DFL
 * Softmax over `reg_max` bins reads, through Reshape/Transpose and a Split (or Slice) on the channel axis, a
 * value X [N, 4*reg_max + nc, A] that a Concat on the anchor axis builds from one Reshape per scale of a conv
 * output [N, 4*reg_max + nc, H, W]. The anchor points (cell centres, in grid units) and the strides (input
 * size / grid size) follow from those shapes, in the order Ultralytics' make_anchors lays them out.
 */
import { ShearsError } from '../errors.js';
import type { Model, Node } from '../ir/graph.js';
import { findDetectHead } from '../analysis/detector.js';
import { opDef } from '../ops/registry.js';

export interface YoloHead {
  /** The head value [N, 4*regMax + nc, A]: box distributions (4 sides x regMax bins), then class logits. */
  value: string;
  regMax: number;
  nc: number;
  anchors: number;
  /** Anchor points in grid units (cell centres, x then y per anchor) [A * 2]. */
  points: Float64Array;
  /** Stride of every anchor, in input pixels [A]. */
  strides: Float64Array;
  /** The scales: grid size and stride. */
  scales: { h: number; w: number; stride: number }[];
  /**
   * Layers without BatchNorm in the detector as trained (Ultralytics' Detect: the last box and class convs of
   * every scale, and the DFL decode conv after the head): fine-tuning re-inserts none there.
   */
  plainConvs: string[];
}

const NOT_FOUND = 'no YOLO detection head found (a box-bin distribution reading a split of a [N, 4 x reg_max + classes, anchors] value built from one [N, C, H, W] grid per scale)';

/**
 * Finds the head in a model whose value shapes are known (autodiff/shapes.ts probeTypes at the input size): the
 * pre-decode value is analysis/detector.ts findDetectHead's (by structure and the registry's distribution axes);
 * the scales are the 4-D grids its producer reads, each reached through parameter-free nodes.
 * Throws a ShearsError naming what is missing when the model has no recognisable YOLO detection head.
 */
export function findYoloHead(model: Model, shapes: ReadonlyMap<string, number[]>, inputShape: number[]): YoloHead {
  const g = model.graph;
  const found = findDetectHead(model);
  if (!found) throw new ShearsError(NOT_FOUND);
  const v = found.raw;
  const x = shapes.get(v);
  if (!x || x.length !== 3) throw new ShearsError(`${NOT_FOUND}: '${v}' has no static [N, C, anchors] shape`);
  const regMax = found.bins, nc = found.classes;
  const producer = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) producer.set(o, n);
  // A node with learned weights: one of its registry parameter inputs is an initializer.
  const learned = (n: Node | undefined): boolean => !!n && (opDef(n)?.paramInputs ?? []).some((i) => !!n.inputs[i] && g.initializers.has(n.inputs[i]!));
  const cat = producer.get(v);
  if (!cat) throw new ShearsError(`${NOT_FOUND}: '${v}' is a graph input`);
  const scales: YoloHead['scales'] = [];
  const plainConvs: string[] = [];
  const parts = cat.inputs.filter((i) => i && !g.initializers.has(i));
  for (const part of parts) {
    // Back from the part, through parameter-free nodes (Reshape, Flatten), to the per-scale grid [N, C, H, W].
    let u = part;
    let four: number[] | undefined;
    for (let k = 0; k < 4 && !four; k++) {
      const s = shapes.get(u);
      if (s && s.length === 4) four = s;
      else {
        const p = producer.get(u);
        if (!p || learned(p)) break;
        u = p.inputs[0] ?? '';
      }
    }
    if (!four || four[1] !== x[1]) break;
    // The layers that compute the grid: the learned nodes reached through parameter-free ones (a channel Concat
    // of the box and class convs, or the conv itself).
    const stack = [u];
    const seen = new Set<string>();
    while (stack.length) {
      const p = producer.get(stack.pop()!);
      if (!p || seen.has(p.name)) continue;
      seen.add(p.name);
      if (learned(p)) plainConvs.push(p.name);
      else if (seen.size < 8) for (const i of p.inputs) if (i && !g.initializers.has(i)) stack.push(i);
    }
    const [ih, iw] = [inputShape[2]!, inputShape[3]!];
    const stride = ih / four[2]!;
    if (!Number.isInteger(stride) || iw / four[3]! !== stride) break;
    scales.push({ h: four[2]!, w: four[3]!, stride });
  }
  const A = x[2]!;
  if (scales.length !== parts.length || scales.reduce((s, c) => s + c.h * c.w, 0) !== A) {
    throw new ShearsError(`${NOT_FOUND}: '${cat.name}' does not read per-scale [N, ${x[1]}, H, W] grids covering ${A} anchors`);
  }
  const points = new Float64Array(A * 2);
  const strides = new Float64Array(A);
  let a = 0;
  for (const s of scales)
    for (let y = 0; y < s.h; y++)
      for (let xx = 0; xx < s.w; xx++, a++) {
        points[2 * a] = xx + 0.5;
        points[2 * a + 1] = y + 0.5;
        strides[a] = s.stride;
      }
  // and every learned layer after the head (the DFL decode)
  const before = new Set<string>();
  const stack = [v];
  while (stack.length) {
    const p = producer.get(stack.pop()!);
    if (!p || before.has(p.name)) continue;
    before.add(p.name);
    for (const i of p.inputs) if (i) stack.push(i);
  }
  for (const n of g.nodes) if (learned(n) && !before.has(n.name)) plainConvs.push(n.name);
  return { value: v, regMax, nc, anchors: A, points, strides, scales, plainConvs };
}
