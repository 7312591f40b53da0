/**
 * Evaluation of a detector on a data set: mAP against the data's ground truth (yolo:/coco: data), and detection
 * fidelity against a reference model (any images). Models run through the runtime module only.
 */
import { ShearsError } from '../errors.js';
import type { Dataset } from '../data/dataset.js';
import { planInputs } from '../data/feeds.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { imageTruth, inputTransform, isDetectionSource } from '../data/yolo.js';
import type { Dim, Model } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { createSession, type Runner } from '../runtime/session.js';
import {
  decodeDetections, detectionFormat, DetectionFidelityMeter, DetectionMeter,
  type DetectionFidelity, type DetectionFormat, type DetectionReport, type Detections,
} from './detection.js';
import { batchSizeFor, forEachBatch, type EvalProgress } from './evaluate.js';

export interface DetectionEvalOptions {
  /** A reference model (e.g. the dense original): detection fidelity, and its mAP on labelled data. */
  reference?: Model;
  /**
   * The reference's detections of the same images, in data order and original pixels, as a run with `collect`
   * returned them: detection fidelity without running the reference again (several variants against one base).
   */
  referenceDetections?: readonly Detections[];
  /** Return the model's detections of every image (original pixels, data order) as `detections`. */
  collect?: boolean;
  /** At most this many images. */
  limit?: number;
  /** Images per run (default 16; a model with a fixed batch dimension uses that). */
  batchSize?: number;
  threads?: number;
  /** The detector output (default: the first output whose shape is a detector's). */
  output?: string;
  /** Class count (default: the data's, else from the output shape). */
  nc?: number;
  /** NMS settings for mAP (defaults 0.001, 0.7, 300: Ultralytics val). */
  conf?: number;
  iou?: number;
  maxDet?: number;
  /** Fidelity: detections compared above this score (default 0.25), matched at this IoU (default 0.5). */
  fidelityConf?: number;
  fidelityIou?: number;
  /** Keep the detections of the first this many images (for drawing). */
  keep?: number;
  onProgress?: (p: EvalProgress) => void;
}

/** The detections of one image, boxes in original image pixels. */
export interface ImageDetections {
  file: string;
  width: number;
  height: number;
  model: Detections;
  reference?: Detections;
  truth?: { classes: Int32Array; boxes: Float64Array };
}

export interface DetectionEvalReport {
  dataset: string;
  samples: number;
  batchSize: number;
  input: { name: string; shape: Dim[] };
  preprocess: PreprocessSpec;
  output: string;
  format: DetectionFormat;
  nms: { conf: number; iou: number; maxDet: number };
  /** Against the data's ground truth (detection data only). */
  map?: DetectionReport;
  /** The reference model's mAP on the same images (detection data with a reference). */
  referenceMap?: DetectionReport;
  /** The model's detections against the reference's (with a reference). */
  fidelity?: DetectionFidelity;
  /** Kept per-image detections (opts.keep). */
  images?: ImageDetections[];
  /** Every image's detections (opts.collect). */
  detections?: Detections[];
  seconds: number;
  samplesPerSecond: number;
}

/** The output of a model that holds detections: `name`, else the first whose shape is a detector's. */
export function detectionOutput(outputs: Record<string, Tensor>, nc: number | undefined, name?: string): { name: string; format: DetectionFormat } {
  if (name !== undefined) {
    const t = outputs[name];
    if (!t) throw new ShearsError(`the model has no output '${name}' (outputs: ${Object.keys(outputs).join(', ')})`);
    const f = detectionFormat(t.dims, nc);
    if (!f) throw new ShearsError(`output '${name}' [${t.dims.join(', ')}] is not a detector output: expected [N, 4 + nc, anchors]${nc !== undefined ? ` with nc = ${nc}` : ''} or [N, K, 6]`);
    return { name, format: f };
  }
  for (const [k, t] of Object.entries(outputs)) {
    const f = detectionFormat(t.dims, nc);
    if (f) return { name: k, format: f };
  }
  const shapes = Object.entries(outputs).map(([k, t]) => `${k} [${t.dims.join(', ')}]`).join(', ');
  throw new ShearsError(`no output of the model is a detector output (${shapes}): expected [N, 4 + nc, anchors] (YOLOv8/YOLO11${nc !== undefined ? `, nc = ${nc} from the data` : ''}) or [N, K, 6] (end-to-end)`);
}

