/**
 * Detection mAP (metrics/detection.ts): hand-built cases with values worked out by hand, for both definitions
 * (COCO/pycocotools, the headline; Ultralytics' val beside it), and a second, independent COCO evaluator written
 * here differently (all detections of a class sorted once, greedy matching per threshold with per-image used
 * flags, interpolated precision as the maximum precision at recall >= r) over random fuzzed cases: equal to 1e-9.
 * Ultralytics' match_predictions differs from COCO's greedy matching only where a prediction's best truth is
 * taken by a higher-scored prediction while another truth above the threshold is free: checked on a hand-built
 * case, and shown equal on fuzzed cases whose truths are far apart (no contested matches).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DetectionMeter, computeAp, computeApCoco, detectionMap, interp, matchGreedy, matchPredictions, type Detections, type GroundTruth,
} from '../src/metrics/detection.js';
import { rng } from '../src/random.js';

const close = (a: number, b: number, what = '') => assert.ok(Math.abs(a - b) < 1e-12, `${what} ${a} vs ${b}`);
const det = (rows: [number, number, number, number, number, number][]): Detections => ({
  boxes: Float64Array.from(rows.flatMap((r) => r.slice(0, 4))),
  scores: Float64Array.from(rows.map((r) => r[4])),
  classes: Int32Array.from(rows.map((r) => r[5])),
});
const gt = (rows: [number, number, number, number, number][]): GroundTruth => ({
  boxes: Float64Array.from(rows.flatMap((r) => r.slice(1, 5))),
  classes: Int32Array.from(rows.map((r) => r[0])),
});

test('perfect predictions: COCO mAP 1, Ultralytics 0.995 (its last recall point reads the sentinel precision 0)', () => {
  const truths = [gt([[0, 0, 0, 10, 10], [1, 20, 20, 40, 30]]), gt([[1, 5, 5, 15, 25]]), gt([])];
  const preds = [det([[0, 0, 10, 10, 0.9, 0], [20, 20, 40, 30, 0.8, 1]]), det([[5, 5, 15, 25, 0.7, 1]]), det([])];
  const r = detectionMap(preds, truths, ['a', 'b']);
  close(r.map50, 1);
  close(r.map5095, 1);
  assert.ok(Math.abs(r.ultralytics.map50 - 0.995) < 1e-12, String(r.ultralytics.map50));
  assert.ok(Math.abs(r.ultralytics.map5095 - 0.995) < 1e-12);
  close(r.images, 3);
  close(r.instances, 3);
  assert.deepEqual(r.perClass.map((c) => [c.name, c.images, c.instances]), [['a', 1, 1], ['b', 2, 2]]);
  assert.ok(Math.abs(r.precision - 1) < 1e-9 && Math.abs(r.recall - 1) < 1e-9, `P ${r.precision} R ${r.recall}`);
});

test('a known shift: IoU 90/110 = 0.818 is a TP at 0.50..0.80 (7 thresholds) and a FP at 0.85..0.95', () => {
  const r = detectionMap([det([[1, 0, 11, 10, 0.9, 0]])], [gt([[0, 0, 0, 10, 10]])]);
  close(r.map50, 1);
  assert.ok(Math.abs(r.map5095 - 0.7) < 1e-12, String(r.map5095));
  close(r.map75, 1);
  assert.ok(Math.abs(r.ultralytics.map5095 - 0.7 * 0.995) < 1e-12);
  // a shift by 3: IoU 70/130 = 0.538, a TP at 0.50 only
  const s = detectionMap([det([[3, 0, 13, 10, 0.9, 0]])], [gt([[0, 0, 0, 10, 10]])]);
  assert.ok(Math.abs(s.map5095 - 0.1) < 1e-12, String(s.map5095));
  close(s.map75, 0);
});

test('a false positive scored above the true positive halves AP: COCO 0.5, Ultralytics 0.4975', () => {
  const truth = gt([[0, 0, 0, 10, 10]]);
  const r = detectionMap([det([[50, 50, 60, 60, 0.9, 0], [0, 0, 10, 10, 0.8, 0]])], [truth]);
  // precision 0 then 1/2 at recall 0 then 1: the envelope is 0.5 everywhere
  assert.ok(Math.abs(r.map50 - 0.5) < 1e-12, String(r.map50));
  // Ultralytics: 0.5 on [0, 0.99], then down to 0 at recall 1: 0.495 + 0.0025
  assert.ok(Math.abs(r.ultralytics.map50 - 0.4975) < 1e-12, String(r.ultralytics.map50));
  // scored below the true positive, the false positive changes nothing
  const low = detectionMap([det([[50, 50, 60, 60, 0.1, 0], [0, 0, 10, 10, 0.8, 0]])], [truth]);
  close(low.map50, 1);
});

test('duplicate detections: the second is a FP below full recall and costs nothing; an empty image with a confident FP costs', () => {
  const truth = gt([[0, 0, 0, 10, 10]]);
  const r = detectionMap([det([[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 0]])], [truth]);
  close(r.map5095, 1);
  assert.ok(Math.abs(r.ultralytics.map5095 - 0.995) < 1e-12);
  close(r.predictions, 2);
  // background images: no truth, no prediction: nothing changes; a prediction there is a FP
  const bg = detectionMap([det([[0, 0, 10, 10, 0.9, 0]]), det([])], [truth, gt([])]);
  close(bg.map5095, 1);
  close(bg.images, 2);
  const fp = detectionMap([det([[0, 0, 10, 10, 0.8, 0]]), det([[1, 1, 5, 5, 0.9, 0]])], [truth, gt([])]);
  assert.ok(Math.abs(fp.map50 - 0.5) < 1e-12);
});

test('classes without ground truth are left out of the mean; classes without predictions count 0', () => {
  const truth = gt([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30]]);
  // class 2 predicted, never labelled: ignored; class 1 labelled, never predicted: AP 0
  const r = detectionMap([det([[0, 0, 10, 10, 0.9, 0], [40, 40, 50, 50, 0.95, 2]])], [truth]);
  assert.deepEqual(r.perClass.map((c) => c.class), [0, 1]);
  close(r.perClass[1]!.ap, 0);
  assert.ok(Math.abs(r.map5095 - 0.5) < 1e-12);
  // no true positive anywhere: everything 0 (as Ultralytics, which skips its metrics then)
  const none = detectionMap([det([[40, 40, 50, 50, 0.9, 0]])], [truth]);
  close(none.map5095, 0);
  close(none.ultralytics.map5095, 0);
});

test("Ultralytics' matching differs from COCO's greedy one where a prediction's best truth is taken", () => {
  // A and B overlap; P1 sits on A; P2's best truth is A (IoU 84/116 = 0.724), B is its second (76/124 = 0.613)
  const truth = gt([[0, 0, 0, 10, 10], [0, 4, 0, 14, 10]]);
  const pred = det([[0, 0, 10, 10, 0.9, 0], [1.6, 0, 11.6, 10, 0.8, 0]]);
  const u = matchPredictions(pred, truth);
  const g = matchGreedy(pred, truth);
  // P1 is a TP at every threshold in both
  for (let t = 0; t < 10; t++) {
    assert.equal(u[t], 1);
    assert.equal(g[t], 1);
  }
  // P2: greedy takes the free B at 0.50, 0.55, 0.60; Ultralytics keeps P2's best pair only (A, taken): FP
  assert.deepEqual([...u.slice(10)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...g.slice(10)], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
  const r = detectionMap([pred], [truth]);
  // COCO: AP 1 at 3 thresholds; 51/101 at the other 7 (precision 1 up to recall 0.5, 0 beyond)
  assert.ok(Math.abs(r.map50 - 1) < 1e-12);
  assert.ok(Math.abs(r.map5095 - (3 + (7 * 51) / 101) / 10) < 1e-12, String(r.map5095));
  // Ultralytics: recall [0.5, 0.5], precision [1, 0.5] at every threshold: 0.49 + 0.0075 + 0.12495 + 0.00005
  assert.ok(Math.abs(r.ultralytics.map50 - 0.6225) < 1e-12, String(r.ultralytics.map50));
  assert.ok(Math.abs(r.ultralytics.map5095 - 0.6225) < 1e-12);
});

test("np.interp and compute_ap's conventions: the last duplicate of an x, sentinels", () => {
  assert.equal(interp(0.5, [0, 0.5, 0.5, 1], [1, 1, 0.5, 0]), 0.5);
  assert.equal(interp(0.25, [0, 0.5, 0.5, 1], [1, 1, 0.5, 0]), 1);
  assert.equal(interp(-1, [0, 1], [3, 4]), 3);
  assert.equal(interp(2, [0, 1], [3, 4]), 4);
  assert.ok(Math.abs(computeAp([1], [1]) - 0.995) < 1e-12);
  close(computeApCoco([1, 0, 1], 2), (51 * 1 + 50 * (2 / 3)) / 101);
});

// ------------------------------------------------------------------------------ independent COCO evaluator

interface Img { preds: { box: number[]; score: number; cls: number }[]; gts: { box: number[]; cls: number }[] }

function iouOf(a: number[], b: number[]): number {
  const w = Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!));
  const h = Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!));
  const inter = w * h;
  return inter / ((a[2]! - a[0]!) * (a[3]! - a[1]!) + (b[2]! - b[0]!) * (b[3]! - b[1]!) - inter);
}

/** COCO mAP: per class, all detections sorted once; per threshold, greedy matching with per-image used flags. */
function referenceCoco(images: Img[]): { map50: number; map5095: number; perClass: Map<number, number[]> } {
  const thresholds = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95];
  const classes = [...new Set(images.flatMap((im) => im.gts.map((g) => g.cls)))].sort((a, b) => a - b);
  const perClass = new Map<number, number[]>();
  for (const c of classes) {
    const all = images.flatMap((im, ii) => im.preds.map((p, pi) => ({ ...p, ii, pi })).filter((p) => p.cls === c));
    all.sort((a, b) => b.score - a.score || a.ii - b.ii || a.pi - b.pi);
    const nGt = images.reduce((s, im) => s + im.gts.filter((g) => g.cls === c).length, 0);
    const aps = thresholds.map((t) => {
      const used = images.map((im) => im.gts.map(() => false));
      const hits = all.map((p) => {
        const gs = images[p.ii]!.gts;
        let best = -1;
        let bestIou = t;
        gs.forEach((g, gi) => {
          if (g.cls !== c || used[p.ii]![gi]) return;
          const v = iouOf(p.box, g.box);
          if (v >= bestIou) {
            bestIou = v;
            best = gi;
          }
        });
        if (best < 0) return false;
        used[p.ii]![best] = true;
        return true;
      });
      const recall: number[] = [];
      const precision: number[] = [];
      let tp = 0;
      hits.forEach((h, k) => {
        if (h) tp++;
        recall.push(tp / nGt);
        precision.push(tp / (k + 1));
      });
      let sum = 0;
      for (let r = 0; r <= 100; r++) {
        let best = 0;
        // pycocotools' recall thresholds are np.linspace(0, 1, 101): r * 0.01 in float64 (0.7000000000000001
        // for r = 70, so a recall of exactly 7/10 does not reach it)
        const at = r === 100 ? 1 : r * 0.01;
        recall.forEach((rc, k) => {
          if (rc >= at && precision[k]! > best) best = precision[k]!;
        });
        sum += best;
      }
      return sum / 101;
    });
    perClass.set(c, aps);
  }
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  const rows = [...perClass.values()];
  return { map50: mean(rows.map((r) => r[0]!)), map5095: mean(rows.map(mean)), perClass };
}

