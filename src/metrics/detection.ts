/**
 * Object detection: decoding YOLO outputs, non-maximum suppression, COCO-style mAP as Ultralytics' val computes
 * it, and detection fidelity against a reference model. Isomorphic (no I/O).
 *
 * Output formats (detectionFormat):
 * - 'yolo': YOLOv8/YOLO11 [N, 4 + nc (+ masks), A]: cx, cy, w, h in input pixels, then nc sigmoid class scores, per
 *   anchor. Decoded as Ultralytics' non_max_suppression does for val: candidates whose best class score exceeds
 *   conf, multi-label (one candidate per class score above conf, when nc > 1), at most 30000 candidates by score,
 *   class-wise greedy NMS (suppress IoU > iou) in score order, the first max_det kept.
 * - 'end2end': NMS-free [N, K, 6] (x1, y1, x2, y2, score, class; YOLOv10/YOLO26 one-to-one heads with TopK in the
 *   graph): passed through as they are, only rows with score > conf kept.
 *
 * mAP (DetectionMeter), two definitions computed together, both over IoU 0.50:0.05:0.95 and the classes that have
 * ground truth:
 * - COCO (pycocotools, the headline figures): per image and threshold, predictions in score order each take the
 *   best unmatched truth of their class (matchGreedy); per class, precision made non-increasing and sampled at
 *   101 recall points (0 beyond the highest recall), averaged (computeApCoco). A perfect detector scores 1.
 * - Ultralytics (what its DetectionValidator prints): match_predictions (matchPredictions; differs from the
 *   greedy matching where a prediction's best truth is taken by a higher-scored one), ap_per_class/compute_ap:
 *   the precision envelope read by np.interp at 101 recall points, integrated by the trapezoid rule. A perfect
 *   detector scores 0.995 there (the last point reads the sentinel precision 0).
 * Matching and AP are the same otherwise (sorting by score is stable in both), so the two differ by the
 * integration rule alone when no prediction's best truth is contested.
 */
import { ShearsError } from '../errors.js';
import { letterboxGeometry, roundHalfEven, type Letterbox } from '../data/preprocess.js';
import type { Tensor } from '../ir/tensor.js';

export { letterboxGeometry, type Letterbox };

/** Detections of one image: boxes n x (x1, y1, x2, y2), scores, class indices; in score order after NMS. */
export interface Detections {
  boxes: Float64Array;
  scores: Float64Array;
  classes: Int32Array;
}

/** Ground truth of one image: boxes m x (x1, y1, x2, y2) and class indices. */
export interface GroundTruth {
  boxes: Float64Array;
  classes: Int32Array;
}

export type DetectionFormat =
  | { kind: 'yolo'; nc: number; anchors: number; masks: number }
  | { kind: 'end2end'; maxDet: number };

/**
 * The format of a detector output from its shape (and the class count when known): [N, K, 6] is end-to-end
 * (Ultralytics' rule: a last dimension of 6), [N, 4 + nc (+ masks), A] a YOLOv8 head. Undefined when neither.
 */
export function detectionFormat(dims: readonly (number | string | null | undefined)[], nc?: number): DetectionFormat | undefined {
  if (dims.length !== 3) return undefined;
  const c = typeof dims[1] === 'number' ? dims[1] : undefined;
  const a = typeof dims[2] === 'number' ? dims[2] : undefined;
  if (nc !== undefined && c !== undefined && c >= 4 + nc && !(a === 6 && c !== 4 + nc)) {
    if (c === 4 + nc) return { kind: 'yolo', nc, anchors: a ?? -1, masks: 0 };
  }
  if (a === 6) return { kind: 'end2end', maxDet: c ?? -1 };
  if (c !== undefined && c >= 5 && (a === undefined || a > c)) {
    const n = nc ?? c - 4;
    if (c < 4 + n) return undefined;
    return { kind: 'yolo', nc: n, anchors: a ?? -1, masks: c - 4 - n };
  }
  return undefined;
}

export interface DecodeOptions {
  /** Class count (default: from the output shape). */
  nc?: number;
  /** Confidence threshold (score > conf kept). Default 0.001, as Ultralytics val. */
  conf?: number;
  /** NMS IoU threshold (IoU > iou suppressed). Default 0.7, as Ultralytics val. */
  iou?: number;
  /** Detections kept per image. Default 300. */
  maxDet?: number;
  /** Candidates into NMS per image (the highest scores). Default 30000. */
  maxNms?: number;
  /** One candidate per class score above conf (default true when nc > 1, as DetectionValidator). */
  multiLabel?: boolean;
  /** Class-agnostic NMS (default false). */
  agnostic?: boolean;
}

