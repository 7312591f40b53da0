/**
 * Evidence that a compressed model is worth shipping: the base model and its variants measured side by side on
 * the same data and the same machine. Size (file and gzip), parameters and sparsity, MACs per layer, accuracy,
 * output fidelity against the base, and latency measured interleaved. Plain JSON; report/html.ts draws it.
 */
import type { Feeds } from '../data/feeds.js';
import { ShearsError } from '../errors.js';
import { platform } from '../fs/platform.js';
import type { Dim, Model } from '../ir/graph.js';
import { inspectModel } from '../analysis/inspect.js';
import type { Dataset } from '../data/dataset.js';
import type { PerplexityReport } from '../metrics/perplexity.js';
import { evaluate, type EvalProgress } from '../metrics/evaluate.js';
import type { OutputFidelity } from '../metrics/fidelity.js';
import { measureLatencies, type LatencyResult } from '../metrics/latency.js';
import { modelSizes } from '../sparsity/stats.js';
import { evaluateDetection, type ImageDetections } from '../metrics/detection-eval.js';
import type { DetectionFidelity, Detections } from '../metrics/detection.js';
import { readAll } from '../data/read.js';
import { ortName, ortVersion } from '../runtime/session.js';

export interface EvidenceEntry {
  label: string;
  model: Model;
  /** Where it was read from (reported only). */
  path?: string;
  /** The file's bytes, for its size; default: the model re-encoded. */
  bytes?: Uint8Array;
}

export interface EvidenceOptions {
  /**
   * Labelled data: accuracy of every model and fidelity of each variant to the first. A function gives each
   * model its own view of the data (its stored preprocessing).
   */
  data?: Dataset | ((model: Model) => Dataset);
  /** At most this many samples of `data`. */
  dataLimit?: number;
  /** Evaluation batch (default 64). */
  evalBatch?: number;
  /** Latency: batch fed for dynamic dims (default 1), threads, warm-up and timed runs (default 5 and 30). */
  batch?: number;
  threads?: number;
  warmup?: number;
  runs?: number;
  /** Static shapes for MACs and latency (default: declared shapes, dynamic dims = batch). */
  inputShapes?: Record<string, Dim[]>;
  /** Feeds of the models' other inputs for latency (the data set carries its own for scoring). */
  feeds?: Feeds;
  onProgress?: (label: string, p: EvalProgress) => void;
  /**
   * 'detect': score detectors (metrics/detection-eval.ts): mAP on detection data, detection fidelity to the
   * first model; `drawImages` images keep their detections (and their file's bytes) for report/html.ts to draw.
   */
  task?: 'classify' | 'detect';
  drawImages?: number;
}

/** A detector's scores in the evidence. */
export interface DetectionEvidence {
  output: string;
  /** COCO mAP (and Ultralytics' beside it) on detection data. */
  map50?: number;
  map5095?: number;
  ultralytics?: { map50: number; map5095: number };
  /** Against the first model's detections. */
  fidelity?: DetectionFidelity;
}

/** Detections as plain JSON: boxes [x1, y1, x2, y2] in original pixels, score, class; score >= 0.25 only. */
export interface DrawnDetection {
  box: [number, number, number, number];
  score: number;
  class: number;
}

/** A validation image with every model's detections, for drawing. */
export interface DetectionImage {
  file: string;
  width: number;
  height: number;
  /** The image file as a data URL (PNG or JPEG), when it could be read. */
  dataUrl?: string;
  truth?: DrawnDetection[];
  /** Per model label. */
  detections: Record<string, DrawnDetection[]>;
}

export interface LayerEvidence {
  name: string;
  op: string;
  params: number;
  macs: number;
  /** Output channels (dim 1 of the first output), when static. */
  channels?: number;
  sparsity: number;
}

export interface ModelEvidence {
  label: string;
  path?: string;
  fileBytes: number;
  gzipBytes: number;
  params: number;
  nonzeroParams: number;
  sparsity: number;
  /** At batch 1 (or the given shapes with dynamic dims set to 1). */
  macs: number;
  latency: LatencyResult;
  accuracy?: { top1: number; top5?: number; samples: number; output: string };
  /** Token data (language models): next-token NLL, perplexity, bits per token; `agreement`: same next token as the base. */
  perplexity?: PerplexityReport;
  agreement?: number;
  /** Against the first model, per output. */
  fidelity?: Record<string, OutputFidelity>;
  /** Detectors (task 'detect'): mAP and detection fidelity. */
  detection?: DetectionEvidence;
  /** Ratios to the first model (candidate / base; speedup = base latency / this latency). */
  vsBase: { fileBytes: number; gzipBytes: number; params: number; nonzeroParams: number; macs: number; speedup: number; cpuSpeedup: number; top1Delta?: number };
  layers: LayerEvidence[];
}

/** Which figure a Pareto front ranks quality by: top-1, COCO mAP50-95, top-1 agreement with the base, or -relMSE to the base. */
export type ParetoMetric = 'top1' | 'map50-95' | 'agreement' | 'relMse';