function randomCase(seed: number, separated: boolean): Img[] {
  const rand = rng(seed);
  const nImages = 1 + Math.floor(rand() * 6);
  const images: Img[] = [];
  let scoreSeq = 0;
  // distinct scores (ties order-dependent in both definitions' sorts)
  const score = () => Math.round(rand() * 1e6) / 1e6 + ++scoreSeq * 1e-9;
  for (let i = 0; i < nImages; i++) {
    const nGt = Math.floor(rand() * 6);
    const gts: Img['gts'] = [];
    for (let g = 0; g < nGt; g++) {
      const w = 5 + rand() * 20, h = 5 + rand() * 20;
      const x = separated ? g * 100 + rand() * 10 : rand() * 60;
      const y = separated ? rand() * 10 : rand() * 60;
      gts.push({ box: [x, y, x + w, y + h], cls: Math.floor(rand() * 3) });
    }
    const preds: Img['preds'] = [];
    for (const g of gts) {
      const copies = Math.floor(rand() * 3);
      for (let k = 0; k < copies; k++) {
        const w = g.box[2]! - g.box[0]!, h = g.box[3]! - g.box[1]!;
        const j = rand() * 0.35;
        const dx = (rand() - 0.5) * j * w, dy = (rand() - 0.5) * j * h;
        const sw = 1 + (rand() - 0.5) * j, sh = 1 + (rand() - 0.5) * j;
        const cls = rand() < 0.15 ? Math.floor(rand() * 4) : g.cls;
        const x1 = g.box[0]! + dx, y1 = g.box[1]! + dy;
        preds.push({ box: [x1, y1, x1 + w * sw, y1 + h * sh], score: score(), cls });
      }
    }
    const fps = Math.floor(rand() * 3);
    for (let k = 0; k < fps; k++) {
      const x = separated ? 1000 + rand() * 50 : rand() * 70;
      const y = rand() * 70;
      preds.push({ box: [x, y, x + 3 + rand() * 20, y + 3 + rand() * 20], score: score(), cls: Math.floor(rand() * 4) });
    }
    // NMS order: by score
    preds.sort((a, b) => b.score - a.score);
    images.push({ preds, gts });
  }
  return images;
}