function floatData(t: Tensor, what: string): Float32Array | Float64Array {
  if (t.data instanceof Float32Array || t.data instanceof Float64Array) return t.data;
  throw new ShearsError(`${what}: expected a float output, got another element type`);
}

/**
 * Decodes a detector output (see the module comment) into one Detections per batch row, boxes in input pixels.
 */
export function decodeDetections(output: Tensor, opts: DecodeOptions = {}): Detections[] {
  const fmt = detectionFormat(output.dims, opts.nc);
  if (!fmt) {
    throw new ShearsError(`output [${output.dims.join(', ')}] is not a detector output: expected [N, 4 + nc, anchors] (YOLOv8/YOLO11)${opts.nc !== undefined ? ` with nc = ${opts.nc}` : ''} or [N, K, 6] (end-to-end)`);
  }
  return fmt.kind === 'end2end' ? decodeEnd2End(output, opts) : decodeYolo(output, { ...opts, nc: fmt.nc });
}

/** An end-to-end output [N, K, 6] (x1, y1, x2, y2, score, class): rows with score > conf, as they are. */
export function decodeEnd2End(output: Tensor, opts: DecodeOptions = {}): Detections[] {
  const [n, k, six] = output.dims as [number, number, number];
  if (output.dims.length !== 3 || six !== 6) throw new ShearsError(`end-to-end output must be [N, K, 6], got [${output.dims.join(', ')}]`);
  const d = floatData(output, 'end-to-end output');
  const conf = opts.conf ?? 0.001;
  const out: Detections[] = [];
  for (let b = 0; b < n; b++) {
    const rows: number[] = [];
    for (let r = 0; r < k; r++) if (d[(b * k + r) * 6 + 4]! > conf) rows.push(r);
    const boxes = new Float64Array(rows.length * 4);
    const scores = new Float64Array(rows.length);
    const classes = new Int32Array(rows.length);
    rows.forEach((r, i) => {
      const o = (b * k + r) * 6;
      for (let j = 0; j < 4; j++) boxes[i * 4 + j] = d[o + j]!;
      scores[i] = d[o + 4]!;
      classes[i] = Math.round(d[o + 5]!);
    });
    out.push({ boxes, scores, classes });
  }
  return out;
}

/** A YOLOv8/YOLO11 output [N, 4 + nc (+ masks), A] decoded with Ultralytics' val NMS (see the module comment). */
export function decodeYolo(output: Tensor, opts: DecodeOptions = {}): Detections[] {
  if (output.dims.length !== 3) throw new ShearsError(`YOLO output must be [N, 4 + nc, anchors], got [${output.dims.join(', ')}]`);
  const [n, c, a] = output.dims as [number, number, number];
  const nc = opts.nc ?? c - 4;
  if (nc < 1 || c < 4 + nc) throw new ShearsError(`YOLO output [${output.dims.join(', ')}] has fewer than 4 + ${nc} channels`);
  const d = floatData(output, 'YOLO output');
  const conf = opts.conf ?? 0.001;
  const iou = opts.iou ?? 0.7;
  const maxDet = opts.maxDet ?? 300;
  const maxNms = opts.maxNms ?? 30000;
  const multi = (opts.multiLabel ?? true) && nc > 1;
  const out: Detections[] = [];
  for (let b = 0; b < n; b++) {
    const base = b * c * a;
    const at = (ch: number, j: number) => d[base + ch * a + j]!;
    // candidates: anchor, class, score
    const cand: { j: number; cls: number; score: number }[] = [];
    for (let j = 0; j < a; j++) {
      let best = -Infinity;
      let bestK = 0;
      for (let k = 0; k < nc; k++) {
        const s = at(4 + k, j);
        if (s > best) {
          best = s;
          bestK = k;
        }
      }
      if (!(best > conf)) continue;
      if (multi) {
        for (let k = 0; k < nc; k++) {
          const s = at(4 + k, j);
          if (s > conf) cand.push({ j, cls: k, score: s });
        }
      } else cand.push({ j, cls: bestK, score: best });
    }
    let sel = cand;
    if (sel.length > maxNms) sel = stableOrder(sel.map((x) => x.score)).slice(0, maxNms).map((i) => cand[i]!);
    const boxes = new Float64Array(sel.length * 4);
    sel.forEach((x, i) => {
      // xywh2xyxy in float32, as the exported tensor math
      const cx = at(0, x.j), cy = at(1, x.j);
      const hw = Math.fround(at(2, x.j) / 2), hh = Math.fround(at(3, x.j) / 2);
      boxes[i * 4] = Math.fround(cx - hw);
      boxes[i * 4 + 1] = Math.fround(cy - hh);
      boxes[i * 4 + 2] = Math.fround(cx + hw);
      boxes[i * 4 + 3] = Math.fround(cy + hh);
    });
    const scores = Float64Array.from(sel, (x) => x.score);
    const classes = Int32Array.from(sel, (x) => x.cls);
    const keep = nms(boxes, scores, iou, opts.agnostic ? undefined : classes).slice(0, maxDet);
    out.push(pick({ boxes, scores, classes }, keep));
  }
  return out;
}

