/**
 * Task-aligned assignment (TOOD's TAL as Ultralytics' TaskAlignedAssigner defines it for YOLOv8's loss), per
 * image, in float64 TypeScript; not differentiated (the loss graph reads its result as targets).
 *
 * For every ground-truth box g and anchor a whose centre lies strictly inside g: overlap = CIoU(g, predicted box
 * of a) clamped at 0, align = score(a, class of g)^alpha * overlap^beta. Each box takes the top-k anchors by
 * align (those with align > 0: anchors tied at 0 get a target score of 0 and no weight either way). An anchor
 * taken by several boxes goes to the box it overlaps most. The target score of a foreground anchor is one-hot
 * at its box's class, scaled by align / (largest align of the box's anchors) * (largest overlap of them).
 *
 * Also here: decoding the pre-decode head into the scores and boxes TAL reads, and packing the targets in the
 * layout the detection loss graph takes (autodiff/detect-loss.ts).
 */
import { ShearsError } from '../errors.js';
import type { YoloHead } from './yolo-head.js';

/** A ground-truth box in input pixels (x1, y1, x2, y2) with its class. */
export interface GtBox {
  cls: number;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

export interface TalOptions {
  topk?: number;
  alpha?: number;
  beta?: number;
}

/** Ultralytics' v8DetectionLoss assigner settings. */
export const TAL_DEFAULTS = { topk: 10, alpha: 0.5, beta: 6 } as const;

export interface Assignment {
  /** Foreground anchors. */
  fg: Uint8Array;
  /** The box each foreground anchor is assigned (index into the boxes; -1 for background). */
  gtIndex: Int32Array;
  /** Target scores [A * nc] (zero on background). */
  scores: Float64Array;
}

const EPS_IOU = 1e-7;

/** CIoU of two xyxy boxes, as Ultralytics' bbox_iou(CIoU=True) computes it (eps 1e-7). */
export function ciou(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const [ax1, ay1, ax2, ay2] = [a[0]!, a[1]!, a[2]!, a[3]!];
  const [bx1, by1, bx2, by2] = [b[0]!, b[1]!, b[2]!, b[3]!];
  const w1 = ax2 - ax1, h1 = ay2 - ay1 + EPS_IOU;
  const w2 = bx2 - bx1, h2 = by2 - by1 + EPS_IOU;
  const inter = Math.max(0, Math.min(ax2, bx2) - Math.max(ax1, bx1)) * Math.max(0, Math.min(ay2, by2) - Math.max(ay1, by1));
  const union = w1 * h1 + w2 * h2 - inter + EPS_IOU;
  const iou = inter / union;
  const cw = Math.max(ax2, bx2) - Math.min(ax1, bx1);
  const ch = Math.max(ay2, by2) - Math.min(ay1, by1);
  const c2 = cw * cw + ch * ch + EPS_IOU;
  const rho2 = ((bx1 + bx2 - ax1 - ax2) ** 2 + (by1 + by2 - ay1 - ay2) ** 2) / 4;
  const v = (4 / Math.PI ** 2) * (Math.atan(w2 / h2) - Math.atan(w1 / h1)) ** 2;
  const alpha = v / (v - iou + (1 + EPS_IOU));
  return iou - (rho2 / c2 + v * alpha);
}

/**
 * Assigns the boxes of one image to its anchors. scores: [A * nc] sigmoid class scores; boxes: [A * 4]
 * predicted xyxy in input pixels; points: [A * 2] anchor centres in input pixels.
 */
export function assignTal(scores: ArrayLike<number>, boxes: ArrayLike<number>, points: ArrayLike<number>, gts: readonly GtBox[], nc: number, opts: TalOptions = {}): Assignment {
  const topk = opts.topk ?? TAL_DEFAULTS.topk;
  const alpha = opts.alpha ?? TAL_DEFAULTS.alpha;
  const beta = opts.beta ?? TAL_DEFAULTS.beta;
  const A = points.length / 2;
  const M = gts.length;
  const fg = new Uint8Array(A);
  const gtIndex = new Int32Array(A).fill(-1);
  const out = new Float64Array(A * nc);
  if (M === 0) return { fg, gtIndex, scores: out };
  const overlaps = new Float64Array(M * A);
  const align = new Float64Array(M * A);
  const pos = new Uint8Array(M * A);
  const pb = [0, 0, 0, 0];
  for (let m = 0; m < M; m++) {
    const g = gts[m]!;
    if (!(g.cls >= 0 && g.cls < nc)) throw new ShearsError(`a box has class ${g.cls}, outside the detector's ${nc} classes`);
    const gb = [g.x1, g.y1, g.x2, g.y2];
    const cand: number[] = [];
    for (let a = 0; a < A; a++) {
      const px = points[2 * a]!, py = points[2 * a + 1]!;
      if (Math.min(px - g.x1, py - g.y1, g.x2 - px, g.y2 - py) <= 1e-9) continue;
      for (let k = 0; k < 4; k++) pb[k] = boxes[4 * a + k]!;
      const ov = Math.max(0, ciou(gb, pb));
      overlaps[m * A + a] = ov;
      const al = Math.pow(scores[a * nc + g.cls]!, alpha) * Math.pow(ov, beta);
      align[m * A + a] = al;
      if (al > 0) cand.push(a);
    }
    // Top k by align (ties: the lower anchor index, as a stable sort gives).
    cand.sort((p, q) => align[m * A + q]! - align[m * A + p]! || p - q);
    for (const a of cand.slice(0, topk)) pos[m * A + a] = 1;
  }
  // An anchor taken by several boxes goes to the box it overlaps most (the first such box at a tie).
  for (let a = 0; a < A; a++) {
    let n = 0;
    for (let m = 0; m < M; m++) n += pos[m * A + a]!;
    if (n > 1) {
      let best = 0;
      for (let m = 1; m < M; m++) if (overlaps[m * A + a]! > overlaps[best * A + a]!) best = m;
      for (let m = 0; m < M; m++) pos[m * A + a] = m === best ? 1 : 0;
    }
  }
  // Normalised align: align / (the box's largest positive align) * (the box's largest positive overlap).
  const maxAlign = new Float64Array(M);
  const maxOv = new Float64Array(M);
  for (let m = 0; m < M; m++)
    for (let a = 0; a < A; a++)
      if (pos[m * A + a]) {
        maxAlign[m] = Math.max(maxAlign[m]!, align[m * A + a]!);
        maxOv[m] = Math.max(maxOv[m]!, overlaps[m * A + a]!);
      }
  for (let a = 0; a < A; a++) {
    let norm = 0;
    for (let m = 0; m < M; m++) {
      if (!pos[m * A + a]) continue;
      fg[a] = 1;
      gtIndex[a] = m;
      norm = Math.max(norm, (align[m * A + a]! * maxOv[m]!) / (maxAlign[m]! + 1e-9));
    }
    if (fg[a]) out[a * nc + gts[gtIndex[a]!]!.cls] = norm;
  }
  return { fg, gtIndex, scores: out };
}

/** Values per anchor of the packed targets: the target box (4, grid units), then the target scores (nc). */
export function targetChannels(head: Pick<YoloHead, 'nc'>): number {
  return 4 + head.nc;
}

/**
 * Decodes one image's head output (x: [C * A], channel-major, as the model gives [1, C, A]) into the scores
 * and boxes TAL reads: sigmoid class scores [A * nc] and xyxy boxes in input pixels [A * 4] (the DFL
 * expectation over the bins, from the anchor point, times the stride).
 */
export function decodeHead(x: ArrayLike<number>, head: YoloHead): { scores: Float64Array; boxes: Float64Array; points: Float64Array } {
  const { regMax: R, nc, anchors: A, points, strides } = head;
  const scores = new Float64Array(A * nc);
  const boxes = new Float64Array(A * 4);
  const pix = new Float64Array(A * 2);
  const bins = new Float64Array(R);
  for (let a = 0; a < A; a++) {
    const s = strides[a]!;
    const d = [0, 0, 0, 0];
    for (let side = 0; side < 4; side++) {
      let mx = -Infinity;
      for (let k = 0; k < R; k++) mx = Math.max(mx, (bins[k] = x[(side * R + k) * A + a]!));
      let z = 0, e = 0;
      for (let k = 0; k < R; k++) {
        const p = Math.exp(bins[k]! - mx);
        z += p;
        e += p * k;
      }
      d[side] = e / z;
    }
    const ax = points[2 * a]!, ay = points[2 * a + 1]!;
    boxes[4 * a] = (ax - d[0]!) * s;
    boxes[4 * a + 1] = (ay - d[1]!) * s;
    boxes[4 * a + 2] = (ax + d[2]!) * s;
    boxes[4 * a + 3] = (ay + d[3]!) * s;
    pix[2 * a] = ax * s;
    pix[2 * a + 1] = ay * s;
    for (let c = 0; c < nc; c++) scores[a * nc + c] = 1 / (1 + Math.exp(-x[(4 * R + c) * A + a]!));
  }
  return { scores, boxes, points: pix };
}

/**
 * Writes one image's targets into `out` [(4 + nc) * A], channel-major like the head: the assigned box in grid
 * units (divided by the anchor's stride; background anchors get a unit box around their point, which the loss
 * weighs by 0), then the target scores.
 */
export function packTargets(asg: Assignment, gts: readonly GtBox[], head: YoloHead, out: Float32Array, offset = 0): void {
  const { anchors: A, nc, points, strides } = head;
  for (let a = 0; a < A; a++) {
    const s = strides[a]!;
    const m = asg.gtIndex[a]!;
    const g = m >= 0 ? gts[m]! : undefined;
    const px = points[2 * a]!, py = points[2 * a + 1]!;
    out[offset + a] = g ? g.x1 / s : px - 0.5;
    out[offset + A + a] = g ? g.y1 / s : py - 0.5;
    out[offset + 2 * A + a] = g ? g.x2 / s : px + 0.5;
    out[offset + 3 * A + a] = g ? g.y2 / s : py + 0.5;
    for (let c = 0; c < nc; c++) out[offset + (4 + c) * A + a] = asg.scores[a * nc + c]!;
  }
}

/** Assigns and packs one image: head output x [C * A] of the model aligned on, its boxes, into out. */
export function detectionTargets(x: ArrayLike<number>, gts: readonly GtBox[], head: YoloHead, out: Float32Array, offset = 0, opts: TalOptions = {}): Assignment {
  const d = decodeHead(x, head);
  const asg = assignTal(d.scores, d.boxes, d.points, gts, head.nc, opts);
  packTargets(asg, gts, head, out, offset);
  return asg;
}

/** Ground truth and assignment settings of the detection objective (train/trainer.ts FinetuneOptions.detection). */
export interface DetectionData {
  /** The boxes of training sample i, in the model's input pixels. */
  boxes(i: number): readonly GtBox[];
  /**
   * Whose predictions the assignment aligns on: 'student', the model being trained, each step (Ultralytics;
   * one more forward pass per step), or 'reference', the teacher (else the starting model), once per image
   * before training. Default 'student'.
   */
  assign?: 'student' | 'reference';
  tal?: TalOptions;
  /** Loss gains (default box 7.5, cls 0.5, dfl 1.5). */
  gains?: { box?: number; cls?: number; dfl?: number };
}
