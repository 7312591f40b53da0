/**
 * An NMS-free, end-to-end variant of a YOLOv8-format detector: its output [N, 4+nc, A] (cx, cy, w, h in input
 * pixels, then sigmoid class scores) gets a YOLOv10-style head (Ultralytics' v10postprocess) in the graph, built
 * with the GraphBuilder: the highest class score per anchor, the top `maxDet` anchors by it (TopK), their boxes and
 * scores gathered (GatherElements), the top `maxDet` of the flattened anchor x class scores (TopK), class = index
 * mod nc, anchor = index div nc. Output [N, maxDet, 6] = (x1, y1, x2, y2, score, class).
 *
 * Usage: node dist/bench/det-e2e.js MODEL.onnx OUT.onnx [IMAGES_DIR] — builds OUT and, with IMAGES_DIR, checks on
 * its first 16 images that the graph gives the detections of the reference below (endToEndReference).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor, int64Tensor } from '../src/ir/tensor.js';
import { inferShapes } from '../src/analysis/shapes.js';
import { ShearsError } from '../src/errors.js';

/** A copy of `model` whose first output [N, 4+nc, A] is replaced by the end-to-end head's [N, maxDet, 6] 'output0_e2e'. */
export function appendEndToEndHead(model: Model, opts: { maxDet?: number; output?: string } = {}): Model {
  const src = model.graph.outputs[0]!.name;
  const shape = inferShapes(model).types.get(src)?.shape;
  if (!shape || shape.length !== 3 || typeof shape[1] !== 'number' || typeof shape[2] !== 'number') throw new ShearsError(`'${src}' must be [N, 4+nc, anchors] with known sizes`);
  const C = shape[1], A = shape[2], nc = C - 4;
  const K = Math.min(opts.maxDet ?? 300, A);
  const b = new GraphBuilder('e2e');
  const I = (name: string, v: number[]) => b.init(`e2e/${name}`, int64Tensor([v.length], v));
  const n = (op: string, name: string, inputs: string[], attrs: Record<string, number | number[]> = {}) => b.node(op, inputs, attrs, { name: `e2e/${name}` });
  const nN = (op: string, name: string, inputs: string[], count: number, attrs: Record<string, number | number[]> = {}) => b.nodeN(op, inputs, attrs, count, { name: `e2e/${name}` });
  const p = n('Transpose', 'transpose', [src], { perm: [0, 2, 1] }); // [N, A, C]
  const [xywh, scores] = nN('Split', 'split', [p, I('split', [4, nc])], 2, { axis: 2 }) as [string, string];
  const [xy, wh] = nN('Split', 'split_xywh', [xywh, I('split2', [2, 2])], 2, { axis: 2 }) as [string, string];
  const half = n('Mul', 'half_wh', [wh, b.init('e2e/half', floatTensor([1], new Float32Array([0.5])))]);
  const boxes = n('Concat', 'xyxy', [n('Sub', 'x1y1', [xy, half]), n('Add', 'x2y2', [xy, half])], { axis: 2 }); // [N, A, 4]
  const maxScores = n('ReduceMax', 'max_score', [scores], { axes: [2], keepdims: 0 }); // [N, A]
  const k = I('k', [K]);
  const [, top] = nN('TopK', 'topk_anchors', [maxScores, k], 2, { axis: 1 }) as [string, string]; // [N, K]
  const topU = n('Unsqueeze', 'top_u', [top, I('axis2', [2])]); // [N, K, 1]
  const shapeOf = (v: string, name: string) => n('Shape', name, [v]);
  const nOf = n('Slice', 'batch', [shapeOf(src, 'shape_src'), I('s0', [0]), I('s1', [1])]); // [N]
  const idx4 = n('Expand', 'idx4', [topU, n('Concat', 'shape4', [nOf, I('k4', [K, 4])], { axis: 0 })]);
  const idxC = n('Expand', 'idxc', [topU, n('Concat', 'shapec', [nOf, I('kc', [K, nc])], { axis: 0 })]);
  const boxesK = n('GatherElements', 'boxes_k', [boxes, idx4], { axis: 1 }); // [N, K, 4]
  const scoresK = n('GatherElements', 'scores_k', [scores, idxC], { axis: 1 }); // [N, K, nc]
  const flat = n('Reshape', 'flat', [scoresK, I('flat_shape', [0, K * nc])]); // [N, K*nc]
  const [best, bestIdx] = nN('TopK', 'topk_scores', [flat, k], 2, { axis: 1 }) as [string, string]; // [N, K]
  const ncT = b.init('e2e/nc', int64Tensor([1], [nc]));
  const label = n('Mod', 'label', [bestIdx, ncT]);
  const anchor = n('Div', 'anchor', [bestIdx, ncT]);
  const anchorIdx = n('Expand', 'anchor4', [n('Unsqueeze', 'anchor_u', [anchor, I('axis2b', [2])]), n('Concat', 'shape4b', [nOf, I('k4b', [K, 4])], { axis: 0 })]);
  const boxesOut = n('GatherElements', 'boxes_out', [boxesK, anchorIdx], { axis: 1 });
  const scoreOut = n('Unsqueeze', 'score_u', [best, I('axis2c', [2])]);
  const labelOut = n('Unsqueeze', 'label_u', [n('Cast', 'label_f', [label], { to: DataType.FLOAT }), I('axis2d', [2])]);
  const out = b.node('Concat', [boxesOut, scoreOut, labelOut], { axis: 2 }, { name: 'e2e/out', output: opts.output ?? `${src}_e2e` });
  const m: Model = { ...model, graph: { ...model.graph, nodes: [...model.graph.nodes, ...b.graph.nodes], initializers: new Map([...model.graph.initializers, ...b.graph.initializers]), outputs: [{ name: out, type: { elemType: DataType.FLOAT, shape: [shape[0]!, K, 6] } }] }, metadata: new Map(model.metadata) };
  return m;
}