/** The detections at `idx`, in that order. */
export function pick(d: Detections, idx: ArrayLike<number>): Detections {
  const boxes = new Float64Array(idx.length * 4);
  const scores = new Float64Array(idx.length);
  const classes = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    const k = idx[i]!;
    for (let j = 0; j < 4; j++) boxes[i * 4 + j] = d.boxes[k * 4 + j]!;
    scores[i] = d.scores[k]!;
    classes[i] = d.classes[k]!;
  }
  return { boxes, scores, classes };
}

/** Indices sorting `v` in descending order, ties kept in index order. */
function stableOrder(v: ArrayLike<number>): number[] {
  const idx = Array.from({ length: v.length }, (_, i) => i);
  return idx.sort((p, q) => v[q]! - v[p]! || p - q);
}

/** IoU of boxes i of `a` and j of `b` (x1, y1, x2, y2), with Ultralytics' box_iou epsilon in the denominator. */
export function boxIou(a: ArrayLike<number>, i: number, b: ArrayLike<number>, j: number, eps = 0): number {
  const ax1 = a[i * 4]!, ay1 = a[i * 4 + 1]!, ax2 = a[i * 4 + 2]!, ay2 = a[i * 4 + 3]!;
  const bx1 = b[j * 4]!, by1 = b[j * 4 + 1]!, bx2 = b[j * 4 + 2]!, by2 = b[j * 4 + 3]!;
  const iw = Math.min(ax2, bx2) - Math.max(ax1, bx1);
  const ih = Math.min(ay2, by2) - Math.max(ay1, by1);
  const inter = iw > 0 && ih > 0 ? iw * ih : 0;
  const union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter + eps;
  return union > 0 ? inter / union : 0;
}

/**
 * Greedy non-maximum suppression (torchvision.ops.nms): boxes visited in descending score order (ties in index
 * order), a box suppressed when its IoU with a kept box of the same class (all boxes when `classes` is
 * undefined) exceeds `iouThreshold`. Returns the kept indices in score order. Equivalent to Ultralytics'
 * class offsets (boxes + class * 7680) for boxes within 7680 pixels.
 */
export function nms(boxes: ArrayLike<number>, scores: ArrayLike<number>, iouThreshold: number, classes?: ArrayLike<number>): number[] {
  const order = stableOrder(scores);
  const keptBy = new Map<number, number[]>();
  const keep: number[] = [];
  for (const i of order) {
    const c = classes ? classes[i]! : 0;
    let kept = keptBy.get(c);
    if (!kept) keptBy.set(c, (kept = []));
    let suppressed = false;
    for (const k of kept) {
      if (boxIou(boxes, i, boxes, k) > iouThreshold) {
        suppressed = true;
        break;
      }
    }
    if (!suppressed) {
      kept.push(i);
      keep.push(i);
    }
  }
  return keep;
}

// ------------------------------------------------------------------------------------------------- letterbox

/**
 * Boxes (x1, y1, x2, y2) from input pixels back to the original h x w image: minus the padding, divided by the
 * ratio, clipped to the image (Ultralytics' scale_boxes). A new array.
 */
export function unletterboxBoxes(boxes: ArrayLike<number>, lb: Letterbox, h: number, w: number): Float64Array {
  const out = new Float64Array(boxes.length);
  for (let i = 0; i < boxes.length; i += 4) {
    out[i] = clip((boxes[i]! - lb.left) / lb.ratio, w);
    out[i + 1] = clip((boxes[i + 1]! - lb.top) / lb.ratio, h);
    out[i + 2] = clip((boxes[i + 2]! - lb.left) / lb.ratio, w);
    out[i + 3] = clip((boxes[i + 3]! - lb.top) / lb.ratio, h);
  }
  return out;
}

