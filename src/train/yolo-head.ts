/**
 * The pre-decode head of a YOLOv8/YOLO11-style detector (Ultralytics export), found by structure: the DFL
 * Softmax over `reg_max` bins reads, through Reshape/Transpose and a Split (or Slice) on the channel axis, a
 * value X [N, 4*reg_max + nc, A] that a Concat on the anchor axis builds from one Reshape per scale of a conv
 * output [N, 4*reg_max + nc, H, W]. The anchor points (cell centres, in grid units) and the strides (input
 * size / grid size) follow from those shapes, in the order Ultralytics' make_anchors lays them out.
 */
import { ShearsError } from '../errors.js';
import { attrInt, attrTensor, type Model, type Node } from '../ir/graph.js';
import { toNumbers } from '../ir/tensor.js';

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
   * Convs without BatchNorm in the detector as trained (Ultralytics' Detect: the last box and class convs of
   * every scale, and the DFL decode conv after the head): fine-tuning re-inserts none there.
   */
  plainConvs: string[];
}

const PASS = new Set(['Reshape', 'Transpose', 'Split', 'Slice', 'Identity', 'Flatten', 'Squeeze', 'Unsqueeze']);

/**
 * Finds the head in a model whose value shapes are known (autodiff/shapes.ts probeTypes at the input size).
 * Throws a ShearsError naming what is missing when the model has no recognisable YOLO detection head.
 */
export function findYoloHead(model: Model, shapes: ReadonlyMap<string, number[]>, inputShape: number[]): YoloHead {
  const g = model.graph;
  const producer = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) producer.set(o, n);
  const why: string[] = [];
  for (const sm of g.nodes) {
    if (sm.opType !== 'Softmax') continue;
    const smShape = shapes.get(sm.outputs[0]!);
    if (!smShape) continue;
    const axis = attrInt(sm, 'axis', -1);
    const regMax = smShape[axis < 0 ? axis + smShape.length : axis]!;
    // Back through the reshapes to the channel split, then to the Concat over the anchors.
    let v = sm.inputs[0]!;
    let split: Node | undefined;
    for (let k = 0; k < 8; k++) {
      const p = producer.get(v);
      if (!p || !PASS.has(p.opType)) break;
      if (p.opType === 'Split' || p.opType === 'Slice') {
        split = p;
        v = p.inputs[0]!;
        break;
      }
      v = p.inputs[0]!;
    }
    const x = shapes.get(v);
    if (!split || !x || x.length !== 3) {
      why.push(`Softmax '${sm.name}' does not read a channel split of a [N, C, anchors] value`);
      continue;
    }
    const nc = x[1]! - 4 * regMax;
    if (nc < 1 || (split.opType === 'Split' && split.outputs[0] !== walkFrom(sm, producer, split)) || !firstPart(model, split, producer, shapes, 4 * regMax)) {
      why.push(`Softmax '${sm.name}': the split of '${v}' does not start with 4 x ${regMax} box bins`);
      continue;
    }
    const cat = producer.get(v);
    if (!cat || cat.opType !== 'Concat') {
      why.push(`'${v}' is not a Concat of the scales`);
      continue;
    }
    const scales: YoloHead['scales'] = [];
    const plainConvs: string[] = [];
    for (const part of cat.inputs) {
      let u = part;
      let four: number[] | undefined;
      for (let k = 0; k < 4 && !four; k++) {
        const s = shapes.get(u);
        if (s && s.length === 4) four = s;
        else u = producer.get(u)?.inputs[0] ?? '';
      }
      if (!four || four[1] !== x[1]) break;
      // the per-scale value: a Conv, or a channel Concat of the box and class convs
      const p = producer.get(u);
      for (const q of p?.opType === 'Concat' ? p.inputs.map((i) => producer.get(i)) : [p]) if (q?.opType === 'Conv') plainConvs.push(q.name);
      const [ih, iw] = [inputShape[2]!, inputShape[3]!];
      const stride = ih / four[2]!;
      if (!Number.isInteger(stride) || iw / four[3]! !== stride) break;
      scales.push({ h: four[2]!, w: four[3]!, stride });
    }
    const A = x[2]!;
    if (scales.length !== cat.inputs.length || scales.reduce((s, c) => s + c.h * c.w, 0) !== A) {
      why.push(`the Concat '${cat.name}' is not of per-scale [N, ${x[1]}, H, W] grids covering ${A} anchors`);
      continue;
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
    // and every conv after the head (the DFL decode)
    const before = new Set<string>();
    const stack = [v];
    while (stack.length) {
      const p = producer.get(stack.pop()!);
      if (!p || before.has(p.name)) continue;
      before.add(p.name);
      for (const i of p.inputs) if (i) stack.push(i);
    }
    for (const n of g.nodes) if (n.opType === 'Conv' && !before.has(n.name)) plainConvs.push(n.name);
    return { value: v, regMax, nc, anchors: A, points, strides, scales, plainConvs };
  }
  throw new ShearsError(`no YOLO detection head found (a DFL Softmax over box bins reading a split of a [N, 4 x reg_max + classes, anchors] Concat of per-scale convs)${why.length ? `: ${why.slice(0, 3).join('; ')}` : ': the model has no Softmax'}`);
}

/** The Split/Slice output on the Softmax's path (Split: which of its outputs). */
function walkFrom(sm: Node, producer: Map<string, Node>, split: Node): string | undefined {
  let v = sm.inputs[0]!;
  for (let k = 0; k < 8; k++) {
    const p = producer.get(v);
    if (!p) return undefined;
    if (p === split) return v;
    v = p.inputs[0]!;
  }
  return undefined;
}

/** The split's part on the Softmax's path is the first `size` channels (a Slice: starting at 0). */
function firstPart(model: Model, split: Node, producer: Map<string, Node>, shapes: ReadonlyMap<string, number[]>, size: number): boolean {
  const s = shapes.get(split.outputs[0]!);
  if (!s || s.length !== 3 || s[1] !== size) return false;
  if (split.opType === 'Split') return true;
  const starts = split.inputs[1];
  const t = starts ? model.graph.initializers.get(starts) ?? (producer.get(starts)?.opType === 'Constant' ? attrTensor(producer.get(starts)!, 'value') : undefined) : undefined;
  return !!t && toNumbers(t).every((v) => v === 0);
}