/** The same head in JavaScript (for one image): rows of (x1, y1, x2, y2, score, class), as v10postprocess. */
export function endToEndReference(out: Float32Array, C: number, A: number, maxDet = 300): number[][] {
  const nc = C - 4, K = Math.min(maxDet, A);
  const at = (c: number, a: number) => out[c * A + a]!;
  const maxS = Array.from({ length: A }, (_, a) => Math.max(...Array.from({ length: nc }, (_, c) => at(4 + c, a))));
  // TopK: largest first, ties by lower index (onnxruntime's order for equal values).
  const top = Array.from({ length: A }, (_, a) => a).sort((x, y) => maxS[y]! - maxS[x]! || x - y).slice(0, K);
  const flat: { s: number; i: number }[] = [];
  top.forEach((a, r) => { for (let c = 0; c < nc; c++) flat.push({ s: at(4 + c, a), i: r * nc + c }); });
  flat.sort((x, y) => y.s - x.s || x.i - y.i);
  return flat.slice(0, K).map(({ s, i }) => {
    const a = top[Math.floor(i / nc)]!;
    const cx = at(0, a), cy = at(1, a), w = at(2, a), h = at(3, a);
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, s, i % nc];
  });
}

async function main(): Promise<void> {
  const [modelPath, outPath, imagesDir] = process.argv.slice(2);
  if (!modelPath || !outPath) throw new Error('usage: node dist/bench/det-e2e.js MODEL.onnx OUT.onnx [IMAGES_DIR]');
  const { loadModel, saveModel } = await import('../src/onnx/io.js');
  const dense = loadModel(modelPath);
  const e2e = appendEndToEndHead(dense);
  saveModel(e2e, outPath);
  const report: Record<string, unknown> = { model: modelPath, output: outPath, shape: e2e.graph.outputs[0]!.type?.shape };
  if (imagesDir) report['check'] = await checkAgainstReference(modelPath, outPath, imagesDir, 16);
  console.log(JSON.stringify(report));
}

/** Runs the dense model and the end-to-end model on the first `n` images; the largest difference from the reference. */
export async function checkAgainstReference(densePath: string, e2ePath: string, imagesDir: string, n: number): Promise<{ images: number; maxAbsDiff: number; classMismatches: number }> {
  const ort = (await import('onnxruntime-node')).default;
  const { decodeImage } = await import('../src/data/image.js');
  const d = await ort.InferenceSession.create(densePath), e = await ort.InferenceSession.create(e2ePath);
  const names = readdirSync(imagesDir).filter((f) => f.endsWith('.png')).sort().slice(0, n);
  let maxAbsDiff = 0, classMismatches = 0;
  for (const f of names) {
    const img = decodeImage(readFileSync(join(imagesDir, f)), f);
    const H = img.height, W = img.width, x = new Float32Array(3 * H * W);
    for (let i = 0; i < H * W; i++) for (let c = 0; c < 3; c++) x[c * H * W + i] = img.data[i * img.channels + (img.channels >= 3 ? c : 0)]! / 255;
    const feed = { [d.inputNames[0]!]: new ort.Tensor('float32', x, [1, 3, H, W]) };
    const o = (await d.run(feed))[d.outputNames[0]!]!;
    const ref = endToEndReference(o.data as Float32Array, o.dims[1]!, o.dims[2]!);
    const got = (await e.run(feed))[e.outputNames[0]!]!.data as Float32Array;
    ref.forEach((row, r) => row.forEach((v, j) => {
      if (j === 5) { if (got[r * 6 + 5] !== v) classMismatches++; } else maxAbsDiff = Math.max(maxAbsDiff, Math.abs(got[r * 6 + j]! - v));
    }));
  }
  return { images: names.length, maxAbsDiff, classMismatches };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