/** Boxes in original pixels into input pixels (times the ratio, plus the padding). A new array. */
export function letterboxBoxes(boxes: ArrayLike<number>, lb: Letterbox): Float64Array {
  const out = new Float64Array(boxes.length);
  for (let i = 0; i < boxes.length; i += 4) {
    out[i] = boxes[i]! * lb.ratio + lb.left;
    out[i + 1] = boxes[i + 1]! * lb.ratio + lb.top;
    out[i + 2] = boxes[i + 2]! * lb.ratio + lb.left;
    out[i + 3] = boxes[i + 3]! * lb.ratio + lb.top;
  }
  return out;
}

function clip(v: number, hi: number): number {
  return v < 0 ? 0 : v > hi ? hi : v;
}

// ------------------------------------------------------------------------------------------------------- mAP

/** The IoU thresholds 0.50:0.05:0.95 as Ultralytics holds them (float32, torch.linspace). */
export const IOU_THRESHOLDS: readonly number[] = Array.from({ length: 10 }, (_, i) => Math.fround(0.5 + 0.05 * i));

/**
 * Ultralytics' match_predictions: for each threshold t, the (truth, prediction) pairs of the same class with IoU
 * >= t, sorted by IoU descending; each prediction keeps its best pair, then each truth keeps the pair of the
 * lowest prediction index (predictions come in score order within an image). This differs from COCO's greedy
 * matching (predictions in score order, each taking the best still unmatched truth): a prediction whose best
 * truth goes to a higher-scored prediction is a false positive here even when another truth above t is free.
 * Returns n x T booleans (prediction-major). IoU as box_iou: float32, eps 1e-7 in the denominator.
 */
export function matchPredictions(pred: Detections, truth: GroundTruth, thresholds: readonly number[] = IOU_THRESHOLDS): Uint8Array {
  const n = pred.classes.length;
  const m = truth.classes.length;
  const T = thresholds.length;
  const correct = new Uint8Array(n * T);
  if (n === 0 || m === 0) return correct;
  const iou = new Float64Array(m * n);
  for (let g = 0; g < m; g++) {
    for (let p = 0; p < n; p++) {
      iou[g * n + p] = truth.classes[g] === pred.classes[p] ? Math.fround(boxIou(truth.boxes, g, pred.boxes, p, 1e-7)) : 0;
    }
  }
  for (let t = 0; t < T; t++) {
    const thr = thresholds[t]!;
    const pairs: number[] = [];
    for (let k = 0; k < m * n; k++) if (iou[k]! >= thr) pairs.push(k);
    if (pairs.length === 0) continue;
    // highest IoU first (ties: later pair first, as argsort()[::-1] of a stable order)
    pairs.sort((x, y) => iou[y]! - iou[x]! || y - x);
    // unique by prediction: the first (best) pair of each
    const byPred = new Map<number, number>();
    for (const k of pairs) {
      const p = k % n;
      if (!byPred.has(p)) byPred.set(p, Math.floor(k / n));
    }
    // np.unique sorts by prediction index; unique by truth keeps the lowest prediction index
    const taken = new Set<number>();
    for (const p of [...byPred.keys()].sort((x, y) => x - y)) {
      const g = byPred.get(p)!;
      if (taken.has(g)) continue;
      taken.add(g);
      correct[p * T + t] = 1;
    }
  }
  return correct;
}

/**
 * np.interp(x, xp, fp) for non-decreasing xp: fp[0] left of xp, fp[last] right of it; otherwise j, the last
 * index with xp[j] <= x, gives fp[j] when xp[j] == x or j is the last, else the line from j to j + 1.
 */
export function interp(x: number, xp: ArrayLike<number>, fp: ArrayLike<number>): number {
  const n = xp.length;
  if (x < xp[0]!) return fp[0]!;
  if (x > xp[n - 1]!) return fp[n - 1]!;
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x >= xp[mid]!) lo = mid + 1;
    else hi = mid;
  }
  const j = lo - 1;
  if (j === n - 1 || xp[j] === x) return fp[j]!;
  const slope = (fp[j + 1]! - fp[j]!) / (xp[j + 1]! - xp[j]!);
  return slope * (x - xp[j]!) + fp[j]!;
}

