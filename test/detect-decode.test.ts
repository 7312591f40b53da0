/**
 * Detector output decoding (metrics/detection.ts): class-wise NMS against onnxruntime's NonMaxSuppression op run
 * in a small graph on random boxes; YOLOv8 decoding (thresholds, multi-label candidates, class-wise suppression,
 * max_det, xywh -> xyxy); end-to-end [N, K, 6] passed through; the format told from the shape.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import { floatTensor, int64Tensor, type Tensor } from '../src/ir/tensor.js';
import { runOnce } from '../src/runtime/session.js';
import { decodeDetections, decodeEnd2End, decodeYolo, detectionFormat, nms } from '../src/metrics/detection.js';
import { rng } from '../src/random.js';

/** onnxruntime's NonMaxSuppression on boxes [1, n, 4] (x1, y1, x2, y2) and scores [1, C, n]: kept box indices per class. */
async function ortNms(boxes: Float32Array, scores: Float32Array, n: number, C: number, iou: number): Promise<number[][]> {
  const b = new GraphBuilder();
  const bx = b.input('boxes', [1, n, 4]);
  const sc = b.input('scores', [1, C, n]);
  const sel = b.node('NonMaxSuppression', [bx, sc, b.init('max', int64Tensor([1], [n])), b.init('iou', floatTensor([1], [iou])), b.init('thr', floatTensor([1], [0]))], { center_point_box: 0 }, { output: 'sel' });
  b.output(sel, undefined, DataType.INT64);
  const out = await runOnce(b.model(), { boxes: { dtype: DataType.FLOAT, dims: [1, n, 4], data: boxes }, scores: { dtype: DataType.FLOAT, dims: [1, C, n], data: scores } });
  const s = out['sel']!;
  const per: number[][] = Array.from({ length: C }, () => []);
  const d = s.data as BigInt64Array;
  for (let i = 0; i < s.dims[0]!; i++) per[Number(d[i * 3 + 1])]!.push(Number(d[i * 3 + 2]));
  return per;
}

test('class-wise NMS keeps what onnxruntime NonMaxSuppression keeps, on random boxes (10 seeds, 3 IoU thresholds)', async () => {
  for (let seed = 1; seed <= 10; seed++) {
    const rand = rng(seed);
    const n = 40 + Math.floor(rand() * 40);
    const C = 1 + Math.floor(rand() * 3);
    const boxes = new Float32Array(n * 4);
    for (let i = 0; i < n; i++) {
      // clustered boxes, so that suppression happens
      const cx = Math.floor(rand() * 4) * 30 + rand() * 10, cy = Math.floor(rand() * 3) * 30 + rand() * 10;
      const w = 8 + rand() * 20, h = 8 + rand() * 20;
      boxes.set([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], i * 4);
    }
    const scores = new Float32Array(C * n);
    for (let k = 0; k < C * n; k++) scores[k] = 0.01 + rand() * 0.98;
    for (const iou of [0.3, 0.5, 0.7]) {
      const ort = await ortNms(boxes, scores, n, C, iou);
      // one candidate per (box, class), as multi-label decoding makes them
      const cb = new Float64Array(C * n * 4);
      const cs = new Float64Array(C * n);
      const cc = new Int32Array(C * n);
      for (let c = 0; c < C; c++) {
        for (let i = 0; i < n; i++) {
          const k = c * n + i;
          for (let j = 0; j < 4; j++) cb[k * 4 + j] = boxes[i * 4 + j]!;
          cs[k] = scores[c * n + i]!;
          cc[k] = c;
        }
      }
      const kept = nms(cb, cs, iou, cc);
      // kept come in descending score order
      for (let k = 1; k < kept.length; k++) assert.ok(cs[kept[k - 1]!]! >= cs[kept[k]!]!);
      for (let c = 0; c < C; c++) {
        const mine = kept.filter((k) => cc[k] === c).map((k) => k - c * n).sort((a, b) => a - b);
        assert.deepEqual(mine, [...ort[c]!].sort((a, b) => a - b), `seed ${seed} class ${c} IoU ${iou}`);
      }
      assert.ok(kept.length < C * n, 'something is suppressed');
    }
  }
});