/** Anchor counts of YOLO heads on an H x W input: strides 8/16/32 (P3-P5), with P2 (4) or P6 (64) added. */
export function yoloAnchorCounts(h: number, w: number): number[] {
  const level = (s: number) => Math.ceil(h / s) * Math.ceil(w / s);
  const p3p5 = level(8) + level(16) + level(32);
  return [p3p5, p3p5 + level(4), p3p5 + level(64)];
}

/**
 * Whether a model looks like a detector by its declared shapes: an end-to-end output [N, K, 6], or a YOLO head
 * [N, 4 + nc, A] whose anchor count A is that of the strides 8/16/32 (with P2 or P6) on its one [N, C, H, W]
 * input (so a transformer's [N, 197, 768] features are not taken for a head). Returns the input size [H, W] too.
 */
export function detectorShape(model: Model): { format: DetectionFormat; output: string; input?: [number, number] } | undefined {
  const inputs = model.graph.inputs.filter((i) => !model.graph.initializers.has(i.name));
  const s = inputs.length === 1 ? inputs[0]!.type?.shape : undefined;
  const input = s && s.length === 4 && typeof s[2] === 'number' && typeof s[3] === 'number' && s[2] > 0 && s[3] > 0 ? ([s[2], s[3]] as [number, number]) : undefined;
  for (const o of model.graph.outputs) {
    const shape = o.type?.shape;
    if (!shape || shape.length !== 3) continue;
    const f = detectionFormat(shape.map((d) => (typeof d === 'number' ? d : null)));
    if (!f) continue;
    if (f.kind === 'yolo' && !(input && yoloAnchorCounts(input[0], input[1]).includes(f.anchors))) continue;
    return { format: f, output: o.name, ...(input ? { input } : {}) };
  }
  return undefined;
}

/** Boxes in input pixels back to the original image (the inverse of the preprocessing), clipped to it. */
export function boxesToOriginal(boxes: Float64Array, spec: PreprocessSpec, height: number, width: number): Float64Array {
  const t = inputTransform(spec, height, width);
  const out = new Float64Array(boxes.length);
  for (let i = 0; i < boxes.length; i += 2) {
    const x = (boxes[i]! - t.dx) / t.sx;
    const y = (boxes[i + 1]! - t.dy) / t.sy;
    out[i] = x < 0 ? 0 : x > width ? width : x;
    out[i + 1] = y < 0 ? 0 : y > height ? height : y;
  }
  return out;
}