/**
 * Ultralytics' compute_ap: sentinels (recall 0 with precision 1 in front, recall 1 with precision 0 at the
 * end), the precision envelope (running maximum from the right), np.interp at 101 recall points 0, 0.01, ..., 1
 * and trapezoidal integration.
 */
export function computeAp(recall: ArrayLike<number>, precision: ArrayLike<number>): number {
  const n = recall.length;
  const mrec = new Float64Array(n + 2);
  const mpre = new Float64Array(n + 2);
  mrec[0] = 0;
  mpre[0] = 1;
  for (let i = 0; i < n; i++) {
    mrec[i + 1] = recall[i]!;
    mpre[i + 1] = precision[i]!;
  }
  mrec[n + 1] = 1;
  mpre[n + 1] = 0;
  for (let i = n; i >= 0; i--) mpre[i] = Math.max(mpre[i]!, mpre[i + 1]!);
  let ap = 0;
  let prevX = 0;
  let prevY = interp(0, mrec, mpre);
  for (let k = 1; k <= 100; k++) {
    const x = k === 100 ? 1 : k * 0.01;
    const y = interp(x, mrec, mpre);
    ap += ((x - prevX) * (y + prevY)) / 2;
    prevX = x;
    prevY = y;
  }
  return ap;
}

/** The IoU thresholds as pycocotools holds them: np.linspace(0.5, 0.95, 10) in float64. */
export const COCO_IOU_THRESHOLDS: readonly number[] = Array.from({ length: 10 }, (_, i) => (i === 9 ? 0.95 : i * (0.45 / 9) + 0.5));

/**
 * COCO's (pycocotools') greedy matching within one image: for each threshold, predictions in descending score
 * order (ties in index order) each take the still unmatched truth of the same class with the highest IoU >= t
 * (ties: the later truth). IoU in float64 without epsilon. Returns n x T booleans (prediction-major).
 */
export function matchGreedy(pred: Detections, truth: GroundTruth, thresholds: readonly number[] = COCO_IOU_THRESHOLDS): Uint8Array {
  const n = pred.classes.length;
  const m = truth.classes.length;
  const T = thresholds.length;
  const correct = new Uint8Array(n * T);
  if (n === 0 || m === 0) return correct;
  const order = stableOrder(pred.scores);
  const iou = new Float64Array(n * m);
  for (let p = 0; p < n; p++) for (let g = 0; g < m; g++) iou[p * m + g] = truth.classes[g] === pred.classes[p] ? boxIou(pred.boxes, p, truth.boxes, g) : -1;
  for (let t = 0; t < T; t++) {
    const used = new Uint8Array(m);
    for (const p of order) {
      let best = -1;
      let bestIou = Math.min(thresholds[t]!, 1 - 1e-10);
      for (let g = 0; g < m; g++) {
        if (used[g]) continue;
        const v = iou[p * m + g]!;
        if (v < bestIou) continue;
        bestIou = v;
        best = g;
      }
      if (best >= 0) {
        used[best] = 1;
        correct[p * T + t] = 1;
      }
    }
  }
  return correct;
}

/**
 * pycocotools' AP of one class and threshold from the predictions' TP flags in descending score order: the
 * precision made non-increasing from the right, then sampled at the 101 recall thresholds 0, 0.01, ..., 1
 * (the first prediction whose recall reaches it; 0 beyond the highest recall), averaged.
 */
export function computeApCoco(tp: ArrayLike<number>, nGt: number): number {
  const n = tp.length;
  if (nGt === 0) return NaN;
  const rc = new Float64Array(n);
  const pr = new Float64Array(n);
  let tps = 0;
  for (let i = 0; i < n; i++) {
    if (tp[i]) tps++;
    rc[i] = tps / nGt;
    pr[i] = tps / (i + 1 + 2.220446049250313e-16);
  }
  for (let i = n - 1; i > 0; i--) if (pr[i]! > pr[i - 1]!) pr[i - 1] = pr[i]!;
  let sum = 0;
  let j = 0;
  for (let r = 0; r <= 100; r++) {
    const thr = r === 100 ? 1 : r * 0.01;
    while (j < n && rc[j]! < thr) j++;
    if (j >= n) break;
    sum += pr[j]!;
  }
  return sum / 101;
}