/** A YOLOv8 output [1, 4 + nc, A] from per-anchor (cx, cy, w, h, scores...). */
function yoloOutput(anchors: number[][], nc: number): Tensor {
  const A = anchors.length;
  const data = new Float32Array((4 + nc) * A);
  anchors.forEach((a, j) => a.forEach((v, ch) => (data[ch * A + j] = v)));
  return { dtype: DataType.FLOAT, dims: [1, 4 + nc, A], data };
}

test('YOLOv8 decoding: conf filter, multi-label candidates, class-wise NMS, max_det, boxes to x1y1x2y2', () => {
  const out = yoloOutput([
    [50, 50, 20, 10, 0.9, 0.6, 0.0005], // two labels above conf
    [51, 50, 20, 10, 0.8, 0.1, 0.0], // overlaps anchor 0 in class 0: suppressed there; kept as class 1 (0.1 < 0.6: suppressed by 0's class-1 box)
    [10, 10, 4, 4, 0.0009, 0.002, 0.0], // only class 1 above 0.001
    [100, 100, 10, 10, 0.0005, 0.0008, 0.0009], // nothing above conf
  ], 3);
  const [d] = decodeYolo(out);
  const rows = [...d!.scores].map((s, i) => [...d!.boxes.slice(i * 4, i * 4 + 4)].concat([Math.fround(s), d!.classes[i]!]));
  assert.deepEqual(rows, [
    [40, 45, 60, 55, Math.fround(0.9), 0],
    [40, 45, 60, 55, Math.fround(0.6), 1],
    [8, 8, 12, 12, Math.fround(0.002), 1],
  ]);
  // single label: only the best class per anchor
  const [s] = decodeYolo(out, { multiLabel: false });
  assert.deepEqual([...s!.classes], [0, 1]);
  // max_det keeps the highest scores
  const [m] = decodeYolo(out, { maxDet: 2 });
  assert.deepEqual([...m!.scores].map(Math.fround), [Math.fround(0.9), Math.fround(0.6)]);
  // agnostic: the class-1 box at the same place is suppressed by the class-0 one
  const [a] = decodeYolo(out, { agnostic: true });
  assert.deepEqual([...a!.classes], [0, 1]);
  assert.deepEqual([...a!.boxes.slice(4, 8)], [8, 8, 12, 12]);
});

test('end-to-end outputs [N, K, 6] pass through (score > conf only); the format follows the shape', () => {
  const rows = [
    [1, 2, 11, 12, 0.9, 3],
    [1, 2, 11, 12, 0.8, 3], // a duplicate: no NMS applied
    [5, 5, 6, 6, 0.0001, 1],
  ];
  const t: Tensor = { dtype: DataType.FLOAT, dims: [1, 3, 6], data: Float32Array.from(rows.flat()) };
  const [d] = decodeDetections(t);
  assert.deepEqual([...d!.classes], [3, 3]);
  assert.deepEqual([...d!.boxes], [1, 2, 11, 12, 1, 2, 11, 12]);
  assert.equal(decodeEnd2End(t, { conf: 0.85 })[0]!.scores.length, 1);
  assert.deepEqual(detectionFormat([1, 14, 525]), { kind: 'yolo', nc: 10, anchors: 525, masks: 0 });
  assert.deepEqual(detectionFormat([1, 300, 6]), { kind: 'end2end', maxDet: 300 });
  // nc from the data decides: 4 + 2 channels over 6 anchors is a YOLO head when nc = 2
  assert.equal(detectionFormat([1, 6, 8400], 2)?.kind, 'yolo');
  // a segmentation head: 4 + 80 classes + 32 mask coefficients
  assert.deepEqual(detectionFormat([1, 116, 8400], 80), { kind: 'yolo', nc: 80, anchors: 8400, masks: 32 });
  assert.equal(detectionFormat([1, 10]), undefined);
  assert.throws(() => decodeDetections({ dtype: DataType.FLOAT, dims: [1, 10], data: new Float32Array(10) }), /not a detector output/);
});