/** Which latency a Pareto front ranks by: the median wall time, or the median CPU time of a run (steadier on a shared machine with 1 thread). */
export type ParetoLatency = 'median' | 'cpuMedian';

/** The front of an evidence report (report/pareto.ts computes it): plain JSON, drawn by report/html.ts. */
export interface ParetoSummary {
  /** undefined: no quality figure (no data scored): the front is the fastest model alone. */
  metric?: ParetoMetric;
  latency: ParetoLatency;
  /** The labels of the models on the front, fastest first. */
  front: string[];
}

export interface EvidenceReport {
  createdAt: string;
  /** `node`: the host (Node's version, or a browser's user agent); `runtime`: the onnxruntime package (onnxruntime-node or -web). */
  environment: { node: string; onnxruntime: string; runtime?: string; cpu: string; cores: number; platform: string };
  settings: { batch: number; threads: number | null; warmup: number; runs: number; dataset?: string; samples?: number; task?: 'detect' };
  models: ModelEvidence[];
  /** Detectors: class names and a few images with every model's detections. */
  detection?: { names: string[]; images: DetectionImage[] };
  /** The Pareto front of quality against latency (report/pareto.ts), when the caller adds it (shears sweep, shears report with several variants). */
  pareto?: ParetoSummary;
}

const DRAW_CONF = 0.25;

function drawn(d: Detections | { classes: Int32Array; boxes: Float64Array }, minScore: number): DrawnDetection[] {
  const out: DrawnDetection[] = [];
  const scores = 'scores' in d ? d.scores : undefined;
  const r = (v: number) => Math.round(v * 100) / 100;
  for (let i = 0; i < d.classes.length; i++) {
    const s = scores ? scores[i]! : 1;
    if (s < minScore) continue;
    out.push({ box: [r(d.boxes[i * 4]!), r(d.boxes[i * 4 + 1]!), r(d.boxes[i * 4 + 2]!), r(d.boxes[i * 4 + 3]!)], score: Math.round(s * 1e4) / 1e4, class: d.classes[i]! });
  }
  return out;
}

/** An image file as a data URL (PNG or JPEG by signature); undefined when unreadable. */
function dataUrl(file: string): string | undefined {
  try {
    const b = readAll(file);
    const mime = b[0] === 0x89 && b[1] === 0x50 ? 'image/png' : b[0] === 0xff && b[1] === 0xd8 ? 'image/jpeg' : undefined;
    if (!mime) return undefined;
    let bin = '';
    for (let i = 0; i < b.length; i += 0x8000) bin += String.fromCharCode(...b.subarray(i, i + 0x8000));
    return `data:${mime};base64,${btoa(bin)}`;
  } catch {
    return undefined;
  }
}

function shapesAt(model: Model, given: Record<string, Dim[]> | undefined, batch: number): Record<string, Dim[]> {
  const out: Record<string, Dim[]> = {};
  for (const vi of model.graph.inputs) {
    if (model.graph.initializers.has(vi.name)) continue;
    const decl = given?.[vi.name] ?? vi.type?.shape;
    if (!decl) throw new ShearsError(`input '${vi.name}' has no declared shape; give --input-shape ${vi.name}=...`);
    out[vi.name] = decl.map((d) => (typeof d === 'number' && d > 0 ? d : batch));
  }
  return out;
}