export interface ClassAp {
  class: number;
  name: string;
  /** Images holding at least one object of the class. */
  images: number;
  /** Objects of the class. */
  instances: number;
  /** Precision and recall at the confidence of the highest mean F1 (Ultralytics' P and R columns). */
  precision: number;
  recall: number;
  /** COCO AP (pycocotools: greedy matching, 101 recall points sampled) at IoU 0.5, 0.75, and the mean over 0.50:0.05:0.95. */
  ap50: number;
  ap75: number;
  ap: number;
  /** The same by Ultralytics' val (match_predictions, compute_ap's trapezoid over np.interp). */
  ultralytics: { ap50: number; ap75: number; ap: number };
}

export interface DetectionReport {
  images: number;
  instances: number;
  /** Predictions scored (after decoding and NMS). */
  predictions: number;
  /** COCO mAP (pycocotools' definition), the mean over the classes that have ground truth. */
  map50: number;
  map75: number;
  map5095: number;
  /** Ultralytics' mean P and R at the confidence of the highest smoothed mean F1. */
  precision: number;
  recall: number;
  /** mAP as Ultralytics' DetectionValidator prints it (a perfect detector scores 0.995 there). */
  ultralytics: { map50: number; map75: number; map5095: number };
  /** Classes with ground truth, in class order. */
  perClass: ClassAp[];
}

/**
 * Ultralytics' ap_per_class: predictions sorted by confidence (descending; ties in the order added), per class
 * with ground truth the cumulative TP/FP counts give recall (tp / n_gt) and precision, and AP per threshold by
 * computeAp; P and R at the confidence (on a 1000-point grid) of the highest smoothed mean F1.
 * `tp` is n x T (prediction-major). Returns per-class AP n_classes x T in the order of `classes`.
 */
export function apPerClass(
  tp: Uint8Array,
  T: number,
  conf: ArrayLike<number>,
  predCls: ArrayLike<number>,
  targetCls: ArrayLike<number>,
): { classes: number[]; counts: number[]; ap: Float64Array[]; precision: Float64Array; recall: Float64Array } {
  const order = stableOrder(conf);
  const countsBy = new Map<number, number>();
  for (let i = 0; i < targetCls.length; i++) countsBy.set(targetCls[i]!, (countsBy.get(targetCls[i]!) ?? 0) + 1);
  const classes = [...countsBy.keys()].sort((a, b) => a - b);
  const counts = classes.map((c) => countsBy.get(c)!);
  const G = 1000;
  const grid = Float64Array.from({ length: G }, (_, i) => (i === G - 1 ? 1 : i * (1 / (G - 1))));
  const ap: Float64Array[] = [];
  const pCurve: Float64Array[] = [];
  const rCurve: Float64Array[] = [];
  const eps = 1e-16;
  classes.forEach((c, ci) => {
    const row = new Float64Array(T);
    ap.push(row);
    const pc = new Float64Array(G);
    const rc = new Float64Array(G);
    pCurve.push(pc);
    rCurve.push(rc);
    const idx = order.filter((i) => predCls[i] === c);
    const nl = counts[ci]!;
    if (idx.length === 0) return;
    const negConf = idx.map((i) => -conf[i]!);
    for (let t = 0; t < T; t++) {
      const recall = new Float64Array(idx.length);
      const precision = new Float64Array(idx.length);
      let tpc = 0;
      let fpc = 0;
      idx.forEach((i, k) => {
        if (tp[i * T + t]) tpc++;
        else fpc++;
        recall[k] = tpc / (nl + eps);
        precision[k] = tpc / (tpc + fpc);
      });
      row[t] = computeAp(recall, precision);
      if (t === 0) {
        // np.interp(-x, -conf, curve, left=...): -conf ascending
        for (let g = 0; g < G; g++) {
          const x = -grid[g]!;
          rc[g] = x < negConf[0]! ? 0 : interp(x, negConf, recall);
          pc[g] = x < negConf[0]! ? 1 : interp(x, negConf, precision);
        }
      }
    }
  });
  // mean F1 over classes, smoothed with a box filter of 101 (fraction 0.1, edges repeated), first argmax
  const nc = classes.length;
  const f1 = new Float64Array(G);
  for (let g = 0; g < G; g++) {
    let s = 0;
    for (let ci = 0; ci < nc; ci++) {
      const p = pCurve[ci]![g]!, r = rCurve[ci]![g]!;
      s += (2 * p * r) / (p + r + eps);
    }
    f1[g] = nc ? s / nc : 0;
  }
  const nf = Math.floor(roundHalfEven(G * 0.1 * 2) / 2) + 1;
  const half = Math.floor(nf / 2);
  let best = 0;
  let bestV = -Infinity;
  for (let g = 0; g < G; g++) {
    let s = 0;
    for (let k = g - half; k <= g + half; k++) s += f1[Math.min(G - 1, Math.max(0, k))]!;
    const v = s / nf;
    if (v > bestV) {
      bestV = v;
      best = g;
    }
  }
  return {
    classes,
    counts,
    ap,
    precision: Float64Array.from(pCurve, (p) => p[best]!),
    recall: Float64Array.from(rCurve, (r) => r[best]!),
  };
}