const toDet = (im: Img): Detections => det(im.preds.map((p) => [p.box[0]!, p.box[1]!, p.box[2]!, p.box[3]!, p.score, p.cls]));
const toGt = (im: Img): GroundTruth => gt(im.gts.map((g) => [g.cls, g.box[0]!, g.box[1]!, g.box[2]!, g.box[3]!]));

test('COCO mAP equals an independent COCO evaluator on 300 fuzzed cases (to 1e-9)', () => {
  let compared = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const images = randomCase(seed, false);
    if (!images.some((im) => im.gts.length)) continue;
    const mine = detectionMap(images.map(toDet), images.map(toGt));
    const ref = referenceCoco(images);
    assert.ok(Math.abs(mine.map50 - ref.map50) < 1e-9, `seed ${seed}: mAP50 ${mine.map50} vs ${ref.map50}`);
    assert.ok(Math.abs(mine.map5095 - ref.map5095) < 1e-9, `seed ${seed}: mAP50-95 ${mine.map5095} vs ${ref.map5095}`);
    for (const c of mine.perClass) {
      const r = ref.perClass.get(c.class)!;
      assert.ok(Math.abs(c.ap - r.reduce((a, b) => a + b, 0) / 10) < 1e-9, `seed ${seed} class ${c.class}`);
    }
    compared++;
  }
  assert.ok(compared > 200, `only ${compared} cases had ground truth`);
});