/** Measures every entry; the first is the base the others are compared with. */
export async function gatherEvidence(entries: EvidenceEntry[], opts: EvidenceOptions = {}): Promise<EvidenceReport> {
  if (entries.length === 0) throw new ShearsError('give at least one model');
  const labels = new Set(entries.map((e) => e.label));
  if (labels.size !== entries.length) throw new ShearsError(`model labels must differ: ${entries.map((e) => e.label).join(', ')}`);
  const batch = opts.batch ?? 1;
  const warmup = opts.warmup ?? 5;
  const runs = opts.runs ?? 30;
  const static1 = entries.map((e) => {
    const info = inspectModel(e.model, shapesAt(e.model, opts.inputShapes, 1));
    const sizes = modelSizes(e.bytes ?? e.model);
    const layers: LayerEvidence[] = info.layers
      .filter((l) => l.params > 0 || l.macs > 0)
      .map((l) => {
        const c = l.outputShape?.[1];
        return { name: l.name, op: l.opType, params: l.params, macs: l.macs, ...(typeof c === 'number' ? { channels: c } : {}), sparsity: l.sparsity };
      });
    // Parameters as inspect counts them: layer inputs, quantized ones (through DequantizeLinear) included.
    const sp = { params: info.params, nonzero: info.params - info.zeroParams, sparsity: info.sparsity };
    return { info, sp, sizes, layers };
  });
  const latency = await measureLatencies(entries.map((e) => e.model), {
    batch, warmup, runs, ...(opts.threads ? { threads: opts.threads } : {}), ...(opts.inputShapes ? { inputShapes: opts.inputShapes } : {}),
    ...(opts.feeds ? { feeds: opts.feeds } : {}),
  });
  const base = entries[0]!.model;
  const scored: Pick<ModelEvidence, 'accuracy' | 'fidelity' | 'perplexity' | 'agreement' | 'detection'>[] = [];
  let samples: number | undefined;
  let dataset: string | undefined;
  let detection: EvidenceReport['detection'];
  // The base's detections, collected on its own run: each variant's fidelity reads them (the base runs once).
  let baseDetections: Detections[] | undefined;
  for (const [k, e] of entries.entries()) {
    if (!opts.data) {
      scored.push({});
      continue;
    }
    const ds = typeof opts.data === 'function' ? opts.data(e.model) : opts.data;
    dataset ??= ds.description;
    if (opts.task === 'detect') {
      const r = await evaluateDetection(e.model, ds, {
        ...(k === 0 ? { collect: true } : { referenceDetections: baseDetections! }),
        ...(opts.dataLimit !== undefined ? { limit: opts.dataLimit } : {}),
        ...(opts.evalBatch !== undefined ? { batchSize: opts.evalBatch } : {}),
        ...(opts.threads ? { threads: opts.threads } : {}),
        ...(opts.drawImages ? { keep: opts.drawImages } : {}),
        ...(opts.onProgress ? { onProgress: (p: EvalProgress) => opts.onProgress!(e.label, p) } : {}),
      });
      samples = r.samples;
      if (k === 0) baseDetections = r.detections;
      scored.push({
        detection: {
          output: r.output,
          ...(r.map ? { map50: r.map.map50, map5095: r.map.map5095, ultralytics: { map50: r.map.ultralytics.map50, map5095: r.map.ultralytics.map5095 } } : {}),
          ...(r.fidelity ? { fidelity: r.fidelity } : {}),
        },
      });
      const names = ds.source.classes ?? [];
      detection ??= { names, images: [] };
      (r.images ?? []).forEach((im: ImageDetections, i: number) => {
        let d = detection!.images[i];
        if (!d) {
          const url = dataUrl(im.file);
          d = { file: im.file, width: im.width, height: im.height, ...(url ? { dataUrl: url } : {}), ...(im.truth ? { truth: drawn(im.truth, 0) } : {}), detections: {} };
          detection!.images.push(d);
        }
        d.detections[e.label] = drawn(im.model, DRAW_CONF);
      });
      continue;
    }
    const r = await evaluate(e.model, ds, {
      ...(k > 0 ? { reference: base } : {}),
      ...(opts.dataLimit !== undefined ? { limit: opts.dataLimit } : {}),
      ...(opts.evalBatch !== undefined ? { batchSize: opts.evalBatch } : {}),
      ...(opts.threads ? { threads: opts.threads } : {}),
      ...(opts.onProgress ? { onProgress: (p: EvalProgress) => opts.onProgress!(e.label, p) } : {}),
    });
    samples = r.samples;
    scored.push({
      ...(r.accuracy ? { accuracy: { top1: r.accuracy.top1, ...(r.accuracy.top5 !== undefined ? { top5: r.accuracy.top5 } : {}), samples: r.accuracy.samples, output: r.accuracy.output } } : {}),
      ...(r.fidelity ? { fidelity: r.fidelity } : {}),
      ...(r.perplexity ? { perplexity: r.perplexity } : {}),
      ...(r.agreement !== undefined ? { agreement: r.agreement } : {}),
    });
  }
  const b = static1[0]!;
  const bLat = latency[0]!;
  const bTop1 = scored[0]!.accuracy?.top1;
  const models: ModelEvidence[] = entries.map((e, k) => {
    const s = static1[k]!;
    const lat = latency[k]!;
    const top1 = scored[k]!.accuracy?.top1;
    return {
      label: e.label,
      ...(e.path ? { path: e.path } : {}),
      fileBytes: s.sizes.bytes,
      gzipBytes: s.sizes.gzipBytes,
      params: s.sp.params,
      nonzeroParams: s.sp.nonzero,
      sparsity: s.sp.sparsity,
      macs: s.info.macs,
      latency: lat,
      ...scored[k]!,
      vsBase: {
        fileBytes: s.sizes.bytes / b.sizes.bytes,
        gzipBytes: s.sizes.gzipBytes / b.sizes.gzipBytes,
        params: s.sp.params / b.sp.params,
        nonzeroParams: s.sp.nonzero / b.sp.nonzero,
        macs: b.info.macs ? s.info.macs / b.info.macs : 1,
        speedup: bLat.median / lat.median,
        cpuSpeedup: bLat.cpuMedian / lat.cpuMedian,
        ...(top1 !== undefined && bTop1 !== undefined ? { top1Delta: top1 - bTop1 } : {}),
      },
      layers: s.layers,
    };
  });
  const machine = platform().machine();
  return {
    createdAt: new Date().toISOString(),
    environment: { node: machine.host, onnxruntime: ortVersion(), runtime: ortName(), cpu: machine.cpu, cores: machine.cores, platform: machine.platform },
    settings: {
      batch, threads: opts.threads ?? null, warmup, runs, ...(dataset !== undefined ? { dataset } : {}), ...(samples !== undefined ? { samples } : {}),
      ...(opts.task === 'detect' ? { task: 'detect' as const } : {}),
    },
    models,
    ...(detection ? { detection } : {}),
  };
}