/** COCO AP per class (rows in `classes` order) and threshold from TP flags n x T (prediction-major). */
export function apPerClassCoco(tp: Uint8Array, T: number, conf: ArrayLike<number>, predCls: ArrayLike<number>, classes: readonly number[], counts: readonly number[]): Float64Array[] {
  const order = stableOrder(conf);
  return classes.map((c, ci) => {
    const idx = order.filter((i) => predCls[i] === c);
    const row = new Float64Array(T);
    for (let t = 0; t < T; t++) row[t] = computeApCoco(idx.map((i) => tp[i * T + t]!), counts[ci]!);
    return row;
  });
}

/**
 * Accumulates per-image predictions and ground truth (in the same coordinates: original image pixels, as both
 * Ultralytics and COCO score) and computes the mAP report, by COCO's definition and by Ultralytics'.
 */
export class DetectionMeter {
  private readonly tpU: number[] = [];
  private readonly tpC: number[] = [];
  private readonly conf: number[] = [];
  private readonly predCls: number[] = [];
  private readonly targetCls: number[] = [];
  private readonly imagesWith = new Map<number, number>();
  private seen = 0;
  readonly T = 10;

  constructor(readonly names: readonly string[] = []) {}

  get images(): number {
    return this.seen;
  }

  add(pred: Detections, truth: GroundTruth): void {
    this.seen++;
    const m = truth.classes.length;
    for (let g = 0; g < m; g++) this.targetCls.push(truth.classes[g]!);
    for (const c of new Set(truth.classes)) this.imagesWith.set(c, (this.imagesWith.get(c) ?? 0) + 1);
    const n = pred.classes.length;
    if (n === 0) return;
    const u = matchPredictions(pred, truth, IOU_THRESHOLDS);
    const c = matchGreedy(pred, truth, COCO_IOU_THRESHOLDS);
    for (let p = 0; p < n; p++) {
      for (let t = 0; t < this.T; t++) {
        this.tpU.push(u[p * this.T + t]!);
        this.tpC.push(c[p * this.T + t]!);
      }
      this.conf.push(pred.scores[p]!);
      this.predCls.push(pred.classes[p]!);
    }
  }

  report(): DetectionReport {
    const T = this.T;
    const tpU = Uint8Array.from(this.tpU);
    const r = apPerClass(tpU, T, this.conf, this.predCls, this.targetCls);
    const coco = apPerClassCoco(Uint8Array.from(this.tpC), T, this.conf, this.predCls, r.classes, r.counts);
    // Ultralytics computes nothing (all zeros) when no prediction is a true positive
    const anyTp = tpU.some((v) => v !== 0);
    const mean = (a: ArrayLike<number>) => {
      let s = 0;
      for (let i = 0; i < a.length; i++) s += a[i]!;
      return a.length ? s / a.length : 0;
    };
    const perClass: ClassAp[] = r.classes.map((c, ci) => {
      const u = r.ap[ci]!;
      const k = coco[ci]!;
      return {
        class: c,
        name: this.names[c] ?? String(c),
        images: this.imagesWith.get(c) ?? 0,
        instances: r.counts[ci]!,
        precision: anyTp ? r.precision[ci]! : 0,
        recall: anyTp ? r.recall[ci]! : 0,
        ap50: k[0]!,
        ap75: k[5]!,
        ap: mean(k),
        ultralytics: { ap50: anyTp ? u[0]! : 0, ap75: anyTp ? u[5]! : 0, ap: anyTp ? mean(u) : 0 },
      };
    });
    const avg = (f: (c: ClassAp) => number) => mean(perClass.map(f));
    return {
      images: this.seen,
      instances: this.targetCls.length,
      predictions: this.conf.length,
      map50: avg((c) => c.ap50),
      map75: avg((c) => c.ap75),
      map5095: avg((c) => c.ap),
      precision: avg((c) => c.precision),
      recall: avg((c) => c.recall),
      ultralytics: { map50: avg((c) => c.ultralytics.ap50), map75: avg((c) => c.ultralytics.ap75), map5095: avg((c) => c.ultralytics.ap) },
      perClass,
    };
  }
}