test("Ultralytics' matching equals the greedy one where no match is contested (truths far apart), on 200 fuzzed cases", () => {
  let differ = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const images = randomCase(1000 + seed, true);
    for (const im of images) {
      const d = toDet(im), g = toGt(im);
      const u = matchPredictions(d, g);
      const c = matchGreedy(d, g);
      // thresholds differ in the last float32 digits; IoUs never sit on them here
      assert.deepEqual([...u], [...c], `seed ${seed}`);
    }
    const withGt = images.some((im) => im.gts.length);
    if (!withGt) continue;
    // the same TP flags: the two reports differ only by the integration rule, and COCO's equals the reference
    const mine = detectionMap(images.map(toDet), images.map(toGt));
    const ref = referenceCoco(images);
    assert.ok(Math.abs(mine.map5095 - ref.map5095) < 1e-9);
    if (Math.abs(mine.map5095 - mine.ultralytics.map5095) > 1e-12) differ++;
  }
  assert.ok(differ > 0, 'the integration rules should differ somewhere');
});

test('DetectionMeter accumulates image by image as detectionMap does', () => {
  const images = randomCase(7, false);
  const m = new DetectionMeter();
  for (const im of images) m.add(toDet(im), toGt(im));
  assert.deepEqual(m.report(), detectionMap(images.map(toDet), images.map(toGt)));
});
