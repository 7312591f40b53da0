/**
 * The quantize step (quant/): static int8 QDQ calibrated on the calibration data (or on random inputs for
 * random-weight models), dynamic int8, weight-only int4 or fp16.
 */
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import { encodeModel } from '../onnx/codec.js';
import {
  calibrationBatch, convertFp16, float16Tensors, datasetCalibration, quantizeDynamic, quantizeInt4, quantizeStatic, randomCalibration, sparsity24, TRT_OPTIONS,
  type CalibrationData, type DynamicQuantReport, type QuantReport, type Sparsity24, type StaticQuantOptions,
} from '../quant/index.js';
import type { RunContext } from './context.js';
import { withDefaults, type Resolved } from './options.js';
import { QUANTIZE_OPTIONS, type QuantizeStep } from './steps.js';

/** What the quant/ function of the step's mode reported (int8: with the target, and for trt the 2:4 layers). */
export type QuantizeDetails =
  | (QuantReport & { target: 'ort' | 'trt'; sparsity24?: Sparsity24[] })
  | DynamicQuantReport
  | ReturnType<typeof quantizeInt4>['report']
  | ReturnType<typeof convertFp16>['report'];

export interface QuantizeSummary {
  mode: QuantizeStep['mode'];
  /** What was quantized ('Conv 21, Add 9', '4 matrix products', ...). */
  quantized: string;
  bytesBefore: number;
  bytesAfter: number;
  details: QuantizeDetails;
}

async function calibration(ctx: RunContext, model: Model, spec: string, size: number): Promise<CalibrationData> {
  if (spec === 'random') {
    ctx.emit({ type: 'warning', message: 'calibrating on random normal inputs: use only for random-weight models (speed/structure checks)' });
    const bs = calibrationBatch(model, 8, undefined, ctx.feeds);
    return randomCalibration(model, Math.max(1, Math.ceil(size / bs)), bs, 1, ctx.feeds);
  }
  return datasetCalibration(model, await ctx.data('quantize.calib', spec), size);
}

/** int8 progress as info events, at most one every 3 s. */
function throttled(ctx: RunContext): (msg: string) => void {
  let last = 0;
  return (message) => {
    const now = Date.now();
    if (now - last <= 3000) return;
    last = now;
    ctx.emit({ type: 'info', message });
  };
}

async function quantize(ctx: RunContext, model: Model, s: Resolved<typeof QUANTIZE_OPTIONS>): Promise<{ model: Model; details: QuantizeDetails; what: string }> {
  const exclude = s.exclude !== undefined ? { exclude: new RegExp(s.exclude) } : {};
  const range = { ...(s.perTensor ? { perTensor: true } : {}), ...(s.reduceRange !== undefined ? { reduceRange: s.reduceRange } : {}) };
  const products = (r: { quantizedNodes: string[] }) => `${r.quantizedNodes.length} matrix products`;
  switch (s.mode) {
    case 'int8': {
      const opts: StaticQuantOptions = { ...(s.target === 'trt' ? TRT_OPTIONS : {}), calibrator: s.calibrator, ...exclude, ...range, onProgress: throttled(ctx) };
      if (s.percentile !== undefined) opts.percentile = s.percentile;
      if (s.autoExclude !== undefined) opts.autoExclude = s.autoExclude;
      const r = await quantizeStatic(model, await calibration(ctx, model, s.calib!, s.calibSize), opts);
      const details = { ...r.report, target: s.target, ...(s.target === 'trt' ? { sparsity24: sparsity24(r.model) } : {}) };
      return { model: r.model, details, what: Object.entries(r.report.quantized).map(([k, v]) => `${k} ${v}`).join(', ') };
    }
    case 'dynamic': {
      const r = quantizeDynamic(model, { ...exclude, ...range });
      return { model: r.model, details: r.report, what: products(r.report) };
    }
    case 'int4': {
      const r = quantizeInt4(model, { blockSize: s.blockSize, ...exclude });
      return { model: r.model, details: r.report, what: products(r.report) };
    }
    case 'fp16': {
      const r = convertFp16(model, s.ioFp16 ? { ioFp16: true } : {});
      if (r.report.initializers === 0) {
        const half = float16Tensors(model);
        throw new ShearsError(`nothing to convert to float16: the model has no float32 weights${half ? ` (it is float16 already: ${half} float16 tensors)` : ''}`);
      }
      return { model: r.model, details: r.report, what: 'all float tensors' };
    }
  }
}

export async function runQuantize(ctx: RunContext, model: Model, step: QuantizeStep): Promise<{ model: Model; report: QuantizeSummary }> {
  const s = withDefaults(QUANTIZE_OPTIONS, step);
  const { model: out, details, what } = await quantize(ctx, model, s);
  ctx.storePreprocess(out);
  const bytesBefore = encodeModel(model).byteLength;
  const bytesAfter = encodeModel(out).byteLength;
  ctx.emit({ type: 'info', message: `quantized (${s.mode}: ${what}); ${bytesBefore} -> ${bytesAfter} bytes` });
  return { model: out, report: { mode: s.mode, quantized: what, bytesBefore, bytesAfter, details } };
}