/** mAP of per-image predictions against ground truth (same coordinates), as DetectionMeter. */
export function detectionMap(preds: readonly Detections[], truths: readonly GroundTruth[], names: readonly string[] = []): DetectionReport {
  if (preds.length !== truths.length) throw new ShearsError(`detectionMap: ${preds.length} prediction sets for ${truths.length} images`);
  const m = new DetectionMeter(names);
  preds.forEach((p, i) => m.add(p, truths[i]!));
  return m.report();
}

// -------------------------------------------------------------------------------------------------- fidelity

export interface DetectionFidelity {
  images: number;
  /** The reference's detections (score >= conf) and the model's. */
  referenceDetections: number;
  modelDetections: number;
  /** Reference detections matched by a model detection of the same class at IoU >= iou. */
  matched: number;
  /** matched / referenceDetections (1 when the reference detects nothing). */
  recall: number;
  /** matched / modelDetections (1 when the model detects nothing). */
  precision: number;
  /** Mean IoU of the matched pairs (NaN when none). */
  meanIou: number;
  /** Pearson correlation of the matched pairs' scores (NaN with fewer than 2 pairs or constant scores). */
  scoreCorrelation: number;
  conf: number;
  iou: number;
}

/**
 * Detection fidelity of a model against a reference on the same images (no labels needed): both sets of
 * detections filtered to score >= conf, then per image and class the reference's detections in score order each
 * take the unmatched model detection of highest IoU, a match when that IoU >= iou.
 */
export class DetectionFidelityMeter {
  private images = 0;
  private nRef = 0;
  private nModel = 0;
  private ious: number[] = [];
  private refScores: number[] = [];
  private modelScores: number[] = [];

  constructor(
    readonly conf = 0.25,
    readonly iou = 0.5,
  ) {}

  add(reference: Detections, model: Detections): void {
    this.images++;
    const ref = [...reference.scores.keys()].filter((i) => reference.scores[i]! >= this.conf);
    const mod = [...model.scores.keys()].filter((i) => model.scores[i]! >= this.conf);
    this.nRef += ref.length;
    this.nModel += mod.length;
    ref.sort((a, b) => reference.scores[b]! - reference.scores[a]! || a - b);
    const used = new Set<number>();
    for (const r of ref) {
      let best = -1;
      let bestIou = -1;
      for (const k of mod) {
        if (used.has(k) || model.classes[k] !== reference.classes[r]) continue;
        const v = boxIou(reference.boxes, r, model.boxes, k);
        if (v > bestIou) {
          bestIou = v;
          best = k;
        }
      }
      if (best >= 0 && bestIou >= this.iou) {
        used.add(best);
        this.ious.push(bestIou);
        this.refScores.push(reference.scores[r]!);
        this.modelScores.push(model.scores[best]!);
      }
    }
  }

  report(): DetectionFidelity {
    const matched = this.ious.length;
    return {
      images: this.images,
      referenceDetections: this.nRef,
      modelDetections: this.nModel,
      matched,
      recall: this.nRef ? matched / this.nRef : 1,
      precision: this.nModel ? matched / this.nModel : 1,
      meanIou: matched ? this.ious.reduce((a, b) => a + b, 0) / matched : NaN,
      scoreCorrelation: pearson(this.refScores, this.modelScores),
      conf: this.conf,
      iou: this.iou,
    };
  }
}

/** Detection fidelity of per-image model detections against a reference's (see DetectionFidelityMeter). */
export function detectionFidelity(reference: readonly Detections[], model: readonly Detections[], opts: { conf?: number; iou?: number } = {}): DetectionFidelity {
  if (reference.length !== model.length) throw new ShearsError(`detectionFidelity: ${reference.length} reference images, ${model.length} model images`);
  const m = new DetectionFidelityMeter(opts.conf ?? 0.25, opts.iou ?? 0.5);
  reference.forEach((r, i) => m.add(r, model[i]!));
  return m.report();
}

function pearson(x: readonly number[], y: readonly number[]): number {
  const n = x.length;
  if (n < 2) return NaN;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx, dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : NaN;
}