/** Scores a detector on a data set (see the module comment). */
export async function evaluateDetection(model: Model, dataset: Dataset, opts: DetectionEvalOptions = {}): Promise<DetectionEvalReport> {
  const plan = planInputs(model, dataset.feeds, undefined, dataset.inputType);
  const refPlan = opts.reference ? planInputs(opts.reference, dataset.feeds, 'the reference', dataset.inputType) : undefined;
  if (refPlan && refPlan.data.name !== plan.data.name) throw new ShearsError(`the reference's input is '${refPlan.data.name}', the model's '${plan.data.name}': they must have the same name`);
  const input = plan.data;
  const shape = input.type?.shape ?? [];
  const ds = dataset.sampleShape ? dataset : dataset.forInput(shape);
  checkChannels(ds, shape, input.name);
  const src = ds.source;
  const labelled = isDetectionSource(src);
  const nc = opts.nc ?? (labelled ? src.detection.nc : undefined);
  const names = labelled ? src.detection.names : [];
  const conf = opts.conf ?? 0.001;
  const iou = opts.iou ?? 0.7;
  const maxDet = opts.maxDet ?? 300;
  const fixed = typeof shape[0] === 'number' && shape[0] > 0 ? shape[0] : undefined;
  const batchSize = batchSizeFor(input, opts.batchSize ?? 16);
  const total = Math.min(ds.size, opts.limit ?? Infinity);
  const cfg = opts.threads ? { threads: opts.threads } : {};
  const runners: Runner[] = [await createSession(model, cfg)];
  if (opts.reference) runners.push(await createSession(opts.reference, cfg));
  const meter = labelled ? new DetectionMeter(names) : undefined;
  const refMeter = labelled && opts.reference ? new DetectionMeter(names) : undefined;
  if (opts.reference && opts.referenceDetections) throw new ShearsError('give a reference model or its detections, not both');
  const given = opts.referenceDetections;
  const all: Detections[] = [];
  const fid = opts.reference || given ? new DetectionFidelityMeter(opts.fidelityConf ?? 0.25, opts.fidelityIou ?? 0.5) : undefined;
  const kept: ImageDetections[] = [];
  let out: { name: string; format: DetectionFormat } | undefined;
  let refOut: string | undefined;
  let done = 0;
  const t0 = performance.now();
  const decodeOpts = { conf, iou, maxDet, ...(nc !== undefined ? { nc } : {}) };
  try {
    await forEachBatch(runners, refPlan ? [plan, refPlan] : [plan], fixed, ds.batches(batchSize, { limit: total })[Symbol.asyncIterator](), (batch, outs) => {
      out ??= detectionOutput(outs[0]!, nc, opts.output);
      const dets = decodeDetections(outs[0]![out.name]!, decodeOpts);
      let refDets: Detections[] | undefined;
      if (outs[1]) {
        refOut ??= (outs[1][out.name] ? out.name : detectionOutput(outs[1], nc).name);
        refDets = decodeDetections(outs[1][refOut]!, decodeOpts);
      }
      const b = batch.x.dims[0]!;
      for (let k = 0; k < b; k++) {
        const h = batch.sizes?.[2 * k] ?? 0;
        const w = batch.sizes?.[2 * k + 1] ?? 0;
        if (!(h > 0 && w > 0)) throw new ShearsError(`sample '${src.itemName(ds.sourceIndex(batch.indices[k]!))}' is not an image: detection scores images`);
        const toOrig = (d: Detections): Detections => ({ ...d, boxes: boxesToOriginal(d.boxes, ds.preprocess, h, w) });
        const mine = toOrig(dets[k]!);
        const ref = refDets ? toOrig(refDets[k]!) : given?.[done + k];
        if (given && !ref) throw new ShearsError(`the reference detections cover ${given.length} images, the data set more`);
        const truth = labelled ? imageTruth(ds, batch.indices[k]!, h, w) : undefined;
        if (meter && truth) meter.add(mine, truth);
        if (refMeter && truth && ref) refMeter.add(ref, truth);
        if (fid && ref) fid.add(ref, mine);
        if (opts.collect) all.push(mine);
        if (opts.keep !== undefined && kept.length < opts.keep) {
          kept.push({
            file: src.itemName(ds.sourceIndex(batch.indices[k]!)), width: w, height: h, model: mine,
            ...(ref ? { reference: ref } : {}), ...(truth ? { truth: { classes: truth.classes, boxes: truth.boxes } } : {}),
          });
        }
      }
      done += b;
      opts.onProgress?.({ done, total, seconds: (performance.now() - t0) / 1000 });
    });
  } finally {
    for (const r of runners) await r.release();
  }
  const seconds = (performance.now() - t0) / 1000;
  if (!out) throw new ShearsError(`data set ${ds.description} holds no samples to score`);
  const o = out as { name: string; format: DetectionFormat };
  return {
    dataset: ds.description,
    samples: done,
    batchSize: fixed ?? batchSize,
    input: { name: input.name, shape },
    preprocess: ds.preprocess,
    output: o.name,
    format: o.format,
    nms: { conf, iou, maxDet },
    ...(meter ? { map: meter.report() } : {}),
    ...(refMeter ? { referenceMap: refMeter.report() } : {}),
    ...(fid ? { fidelity: fid.report() } : {}),
    ...(opts.keep !== undefined ? { images: kept } : {}),
    ...(opts.collect ? { detections: all } : {}),
    seconds,
    samplesPerSecond: seconds > 0 ? done / seconds : 0,
  };
}

/**
 * Refuses, before onnxruntime does with a raw message, an input whose channel count the preprocessing does not
 * produce (a 3-channel detector fed 1-channel images without a color conversion, say).
 */
export function checkChannels(ds: Dataset, shape: readonly Dim[], inputName: string): void {
  if (shape.length !== 4) return;
  const spec = ds.preprocess;
  const c = spec.layout === 'nhwc' ? shape[3] : shape[1];
  if (typeof c !== 'number') return;
  const produced = spec.color === 'gray' ? 1 : spec.color === 'rgb' ? 3 : undefined;
  if (produced !== undefined && produced !== c) {
    throw new ShearsError(`input '${inputName}' takes ${c} channels but the preprocessing gives ${produced} (color ${spec.color}): give --color ${c === 1 ? 'gray' : 'rgb'}`);
  }
}
